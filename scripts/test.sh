#!/usr/bin/env bash
# Runs every test: formatting and lints, unit tests of the core, and integration tests that
# mount for real and act through the kernel, then the same suite again with the metadata in
# PostgreSQL (a throwaway cluster on 127.0.0.1, removed at exit). Installs what it needs.
#   TENANTFS_TEST_ENGINES (default "sqlite postgres") picks the passes.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh

cargo fmt --check
cargo clippy --all-targets --locked -- -D warnings

engines="${TENANTFS_TEST_ENGINES:-sqlite postgres}"
pg=""
cleanup() { [ -z "$pg" ] || scripts/pg-cluster.sh stop "$pg"; }
trap cleanup EXIT

for engine in $engines; do
  case "$engine" in
  sqlite)
    echo "== the suite on the embedded store (SQLite)"
    TENANTFS_TEST_META=sqlite cargo test --locked -- --test-threads=4
    scripts/conformance.sh
    ;;
  postgres)
    echo "== the suite on PostgreSQL metadata"
    pg=$(mktemp -d /tmp/tenantfs-pg.XXXXXX)
    server=$(scripts/pg-cluster.sh start "$pg")
    TENANTFS_TEST_META=postgres TENANTFS_TEST_PG="$server" \
      cargo test --locked --tests -- --test-threads=4
    psql="$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)/psql"
    "$psql" -q "$server" -c "CREATE DATABASE conformance"
    TENANTFS_META_URL="${server%/*}/conformance" scripts/conformance.sh
    ;;
  *)
    echo "test.sh: unknown engine $engine (sqlite, postgres)" >&2
    exit 2
    ;;
  esac
done
