#!/bin/sh
# Installs the site's dependencies on first start (the folder is the project's, bind-mounted),
# then runs the dev server as PID 1's child (the container runs with --init).
set -e
cd /app
if [ ! -d node_modules ]; then
  if [ -f package-lock.json ]; then npm ci --no-audit --no-fund; else npm install --no-audit --no-fund; fi
fi
exec "$@"
