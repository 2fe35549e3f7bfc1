//! Job specs (`vsub FILE`): no text makes the reader panic, hang or grow without bound.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let _ = vjob_daemon::spec::JobSpec::parse("job.toml", &text);
});
