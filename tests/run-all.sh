#!/usr/bin/env bash
# The whole test suite: unit, property and end-to-end tests of every crate.
#
# As root (CI), it also installs libvirt and QEMU, builds the tiny guest, starts two libvirtd
# nodes in network namespaces and runs the libvirt backend's tests on them, then stops the nodes.
# Set VJOB_SKIP_LIBVIRT=1 to skip that part.
set -euo pipefail
cd "$(dirname "$0")/.."

features=()
if [ "$(id -u)" = 0 ] && [ "${VJOB_SKIP_LIBVIRT:-}" != 1 ]; then
  bash hypervisor/guest/lab.sh install
  bash hypervisor/guest/build.sh target/guest
  lab=$(mktemp -d /tmp/vjob-lab.XXXXXX)
  trap 'bash hypervisor/guest/lab.sh down "$lab"' EXIT
  bash hypervisor/guest/lab.sh up "$lab" 2
  export VJOB_LAB=$lab VJOB_GUEST=$PWD/target/guest
  features=(--features libvirt)
else
  echo "run-all: not root or VJOB_SKIP_LIBVIRT=1: the libvirt tests are skipped" >&2
fi
cargo build --workspace --all-targets "${features[@]}"
cargo test --workspace "${features[@]}"
