//! No trace makes the SWF reader panic: random token streams of SWF lines and random bytes.
//! `VJOB_FUZZ_CASES` sets the cases per target (500 in the suite).

use proptest::prelude::*;

fn cases() -> u32 {
    std::env::var("VJOB_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(500)
}

fn swf_soup() -> impl Strategy<Value = String> {
    let atoms = prop::sample::select(vec![
        "1",
        "0",
        "-1",
        "3600",
        "99999999999999999999",
        "1.5",
        "-0.5",
        "nan",
        "x",
        " ",
        " ",
        "\t",
        "\n",
        "\n",
        "; MaxNodes: 8",
        "; MaxProcs: ",
        "; Version: 2.2",
        ";",
        "1 0 10 100 4 -1 -1 4 200 -1 1 1 1 1 1 -1 -1 -1",
    ]);
    prop::collection::vec(atoms, 0..80).prop_map(|v| v.concat())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn no_swf_text_makes_the_reader_panic(s in swf_soup()) {
        let _ = vjob_simulator::swf::parse("t.swf", &s);
    }

    #[test]
    fn no_bytes_make_the_swf_reader_panic(b in prop::collection::vec(any::<u8>(), 0..300)) {
        let _ = vjob_simulator::swf::parse("t.swf", &String::from_utf8_lossy(&b));
    }
}
