//! Placement scripts (btrpsl): job specs' `placement` and the datacenter's scripts.
#![no_main]

use vjob_btrpsl::{Context, Library};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let _ = Library::new(Vec::new(), Context::default()).load_text("fuzz.btrp", &text);
});
