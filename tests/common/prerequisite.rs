//! What a test does when something it needs outside the repository is absent (the libvirt lab,
//! root, the shared reference data): under CI (`CI=true`) it fails, naming what is missing;
//! elsewhere it is skipped, and the skip is written to the file named by `VJOB_SKIP_LOG` (set
//! by `tests/run-all.sh`, which prints every skip and its reason at the end of the suite).
//!
//! Included by path from every test crate that has such prerequisites.

#![allow(dead_code)]

/// Whether the suite runs under CI, where nothing may be skipped.
pub fn under_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// `test` cannot run because `missing` (what is absent, and how to get it). Panics under CI;
/// otherwise records the skip and returns, for the test to return early.
pub fn missing(test: &str, missing: &str) {
    if under_ci() {
        panic!("{test}: {missing} (CI=true: a missing prerequisite fails the test)");
    }
    eprintln!("skipped {test}: {missing}");
    if let Some(log) = std::env::var_os("VJOB_SKIP_LOG") {
        use std::io::Write;
        if let Ok(mut f) = std::fs::OpenOptions::new().create(true).append(true).open(log) {
            let _ = writeln!(f, "{test}: {missing}");
        }
    }
}

/// The libvirt lab (`VJOB_LAB`, made by `hypervisor/guest/lab.sh up`) and the guest
/// (`VJOB_GUEST`, made by `hypervisor/guest/build.sh`), checked to be there; or what is missing.
pub fn libvirt_lab() -> Result<(std::path::PathBuf, std::path::PathBuf), String> {
    use std::path::PathBuf;
    let var = |name: &str, what: &str| {
        std::env::var_os(name)
            .map(PathBuf::from)
            .ok_or_else(|| format!("{name} is not set: it names {what} (tests/run-all.sh sets it up as root)"))
    };
    let lab = var("VJOB_LAB", "the directory of the libvirt lab")?;
    let guest = var("VJOB_GUEST", "the directory of the tiny guest")?;
    for node in ["node1", "node2"] {
        let socket = lab.join(node).join("sock/libvirt-sock");
        if !socket.exists() {
            return Err(format!(
                "no libvirtd socket at {} (is the lab up? hypervisor/guest/lab.sh up {} 2)",
                socket.display(),
                lab.display()
            ));
        }
    }
    for file in ["vmlinuz", "initrd.gz", "disk.qcow2"] {
        if !guest.join(file).exists() {
            return Err(format!(
                "no {} (build the guest: hypervisor/guest/build.sh {})",
                guest.join(file).display(),
                guest.display()
            ));
        }
    }
    Ok((lab, guest))
}
