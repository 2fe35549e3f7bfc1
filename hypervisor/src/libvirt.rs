//! The libvirt backend: real QEMU/KVM nodes, one libvirt connection URI per node
//! (`qemu:///system`, `qemu+tcp://host/system`, `qemu+ssh://host/system`,
//! `qemu+unix:///system?socket=...`).
//!
//! Two kinds of guest images:
//! - a kernel and an initramfs (see `hypervisor/guest/build.sh`): each VM gets the image's
//!   initramfs with a small archive appended that carries the job's script and environment
//!   (Linux unpacks concatenated archives as one); the guest's `/init` runs the script;
//! - a disk image (qcow2 or raw, e.g. a cloud image), optionally booted with a given kernel: each
//!   VM boots from its own copy-on-write qcow2 overlay of it (the image itself is never written)
//!   and gets its job on a NoCloud seed that cloud-init runs ([`crate::seed`]).
//!
//! Either way the job's output goes to the VM's serial console, which ends with
//! `VJOB-EXIT: <code>` before the guest powers off. The console is a file, so the exit code and
//! the output survive save, restore and migration. A VM's files (initramfs, overlay, seed) live in
//! a directory of its own per boot under the run directory, which must be the same path on every
//! node (shared, like the image directory); they go when the VM is destroyed or its saved image is
//! discarded.
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

/// A guest image: a kernel and an initramfs, a disk image, or a disk image booted with a given
/// kernel (and initramfs).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct GuestImage {
    pub kernel: Option<PathBuf>,
    pub initrd: Option<PathBuf>,
    /// A disk image each VM boots from through a copy-on-write overlay.
    pub disk: Option<PathBuf>,
    /// The disk image's format: `qcow2` or `raw`.
    pub disk_format: String,
    /// The kernel command line, for images with a kernel.
    pub cmdline: Option<String>,
}

/// The kernel command line of images that give none.
pub const DEFAULT_CMDLINE: &str = "console=ttyS0 quiet loglevel=0 panic=-1";

/// The files one boot of a VM uses.
#[derive(Debug, Default)]
pub struct BootFiles {
    pub kernel: Option<PathBuf>,
    pub initrd: Option<PathBuf>,
    pub cmdline: Option<String>,
    /// The VM's copy-on-write overlay, and its format.
    pub disk: Option<PathBuf>,
    /// The NoCloud seed carrying the job.
    pub seed: Option<PathBuf>,
}

/// Settings shared by the nodes of a libvirt cluster.
#[derive(Debug, Clone, PartialEq)]
pub struct LibvirtSettings {
    /// `kvm` on real clusters, `qemu` (TCG) where KVM is unavailable, `test` for libvirt's test
    /// driver.
    pub domain_type: String,
    /// Per-VM initramfs and console files; must be the same path on every node.
    pub run_dir: PathBuf,
    /// The run directory is shared storage even if libvirt does not recognize it as such
    /// (several nodes on one host): live migrations of disk-image VMs are not refused as unsafe.
    pub shared_storage: bool,
    pub images: HashMap<String, GuestImage>,
}

/// One libvirt node.
pub struct LibvirtNode {
    name: String,
    uri: String,
    migration_uri: String,
    settings: std::sync::Arc<LibvirtSettings>,
}

/// What a backend error is made of: libvirt's errors keep their number.
trait Cause: std::fmt::Display {
    fn code(&self) -> Option<i32> {
        None
    }
}

impl Cause for virt::error::Error {
    fn code(&self) -> Option<i32> {
        Some(virt::error::Error::code(self).to_raw() as i32)
    }
}
impl Cause for &str {}
impl Cause for String {}

