#!/bin/sh
# The preview's entrypoint: installs the site's dependencies when they are missing (or when an
# earlier install was interrupted), makes sure Next.js accepts the preview's origin, then runs the
# dev server (CMD) as the child of the container's init (--init).
#
# Where it writes: the container runs as PREVIEW_USER (not root), with all capabilities dropped
# and a read-only root file system. Only /app (the project's site folder, handed to that uid:gid
# before each start) and the /tmp tmpfs (HOME) are writable: node_modules and Next's .next cache
# go to /app, npm's cache and logs to $HOME.
set -e
cd /app
marker=.preview-install-incomplete
if [ ! -d node_modules ] || [ -e "$marker" ]; then
  echo "[preview] installing dependencies"
  : >"$marker"
  if [ -f package-lock.json ]; then npm ci --no-audit --no-fund; else npm install --no-audit --no-fund; fi
  rm -f "$marker"
  # npm's cache is under HOME=/tmp, a tmpfs whose pages count against the memory limit: free it.
  rm -rf "${HOME:-/tmp}/.npm"
fi
# Next.js checks the origin of requests for its dev resources against allowedDevOrigins (the
# preview is opened at {projectId}.preview.localhost or 127.0.0.1:<port>, see the fragment). A
# site without a config gets the fragment; a site with one is told in the log (its config is its
# own to change).
config=$(ls next.config.js next.config.mjs next.config.ts next.config.cjs 2>/dev/null | head -n 1 || true)
if [ -z "$config" ]; then
  if [ -f /opt/preview/next.config.fragment.mjs ]; then cp /opt/preview/next.config.fragment.mjs next.config.mjs; fi
elif ! grep -q allowedDevOrigins "$config"; then
  echo "[preview] warning: $config does not set allowedDevOrigins for the preview origins (*.preview.localhost, 127.0.0.1): see /opt/preview/next.config.fragment.mjs" >&2
fi
exec "$@"
