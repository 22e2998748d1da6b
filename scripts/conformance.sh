#!/usr/bin/env bash
# Runs suites no one here wrote against a real tenantfs mount: pjdfstest (POSIX semantics,
# must report 0 failures) and fsx (random I/O with every operation on, verified on each read).
#   FSX_OPS (default 20000) and FSX_SEEDS (default "1") set the fsx run;
#   TENANTFS_BIN picks the binary (default: the debug build, built if missing);
#   TENANTFS_META_URL puts the store's metadata in that (empty) PostgreSQL database.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh

export PATH="$HOME/.cargo/bin:$PATH"
for tool in pjdfstest fsx; do
  command -v "$tool" >/dev/null 2>&1 || cargo install --locked --quiet "$tool"
done
# pjdfstest switches to these users; `tests` is uid 1001 as the suite expects.
id tests >/dev/null 2>&1 || useradd -u 1001 -U -M -s /usr/sbin/nologin tests

tfs="${TENANTFS_BIN:-$PWD/target/debug/tenantfs}"
[ -x "$tfs" ] || cargo build --locked --quiet
work=$(mktemp -d /tmp/tenantfs-conf.XXXXXX)
chmod 755 "$work"
export TENANTFS_STORE="$work/store" TENANTFS_RUNTIME_DIR="$work/run"
# pjdfstest 0.2.2 sizes its PATH_MAX test from the base path, MOUNT/.tmpXXXXXX/.tmpXXXXXX,
# and underflows when (4073 - length of MOUNT) is a multiple of 127: pick another length then.
mnt="$work/mnt"
while [ $(( (4073 - ${#mnt}) % 127 )) -eq 0 ]; do mnt="${mnt}x"; done
mkdir -p "$mnt" "$work/second"
cleanup() {
  cd /
  "$tfs" umount "$mnt" 2>/dev/null || "$tfs" umount --lazy "$mnt" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

if [ -n "${TENANTFS_META_URL:-}" ]; then
  "$tfs" init --meta "$TENANTFS_META_URL" 2>/dev/null
  echo "== on PostgreSQL metadata"
else
  "$tfs" init 2>/dev/null
fi
"$tfs" tenant create conformance 2>/dev/null
"$tfs" key create --tenant conformance --subject user:root --scope admin > "$work/admin.key" 2>/dev/null
chmod 600 "$work/admin.key"
"$tfs" mount "$mnt" --key-file "$work/admin.key" --allow-other 2>/dev/null
chmod 777 "$mnt"

echo "== pjdfstest $(pjdfstest --version 2>/dev/null | awk '{print $2}') on $mnt"
(cd "$mnt" && pjdfstest -c "$OLDPWD/tests/pjdfstest/linux.toml" -p "$mnt" -s "$work/second") > "$work/pjdfstest.log" 2>&1 || true
summary=$(grep '^Summary:' "$work/pjdfstest.log" || true)
echo "pjdfstest: ${summary:-no summary}"
if ! grep -q '^Summary: 0 failed' "$work/pjdfstest.log"; then
  grep -E 'FAILED' -A6 "$work/pjdfstest.log" | head -80
  exit 1
fi

ops="${FSX_OPS:-20000}"
for seed in ${FSX_SEEDS:-1}; do
  mkdir -p "$mnt/fsx-$seed"
  if ! fsx -f tests/fsx/all-ops.toml -N "$ops" -S "$seed" -P "$work" "$mnt/fsx-$seed/file" > "$work/fsx.log" 2>&1; then
    tail -40 "$work/fsx.log"
    echo "fsx: FAILED with seed $seed"
    exit 1
  fi
  echo "fsx: $ops ops, seed $seed, all operations on: $(tail -1 "$work/fsx.log")"
done
