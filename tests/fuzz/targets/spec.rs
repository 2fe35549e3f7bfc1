//! Job specs (`vsub FILE`, TOML or a shell script with `#VJOB`/`#SBATCH`/`#PBS` directives): no
//! text makes the reader panic, hang or grow without bound.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let ignore_unknown = data.last().is_some_and(|b| b & 1 == 1);
    let _ = vjob_daemon::spec::from_submission(
        "job.sh",
        &text,
        &Default::default(),
        &Default::default(),
        ignore_unknown,
    );
});
