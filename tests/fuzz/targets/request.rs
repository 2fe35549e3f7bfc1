//! API requests, as vjobd reads them off its socket (one JSON line each).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(req) = serde_json::from_slice::<vjob_api::Request>(data) {
        // What was read writes back and reads again the same.
        let text = serde_json::to_string(&req).expect("a request serializes");
        let again: vjob_api::Request = serde_json::from_str(&text).expect("a written request reads");
        assert_eq!(serde_json::to_string(&again).unwrap(), text);
    }
});
