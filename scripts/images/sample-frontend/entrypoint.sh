#!/bin/sh
# ops-sandbox sample frontend: start the Next.js standalone server (server.js beside this script).
# Test hooks done here, before node starts: FAIL_MODE=exit, STARTUP_DELAY, FAIL_MODE=wrong-port.
# The rest (stats counters, DRAIN_SECONDS, start line) is in ops-hooks.cjs, preloaded with --require;
# the routes are Next's own (app/[[...path]]/route.js).
set -eu

app_dir=$(CDPATH= cd -- "$(dirname -- "$0")" && pwd)
cd "$app_dir"

: "${VERSION:=dev}"
: "${PORT:=3000}"
: "${HEALTH_PATH:=/health}"
: "${FAIL_MODE:=}"
: "${STARTUP_DELAY:=0}"
export VERSION PORT HEALTH_PATH FAIL_MODE

log() {
  printf '%s sample-frontend[%s] %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$VERSION" "$*"
}

case "$FAIL_MODE" in
  '' | never-healthy | exit | wrong-port | route-5xx) ;;
  *) log "unknown FAIL_MODE=$FAIL_MODE (never-healthy | exit | wrong-port | route-5xx): ignored" ;;
esac

if [ "$FAIL_MODE" = exit ]; then
  log "FAIL_MODE=exit: exiting with status 1"
  exit 1
fi

case "$STARTUP_DELAY" in
  0 | 0.0 | '') ;;
  *)
    log "starting in ${STARTUP_DELAY}s"
    sleep_pid=
    # A SIGTERM (or SIGINT) during the delay ends it at once, with status 0.
    trap 'log "stopped during startup"; [ -n "$sleep_pid" ] && kill "$sleep_pid" 2>/dev/null; exit 0' TERM INT
    sleep "$STARTUP_DELAY" &
    sleep_pid=$!
    wait "$sleep_pid" || true
    trap - TERM INT
    ;;
esac

if [ "$FAIL_MODE" = wrong-port ]; then
  PORT=$((PORT + 1))
  log "FAIL_MODE=wrong-port: listening on $PORT instead"
fi

# Next's standalone server binds to $HOSTNAME (Docker sets it to the container id): listen on all
# interfaces. The app reports the real host name from os.hostname().
HOSTNAME=0.0.0.0
# Pin Node's keep-alive timeout to 5 s (Node <= 25's default; Node 26 makes it 65 s). Next reads it.
: "${KEEP_ALIVE_TIMEOUT:=5000}"
NODE_ENV=production
NEXT_TELEMETRY_DISABLED=1
export PORT HOSTNAME KEEP_ALIVE_TIMEOUT NODE_ENV NEXT_TELEMETRY_DISABLED

exec node --require "$app_dir/ops-hooks.cjs" "$app_dir/server.js"
