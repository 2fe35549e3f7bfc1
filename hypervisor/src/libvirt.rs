//! The libvirt backend: real QEMU/KVM nodes, one libvirt connection URI per node
//! (`qemu:///system`, `qemu+tcp://host/system`, `qemu+ssh://host/system`,
//! `qemu+unix:///system?socket=...`).
//!
//! Guests boot a kernel and an initramfs (see `hypervisor/guest/build.sh`). Each VM gets the
//! image's initramfs with a small archive appended that carries the job's script and environment
//! (Linux unpacks concatenated archives as one); the guest's `/init` runs the script, prints
//! `VJOB-EXIT: <code>` on its serial console and powers off. The console is a file, so the exit
//! code and the output survive save, restore and migration (same path on every node: the run
//! directory must be shared, like the image directory).
//!
//! Every call opens its own connection (libvirt connections are cheap and not shareable between
//! threads) and blocks: callers run them on worker threads.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use virt::connect::Connect;
use virt::domain::Domain;
use virt::sys;

use crate::{DomainInfo, DomainState, HvError, Hypervisor, NodeStats, VmSpec};

/// The console line a guest prints when its script ends.
pub const EXIT_MARKER: &str = "VJOB-EXIT: ";
/// The console line a guest prints before running its script.
pub const BEGIN_MARKER: &str = "VJOB-BEGIN";

/// A guest image: a kernel and an initramfs.
#[derive(Debug, Clone, PartialEq)]
pub struct GuestImage {
    pub kernel: PathBuf,
    pub initrd: PathBuf,
}

/// Settings shared by the nodes of a libvirt cluster.
#[derive(Debug, Clone, PartialEq)]
pub struct LibvirtSettings {
    /// `kvm` on real clusters, `qemu` (TCG) where KVM is unavailable, `test` for libvirt's test
    /// driver.
    pub domain_type: String,
    /// Per-VM initramfs and console files; must be the same path on every node.
    pub run_dir: PathBuf,
    pub images: HashMap<String, GuestImage>,
}

/// One libvirt node.
pub struct LibvirtNode {
    name: String,
    uri: String,
    migration_uri: String,
    settings: std::sync::Arc<LibvirtSettings>,
}

fn err(node: &str, vm: &str, op: &'static str, e: impl std::fmt::Display) -> HvError {
    HvError::Backend {
        node: node.into(),
        vm: vm.into(),
        op,
        message: e.to_string(),
    }
}

impl LibvirtNode {
    /// A node reached at `uri`; peers migrate to it at `migration_uri` (default: `uri`).
    pub fn new(
        name: &str,
        uri: &str,
        migration_uri: Option<&str>,
        settings: std::sync::Arc<LibvirtSettings>,
    ) -> LibvirtNode {
        // libvirt prints every error to stderr unless told otherwise.
        virt::error::clear_error_callback();
        LibvirtNode {
            name: name.into(),
            uri: uri.into(),
            migration_uri: migration_uri.unwrap_or(uri).into(),
            settings,
        }
    }

    fn connect(&self) -> Result<Connect, HvError> {
        Connect::open(Some(&self.uri)).map_err(|e| {
            tracing::debug!(node = %self.name, uri = %self.uri, error = %e, "libvirt connection failed");
            HvError::Unreachable {
                node: self.name.clone(),
            }
        })
    }

    fn domain(&self, conn: &Connect, vm: &str, op: &'static str) -> Result<Domain, HvError> {
        conn.lookup_domain_by_name(vm).map_err(|e| {
            if e.code().is(virt::error::ErrorNumber::NoDomain) {
                HvError::NoSuchVm {
                    node: self.name.clone(),
                    vm: vm.into(),
                }
            } else {
                err(&self.name, vm, op, e)
            }
        })
    }

    /// Where a VM's serial console is written.
    pub fn console_path(&self, vm: &str) -> PathBuf {
        self.settings.run_dir.join(format!("{vm}.console"))
    }

    fn initrd_path(&self, vm: &str) -> PathBuf {
        self.settings.run_dir.join(format!("{vm}.initrd"))
    }

