//! Fuzzes the Homebrew parser, the DMR burst/CSBK decoders and the master
//! state machine: no input may panic, and whatever parses must re-emit to
//! bytes that parse to the same value.
#![no_main]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use rollcall_hw::dmr::burst::DataBurst;
use rollcall_hw::dmr::{Csbk, Master, MasterConfig, Message, PeerCredentials};

fuzz_target!(|data: &[u8]| {
    if let Ok(message) = Message::parse(data) {
        let bytes = message.to_bytes();
        assert_eq!(bytes.len(), message.buffer_len());
        let again = Message::parse(&bytes).expect("emitted message parses");
        // Text fields are normalised (trimmed, lossy UTF-8) on the first
        // parse, so compare the second round trip exactly.
        assert_eq!(Message::parse(&again.to_bytes()), Ok(again));
    }
    if data.len() >= 33 {
        let _ = DataBurst::decode(&data[..33]);
        let _ = Csbk::from_burst(&data[..33]);
    }
    // The master must survive any datagram sequence: split the input on a
    // separator byte and feed the pieces as datagrams from two addresses.
    let config = MasterConfig {
        peers: vec![PeerCredentials { id: 1, password: "x".into() }],
        ..MasterConfig::default()
    };
    let mut master = Master::new(config, 0);
    let start = Instant::now();
    for (i, piece) in data.split(|b| *b == 0xFE).enumerate() {
        let now = start + Duration::from_millis(100 * i as u64);
        let from = SocketAddr::from(([127, 0, 0, 1], 1000 + (i % 2) as u16));
        let _ = master.handle_datagram(now, from, piece);
        master.handle_timeout(now);
        while master.poll_transmit().is_some() {}
        while master.poll_event().is_some() {}
    }
});
