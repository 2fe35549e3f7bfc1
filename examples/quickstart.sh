#!/usr/bin/env bash
# Quickstart on the embedded simulated cluster (two 4-cpu / 8 GiB nodes, queues batch and express):
# start vjobd, submit a 2-VM low-priority vjob that fills the cluster, then an express vjob, and
# watch the context switch: lowprio is suspended to disk whole, the express job runs, lowprio
# resumes and completes. Takes about a minute. Needs a Rust toolchain (cargo).
set -euo pipefail
cd "$(dirname "$0")/.."
command -v cargo >/dev/null || { echo "quickstart: cargo not found: install Rust (https://rustup.rs) first" >&2; exit 1; }

cargo build --release --quiet --bin vjobd --bin vsub --bin vstat --bin vdel --bin vqmgr --bin vacct
bin=target/release
demo=/tmp/vjob-demo
export VJOB_SOCKET=$demo/vjobd.sock

# A fresh demo state every time; stop a daemon left over from an earlier run.
if [ -f $demo/vjobd.pid ]; then kill "$(cat $demo/vjobd.pid)" 2>/dev/null || true; sleep 0.5; fi
rm -rf $demo && mkdir -p $demo
$bin/vjobd --config examples/cluster.toml 2> $demo/vjobd.log &
echo $! > $demo/vjobd.pid
trap 'kill "$(cat $demo/vjobd.pid)" 2>/dev/null || true' EXIT
for _ in $(seq 50); do $bin/vstat >/dev/null 2>&1 && break; sleep 0.1; done

# The job's own state: the first "state" of its JSON object (its VMs' states come later).
state() { $bin/vstat --json "$1" | sed 's/"vms".*//' | sed -n 's/.*"state":"\([a-z]*\)".*/\1/p'; }
wait_for() { # job state
  for _ in $(seq 600); do [ "$(state "$1")" = "$2" ] && return 0; sleep 0.2; done
  echo "quickstart: job $1 never became $2; see $demo/vjobd.log" >&2; exit 1
}
show() { echo; echo "--- $1"; $bin/vstat; }
# Jobs write their output (vjob-ID.out) where they are submitted: here, the demo directory.
root=$(pwd)
submit() { (cd $demo && "$root/$bin/vsub" "$root/$1"); }

low=$(submit examples/jobs/lowprio.toml)
echo "submitted lowprio as job $low (2 VMs x 4 vcpus: fills both nodes)"
wait_for "$low" running
show "lowprio runs on both nodes"
$bin/vstat -n

sleep 3
express=$(submit examples/jobs/express.toml)
echo; echo "submitted an express job as job $express (1 VM x 4 vcpus, queue priority 100)"
wait_for "$express" running
show "context switch: lowprio is suspended to disk, the express job runs"
wait_for "$express" completed
wait_for "$low" running
show "the express job completed: lowprio resumed"
wait_for "$low" completed
show "all done"
echo; $bin/vstat -f "$low" | sed -n '/events:/,$p'
echo; echo "--- accounting: what the context switch cost lowprio"
$bin/vacct -j "$low" --format id,name,state,elapsed,runtime,suspended,suspends,resumes,bytesmoved
for _ in $(seq 50); do [ -s $demo/vjob-$low.out ] && break; sleep 0.1; done
echo; echo "--- its output file, $demo/vjob-$low.out (the simulated backend writes the environment and history)"
cat $demo/vjob-$low.out
echo; echo "daemon log: $demo/vjobd.log"