    /// The domain XML of a VM.
    pub fn domain_xml(&self, spec: &VmSpec, kernel: &Path, initrd: &Path) -> String {
        let esc = |s: &str| {
            s.replace('&', "&amp;")
                .replace('<', "&lt;")
                .replace('>', "&gt;")
                .replace('\'', "&apos;")
        };
        // libvirt's test driver (unit tests) knows no serial devices.
        let console = if self.settings.domain_type == "test" {
            String::new()
        } else {
            format!(
                "<serial type='file'><source path='{}' append='on'/><target port='0'/></serial><memballoon model='none'/>",
                esc(&self.console_path(&spec.name).display().to_string())
            )
        };
        let tcg_cpu = if self.settings.domain_type == "qemu" {
            "<cpu mode='custom'><model fallback='allow'>qemu64</model></cpu>"
        } else {
            ""
        };
        format!(
            "<domain type='{ty}'>\
               <name>{name}</name>\
               <memory unit='KiB'>{kib}</memory>\
               <vcpu>{vcpus}</vcpu>\
               {tcg_cpu}\
               <os><type arch='x86_64'>hvm</type><kernel>{kernel}</kernel><initrd>{initrd}</initrd>\
                 <cmdline>console=ttyS0 quiet loglevel=0 panic=-1</cmdline></os>\
               <features><acpi/><apic/></features>\
               <on_poweroff>destroy</on_poweroff><on_reboot>destroy</on_reboot><on_crash>destroy</on_crash>\
               <devices>{console}</devices>\
             </domain>",
            ty = esc(&self.settings.domain_type),
            name = esc(&spec.name),
            kib = spec.memory / 1024,
            vcpus = spec.vcpus,
            kernel = esc(&kernel.display().to_string()),
            initrd = esc(&initrd.display().to_string()),
        )
    }

    /// Writes the VM's initramfs: the image's, then an archive with the job's script and
    /// environment.
    fn write_initrd(&self, spec: &VmSpec, base: &Path) -> Result<PathBuf, HvError> {
        let path = self.initrd_path(&spec.name);
        let io = |source| HvError::Image {
            path: path.clone(),
            source,
        };
        std::fs::create_dir_all(&self.settings.run_dir).map_err(io)?;
        let mut bytes = std::fs::read(base).map_err(|source| HvError::Image {
            path: base.to_path_buf(),
            source,
        })?;
        // Linux finds the next archive at a 4-byte boundary.
        bytes.resize(bytes.len().div_ceil(4) * 4, 0);
        let quote = |s: &str| format!("'{}'", s.replace('\'', "'\\''"));
        let env: String = spec
            .guest
            .env
            .iter()
            .map(|(k, v)| format!("export {k}={}\n", quote(v)))
            .collect();
        bytes.extend(cpio(&[
            ("vjob", None),
            ("vjob/env", Some(env.as_bytes())),
            ("vjob/script", Some(spec.guest.script.as_bytes())),
        ]));
        let mut f = std::fs::File::create(&path).map_err(io)?;
        f.write_all(&bytes).map_err(io)?;
        Ok(path)
    }

    /// The exit code the guest printed on its console, if it did.
    pub fn exit_code(&self, vm: &str) -> Option<i32> {
        let text = std::fs::read_to_string(self.console_path(vm)).ok()?;
        text.lines()
            .rev()
            .find_map(|l| l.trim().strip_prefix(EXIT_MARKER)?.trim().parse().ok())
    }
}

