#!/usr/bin/env bash
# A throwaway PostgreSQL cluster for tests and benchmarks: Debian's server, `initdb` into a
# temp dir as the postgres user, listening on 127.0.0.1 only, on a free port.
#   scripts/pg-cluster.sh start DIR   prints the URL of a superuser connection on stdout
#   scripts/pg-cluster.sh stop DIR    stops the server and removes DIR
# Installs the `postgresql` package when it is missing (as root).
set -euo pipefail

cmd="${1:?usage: pg-cluster.sh start|stop DIR}"
dir="${2:?usage: pg-cluster.sh start|stop DIR}"

bindir() {
  local d
  d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1 || true)
  if [ -z "$d" ] || [ ! -x "$d/initdb" ]; then
    if [ "$(id -u)" -ne 0 ]; then
      echo "pg-cluster: PostgreSQL is not installed; run as root or install postgresql" >&2
      exit 1
    fi
    echo "pg-cluster: installing postgresql" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq postgresql >/dev/null
    d=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
  fi
  echo "$d"
}

# Runs a command as the cluster's owner: postgres when we are root (the server refuses to
# run as root), ourselves otherwise.
as_owner() {
  if [ "$(id -u)" -eq 0 ]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

case "$cmd" in
start)
  bin=$(bindir)
  mkdir -p "$dir"
  [ "$(id -u)" -eq 0 ] && chown postgres: "$dir"
  as_owner "$bin/initdb" -D "$dir/data" -U postgres -A trust --no-sync -E UTF8 >"$dir/initdb.log" 2>&1 ||
    { cat "$dir/initdb.log" >&2; exit 1; }
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  # Durable commits as in production; the sockets live in the cluster's own dir.
  as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
    -o "-c listen_addresses=127.0.0.1 -c port=$port -c unix_socket_directories=$dir -c max_connections=400 -c shared_buffers=256MB" \
    start >/dev/null || { cat "$dir/server.log" >&2; exit 1; }
  echo "$port" >"$dir/port"
  echo "postgres://postgres@127.0.0.1:$port/postgres"
  ;;
stop)
  if [ -d "$dir/data" ]; then
    bin=$(bindir)
    as_owner "$bin/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null 2>&1 || true
  fi
  rm -rf "$dir"
  ;;
restart)
  bin=$(bindir)
  as_owner "$bin/pg_ctl" -D "$dir/data" -m fast -w -t 60 restart >/dev/null
  ;;
*)
  echo "pg-cluster: unknown command $cmd (start, stop, restart)" >&2
  exit 2
  ;;
esac
