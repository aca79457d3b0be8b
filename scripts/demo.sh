#!/usr/bin/env bash
# npm run demo: bring the sandbox host up, then run the built action (dist/index.js) against it exactly as a
# GitHub runner would, in mode infra. Then print what nginx serves.
set -euo pipefail
cd "$(dirname "$0")/.."
port=${DEMO_HTTP_PORT:-18080}
bash scripts/sandbox.sh up
[ -f dist/index.js ] || npm run -s bundle
node scripts/run-action.mjs mode=infra http-port="$port" https-port=$((port + 363)) \
  "infra-env=DB_USER=behindy\nDB_PASS=demo-db-password\nDB_NAME=behindy\nREDIS_PASSWORD=demo-redis-password"
echo
for path in /healthz / /api/ /llm/health; do
  printf '  http://127.0.0.1:%s%-14s -> %s\n' "$port" "$path" "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port$path")"
done
echo "(503 = route served by nginx, app not deployed yet)"
