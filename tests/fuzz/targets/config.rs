//! Cluster configurations (`vjobd --config FILE`), `[power]` and `[[node]]` tables included.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let _ = vjob_daemon::config::Config::parse("cluster.toml", &text);
});