fn err(node: &str, vm: &str, op: &'static str, e: impl Cause) -> HvError {
    HvError::Backend {
        node: node.into(),
        vm: vm.into(),
        op,
        message: e.to_string(),
        code: e.code(),
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

    /// A new directory for the files of one boot of a VM. A boot of its own: a stale copy of
    /// the VM (on a node that was down) can be destroyed without touching the files of the new
    /// one.
    fn new_boot_dir(&self, vm: &str) -> Result<PathBuf, HvError> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let dir = self.settings.run_dir.join(format!("{vm}.{nanos:x}.d"));
        std::fs::create_dir_all(&dir).map_err(|source| HvError::Image {
            path: dir.clone(),
            source,
        })?;
        Ok(dir)
    }

    /// The boot directories a domain's XML refers to.
    pub fn boot_dirs(&self, xml: &str) -> Vec<PathBuf> {
        let run_dir = self.settings.run_dir.display().to_string();
        let mut dirs: Vec<PathBuf> = Vec::new();
        for (at, _) in xml.match_indices(&format!("{run_dir}/")) {
            let rest = &xml[at + run_dir.len() + 1..];
            let component = rest.split(['/', '\'', '"', '<']).next().unwrap_or("");
            if component.ends_with(".d") && !component.contains("..") {
                let dir = self.settings.run_dir.join(component);
                if !dirs.contains(&dir) {
                    dirs.push(dir);
                }
            }
        }
        dirs
    }

    fn remove_boot_dirs(&self, xml: &str) {
        for dir in self.boot_dirs(xml) {
            if let Err(e) = std::fs::remove_dir_all(&dir) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    tracing::warn!(dir = %dir.display(), error = %e, "cannot remove a VM's files");
                }
            }
        }
    }

    /// Prepares the files of one boot: the initramfs with the job, or the overlay and the seed.
    fn boot_files(&self, spec: &VmSpec, image: &GuestImage, dir: &Path) -> Result<BootFiles, HvError> {
        let mut files = BootFiles {
            kernel: image.kernel.clone(),
            initrd: image.initrd.clone(),
            cmdline: image
                .kernel
                .as_ref()
                .map(|_| image.cmdline.clone().unwrap_or(DEFAULT_CMDLINE.into())),
            ..Default::default()
        };
        let Some(base) = &image.disk else {
            let initrd = image.initrd.as_deref().ok_or_else(|| {
                err(
                    &self.name,
                    &spec.name,
                    "start",
                    "an image without a disk needs an initrd",
                )
            })?;
            files.initrd = Some(self.write_initrd(spec, initrd, &dir.join("initrd"))?);
            return Ok(files);
        };
        let overlay = dir.join("disk.qcow2");
        let out = std::process::Command::new("qemu-img")
            .args(["create", "-q", "-f", "qcow2", "-F", &image.disk_format, "-b"])
            .arg(base)
            .arg(&overlay)
            .output()
            .map_err(|e| {
                err(
                    &self.name,
                    &spec.name,
                    "create the disk overlay",
                    format!("cannot run qemu-img ({e}): install it (Debian: apt-get install qemu-utils)"),
                )
            })?;
        if !out.status.success() {
            return Err(err(
                &self.name,
                &spec.name,
                "create the disk overlay",
                format!("qemu-img: {}", String::from_utf8_lossy(&out.stderr).trim()),
            ));
        }
        let wrapper = crate::seed::job_wrapper(&spec.name, &spec.guest.env, &spec.guest.script, EXIT_MARKER);
        let seed = dir.join("seed.iso");
        std::fs::write(&seed, crate::seed::nocloud_iso(&spec.name, wrapper.as_bytes())).map_err(|source| {
            HvError::Image {
                path: seed.clone(),
                source,
            }
        })?;
        files.disk = Some(overlay);
        files.seed = Some(seed);
        Ok(files)
    }

    /// The domain XML of a VM.
    pub fn domain_xml(&self, spec: &VmSpec, boot: &BootFiles) -> String {
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
        let path = |p: &Path| esc(&p.display().to_string());
        let mut os = String::from("<type arch='x86_64'>hvm</type>");
        if let Some(k) = &boot.kernel {
            os += &format!("<kernel>{}</kernel>", path(k));
        }
        if let Some(i) = &boot.initrd {
            os += &format!("<initrd>{}</initrd>", path(i));
        }
        if let Some(c) = &boot.cmdline {
            os += &format!("<cmdline>{}</cmdline>", esc(c));
        }
        if boot.kernel.is_none() {
            os += "<boot dev='hd'/>";
        }
        let mut disks = String::new();
        if let Some(d) = &boot.disk {
            // cache='none': the overlay lives on storage shared by the nodes, which is what
            // makes live migration without copying the disk safe.
            disks += &format!(
                "<disk type='file' device='disk'><driver name='qemu' type='qcow2' cache='none'/>\
                 <source file='{}'/><target dev='vda' bus='virtio'/></disk>",
                path(d)
            );
        }
        if let Some(s) = &boot.seed {
            disks += &format!(
                "<disk type='file' device='disk'><driver name='qemu' type='raw'/>\
                 <source file='{}'/><target dev='vdb' bus='virtio'/><readonly/></disk>",
                path(s)
            );
        }
        format!(
            "<domain type='{ty}'>\
               <name>{name}</name>\
               <memory unit='KiB'>{kib}</memory>\
               <vcpu>{vcpus}</vcpu>\
               {tcg_cpu}\
               <os>{os}</os>\
               <features><acpi/><apic/></features>\
               <on_poweroff>destroy</on_poweroff><on_reboot>destroy</on_reboot><on_crash>destroy</on_crash>\
               <devices>{disks}{console}</devices>\
             </domain>",
            ty = esc(&self.settings.domain_type),
            name = esc(&spec.name),
            kib = spec.memory / 1024,
            vcpus = spec.vcpus,
        )
    }

    /// Writes the VM's initramfs: the image's, then an archive with the job's script and
    /// environment.
    fn write_initrd(&self, spec: &VmSpec, base: &Path, path: &Path) -> Result<PathBuf, HvError> {
        let io = |source| HvError::Image {
            path: path.to_path_buf(),
            source,
        };
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
        let mut f = std::fs::File::create(path).map_err(io)?;
        f.write_all(&bytes).map_err(io)?;
        Ok(path.to_path_buf())
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

/// The domain XML at the start of an image written by `virDomainSave`.
fn saved_domain_xml(image: &Path) -> Option<String> {
    use std::io::Read;
    let mut head = Vec::new();
    std::fs::File::open(image)
        .ok()?
        .take(1 << 20)
        .read_to_end(&mut head)
        .ok()?;
    let text = String::from_utf8_lossy(&head);
    let start = text.find("<domain")?;
    let end = text[start..].find("</domain>")? + start + "</domain>".len();
    Some(text[start..end].to_string())
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
        let conn = self.connect()?;
        let dir = self.new_boot_dir(&spec.name)?;
        let files = match self.boot_files(spec, image, &dir) {
            Ok(f) => f,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&dir);
                return Err(e);
            }
        };
        // A fresh console for a fresh VM.
        let _ = std::fs::remove_file(self.console_path(&spec.name));
        let xml = self.domain_xml(spec, &files);
        let dom = match conn.define_domain_xml(&xml) {
            Ok(d) => d,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&dir);
                return Err(err(&self.name, &spec.name, "define", e));
            }
        };
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
            let _ = std::fs::remove_dir_all(&dir);
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
        let mut flags = sys::VIR_MIGRATE_LIVE
            | sys::VIR_MIGRATE_PEER2PEER
            | sys::VIR_MIGRATE_PERSIST_DEST
            | sys::VIR_MIGRATE_UNDEFINE_SOURCE;
        if self.settings.shared_storage {
            flags |= sys::VIR_MIGRATE_UNSAFE;
        }
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
        // Undefined meanwhile: gone, as asked. Any other failure is the node's, and reported:
        // a destroy that did not happen must not read as done.
        let gone = |e: &virt::error::Error| e.code().is(virt::error::ErrorNumber::NoDomain);
        let xml = match dom.xml_desc(0) {
            Ok(x) => x,
            Err(e) if gone(&e) => return Ok(()),
            Err(e) => return Err(err(&self.name, vm, "destroy", e)),
        };
        match dom.is_active() {
            Ok(true) => match dom.destroy() {
                Err(e) if !gone(&e) => return Err(err(&self.name, vm, "destroy", e)),
                _ => {}
            },
            Ok(false) => {}
            Err(e) if gone(&e) => {}
            Err(e) => return Err(err(&self.name, vm, "destroy", e)),
        }
        match dom.is_persistent() {
            Ok(true) => match dom.undefine() {
                Err(e) if !gone(&e) => return Err(err(&self.name, vm, "undefine", e)),
                _ => {}
            },
            Ok(false) => {}
            Err(e) if gone(&e) => {}
            Err(e) => return Err(err(&self.name, vm, "undefine", e)),
        }
        self.remove_boot_dirs(&xml);
        Ok(())
    }

    fn discard_image(&self, image: &Path) -> Result<(), HvError> {
        // The saved image starts with the domain's XML: read it here, without a node, so that
        // the VM's files go even when no node answers.
        if let Some(xml) = saved_domain_xml(image) {
            self.remove_boot_dirs(&xml);
        }
        crate::remove_file_if_any(image)
    }

    fn list(&self) -> Result<Vec<DomainInfo>, HvError> {
        let conn = self.connect()?;
        let doms = conn.list_all_domains(0).map_err(|e| err(&self.name, "", "list", e))?;
        let mut out = Vec::with_capacity(doms.len());
        for dom in doms {
            // A domain in the middle of a change (its QEMU exiting) may not answer for a moment.
            // Leaving it out would read as "the VM vanished"; so ask again, and if it still does
            // not answer, this listing fails as a whole (the caller asks again next round).
            let mut attempt = 0;
            let read = loop {
                match (dom.name(), dom.info(), state_of(self, &dom)) {
                    (Ok(n), Ok(i), Ok(s)) => break Some((n, i, s)),
                    (n, i, s) => {
                        let gone = [i.as_ref().err(), s.as_ref().err()]
                            .into_iter()
                            .flatten()
                            .any(|e| e.code().is(virt::error::ErrorNumber::NoDomain));
                        if gone {
                            break None;
                        }
                        attempt += 1;
                        if attempt == 3 {
                            let vm = n.as_deref().unwrap_or("?");
                            return Err(match i.err().or(s.err()) {
                                Some(e) => err(&self.name, vm, "list", e),
                                None => err(&self.name, vm, "list", "the domain does not answer"),
                            });
                        }
                        std::thread::sleep(std::time::Duration::from_millis(50));
                    }
                }
            };
            // None: undefined between the listing and these calls, so gone indeed.
            let Some((name, info, state)) = read else { continue };
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
            shared_storage: false,
            images: [(
                "tiny".to_string(),
                GuestImage {
                    kernel: Some(kernel),
                    initrd: Some(initrd),
                    ..Default::default()
                },
            )]
            .into(),
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
        let path = n
            .write_initrd(&spec("vjob-7-0"), &dir.join("initrd.gz"), &dir.join("initrd"))
            .unwrap();
        let bytes = std::fs::read(path).unwrap();
        assert!(bytes.starts_with(b"base070701"), "padded to 4 bytes, then the archive");
        let text = String::from_utf8_lossy(&bytes);
        assert!(text.contains("vjob/script") && text.contains("echo hi") && text.contains("export VJOB_ID='7'"));
        assert!(text.contains("TRAILER!!!"));
        assert_eq!(bytes.len() % 4, 0);
    }

    #[test]
    fn disk_images_get_an_overlay_and_a_seed_and_their_files_are_found_again() {
        let dir = tmp("xml");
        let n = node(&dir);
        let boot = n.settings.run_dir.join("vjob-7-0.1a.d");
        let files = BootFiles {
            disk: Some(boot.join("disk.qcow2")),
            seed: Some(boot.join("seed.iso")),
            ..Default::default()
        };
        let xml = n.domain_xml(&spec("vjob-7-0"), &files);
        assert!(xml.contains("<boot dev='hd'/>") && !xml.contains("<kernel>"), "{xml}");
        assert!(
            xml.contains("type='qcow2' cache='none'/><source file='") && xml.contains("disk.qcow2'/><target dev='vda'")
        );
        assert!(xml.contains("seed.iso'/><target dev='vdb' bus='virtio'/><readonly/>"));
        assert_eq!(n.boot_dirs(&xml), vec![boot.clone()]);
        // With a kernel: booted directly, disk attached.
        let files = BootFiles {
            kernel: Some("/k".into()),
            initrd: Some("/i".into()),
            cmdline: Some(DEFAULT_CMDLINE.into()),
            disk: Some(boot.join("disk.qcow2")),
            ..Default::default()
        };
        let xml = n.domain_xml(&spec("vjob-7-0"), &files);
        assert!(xml.contains("<kernel>/k</kernel><initrd>/i</initrd><cmdline>console=ttyS0"));
        assert!(!xml.contains("<boot dev"));
        // Files outside the run directory are never taken for a VM's own.
        assert!(n.boot_dirs("<kernel>/elsewhere/x.d/k</kernel>").is_empty());
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
        let boot_dirs = n.boot_dirs(&saved_domain_xml(&img).expect("the image starts with the domain XML"));
        assert_eq!(boot_dirs.len(), 1);
        assert!(
            boot_dirs[0].join("initrd").exists(),
            "the VM's initramfs waits for its restore"
        );
        assert_eq!(n.restore(&img, false).unwrap(), name);
        assert_eq!(state(&n), Some(DomainState::Running));
        // A guest that printed its exit code and stopped has ended with it.
        std::fs::write(n.console_path(&name), "hello\nVJOB-EXIT: 3\n").unwrap();
        assert_eq!(n.exit_code(&name), Some(3));
        n.destroy(&name).unwrap();
        assert_eq!(state(&n), None);
        assert!(!boot_dirs[0].exists(), "destroy removes the VM's files");
        n.destroy(&name).unwrap();
        assert!(matches!(n.pause(&name), Err(HvError::NoSuchVm { .. })));
    }
}
