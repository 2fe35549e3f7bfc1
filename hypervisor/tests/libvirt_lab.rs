//! The libvirt backend against real libvirtd nodes running TCG guests: the lab made by
//! `hypervisor/guest/lab.sh up DIR 2` and the guest built by `hypervisor/guest/build.sh`.
//! Runs when `VJOB_LAB` names the lab directory and `VJOB_GUEST` the guest directory (as the
//! test suite's script sets them); otherwise skipped and recorded, or failed under CI.
#![cfg(feature = "libvirt")]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use vjob_hypervisor::libvirt::{GuestImage, LibvirtNode, LibvirtSettings};
use vjob_hypervisor::{DomainState, GuestSpec, Hypervisor, VmSpec};

#[path = "../../tests/common/prerequisite.rs"]
mod prerequisite;

/// The lab and the guest, or `None` (the test is skipped; under CI it fails) when either is
/// missing.
fn lab(test: &str) -> Option<(PathBuf, PathBuf)> {
    match prerequisite::libvirt_lab() {
        Ok(found) => Some(found),
        Err(what) => {
            prerequisite::missing(test, &what);
            None
        }
    }
}

fn nodes(lab: &Path, guest: &Path, run: &Path) -> (LibvirtNode, LibvirtNode) {
    let settings = Arc::new(LibvirtSettings {
        domain_type: "qemu".into(),
        run_dir: run.to_path_buf(),
        shared_storage: true, // the lab's nodes share one host
        images: [
            (
                "tiny".to_string(),
                GuestImage {
                    kernel: Some(guest.join("vmlinuz")),
                    initrd: Some(guest.join("initrd.gz")),
                    ..Default::default()
                },
            ),
            (
                "tinydisk".to_string(),
                GuestImage {
                    kernel: Some(guest.join("vmlinuz")),
                    initrd: Some(guest.join("initrd.gz")),
                    disk: Some(guest.join("disk.qcow2")),
                    disk_format: "qcow2".into(),
                    cmdline: None,
                },
            ),
        ]
        .into(),
    });
    let node = |i: u32| {
        let uri = format!("qemu+unix:///system?socket={}/node{i}/sock/libvirt-sock", lab.display());
        LibvirtNode::new(
            &format!("node{i}"),
            &uri,
            Some(&format!("qemu+tcp://10.77.0.{i}/system")),
            settings.clone(),
        )
    };
    (node(1), node(2))
}

fn spec(name: &str, script: &str) -> VmSpec {
    VmSpec {
        name: name.into(),
        vcpus: 1,
        memory: 96 << 20,
        guest: GuestSpec {
            image: Some("tiny".into()),
            script: script.into(),
            env: vec![("VJOB_ID".into(), "1".into())],
            ..Default::default()
        },
    }
}

fn state(n: &LibvirtNode, vm: &str) -> Option<DomainState> {
    n.list().unwrap().into_iter().find(|d| d.name == vm).map(|d| d.state)
}

fn wait(what: &str, within: Duration, mut f: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while t0.elapsed() < within {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("timed out waiting for {what}");
}

#[test]
fn a_guest_runs_its_script_and_ends_with_its_exit_code() {
    let Some((lab, guest)) = lab("a_guest_runs_its_script_and_ends_with_its_exit_code") else {
        return;
    };
    let run = lab.join("run-exit");
    let (a, _) = nodes(&lab, &guest, &run);
    let vm = "vjob-lab-exit";
    a.destroy(vm).unwrap();
    a.start(&spec(vm, "echo hello from $VJOB_ID; exit 3"), false).unwrap();
    wait("the guest to end", Duration::from_secs(60), || {
        matches!(state(&a, vm), Some(DomainState::Ended { .. }))
    });
    assert_eq!(state(&a, vm), Some(DomainState::Ended { exit_code: 3 }));
    let console = std::fs::read_to_string(a.console_log(vm).unwrap()).unwrap();
    assert!(console.contains("hello from 1"), "{console}");
    a.destroy(vm).unwrap();
    assert_eq!(state(&a, vm), None);
}

#[test]
fn save_on_one_node_restore_on_the_other_and_migrate_back_keep_the_guest_going() {
    let Some((lab, guest)) = lab("save_on_one_node_restore_on_the_other_and_migrate_back_keep_the_guest_going") else {
        return;
    };
    let run = lab.join("run-move");
    let (a, b) = nodes(&lab, &guest, &run);
    let vm = "vjob-lab-move";
    a.destroy(vm).unwrap();
    b.destroy(vm).unwrap();
    // A counter on the console: it must go on where it stopped after every move.
    a.start(
        &spec(vm, "i=0; while true; do i=$((i+1)); echo tick $i; sleep 0.2; done"),
        false,
    )
    .unwrap();
    let console = a.console_log(vm).unwrap();
    let ticks = || {
        std::fs::read_to_string(&console)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.trim().strip_prefix("tick ")?.parse::<u64>().ok())
            .max()
            .unwrap_or(0)
    };
    wait("the counter to start", Duration::from_secs(60), || ticks() >= 3);
    let image = lab.join("images").join(format!("{vm}.img"));
    a.save(vm, &image).unwrap();
    assert_eq!(state(&a, vm), None);
    let before = ticks();
    assert_eq!(b.restore(&image, false).unwrap(), vm);
    std::fs::remove_file(&image).unwrap();
    wait(
        "the counter to go on after the restore",
        Duration::from_secs(30),
        || ticks() > before + 2,
    );
    b.migrate(vm, &a.migration_target()).unwrap();
    assert_eq!(state(&b, vm), None);
    assert_eq!(state(&a, vm), Some(DomainState::Running));
    let before = ticks();
    wait(
        "the counter to go on after the migration",
        Duration::from_secs(30),
        || ticks() > before + 2,
    );
    // Every tick once, in order: the guest's memory survived both moves.
    let all: Vec<u64> = std::fs::read_to_string(&console)
        .unwrap()
        .lines()
        .filter_map(|l| l.trim().strip_prefix("tick ")?.parse().ok())
        .collect();
    assert!(all.windows(2).all(|w| w[1] == w[0] + 1), "ticks out of order: {all:?}");
    a.destroy(vm).unwrap();
}

