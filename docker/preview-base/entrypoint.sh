#!/bin/sh
# Installs the site's dependencies on first start (the folder is the project's, bind-mounted),
# then runs the dev server as PID 1's child (the container runs with --init).
set -e
cd /app
# The container runs as PREVIEW_USER (not root) with a read-only root file system: only /app
# (the site folder, which must be writable by that user) and the /tmp tmpfs (HOME) are writable.
if [ ! -d node_modules ]; then
  if [ -f package-lock.json ]; then npm ci --no-audit --no-fund; else npm install --no-audit --no-fund; fi
  # npm's cache is under HOME=/tmp, a tmpfs whose pages count against the memory limit: free it.
  rm -rf "${HOME:-/tmp}/.npm"
fi
exec "$@"
