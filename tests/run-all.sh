#!/usr/bin/env bash
# The whole test suite: unit, property and end-to-end tests of every crate.
#
# As root (CI), it also installs libvirt and QEMU, builds the tiny guest, starts two libvirtd
# nodes in network namespaces and runs the libvirt backend's tests on them, then stops the nodes.
# Set VJOB_SKIP_LIBVIRT=1 to skip that part (refused under CI=true, where nothing is skipped).
#
# A test whose prerequisite is missing (the lab, root, the shared reference data) fails under
# CI=true; elsewhere it is skipped, and every skip is listed with its reason at the end.
set -euo pipefail
cd "$(dirname "$0")/.."

ci=false
case "${CI:-}" in true | 1) ci=true ;; esac
skips=$(mktemp /tmp/vjob-skips.XXXXXX)
export VJOB_SKIP_LOG=$skips
lab=
summary() {
  local rc=$?
  if [ -n "$lab" ]; then bash hypervisor/guest/lab.sh down "$lab" || true; fi
  if [ -s "$skips" ]; then
    echo "run-all: $(wc -l <"$skips") skipped:" >&2
    sed 's/^/  /' "$skips" >&2
  else
    echo "run-all: nothing skipped" >&2
  fi
  rm -f "$skips"
  exit "$rc"
}
trap summary EXIT

features=()
if [ "$(id -u)" = 0 ] && [ "${VJOB_SKIP_LIBVIRT:-}" != 1 ]; then
  bash hypervisor/guest/lab.sh install
  bash hypervisor/guest/build.sh target/guest
  lab=$(mktemp -d /tmp/vjob-lab.XXXXXX)
  bash hypervisor/guest/lab.sh up "$lab" 2
  export VJOB_LAB=$lab VJOB_GUEST=$PWD/target/guest
  features=(--features libvirt)
else
  if [ "$(id -u)" != 0 ]; then why="not root (the lab needs root)"; else why="VJOB_SKIP_LIBVIRT=1"; fi
  if $ci; then
    echo "run-all: CI=true and $why: the libvirt tests may not be skipped under CI" >&2
    exit 1
  fi
  echo "the libvirt tests (tests/libvirt.rs, hypervisor/tests/libvirt_lab.rs): $why" >>"$skips"
fi
cargo build --workspace --all-targets "${features[@]}"
cargo test --workspace "${features[@]}"
# The fuzz targets, briefly (10 s each, from their corpus: every regression input is replayed);
# longer runs by hand: `bash tests/fuzz/run.sh 600`.
fuzz_work=$(mktemp -d /tmp/vjob-fuzz.XXXXXX)
VJOB_FUZZ_WORK=$fuzz_work bash tests/fuzz/run.sh "${VJOB_FUZZ_SECONDS:-10}"
rm -rf "$fuzz_work"
