#!/usr/bin/env bash
# Installs the dependencies of the Next.js end-to-end fixture (test/fixtures/nextjs-site) from npm
# into a cache outside the repository, keyed by the fixture's package-lock.json, and prints the
# cache folder (it holds node_modules). Idempotent: a complete entry is reused as it is; an
# interrupted install leaves only a temporary folder, never a half entry (installed aside, then
# renamed into place). Called by scripts/provision.sh and, when the entry is missing, by the test.
# NEXTJS_FIXTURE_CACHE moves the cache (default /var/cache/sitebuilder-previews/nextjs-fixture).
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
fixture=$repo/test/fixtures/nextjs-site
root=${NEXTJS_FIXTURE_CACHE:-/var/cache/sitebuilder-previews/nextjs-fixture}
key=$(sha256sum "$fixture/package-lock.json" | cut -c1-16)
dest=$root/$key
if [ -f "$dest/.complete" ]; then
  echo "$dest"
  exit 0
fi
mkdir -p "$root"
tmp=$(mktemp -d "$root/.install-XXXXXX")
chmod 0755 "$tmp"
trap 'rm -rf "$tmp"' EXIT
cp "$fixture/package.json" "$fixture/package-lock.json" "$tmp/"
echo "[nextjs-fixture] npm ci into $dest" >&2
(cd "$tmp" && npm ci --no-audit --no-fund --loglevel=error >&2)
touch "$tmp/.complete"
# A rename into place is atomic; when another install got there first, keep its entry.
mv -T "$tmp" "$dest" 2>/dev/null || true
if [ ! -f "$dest/.complete" ]; then
  echo "[nextjs-fixture] $dest exists but is not a complete install: remove it and run again" >&2
  exit 1
fi
echo "$dest"
