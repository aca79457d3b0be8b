#!/usr/bin/env bash
# build.sh <outdir>: build the sample frontend (Next.js standalone) and assemble in <outdir> a runtime
# tree that needs nothing but `node`:
#   <outdir>/server.js, node_modules/, .next/ (with .next/static), package.json   (Next's standalone output)
#   <outdir>/entrypoint.sh, ops-hooks.cjs                                          (the test hooks)
# The build runs in a temp copy of this dir: nothing (node_modules, .next) is ever created here, since
# this dir's content is hashed to decide rebuilds. <outdir> is replaced as a whole; rerunning is safe.
# Needs node (>= 20.9) and npm, and the npm registry (npm ci; its cache in ~/.npm makes reruns faster).
set -euo pipefail

if [ $# -ne 1 ] || [ -z "$1" ]; then
  echo "usage: $0 <outdir>" >&2
  exit 2
fi
src=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)

out=$(realpath -m -- "$1")
case "$out/" in
  "$src"/*) echo "build.sh: <outdir> must be outside $src (that dir is hashed)" >&2; exit 2 ;;
esac

export NEXT_TELEMETRY_DISABLED=1
export NODE_ENV=production
start=$(date +%s)

work=$(mktemp -d "${TMPDIR:-/tmp}/sample-frontend-build.XXXXXX")
trap 'rm -rf "$work"' EXIT

# Sources only (no stray node_modules/.next/outputs from anywhere).
cp -R "$src/app" "$src/proxy.js" "$src/package.json" "$src/package-lock.json" "$src/next.config.mjs" "$work/"

cd "$work"
# devDependencies: none; npm ci keeps optional ones (next's native SWC binary is one of them).
npm ci --no-audit --no-fund --loglevel=error --prefer-offline
node_modules/.bin/next build

standalone="$work/.next/standalone"
[ -f "$standalone/server.js" ] || { echo "build.sh: no $standalone/server.js (output: 'standalone'?)" >&2; exit 1; }

# Assemble next to <outdir>, then swap it in.
stage="$work/out"
cp -R "$standalone" "$stage"
# Next's docs: .next/static (and public/, which this app has none of) are not part of the standalone copy.
mkdir -p "$stage/.next"
cp -R "$work/.next/static" "$stage/.next/static"
cp "$src/entrypoint.sh" "$src/ops-hooks.cjs" "$stage/"
chmod 0755 "$stage/entrypoint.sh"

# Prune what the runtime does not need: sharp/libvips (images are unoptimized; normally excluded by
# outputFileTracingExcludes already), Next's build cache and source maps, type declarations.
rm -rf "$stage/node_modules/sharp" "$stage/node_modules/@img" "$stage/.next/cache"
find "$stage" \( -name '*.map' -o -name '*.d.ts' \) -type f -delete

# Smoke check: the tree loads with plain node (the entry module resolves next from its own node_modules).
(cd "$stage" && node -e "require.resolve('next/dist/server/lib/start-server')")

mkdir -p "$(dirname -- "$out")"
rm -rf "$out"
mv "$stage" "$out"

echo "build.sh: $out ready ($(du -sh "$out" | cut -f1), $(($(date +%s) - start)) s)"
