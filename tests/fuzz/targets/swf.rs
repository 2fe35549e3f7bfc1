//! Workload traces in the Standard Workload Format (`vsim --trace FILE`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let _ = vjob_simulator::swf::parse("trace.swf", &text);
});
