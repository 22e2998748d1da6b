#!/usr/bin/env bash
# The main job, end to end: one store, two tenants, two live mounts, and isolation shown
# with ls, cat and echo. Everything lives in a temporary directory that is removed at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo build --release --locked --quiet
tfs="$PWD/target/release/tenantfs"

work=$(mktemp -d /tmp/tenantfs-demo.XXXXXX)
export TENANTFS_STORE="$work/store"
cleanup() {
  for m in "$work/acme" "$work/beta"; do
    "$tfs" umount "$m" 2>/dev/null || true
  done
  rm -rf "$work"
}
trap cleanup EXIT
step() { printf '\n\033[1m$ %s\033[0m\n' "$*"; }
run() { step "$*"; "$@"; }

run "$tfs" init
run "$tfs" tenant create acme --name "Acme Corp"
run "$tfs" tenant create beta --name "Beta Labs"
# Key files are secrets: made 0600, so mount has nothing to warn about.
step "umask 077"
umask 077
step "tenantfs key create --tenant acme --subject user:alice > alice.key"
"$tfs" key create --tenant acme --subject user:alice > "$work/alice.key"
step "tenantfs key create --tenant beta --subject agent:bot > bot.key"
"$tfs" key create --tenant beta --subject agent:bot > "$work/bot.key"
run "$tfs" key list

mkdir -p "$work/acme" "$work/beta"
run "$tfs" mount "$work/acme" --key-file "$work/alice.key"
run "$tfs" mount "$work/beta" --key-file "$work/bot.key"

step "echo 'acme quarterly report' > acme/report.txt"
echo 'acme quarterly report' > "$work/acme/report.txt"
step "mkdir acme/projects && echo plan > acme/projects/plan.md"
mkdir "$work/acme/projects" && echo plan > "$work/acme/projects/plan.md"
step "echo 'beta model weights index' > beta/models.txt"
echo 'beta model weights index' > "$work/beta/models.txt"

run ls -la "$work/acme" "$work/beta"
run cat "$work/acme/report.txt" "$work/beta/models.txt"
step "cat beta/report.txt   # acme's file does not exist in beta's tree"
if cat "$work/beta/report.txt" 2>&1; then echo "ISOLATION BROKEN" >&2; exit 1; fi
step "find acme beta   # each tree holds only its own tenant's files"
(cd "$work" && find acme beta | sort)
run df -h "$work/acme" "$work/beta"

run "$tfs" umount "$work/acme"
run "$tfs" umount "$work/beta"
run "$tfs" mount "$work/acme" --key-file "$work/alice.key"
step "cat acme/report.txt   # persisted across umount and mount"
cat "$work/acme/report.txt"
run "$tfs" umount "$work/acme"
run "$tfs" tenant show acme
printf '\ndemo finished: two tenants, isolated, persistent\n'
