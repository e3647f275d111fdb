#!/usr/bin/env bash
# Provisions what the test suite needs on a bare Debian machine, as root, idempotently:
# a Docker engine (docker.io, dockerd started in the background), busybox-static (the test
# images are built FROM scratch around it), docker-compose (validates the compose files), and a
# PostgreSQL server with the test role.
# Running it again finds everything in place and changes nothing.
set -euo pipefail

log() { printf '[provision] %s\n' "$*"; }

need_pkgs=()
command -v dockerd >/dev/null 2>&1 || need_pkgs+=(docker.io)
dpkg -s busybox-static >/dev/null 2>&1 || need_pkgs+=(busybox-static)
command -v pg_ctlcluster >/dev/null 2>&1 || need_pkgs+=(postgresql)
# docker-compose 1.29 (Debian): test/compose.int.test.ts validates docker-compose*.yml with
# `docker-compose config` (it pulls in python3-yaml, which the test reads the output with).
command -v docker-compose >/dev/null 2>&1 || need_pkgs+=(docker-compose)
# gcc with static glibc: test/isolation/trusted-peers.int.test.ts builds its spoofing program.
command -v gcc >/dev/null 2>&1 || need_pkgs+=(gcc)
dpkg -s libc6-dev >/dev/null 2>&1 || need_pkgs+=(libc6-dev)
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

# PostgreSQL server: the cluster the tests use is the one on PG_PORT (TEST_PG_URL's port), never
# "the first one listed": other clusters may exist, running or not, on other ports.
PG_PORT=${PG_PORT:-5432}
cluster=$(pg_lsclusters -h 2>/dev/null | awk -v p="$PG_PORT" '$3 == p { print $1 " " $2; exit }')
if [ -z "$cluster" ]; then
  ver=$(ls /usr/lib/postgresql | sort -n | tail -1)
  name=main
  pg_lsclusters -h 2>/dev/null | awk '{ print $1 " " $2 }' | grep -qx "$ver main" && name=previews_test
  log "creating postgresql cluster $ver $name on port $PG_PORT"
  pg_createcluster "$ver" "$name" --port "$PG_PORT" >/dev/null
  cluster="$ver $name"
fi
status=$(pg_lsclusters -h | awk -v c="$cluster" '$1 " " $2 == c { print $4 }')
# shellcheck disable=SC2086
case "$status" in
  online*) ;;
  *)
    log "starting postgresql $cluster"
    pg_ctlcluster $cluster start
    ;;
esac
port=$PG_PORT
su postgres -c "psql -p $port -qtAc \"SELECT 1 FROM pg_roles WHERE rolname='previews_test'\"" | grep -q 1 ||
  su postgres -c "psql -p $port -qc \"CREATE ROLE previews_test LOGIN CREATEDB PASSWORD 'previews_test'\""
su postgres -c "psql -p $port -qtAc \"SELECT 1 FROM pg_database WHERE datname='previews_test'\"" | grep -q 1 ||
  su postgres -c "psql -p $port -qc \"CREATE DATABASE previews_test OWNER previews_test\""
log "postgres on 127.0.0.1:$port (role previews_test)"

# The Next.js end-to-end fixture's dependencies, from npm, into a cache outside the repository
# keyed by its lock file (test/functions/launch-nextjs.int.test.ts; reused while the lock is unchanged).
command -v npm >/dev/null 2>&1 || { log "npm not found: install Node.js 20 (the tests need it anyway)"; exit 1; }
log "nextjs fixture dependencies in $(bash "$(dirname "$0")/nextjs-fixture-deps.sh")"
