#!/usr/bin/env python3
"""Independent check of rollcalld's DMR data bursts with ok-dmrlib.

Each argument is a 33-byte burst in hex. For each, prints one JSON line with
what ok-dmrlib's own sync-pattern table, slot type (Golay 20,8), BPTC(196,96)
decoder and CRC-16 with the CSBK mask make of it. ok-dmrlib's CSBK class has
no entry for the Motorola radio-check opcode (0x24), so the opcode-specific
fields are read from the decoded bytes here.

Exit status 77 means ok-dmrlib is not installed (the Rust test skips).
"""
import json
import sys

try:
    from okdmr.dmrlib.etsi.crc.crc16 import CRC16
    from okdmr.dmrlib.etsi.fec.bptc_196_96 import BPTC19696
    from okdmr.dmrlib.etsi.layer2.elements.crc_masks import CrcMasks
    from okdmr.dmrlib.etsi.layer2.elements.sync_patterns import SyncPatterns
    from okdmr.dmrlib.etsi.layer2.pdu.slot_type import SlotType
    from okdmr.dmrlib.utils.bits_bytes import bits_to_bytes, bytes_to_bits
except ImportError as error:
    print(f"ok-dmrlib is not importable: {error}", file=sys.stderr)
    sys.exit(77)


def check(burst_hex: str) -> dict:
    raw = bytes.fromhex(burst_hex)
    bits = bytes_to_bits(raw)
    sync = SyncPatterns.resolve_bytes(bits_to_bytes(bits[108:156]))
    slot_type = SlotType.from_bits(bits[98:108] + bits[156:166])
    info = bits_to_bytes(BPTC19696.deinterleave_data_bits(bits[:98] + bits[166:]))
    crc = int.from_bytes(info[10:12], "big")
    return {
        "sync": sync.name,
        "colour_code": slot_type.colour_code,
        "data_type": slot_type.data_type.name,
        "slot_type_fec_ok": bool(slot_type.fec_parity_ok),
        "crc_ok_with_csbk_mask": CRC16.check(info[:10], crc, CrcMasks.CSBK),
        "last_block": bool(info[0] & 0x80),
        "opcode": info[0] & 0x3F,
        "fid": info[1],
        "byte3": info[3],
        "id_4_6": int.from_bytes(info[4:7], "big"),
        "id_7_9": int.from_bytes(info[7:10], "big"),
    }


for arg in sys.argv[1:]:
    print(json.dumps(check(arg)))
