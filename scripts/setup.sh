#!/usr/bin/env bash
# Installs what tenantfs needs to mount, test and benchmark on a fresh Debian machine.
# Safe to run again: it installs only what is missing.
set -euo pipefail

missing=()
command -v fusermount3 >/dev/null 2>&1 || missing+=(fuse3)
command -v bindfs >/dev/null 2>&1 || missing+=(bindfs)
command -v fio >/dev/null 2>&1 || missing+=(fio)
command -v getfattr >/dev/null 2>&1 || missing+=(attr)
command -v git >/dev/null 2>&1 || missing+=(git)
command -v rsync >/dev/null 2>&1 || missing+=(rsync)
command -v mkfs.ext4 >/dev/null 2>&1 || missing+=(e2fsprogs)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "setup: missing ${missing[*]}; run as root or install them" >&2
    exit 1
  fi
  echo "setup: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${missing[@]}" >/dev/null
fi
if [ ! -e /dev/fuse ]; then
  echo "setup: /dev/fuse is missing; this machine cannot mount FUSE filesystems" >&2
  exit 1
fi
