#!/usr/bin/env bash
# Builds vjob's tiny guest into DIR: `vmlinuz` (Debian's cloud kernel), `initrd.gz` (busybox,
# the virtio disk drivers and an /init that runs the job) and `disk.qcow2` (a small ext4 disk
# image holding /hello, for testing disk images). Needs apt (for the kernel package),
# busybox-static, e2fsprogs and qemu-img (qemu-utils). Idempotent: an existing guest is kept.
#
# The guest's /init runs /vjob/script (appended to the initramfs by vjobd for each VM, with
# /vjob/env), prints "VJOB-EXIT: <code>" on the serial console and powers off. Booted with a disk
# image instead, it runs the `user-data` of the NoCloud seed vjob attaches (a disk labelled
# cidata), as cloud-init would in a cloud image.
set -euo pipefail
out=${1:?usage: build.sh DIR}
mkdir -p "$out"
if [ -s "$out/vmlinuz" ] && [ -s "$out/initrd.gz" ] && [ -s "$out/disk.qcow2" ]; then
  echo "guest already built in $out"
  exit 0
fi
busybox=$(command -v busybox || true)
if [ -z "$busybox" ] || ! file -L "$busybox" 2>/dev/null | grep -q static; then
  busybox=/bin/busybox
fi
[ -x "$busybox" ] || { echo "build.sh: busybox-static is needed (apt-get install busybox-static)" >&2; exit 1; }
command -v qemu-img >/dev/null || { echo "build.sh: qemu-img is needed (apt-get install qemu-utils)" >&2; exit 1; }
command -v mke2fs >/dev/null || { echo "build.sh: mke2fs is needed (apt-get install e2fsprogs)" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# The newest cloud kernel package, by its exact name (a glob would fetch every version).
pkg=$(apt-cache search --names-only '^linux-image-[0-9.]+-[0-9]+-cloud-amd64$' | awk '{print $1}' | sort -V | tail -1)
[ -n "$pkg" ] || { echo "build.sh: no linux-image-*-cloud-amd64 package found (run apt-get update)" >&2; exit 1; }
(cd "$work" && apt-get download -q "$pkg" >/dev/null)
dpkg-deb -x "$work"/*.deb "$work/kernel"
cp "$work"/kernel/boot/vmlinuz-* "$out/vmlinuz.tmp"

root="$work/root"
mkdir -p "$root"/{bin,sbin,proc,sys,dev,tmp,mnt,vjob,lib/modules}
cp "$busybox" "$root/bin/busybox"
# The disk drivers, in load order (modules in Debian's cloud kernel).
mods="virtio_ring virtio virtio_pci_legacy_dev virtio_pci_modern_dev virtio_pci virtio_blk cdrom isofs"
for m in $mods; do
  f=$(find "$work/kernel/lib/modules" -name "$m.ko" | head -1)
  [ -n "$f" ] || { echo "build.sh: module $m not found in $pkg" >&2; exit 1; }
  cp "$f" "$root/lib/modules/"
done
echo "$mods" > "$root/lib/modules/order"
cat > "$root/init" <<'INIT'
#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev 2>/dev/null
if [ ! -f /vjob/script ]; then
  # Booted from a disk image: load the disk drivers and run the job of the NoCloud seed.
  for m in $(cat /lib/modules/order); do insmod /lib/modules/$m.ko 2>/dev/null; done
  mkdir -p /seed
  for try in $(seq 50); do
    for d in /dev/vd?; do
      [ -b "$d" ] || continue
      if mount -t iso9660 -o ro "$d" /seed 2>/dev/null; then
        [ -f /seed/user-data ] && exec sh /seed/user-data
        umount /seed
      fi
    done
    sleep 0.1
  done
fi
[ -f /vjob/env ] && . /vjob/env
echo "VJOB-BEGIN ${VJOB_ID:-?} ${VJOB_VM_INDEX:-?}"
if [ -f /vjob/script ]; then
  sh /vjob/script
  code=$?
else
  echo "no job script in this guest"
  code=127
fi
echo "VJOB-EXIT: $code"
sync
poweroff -f
INIT
chmod 755 "$root/init"
(cd "$root" && find . | "$busybox" cpio -o -H newc 2>/dev/null | gzip -9) > "$out/initrd.gz.tmp"

disk="$work/disk"
mkdir -p "$disk"
echo "hello from the base image" > "$disk/hello"
mke2fs -q -F -t ext4 -L vjobdisk -d "$disk" "$work/disk.raw" 16M
qemu-img convert -O qcow2 "$work/disk.raw" "$out/disk.qcow2.tmp"

mv "$out/vmlinuz.tmp" "$out/vmlinuz"
mv "$out/initrd.gz.tmp" "$out/initrd.gz"
mv "$out/disk.qcow2.tmp" "$out/disk.qcow2"
echo "guest built in $out: $(du -h "$out/vmlinuz" | cut -f1) kernel ($pkg), $(du -h "$out/initrd.gz" | cut -f1) initramfs, $(du -h "$out/disk.qcow2" | cut -f1) disk image"
