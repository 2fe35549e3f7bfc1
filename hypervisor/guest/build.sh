#!/usr/bin/env bash
# Builds vjob's tiny guest into DIR: `vmlinuz` (Debian's cloud kernel) and `initrd.gz` (busybox
# and an /init that runs the job). Needs apt (for the kernel package) and busybox-static.
# Idempotent: an existing guest in DIR is kept.
#
# The guest's /init runs /vjob/script (appended to the initramfs by vjobd for each VM, with
# /vjob/env), prints "VJOB-EXIT: <code>" on the serial console and powers off.
set -euo pipefail
out=${1:?usage: build.sh DIR}
mkdir -p "$out"
if [ -s "$out/vmlinuz" ] && [ -s "$out/initrd.gz" ]; then
  echo "guest already built in $out"
  exit 0
fi
busybox=$(command -v busybox || true)
if [ -z "$busybox" ] || ! file -L "$busybox" 2>/dev/null | grep -q static; then
  busybox=/bin/busybox
fi
[ -x "$busybox" ] || { echo "build.sh: busybox-static is needed (apt-get install busybox-static)" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# The newest cloud kernel package, by its exact name (a glob would fetch every version).
pkg=$(apt-cache search --names-only '^linux-image-[0-9.]+-[0-9]+-cloud-amd64$' | awk '{print $1}' | sort -V | tail -1)
[ -n "$pkg" ] || { echo "build.sh: no linux-image-*-cloud-amd64 package found (run apt-get update)" >&2; exit 1; }
(cd "$work" && apt-get download -q "$pkg" >/dev/null)
dpkg-deb -x "$work"/*.deb "$work/kernel"
cp "$work"/kernel/boot/vmlinuz-* "$out/vmlinuz.tmp"

root="$work/root"
mkdir -p "$root"/{bin,sbin,proc,sys,dev,tmp,vjob}
cp "$busybox" "$root/bin/busybox"
cat > "$root/init" <<'INIT'
#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev 2>/dev/null
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
mv "$out/vmlinuz.tmp" "$out/vmlinuz"
mv "$out/initrd.gz.tmp" "$out/initrd.gz"
echo "guest built in $out: $(du -h "$out/vmlinuz" | cut -f1) kernel ($pkg), $(du -h "$out/initrd.gz" | cut -f1) initramfs"
