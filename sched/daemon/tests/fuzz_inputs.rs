//! No input makes vjobd's readers panic: job specs, cluster configurations, API requests and
//! BtrPlace JSON, from random token streams near their grammar and from random bytes.
//! `VJOB_FUZZ_CASES` sets the cases per target (500 in the suite; longer runs by hand).

use proptest::prelude::*;

fn cases() -> u32 {
    std::env::var("VJOB_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(500)
}

/// Token streams of TOML close to specs and configurations.
fn toml_soup() -> impl Strategy<Value = String> {
    let atoms = prop::sample::select(vec![
        "name",
        "queue",
        "priority",
        "walltime",
        "count",
        "vcpus",
        "memory",
        "image",
        "script",
        "output",
        "sim_runtime",
        "sim_exit_code",
        "file",
        "state_dir",
        "socket",
        "cpus",
        "admins",
        "placement",
        "default",
        "max_running",
        "[vm]",
        "[run]",
        "[placement]",
        "[[node]]",
        "[[queue]]",
        "[[template]]",
        "[scheduler]",
        "[hypervisor]",
        "[vm",
        " = ",
        "=",
        "\"x\"",
        "\"\"",
        "\"1h\"",
        "\"4GiB\"",
        "\"-1s\"",
        "'a'",
        "\"\"\"",
        "0",
        "1",
        "-1",
        "4096",
        "99999999999999999999",
        "1e308",
        "true",
        "[",
        "]",
        "{",
        "}",
        ",",
        ".",
        "\n",
        "\n",
        "\n",
        " ",
        "#",
        "\"VM[1..3] : small;\"",
        "\"@n[1..4]\"",
    ]);
    prop::collection::vec(atoms, 0..80).prop_map(|v| v.concat())
}

/// Token streams of JSON close to API requests and BtrPlace instances.
fn json_soup() -> impl Strategy<Value = String> {
    let atoms = prop::sample::select(vec![
        "{",
        "}",
        "[",
        "]",
        ",",
        ":",
        "\"version\"",
        "\"op\"",
        "\"Submit\"",
        "\"Jobs\"",
        "\"spec\"",
        "\"files\"",
        "\"model\"",
        "\"mapping\"",
        "\"onlineNodes\"",
        "\"readyVMs\"",
        "\"constraints\"",
        "\"id\"",
        "\"spread\"",
        "\"vms\"",
        "\"nodes\"",
        "\"parts\"",
        "\"attributes\"",
        "\"views\"",
        "\"ns\"",
        "\"map\"",
        "1",
        "0",
        "-1",
        "1e400",
        "null",
        "true",
        "\"x\"",
        "\"\"",
        " ",
    ]);
    prop::collection::vec(atoms, 0..80).prop_map(|v| v.concat())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn no_spec_or_configuration_makes_a_reader_panic(s in toml_soup()) {
        let _ = vjob_daemon::spec::JobSpec::parse("job.toml", &s);
        let _ = vjob_daemon::spec::JobSpec::parse("job.toml", &format!("name = \"j\"\n[run]\nscript = \"x\"\n{s}"));
        let _ = vjob_daemon::config::Config::parse("cluster.toml", &s);
        let _ = vjob_daemon::config::Config::parse(
            "cluster.toml",
            &format!("state_dir = \"/nonexistent\"\n[[node]]\nname = \"n1\"\ncpus = 4\nmemory = \"8GiB\"\n{s}"),
        );
    }

    #[test]
    fn no_request_or_instance_makes_a_reader_panic(s in json_soup()) {
        let _ = serde_json::from_str::<vjob_api::Request>(&s);
        let _ = vjob_instances::btrplace::parse_bytes(s.as_bytes());
    }

    #[test]
    fn no_bytes_make_a_reader_panic(b in prop::collection::vec(any::<u8>(), 0..300)) {
        let text = String::from_utf8_lossy(&b);
        let _ = vjob_daemon::spec::JobSpec::parse("job.toml", &text);
        let _ = vjob_daemon::config::Config::parse("cluster.toml", &text);
        let _ = serde_json::from_slice::<vjob_api::Request>(&b);
        let _ = vjob_instances::btrplace::parse_bytes(&b);
    }
}
