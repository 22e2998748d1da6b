#!/usr/bin/env bash
# Runs every test: formatting and lints, unit tests of the core, and integration tests that
# mount for real and act through the kernel. Installs what it needs first.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh

cargo fmt --check
cargo clippy --all-targets --locked -- -D warnings
cargo test --locked -- --test-threads=4
scripts/conformance.sh
