#!/usr/bin/env bash
# Runs the coverage-guided fuzz targets (libFuzzer) of vjob's readers of outside input:
#
#   bash tests/fuzz/run.sh [SECONDS] [TARGET...]     (default: 60 s each, every target)
#
# Each target starts from its corpus in tests/fuzz/corpus/TARGET (seeds and regression inputs,
# all replayed first) and its dictionary in tests/fuzz/dict; what it learns goes to a work
# directory ($VJOB_FUZZ_WORK, default tests/fuzz/work), never into the repository. A crash, a
# hang past 10 s on one input, or more than 2 GiB of memory fails the run and leaves the input
# in WORK/TARGET/crashes/; once fixed, copy it into tests/fuzz/corpus/TARGET/ as a regression.
#
# Stable Rust: the instrumentation is rustc's own SanitizerCoverage pass (the flags cargo-fuzz
# passes), built for the host triple so that build scripts stay uninstrumented.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
secs=${1:-60}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(spec config request btrplace swf btrpsl)
triple=$(rustc -vV | sed -n 's/^host: //p')
export CARGO_TARGET_DIR=${VJOB_FUZZ_TARGET_DIR:-$here/target}
export RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing -Cdebug-assertions -Coverflow-checks"
cargo build --release --manifest-path "$here/Cargo.toml" --target "$triple" --bins
work=${VJOB_FUZZ_WORK:-$here/work}
failed=()
for t in "${targets[@]}"; do
  bin=$CARGO_TARGET_DIR/$triple/release/$t
  [ -x "$bin" ] || { echo "fuzz: no target \`$t\` (targets: spec config request btrplace swf btrpsl)" >&2; exit 2; }
  mkdir -p "$work/$t/corpus" "$work/$t/crashes"
  echo "fuzz: $t for $secs s"
  if ! "$bin" "$work/$t/corpus" "$here/corpus/$t" -dict="$here/dict/$t.dict" \
    -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -malloc_limit_mb=2048 -max_len=8192 \
    -artifact_prefix="$work/$t/crashes/" -print_final_stats=1 >"$work/$t/log" 2>&1; then
    failed+=("$t")
    tail -30 "$work/$t/log" >&2
    echo "fuzz: $t FAILED; the input is in $work/$t/crashes/ (reproduce: $bin FILE)" >&2
  else
    grep -E "stat::number_of_executed_units|stat::peak_rss_mb" "$work/$t/log" | tr '\n' ' ' | sed "s/^/fuzz: $t: /"
    echo
  fi
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz: failed: ${failed[*]}" >&2
  exit 1
fi