/// A `newc` cpio archive of directories (`None`) and files, as Linux unpacks into its initramfs.
pub fn cpio(entries: &[(&str, Option<&[u8]>)]) -> Vec<u8> {
    let mut out = Vec::new();
    let pad = |out: &mut Vec<u8>| {
        while !out.len().is_multiple_of(4) {
            out.push(0);
        }
    };
    let mut put = |name: &str, mode: u32, data: &[u8], ino: u32| {
        let header = format!(
            "070701{ino:08x}{mode:08x}{uid:08x}{gid:08x}{nlink:08x}{mtime:08x}{size:08x}{z:08x}{z:08x}{z:08x}{z:08x}{namesize:08x}{z:08x}",
            uid = 0,
            gid = 0,
            nlink = 1,
            mtime = 0,
            size = data.len(),
            z = 0,
            namesize = name.len() + 1
        );
        out.extend_from_slice(header.as_bytes());
        out.extend_from_slice(name.as_bytes());
        out.push(0);
        pad(&mut out);
        out.extend_from_slice(data);
        pad(&mut out);
    };
    for (i, (name, data)) in entries.iter().enumerate() {
        match data {
            None => put(name, 0o040755, &[], i as u32 + 1),
            Some(d) => put(name, 0o100755, d, i as u32 + 1),
        }
    }
    put("TRAILER!!!", 0, &[], 0);
    out
}

fn state_of(node: &LibvirtNode, dom: &Domain) -> Result<DomainState, virt::error::Error> {
    use virt::domain::DomainState as S;
    let (state, _reason) = dom.state()?;
    Ok(match state.unwrap_or(S::NoState) {
        S::Running | S::Blocked | S::Shutdown => DomainState::Running,
        S::Paused | S::PMSuspended => DomainState::Paused,
        _ => match node.exit_code(&dom.name()?) {
            Some(code) => DomainState::Ended { exit_code: code },
            None => DomainState::Crashed,
        },
    })
}

impl Hypervisor for LibvirtNode {
    fn node(&self) -> &str {
        &self.name
    }

    fn migration_target(&self) -> String {
        self.migration_uri.clone()
    }

    fn start(&self, spec: &VmSpec, paused: bool) -> Result<(), HvError> {
        let image_name = spec.guest.image.as_deref().unwrap_or("default");
        let image = self.settings.images.get(image_name).ok_or_else(|| {
            err(
                &self.name,
                &spec.name,
                "start",
                format!("no guest image named `{image_name}` in the cluster configuration"),
            )
        })?;
        let initrd = self.write_initrd(spec, &image.initrd)?;
        // A fresh console for a fresh VM.
        let _ = std::fs::remove_file(self.console_path(&spec.name));
        let conn = self.connect()?;
        let xml = self.domain_xml(spec, &image.kernel, &initrd);
        let dom = conn
            .define_domain_xml(&xml)
            .map_err(|e| err(&self.name, &spec.name, "define", e))?;
        let flags = if paused { sys::VIR_DOMAIN_START_PAUSED } else { 0 };
        let started = match dom.create_with_flags(flags) {
            // A driver without paused starts (libvirt's test driver): start, then pause.
            Err(e) if paused && e.code().is(virt::error::ErrorNumber::InvalidArg) => {
                dom.create().and_then(|_| dom.suspend())
            }
            r => r,
        };
        if let Err(e) = started {
            let _ = dom.undefine();
            return Err(err(&self.name, &spec.name, "start", e));
        }
        Ok(())
    }

    fn pause(&self, vm: &str) -> Result<(), HvError> {
        let conn = self.connect()?;
        let dom = self.domain(&conn, vm, "pause")?;
        if dom.state().is_ok_and(|s| s.0.is(virt::domain::DomainState::Paused)) {
            return Ok(());
        }
        dom.suspend().map_err(|e| err(&self.name, vm, "pause", e))
    }

    fn unpause(&self, vm: &str) -> Result<(), HvError> {
        let conn = self.connect()?;
        let dom = self.domain(&conn, vm, "unpause")?;
        if dom.state().is_ok_and(|s| s.0.is(virt::domain::DomainState::Running)) {
            return Ok(());
        }
        dom.resume().map_err(|e| err(&self.name, vm, "unpause", e))
    }

