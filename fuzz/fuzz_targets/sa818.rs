//! SA818 AT lines, both directions: arbitrary bytes must never panic, and
//! accepted commands and responses must survive an encode/parse round trip.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rollcall_hw::serial::sa818::{line_buffer, Command, Response};

fuzz_target!(|data: &[u8]| {
    let mut lines = line_buffer();
    lines.push(data);
    while let Some(line) = lines.next_line() {
        let Ok(line) = line else { continue };
        if let Ok(r) = Response::parse(&line) {
            assert_eq!(Response::parse(&r.encode()), Ok(r));
        }
        if let Ok(c) = Command::parse(&line) {
            // Frequencies are printed with 4 decimals, so compare re-encodings.
            let once = c.encode();
            let again = Command::parse(&once).expect("re-encoded command parses");
            assert_eq!(again.encode(), once);
        }
    }
});
