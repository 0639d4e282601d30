//! rigctld answer lines: arbitrary bytes must never panic the framing or
//! the reply parser.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rollcall_hw::serial::framing::LineBuffer;
use rollcall_hw::serial::rigctld::{Reply, MAX_LINE};

fuzz_target!(|data: &[u8]| {
    let mut lines = LineBuffer::new(b'\n', MAX_LINE);
    for chunk in data.chunks(7) {
        lines.push(chunk);
        while let Some(line) = lines.next_line() {
            if let Ok(line) = line {
                assert!(line.len() <= MAX_LINE);
                if let Ok(reply) = Reply::parse(&line) {
                    let _ = reply.flag();
                }
            }
        }
    }
    assert!(lines.pending() <= MAX_LINE);
});