#[test]
fn disk_images_boot_through_private_overlays_and_get_their_job_from_a_seed() {
    let Some((lab, guest)) = lab("disk_images_boot_through_private_overlays_and_get_their_job_from_a_seed") else {
        return;
    };
    let run = lab.join("run-disk");
    let (a, b) = nodes(&lab, &guest, &run);
    let base = guest.join("disk.qcow2");
    let base_before = std::fs::read(&base).unwrap();
    let vms = ["vjob-lab-disk-0", "vjob-lab-disk-1"];
    // Each guest reads the base image's file, writes its own on its disk, and proves it
    // sees its own write only; then it waits to be moved.
    let script = "mount /dev/vda /mnt && cat /mnt/hello && echo mine-$VJOB_ID > /mnt/own && ls /mnt && \
                  cat /mnt/own && sync && echo disk-ok; while true; do echo alive; sleep 0.5; done";
    for (i, vm) in vms.iter().enumerate() {
        a.destroy(vm).unwrap();
        b.destroy(vm).unwrap();
        let mut s = spec(vm, script);
        s.guest.image = Some("tinydisk".into());
        s.guest.env = vec![("VJOB_ID".into(), i.to_string())];
        a.start(&s, false).unwrap();
    }
    for (i, vm) in vms.iter().enumerate() {
        let console = a.console_log(vm).unwrap();
        wait("the guest to use its disk", Duration::from_secs(90), || {
            std::fs::read_to_string(&console)
                .unwrap_or_default()
                .contains("disk-ok")
        });
        let text = std::fs::read_to_string(&console).unwrap();
        assert!(text.contains("hello from the base image"), "{text}");
        assert!(text.contains(&format!("mine-{i}")), "{text}");
    }
    // The base image was never written; each VM has its own boot directory.
    assert_eq!(std::fs::read(&base).unwrap(), base_before);
    let dirs = || {
        std::fs::read_dir(&run)
            .unwrap()
            .filter(|e| e.as_ref().unwrap().path().extension().is_some_and(|x| x == "d"))
            .count()
    };
    assert_eq!(dirs(), 2);
    // Live migration with the overlay on shared storage.
    b.migrate(vms[0], &b.migration_target()).unwrap_err(); // not on b
    a.migrate(vms[0], &b.migration_target()).unwrap();
    assert_eq!(state(&b, vms[0]), Some(DomainState::Running));
    let console = a.console_log(vms[0]).unwrap();
    let alive = || {
        std::fs::read_to_string(&console)
            .unwrap_or_default()
            .matches("alive")
            .count()
    };
    let before = alive();
    wait("the migrated guest to go on", Duration::from_secs(30), || {
        alive() > before + 2
    });
    // Saved and discarded: the image and the VM's files go.
    let image = lab.join("images").join(format!("{}.img", vms[1]));
    a.save(vms[1], &image).unwrap();
    assert!(image.exists());
    a.discard_image(&image).unwrap();
    assert!(!image.exists());
    assert_eq!(dirs(), 1);
    b.destroy(vms[0]).unwrap();
    assert_eq!(dirs(), 0, "destroy removes the overlay and the seed");
}
