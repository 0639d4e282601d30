//! The config loader: any text must load or give errors that name a place,
//! never panic.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(src) = std::str::from_utf8(data) else {
        return;
    };
    if let Err(errors) = rollcalld::config::load_str(src, Path::new("fuzz.toml")) {
        // Rendering the report walks every span; it must not panic either.
        let _ = errors.to_string();
    }
});
