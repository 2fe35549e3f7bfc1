//! NoCloud seeds: how a job reaches a guest booted from a disk image.
//!
//! cloud-init (in every common cloud image) looks for a filesystem labelled `cidata` holding
//! `meta-data` and `user-data`, and runs `user-data` when it is a shell script. vjob writes that
//! filesystem as a small ISO 9660 image per VM ([`nocloud_iso`]) whose `user-data` is the job
//! wrapper ([`job_wrapper`]): it runs the job's script with its environment, sends its output to
//! the serial console, prints the exit marker there and powers the VM off, exactly as the
//! initramfs of vjob's tiny guest does.
//!
//! The ISO is the plainest the format allows (one directory, level-1 records, no Rock Ridge or
//! Joliet): Linux shows its names in lower case without the `;1` version suffix, which is what
//! cloud-init reads.

const SECTOR: usize = 2048;

/// The `user-data` script that runs a job in a guest: environment, script, console output, exit
/// marker, power-off.
pub fn job_wrapper(name: &str, env: &[(String, String)], script: &str, exit_marker: &str) -> String {
    let quote = |s: &str| format!("'{}'", s.replace('\'', "'\\''"));
    let mut delimiter = "VJOB_SCRIPT_END".to_string();
    while script.lines().any(|l| l == delimiter) {
        delimiter.push('_');
    }
    let mut out = format!("#!/bin/sh\n# The vjob job of VM {name}.\n");
    for (k, v) in env {
        out.push_str(&format!("export {k}={}\n", quote(v)));
    }
    out.push_str(&format!(
        "cat > /tmp/vjob-script <<'{delimiter}'\n{script}\n{delimiter}\n\
         exec > /dev/ttyS0 2>&1\n\
         echo \"VJOB-BEGIN ${{VJOB_ID:-?}} ${{VJOB_VM_INDEX:-?}}\"\n\
         sh /tmp/vjob-script < /dev/null\n\
         code=$?\n\
         echo \"{exit_marker}$code\"\n\
         sync\n\
         poweroff -f 2>/dev/null || poweroff\n"
    ));
    out
}

/// An ISO 9660 image labelled `cidata` holding `meta-data` (the instance id and host name) and
/// `user-data`.
pub fn nocloud_iso(instance: &str, user_data: &[u8]) -> Vec<u8> {
    let meta = format!("instance-id: {instance}\nlocal-hostname: {instance}\n");
    iso9660(
        "cidata",
        &[("META-DATA.;1", meta.as_bytes()), ("USER-DATA.;1", user_data)],
    )
}

fn both16(v: u16) -> [u8; 4] {
    let (l, b) = (v.to_le_bytes(), v.to_be_bytes());
    [l[0], l[1], b[0], b[1]]
}

fn both32(v: u32) -> [u8; 8] {
    let (l, b) = (v.to_le_bytes(), v.to_be_bytes());
    [l[0], l[1], l[2], l[3], b[0], b[1], b[2], b[3]]
}

/// A directory record; `name` is `[0]` for "." and `[1]` for "..".
fn dir_record(name: &[u8], extent: u32, size: u32, is_dir: bool) -> Vec<u8> {
    let mut r = vec![0u8; 33];
    r[2..10].copy_from_slice(&both32(extent));
    r[10..18].copy_from_slice(&both32(size));
    // Recording date: 2000-01-01 00:00:00 UTC (a fixed date: the image depends on its input only).
    r[18..25].copy_from_slice(&[100, 1, 1, 0, 0, 0, 0]);
    r[25] = if is_dir { 2 } else { 0 };
    r[28..32].copy_from_slice(&both16(1));
    r[32] = name.len() as u8;
    r.extend_from_slice(name);
    if r.len() % 2 == 1 {
        r.push(0);
    }
    r[0] = r.len() as u8;
    r
}

