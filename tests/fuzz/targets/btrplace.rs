//! BtrPlace instances in JSON (`vplan FILE`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = vjob_instances::btrplace::parse_bytes(data);
});
