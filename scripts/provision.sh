#!/usr/bin/env bash
# Provisions what the test suite needs on a bare Debian machine, as root, idempotently:
# a Docker engine (docker.io, dockerd started in the background), busybox-static (the test
# images are built FROM scratch around it), and a PostgreSQL server with the test role.
# Running it again finds everything in place and changes nothing.
set -euo pipefail

log() { printf '[provision] %s\n' "$*"; }

need_pkgs=()
command -v dockerd >/dev/null 2>&1 || need_pkgs+=(docker.io)
dpkg -s busybox-static >/dev/null 2>&1 || need_pkgs+=(busybox-static)
command -v pg_ctlcluster >/dev/null 2>&1 || need_pkgs+=(postgresql)
if [ ${#need_pkgs[@]} -gt 0 ]; then
  log "installing ${need_pkgs[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${need_pkgs[@]}" >/dev/null
fi
# Docker engine
if ! timeout 5 docker info >/dev/null 2>&1; then
  log "starting dockerd"
  nohup dockerd >/var/log/dockerd.log 2>&1 &
  for _ in $(seq 1 60); do
    timeout 5 docker info >/dev/null 2>&1 && break
    sleep 1
  done
  timeout 5 docker info >/dev/null 2>&1 || { log "dockerd did not come up; see /var/log/dockerd.log"; exit 1; }
fi
log "docker $(docker version --format '{{.Server.Version}} (API {{.Server.APIVersion}})')"

# PostgreSQL server
cluster=$(pg_lsclusters -h 2>/dev/null | awk 'NR==1{print $1" "$2}')
if [ -z "$cluster" ]; then
  ver=$(ls /usr/lib/postgresql | sort -n | tail -1)
  pg_createcluster "$ver" main >/dev/null
  cluster="$ver main"
fi
# shellcheck disable=SC2086
if ! pg_lsclusters -h | awk '{print $4}' | grep -q online; then
  log "starting postgresql $cluster"
  pg_ctlcluster $cluster start
fi
port=$(pg_lsclusters -h | awk 'NR==1{print $3}')
su postgres -c "psql -p $port -qtAc \"SELECT 1 FROM pg_roles WHERE rolname='previews_test'\"" | grep -q 1 ||
  su postgres -c "psql -p $port -qc \"CREATE ROLE previews_test LOGIN CREATEDB PASSWORD 'previews_test'\""
su postgres -c "psql -p $port -qtAc \"SELECT 1 FROM pg_database WHERE datname='previews_test'\"" | grep -q 1 ||
  su postgres -c "psql -p $port -qc \"CREATE DATABASE previews_test OWNER previews_test\""
log "postgres on 127.0.0.1:$port (role previews_test)"