    fn save(&self, vm: &str, image: &Path) -> Result<(), HvError> {
        if let Some(dir) = image.parent() {
            std::fs::create_dir_all(dir).map_err(|source| HvError::Image {
                path: image.to_path_buf(),
                source,
            })?;
        }
        let conn = self.connect()?;
        let dom = self.domain(&conn, vm, "save")?;
        let path = std::ffi::CString::new(image.display().to_string()).map_err(|e| HvError::Image {
            path: image.to_path_buf(),
            source: std::io::Error::other(e),
        })?;
        // The virt crate has no safe wrapper for virDomainSave.
        // SAFETY: `dom` holds a valid domain pointer for the duration of the call and `path` is
        // a NUL-terminated string that outlives it; libvirt does not keep either.
        #[allow(unsafe_code)]
        let rc = unsafe { sys::virDomainSave(dom.as_ptr(), path.as_ptr()) };
        if rc < 0 {
            return Err(err(&self.name, vm, "save", virt::error::Error::last_error()));
        }
        // The saved VM lives in its image now: forget its definition here.
        dom.undefine()
            .map_err(|e| err(&self.name, vm, "undefine after save", e))
    }

    fn restore(&self, image: &Path, paused: bool) -> Result<String, HvError> {
        let conn = self.connect()?;
        let file = image.display().to_string();
        let xml = conn
            .save_image_xml_desc(&file, 0)
            .map_err(|e| err(&self.name, &file, "read saved image", e))?;
        let name = xml
            .split("<name>")
            .nth(1)
            .and_then(|r| r.split("</name>").next())
            .map(str::to_string)
            .ok_or_else(|| err(&self.name, &file, "restore", "the saved image names no domain"))?;
        let flags = if paused { sys::VIR_DOMAIN_SAVE_PAUSED } else { 0 };
        conn.restore_domain_flags(&file, None, flags)
            .map_err(|e| err(&self.name, &name, "restore", e))?;
        // Restored domains are transient: define it, so that its end (and exit code) stays visible.
        let dom = self.domain(&conn, &name, "restore")?;
        let live = dom.xml_desc(0).map_err(|e| err(&self.name, &name, "restore", e))?;
        conn.define_domain_xml(&live)
            .map_err(|e| err(&self.name, &name, "define after restore", e))?;
        Ok(name)
    }

    fn migrate(&self, vm: &str, target: &str) -> Result<(), HvError> {
        let conn = self.connect()?;
        let dom = self.domain(&conn, vm, "migrate")?;
        let flags = sys::VIR_MIGRATE_LIVE
            | sys::VIR_MIGRATE_PEER2PEER
            | sys::VIR_MIGRATE_PERSIST_DEST
            | sys::VIR_MIGRATE_UNDEFINE_SOURCE;
        dom.migrate_to_uri(target, flags, None, 0)
            .map_err(|e| err(&self.name, vm, "migrate", e))
    }

    fn destroy(&self, vm: &str) -> Result<(), HvError> {
        let conn = self.connect()?;
        let dom = match self.domain(&conn, vm, "destroy") {
            Ok(d) => d,
            Err(HvError::NoSuchVm { .. }) => return Ok(()),
            Err(e) => return Err(e),
        };
        if dom.is_active().unwrap_or(false) {
            dom.destroy().map_err(|e| err(&self.name, vm, "destroy", e))?;
        }
        if dom.is_persistent().unwrap_or(false) {
            dom.undefine().map_err(|e| err(&self.name, vm, "undefine", e))?;
        }
        let _ = std::fs::remove_file(self.initrd_path(vm));
        Ok(())
    }

    fn list(&self) -> Result<Vec<DomainInfo>, HvError> {
        let conn = self.connect()?;
        let doms = conn.list_all_domains(0).map_err(|e| err(&self.name, "", "list", e))?;
        let mut out = Vec::with_capacity(doms.len());
        for dom in doms {
            let (name, info, state) = match (dom.name(), dom.info(), state_of(self, &dom)) {
                (Ok(n), Ok(i), Ok(s)) => (n, i, s),
                (n, i, s) => {
                    // A domain that vanished between the listing and these calls.
                    tracing::debug!(node = %self.name, name = ?n.ok(), info = ?i.err(), state = ?s.err(), "skipping a domain");
                    continue;
                }
            };
            out.push(DomainInfo {
                name,
                state,
                vcpus: info.nr_virt_cpu,
                memory: info.max_mem * 1024,
                busy: false,
            });
        }
        Ok(out)
    }

