#!/usr/bin/env bash
# npm run demo: bring the sandbox host up, then run the built action (dist/index.js) against it exactly as a GitHub
# runner would: mode infra, then a deploy of the sample app as story, backend and frontend (pulled from the sandbox
# registry with login). Prints what nginx serves.
set -euo pipefail
cd "$(dirname "$0")/.."
port=${DEMO_HTTP_PORT:-18080}
bash scripts/sandbox.sh up
[ -f dist/index.js ] || npm run -s bundle
run() { node scripts/run-action.mjs http-port="$port" https-port=$((port + 363)) "$@" | grep -E '^(✓|✗|::error|exit|No changes|Changes|  - )'; }
password=$(node -p "require('./.sandbox/connection.json').registryPassword")
app=127.0.0.1:5000/behindy/sample-app:v1
login=(registry=127.0.0.1:5000 registry-username=ci "registry-password=$password")

echo "== mode infra"
run mode=infra "infra-env=DB_USER=behindy\nDB_PASS=demo-db-password\nDB_NAME=behindy\nREDIS_PASSWORD=demo-redis-password"
echo "== deploy story";    run mode=deploy service=story    image=$app "${login[@]}" 'env=VERSION=story-demo\nPORT=8000'
echo "== deploy backend";  run mode=deploy service=backend  image=$app "${login[@]}" 'env=VERSION=backend-demo\nPORT=8080'
echo "== deploy frontend"; run mode=deploy service=frontend image=$app "${login[@]}" 'env=VERSION=frontend-demo'
echo
for path in /healthz / /api/ai-stories/health /llm/health; do
  printf '  http://127.0.0.1:%s%-24s -> %s\n' "$port" "$path" "$(curl -s "http://127.0.0.1:$port$path" | head -c 100)"
done
