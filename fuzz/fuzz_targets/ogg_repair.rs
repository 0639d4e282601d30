//! Any bytes through the Ogg page reader, the recording checker and the repair
//! planner: no panic, and whatever repair plans must leave a file the checker
//! accepts as a complete stream.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rollcall_hw::ogg::{OggPageReader, RecordingInfo, RepairPlan};

fuzz_target!(|data: &[u8]| {
    for page in OggPageReader::new(data) {
        let Ok((_, page)) = page else { break };
        for (packet, _complete) in page.packets() {
            std::hint::black_box(packet);
        }
    }
    let _ = RecordingInfo::parse(data);
    if let Ok(plan) = RepairPlan::for_bytes(data) {
        let repaired = plan.apply_to(data);
        let info = RecordingInfo::parse(&repaired).expect("repaired stream must be valid");
        assert!(info.complete, "repaired stream must end with EOS");
        assert_eq!(info.duration_ms, plan.outcome.duration_ms);
    }
});