/// A single-directory ISO 9660 image. File names must be valid level-1 identifiers (`NAME.;1`).
fn iso9660(volume: &str, files: &[(&str, &[u8])]) -> Vec<u8> {
    // Layout: system area (16 sectors), primary descriptor, terminator, the two path tables,
    // the root directory, then the files.
    const PVD: usize = 16;
    const L_PATH: u32 = 18;
    const M_PATH: u32 = 19;
    const ROOT: u32 = 20;
    let mut extents = Vec::new();
    let mut next = ROOT as usize + 1;
    for (_, data) in files {
        extents.push(next as u32);
        next += data.len().div_ceil(SECTOR).max(1);
    }
    let total = next;
    let mut img = vec![0u8; total * SECTOR];

    let mut root = Vec::new();
    root.extend(dir_record(&[0], ROOT, SECTOR as u32, true));
    root.extend(dir_record(&[1], ROOT, SECTOR as u32, true));
    for ((name, data), extent) in files.iter().zip(&extents) {
        root.extend(dir_record(name.as_bytes(), *extent, data.len() as u32, false));
    }
    assert!(root.len() <= SECTOR, "the root directory fits one sector");
    let at = ROOT as usize * SECTOR;
    img[at..at + root.len()].copy_from_slice(&root);
    for ((_, data), extent) in files.iter().zip(&extents) {
        let at = *extent as usize * SECTOR;
        img[at..at + data.len()].copy_from_slice(data);
    }

    // Path tables: the root alone, little-endian then big-endian.
    let path_entry = |extent: [u8; 4], parent: [u8; 2]| {
        let mut e = vec![1u8, 0];
        e.extend_from_slice(&extent);
        e.extend_from_slice(&parent);
        e.extend_from_slice(&[0, 0]);
        e
    };
    let l = path_entry(ROOT.to_le_bytes(), 1u16.to_le_bytes());
    let m = path_entry(ROOT.to_be_bytes(), 1u16.to_be_bytes());
    img[L_PATH as usize * SECTOR..][..l.len()].copy_from_slice(&l);
    img[M_PATH as usize * SECTOR..][..m.len()].copy_from_slice(&m);

    let d = &mut img[PVD * SECTOR..(PVD + 1) * SECTOR];
    d[0] = 1;
    d[1..6].copy_from_slice(b"CD001");
    d[6] = 1;
    let text = |d: &mut [u8], at: usize, len: usize, s: &str| {
        d[at..at + len].fill(b' ');
        d[at..at + s.len().min(len)].copy_from_slice(&s.as_bytes()[..s.len().min(len)]);
    };
    text(d, 8, 32, "LINUX");
    text(d, 40, 32, volume);
    d[80..88].copy_from_slice(&both32(total as u32));
    d[120..124].copy_from_slice(&both16(1));
    d[124..128].copy_from_slice(&both16(1));
    d[128..132].copy_from_slice(&both16(SECTOR as u16));
    d[132..140].copy_from_slice(&both32(l.len() as u32 - 2));
    d[140..144].copy_from_slice(&L_PATH.to_le_bytes());
    d[148..152].copy_from_slice(&M_PATH.to_be_bytes());
    d[156..190].copy_from_slice(&dir_record(&[0], ROOT, SECTOR as u32, true));
    for (at, len) in [
        (190, 128),
        (318, 128),
        (446, 128),
        (574, 128),
        (702, 37),
        (739, 37),
        (776, 37),
    ] {
        text(d, at, len, "");
    }
    text(d, 574, 128, "VJOB");
    // Creation, modification, expiration and effective dates: "not specified".
    for at in [813, 830, 847, 864] {
        d[at..at + 16].fill(b'0');
        d[at + 16] = 0;
    }
    d[881] = 1;

    let t = &mut img[(PVD + 1) * SECTOR..(PVD + 2) * SECTOR];
    t[0] = 255;
    t[1..6].copy_from_slice(b"CD001");
    t[6] = 1;
    img
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u32_le(b: &[u8]) -> usize {
        u32::from_le_bytes(b[..4].try_into().unwrap()) as usize
    }

    /// Reads the files of the root directory back, as a reader following the standard would.
    fn read_root(img: &[u8]) -> (String, Vec<(String, Vec<u8>)>) {
        let pvd = &img[16 * SECTOR..17 * SECTOR];
        assert_eq!(&pvd[0..6], b"\x01CD001");
        assert_eq!(img[17 * SECTOR], 255, "a set terminator follows");
        assert_eq!(
            u32_le(&pvd[80..]) * SECTOR,
            img.len(),
            "the volume size covers the image"
        );
        let label = String::from_utf8_lossy(&pvd[40..72]).trim_end().to_string();
        let root = &pvd[156..190];
        let (extent, size) = (u32_le(&root[2..]), u32_le(&root[10..]));
        let dir = &img[extent * SECTOR..extent * SECTOR + size];
        let mut files = Vec::new();
        let mut at = 0;
        while at < dir.len() && dir[at] != 0 {
            let r = &dir[at..at + dir[at] as usize];
            let name = &r[33..33 + r[32] as usize];
            if r[25] & 2 == 0 {
                let (e, s) = (u32_le(&r[2..]), u32_le(&r[10..]));
                files.push((
                    String::from_utf8_lossy(name).into_owned(),
                    img[e * SECTOR..e * SECTOR + s].to_vec(),
                ));
            }
            at += r.len();
        }
        (label, files)
    }

    #[test]
    fn the_seed_holds_meta_data_and_user_data_under_the_cidata_label() {
        let user = vec![b'x'; 5000]; // more than one sector
        let img = nocloud_iso("vjob-7-0", &user);
        assert_eq!(img.len() % SECTOR, 0);
        let (label, files) = read_root(&img);
        assert_eq!(label, "cidata");
        assert_eq!(files.len(), 2);
        assert_eq!(files[0].0, "META-DATA.;1");
        assert_eq!(
            String::from_utf8_lossy(&files[0].1),
            "instance-id: vjob-7-0\nlocal-hostname: vjob-7-0\n"
        );
        assert_eq!(files[1], ("USER-DATA.;1".to_string(), user));
    }

    #[test]
    fn the_wrapper_keeps_the_script_verbatim_whatever_it_contains() {
        let script = "echo it's $HOME\nVJOB_SCRIPT_END\nexit 3";
        let w = job_wrapper("vjob-1-0", &[("VJOB_ID".into(), "1".into())], script, "VJOB-EXIT: ");
        assert!(w.starts_with("#!/bin/sh\n"));
        assert!(w.contains("export VJOB_ID='1'\n"));
        assert!(w.contains(&format!("<<'VJOB_SCRIPT_END_'\n{script}\nVJOB_SCRIPT_END_\n")));
        assert!(w.contains("echo \"VJOB-EXIT: $code\""));
        // The shell reads it back intact.
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(
                w.replace("/tmp/vjob-script", "/dev/stdout")
                    .split("exec >")
                    .next()
                    .unwrap(),
            )
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), format!("{script}\n"));
    }
}
