#!/usr/bin/env bash
# The whole test suite: unit, property and end-to-end tests of every crate.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --workspace --all-targets
cargo test --workspace
