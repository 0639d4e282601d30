//! SvxLink PTY protocol: every byte decodes to a message, whitespace, or an
//! error naming that byte; never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rollcall_hw::serial::svxlink::{decode, Message, SvxlinkError};

fuzz_target!(|data: &[u8]| {
    for item in decode(data) {
        match item {
            Ok(m) => assert_eq!(Message::parse(m.encode()), Ok(Some(m))),
            Err(SvxlinkError::UnexpectedByte(b)) => assert!(data.contains(&b)),
        }
    }
});