    fn stats(&self) -> Result<NodeStats, HvError> {
        let conn = self.connect()?;
        let info = conn.node_info().map_err(|e| err(&self.name, "", "stats", e))?;
        let doms = self.list()?;
        let active: Vec<&DomainInfo> = doms
            .iter()
            .filter(|d| matches!(d.state, DomainState::Running | DomainState::Paused))
            .collect();
        Ok(NodeStats {
            vcpus_total: info.cpus,
            memory_total: info.memory * 1024,
            vcpus_used: active.iter().map(|d| d.vcpus).sum(),
            memory_used: active.iter().map(|d| d.memory).sum(),
            vms: active.len() as u32,
        })
    }

    fn console_log(&self, vm: &str) -> Option<PathBuf> {
        Some(self.console_path(vm))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::GuestSpec;

    fn node(dir: &Path) -> LibvirtNode {
        let kernel = dir.join("vmlinuz");
        let initrd = dir.join("initrd.gz");
        std::fs::write(&kernel, b"kernel").unwrap();
        std::fs::write(&initrd, b"base").unwrap(); // 4 bytes: no padding needed
        let settings = LibvirtSettings {
            domain_type: "test".into(),
            run_dir: dir.join("run"),
            images: [("tiny".to_string(), GuestImage { kernel, initrd })].into(),
        };
        LibvirtNode::new("t", "test:///default", None, std::sync::Arc::new(settings))
    }

    fn spec(name: &str) -> VmSpec {
        VmSpec {
            name: name.into(),
            vcpus: 1,
            memory: 64 << 20,
            guest: GuestSpec {
                image: Some("tiny".into()),
                script: "echo hi".into(),
                env: vec![("VJOB_ID".into(), "7".into())],
                ..Default::default()
            },
        }
    }

    fn tmp(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("vjob-libvirt-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn the_job_archive_is_appended_to_the_image_initramfs() {
        let dir = tmp("initrd");
        let n = node(&dir);
        let path = n.write_initrd(&spec("vjob-7-0"), &dir.join("initrd.gz")).unwrap();
        let bytes = std::fs::read(path).unwrap();
        assert!(bytes.starts_with(b"base070701"), "padded to 4 bytes, then the archive");
        let text = String::from_utf8_lossy(&bytes);
        assert!(text.contains("vjob/script") && text.contains("echo hi") && text.contains("export VJOB_ID='7'"));
        assert!(text.contains("TRAILER!!!"));
        assert_eq!(bytes.len() % 4, 0);
    }

    #[test]
    fn lifecycle_on_the_test_driver() {
        let dir = tmp("life");
        let n = node(&dir);
        // The test driver's host lives as long as one connection to it is open.
        let _keep = Connect::open(Some("test:///default")).unwrap();
        let name = format!("vjob-{}-0", std::process::id());
        n.start(&spec(&name), true).unwrap();
        let state = |n: &LibvirtNode| n.list().unwrap().into_iter().find(|d| d.name == name).map(|d| d.state);
        assert_eq!(state(&n), Some(DomainState::Paused));
        n.unpause(&name).unwrap();
        assert_eq!(state(&n), Some(DomainState::Running));
        let img = dir.join("images").join(format!("{name}.img"));
        n.save(&name, &img).unwrap();
        assert_eq!(state(&n), None, "saved VMs are not defined on the node");
        assert_eq!(n.restore(&img, false).unwrap(), name);
        assert_eq!(state(&n), Some(DomainState::Running));
        // A guest that printed its exit code and stopped has ended with it.
        std::fs::write(n.console_path(&name), "hello\nVJOB-EXIT: 3\n").unwrap();
        assert_eq!(n.exit_code(&name), Some(3));
        n.destroy(&name).unwrap();
        assert_eq!(state(&n), None);
        n.destroy(&name).unwrap();
        assert!(matches!(n.pause(&name), Err(HvError::NoSuchVm { .. })));
    }
}
