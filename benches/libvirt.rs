//! Context-switch latencies on real libvirt nodes (TCG guests, two libvirtd in network
//! namespaces): save to disk, restore on the other node and live migration, against guest
//! memory (96, 256, 512 MiB, up to 5/8 of it filled with non-zero bytes), beside the physical limit measured on the
//! same machine (bytes written or sent divided by the disk's or the link's bandwidth).
//!
//! Needs the lab: `hypervisor/guest/lab.sh up DIR 2`, `hypervisor/guest/build.sh GUEST`, then
//! `VJOB_LAB=DIR VJOB_GUEST=GUEST cargo bench --features libvirt --bench libvirt`.

mod common;
use common::median;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use vjob_hypervisor::libvirt::{GuestImage, LibvirtNode, LibvirtSettings};
use vjob_hypervisor::{GuestSpec, Hypervisor, VmSpec};

fn ms(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1000.0
}

/// Write bandwidth of `dir`'s disk, bytes/s (512 MiB, flushed).
fn disk_bandwidth(dir: &Path) -> f64 {
    let f = dir.join("bw.tmp");
    let t = Instant::now();
    let ok = Command::new("dd")
        .args([
            "if=/dev/zero",
            &format!("of={}", f.display()),
            "bs=1M",
            "count=512",
            "conv=fsync",
        ])
        .stderr(Stdio::null())
        .status()
        .unwrap()
        .success();
    assert!(ok);
    let secs = t.elapsed().as_secs_f64();
    let _ = std::fs::remove_file(f);
    (512u64 << 20) as f64 / secs
}

/// TCP bandwidth from node1's namespace to node2's, bytes/s: 1 GiB sent by one Python process
/// to another (the machine's CPython; nothing else to install).
fn link_bandwidth() -> f64 {
    const RX: &str = "import socket\ns=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\ns.bind(('10.77.0.2', 5001)); s.listen(1)\nc,_=s.accept()\nwhile c.recv(1<<20): pass";
    const TX: &str = "import socket,time\nc=socket.create_connection(('10.77.0.2', 5001))\nb=bytes(1<<20)\nt=time.time()\nfor _ in range(1024): c.sendall(b)\nc.close()\nprint(time.time()-t)";
    let mut rx = Command::new("nsenter")
        .args(["--net=/run/netns/vjob-node2", "python3", "-c", RX])
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let out = Command::new("nsenter")
        .args(["--net=/run/netns/vjob-node1", "python3", "-c", TX])
        .output()
        .unwrap();
    let _ = rx.wait();
    let secs: f64 = String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("the sender prints its time");
    (1u64 << 30) as f64 / secs
}

fn main() {
    let (Some(lab), Some(guest)) = (std::env::var_os("VJOB_LAB"), std::env::var_os("VJOB_GUEST")) else {
        eprintln!("skipped: set VJOB_LAB and VJOB_GUEST (see this file's header)");
        return;
    };
    let (lab, guest) = (PathBuf::from(lab), PathBuf::from(guest));
    let work = lab.join("bench");
    std::fs::create_dir_all(work.join("images")).unwrap();
    let settings = Arc::new(LibvirtSettings {
        domain_type: "qemu".into(),
        run_dir: work.join("run"),
        shared_storage: true, // the lab's nodes share one host
        images: [(
            "tiny".to_string(),
            GuestImage {
                kernel: Some(guest.join("vmlinuz")),
                initrd: Some(guest.join("initrd.gz")),
                ..Default::default()
            },
        )]
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
    let (a, b) = (node(1), node(2));
    let disk = disk_bandwidth(&work);
    let link = link_bandwidth();
    println!(
        "disk write bandwidth {:.0} MB/s, link bandwidth between the nodes {:.0} MB/s",
        disk / 1e6,
        link / 1e6
    );
    println!();
    println!("| guest memory | touched | save ms | image MB | disk limit ms | restore ms (other node) | migrate ms | link limit ms |");
    println!("|---|---|---|---|---|---|---|---|");
    for mib in [96u64, 256, 512] {
        // What the kernel and the initramfs leave free, at most 5/8 of the memory.
        let touch = (mib - 64).min(mib * 5 / 8);
        let (mut save, mut restore, mut migrate, mut size) = (Vec::new(), Vec::new(), Vec::new(), 0u64);
        for run in 0..3 {
            let vm = format!("vjob-bench-{mib}-{run}");
            let spec = VmSpec {
                name: vm.clone(),
                vcpus: 1,
                memory: mib << 20,
                guest: GuestSpec {
                    image: Some("tiny".into()),
                    // Not zeros: QEMU skips zero pages when it saves or migrates.
                    script: format!(
                        "mkdir /fill && mount -t tmpfs -o size=90% fill /fill && tr '\\0' x < /dev/zero | head -c {} > /fill/x && echo filled; while true; do sleep 1; done",
                        touch << 20
                    ),
                    ..Default::default()
                },
            };
            a.destroy(&vm).unwrap();
            b.destroy(&vm).unwrap();
            a.start(&spec, false).unwrap();
            let console = a.console_log(&vm).unwrap();
            let t = Instant::now();
            while !std::fs::read_to_string(&console).unwrap_or_default().contains("filled") {
                assert!(
                    t.elapsed() < Duration::from_secs(120),
                    "guest {vm} did not fill its memory"
                );
                std::thread::sleep(Duration::from_millis(200));
            }
            let image = work.join("images").join(format!("{vm}.img"));
            let t = Instant::now();
            a.save(&vm, &image).unwrap();
            save.push(ms(t));
            size = std::fs::metadata(&image).unwrap().len();
            let t = Instant::now();
            b.restore(&image, false).unwrap();
            restore.push(ms(t));
            std::fs::remove_file(&image).unwrap();
            let t = Instant::now();
            b.migrate(&vm, &a.migration_target()).unwrap();
            migrate.push(ms(t));
            a.destroy(&vm).unwrap();
        }
        let mb = size as f64 / 1e6;
        println!(
            "| {mib} MiB | {touch} MiB | {:.0} | {mb:.0} | {:.0} | {:.0} | {:.0} | {:.0} |",
            median(save),
            size as f64 / disk * 1000.0,
            median(restore),
            median(migrate),
            size as f64 / link * 1000.0
        );
    }
    let _ = std::fs::remove_dir_all(&work);
}
