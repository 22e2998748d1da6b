#!/usr/bin/env bash
# Measures tenantfs against a native directory and a plain FUSE passthrough (bindfs), side by
# side in one run, and prints each workload's median and ratios. Usage:
#   scripts/bench.sh [ROUNDS]        (BENCH_SEQ_MB, BENCH_FILES, BENCH_FIO_SECS shrink it)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo build --release --locked --quiet
tfs="$PWD/target/release/tenantfs"
rounds="${1:-3}"

work=$(mktemp -d /var/tmp/tenantfs-bench.XXXXXX)
export TENANTFS_STORE="$work/store"
cleanup() {
  "$tfs" umount "$work/tenantfs" 2>/dev/null || true
  umount "$work/bindfs" 2>/dev/null || fusermount3 -u "$work/bindfs" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

mkdir -p "$work/native" "$work/bindfs-src" "$work/bindfs" "$work/tenantfs"
bindfs "$work/bindfs-src" "$work/bindfs"
"$tfs" init 2>/dev/null
"$tfs" tenant create bench 2>/dev/null
"$tfs" key create --tenant bench --subject user:bench > "$work/bench.key" 2>/dev/null
"$tfs" mount "$work/tenantfs" --key-file "$work/bench.key"

echo "tenantfs $("$tfs" --version | cut -d' ' -f2), $(uname -r), $(nproc) cores" >&2
python3 scripts/bench.py --work "$work" --rounds "$rounds" \
  --target native="$work/native" --target bindfs="$work/bindfs" --target tenantfs="$work/tenantfs" \
  ${BENCH_JSON:+--json "$BENCH_JSON"}
