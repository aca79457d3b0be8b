import { cmd, script, type Sh } from '../shell'
import { COMPOSE_PROJECT_LABEL, COMPOSE_SERVICE_LABEL, PROJECT } from '../labels'

// nginx inside its container: config test, reload and the waits for its workers and connections. Pure.

/** Where the nginx container sees the action's nginx/ directory. */
export const NGINX_CONF = '/etc/nginx/ops/nginx.conf'

const TEST_ARGV = ['nginx', '-t', '-c', NGINX_CONF]

/** Where the front container sees its config (nginx/front/ of ops-dir). */
export const FRONT_CONF = '/etc/nginx/ops/front/nginx.conf'

/** `nginx -t` of the front's config. */
export const FRONT_TEST_ARGV: readonly string[] = ['nginx', '-t', '-c', FRONT_CONF]

/** `nginx -t` of the front's config in the running front container. */
export const frontTest = (container: string): Sh => cmd('docker', 'exec', container, ...FRONT_TEST_ARGV)

/** Where `nginx -t` runs: a running nginx container (by id), or the stack's running one found by its compose labels. */
export type NginxAt = { container: string } | 'stack'

/**
 * `nginx -t` of the action's config, in the given nginx container. With `opsDir`, a pass is remembered (in the SSH
 * user's cache dir) for that container and the exact files it read from ops-dir (nginx/, upstreams/*.conf,
 * *.locations, *.map and *.cookie, by sha256), and the same files in the same container are not tested again: a docker exec saved on
 * every deploy, since the last one's test (of the upstream file it switched to) already passed on them.
 */
export const nginxTest = (at: NginxAt, opsDir?: string): Sh => {
  const plain =
    at === 'stack'
      ? script(
          'n=$(docker ps -q --filter "label=$1" --filter "label=$2") && [ -n "$n" ] || { echo "no running nginx container"; exit 1; }; ' +
            'shift 2; exec docker exec "$n" "$@"',
          `${COMPOSE_PROJECT_LABEL}=${PROJECT}`,
          `${COMPOSE_SERVICE_LABEL}=nginx`,
          ...TEST_ARGV
        )
      : cmd('docker', 'exec', at.container, ...TEST_ARGV)
  if (opsDir === undefined) return plain
  return script(
    'o=$1 n=$2; shift 2; ' +
      '[ -n "$n" ] || n=$(docker ps -q --no-trunc --filter "label=$1" --filter "label=$2"); shift 2; ' +
      '[ -n "$n" ] || { echo "no running nginx container"; exit 1; }; c=${XDG_CACHE_HOME:-$HOME/.cache}/ops-action/nginx-tested; ' +
      'k="$n $o $(cd "$o" && { find nginx -type f -exec sha256sum {} +; find upstreams -maxdepth 1 -type f \\( -name "*.conf" -o -name "*.locations" -o -name "*.map" -o -name "*.cookie" \\) -exec sha256sum {} +; } | LC_ALL=C sort | sha256sum)"; ' +
      '[ -f "$c" ] && [ "$(cat "$c")" = "$k" ] && { echo "nginx -t passed on these files before (cached)"; exit 0; }; ' +
      'docker exec "$n" "$@"; r=$?; [ $r -ne 0 ] || { mkdir -p "${c%/*}" && printf "%s\\n" "$k" >"$c"; } 2>/dev/null; exit $r',
    opsDir,
    at === 'stack' ? '' : at.container,
    `${COMPOSE_PROJECT_LABEL}=${PROJECT}`,
    `${COMPOSE_SERVICE_LABEL}=nginx`,
    ...TEST_ARGV
  )
}

/** The compose run arguments of `nginx -t` in a throwaway container of the nginx service (before nginx runs). */
export const NGINX_TEST_ARGV: readonly string[] = TEST_ARGV

/**
 * Shell functions over the nginx container ($1): `top` prints `PID ARGS` of its processes (header first, as docker
 * top does): the children of its PID 1 from the host's ps, cheap enough to poll, else (ps without --ppid, or /proc
 * hidden) `docker top`; `draining TEXT` counts the shutting-down workers.
 */
const NGINX_PS =
  'pid=$(docker inspect --format "{{.State.Pid}}" "$1") || exit 5; ' +
  'top() { out=$(ps --ppid "$pid" -o pid=,args= 2>/dev/null); [ -n "$out" ] || out=$(docker top "$1" -eo pid,args | tail -n +2) || return 1; printf "PID COMMAND\\n%s\\n" "$out"; }; ' +
  'draining() { printf "%s\\n" "$1" | grep -c "nginx: worker process is shutting down"; }; '

/** nginx's pid file inside its container (nginx/nginx.conf's `pid`). */
export const NGINX_PID_FILE = '/tmp/nginx.pid'

/**
 * Shell function `reload PIDFILE TIMEOUT`, run inside the nginx container: SIGHUP to nginx's master (it re-reads the
 * config; old workers finish their requests), then waits, polling its /proc every 0.05 s for up to TIMEOUT s, until a
 * new worker runs and none that served before still serves (nginx gives its new workers 100 ms before it tells the
 * old ones to stop); prints nginx's workers as `PID COMMAND` lines, header first. A poll is two processes (grep):
 * workers by their title in /proc/PID/cmdline, and those of them shutting down. Returns 3: the signal failed; 4:
 * old workers still serve at the timeout (nginx refused the config).
 */
export const RELOAD =
  'procs() { ps="PID COMMAND"; now=; w=$(grep -l "^nginx: worker process" /proc/[0-9]*/cmdline 2>/dev/null); [ -n "$w" ] || return 0; ' +
  'set -- $(grep -l "shutting down" $w 2>/dev/null); d=" $* "; for f in $w; do p=${f#/proc/}; p=${p%/cmdline}; case "$d" in ' +
  '*" $f "*) ps="$ps\\n$p nginx: worker process is shutting down" ;; *) ps="$ps\\n$p nginx: worker process"; now="$now $p" ;; esac; done; }; ' +
  'reload() { procs; before="$now "; m=; read -r m <"$1"; [ -n "$m" ] && kill -HUP "$m" || return 3; read -r u _ </proc/uptime; end=$(( ${u%.*} + $2 )); ' +
  'while :; do sleep 0.05; procs; new=${now:+yes}; for p in $now; do case "$before" in *" $p "*) new= ;; esac; done; ' +
  '[ -z "$new" ] || { printf "%b\\n" "$ps"; return 0; }; read -r u _ </proc/uptime; [ "${u%.*}" -lt "$end" ] || return 4; done; }; '

/** `reload` (above) in the nginx container: one round trip for the whole reload; exit 3 or 4 as `reload` returns. */
export const reloadNginxAndWait = (id: string, timeoutS: number): Sh =>
  cmd('docker', 'exec', id, 'sh', '-c', `${RELOAD}reload "$1" "$2"`, 'sh', NGINX_PID_FILE, String(timeoutS))

/**
 * Waits, polling every 0.1 s for up to timeoutS, until none of the containers has an established connection from
 * nginx ($1) on its port (read from /proc/<pid>/net/tcp of the container: requests the old nginx workers still have
 * in flight there), twice in a row, and no worker of an older configuration is left — or, after workersS, one is
 * left only for other requests: an old worker keeps reused client connections open for keepalive_min_timeout and
 * may send their next requests to the old container until then; after it, only requests in flight. So a websocket
 * or a slow request to another service holds it up for workersS at most. Exit 4 at the timeout, printing how many
 * connections are left; 5: processes not listable; 6: /proc not readable (hidepid), so the caller falls back to
 * waiting for the workers.
 */
export const waitConnectionsDrained = (nginxId: string, port: number, containers: string[], timeoutS: number, workersS: number): Sh =>
  script(
    NGINX_PS +
      'n=$1 port=$2 t=$3 w=$4; shift 4; ' +
      'ips=$(docker inspect --format "{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}" "$n") || exit 5; ' +
      // /proc/net/tcp shows an IPv4 address as 8 hex digits, least significant byte first, and the port as 4.
      'hex=$(for ip in $ips; do printf "%s\\n" "$ip" | awk -F. \'{ printf "%02X%02X%02X%02X ", $4, $3, $2, $1 }\'; done); ' +
      'ph=$(printf "%04X" "$port"); pids=$(docker inspect --format "{{.State.Pid}}" "$@" 2>/dev/null); ' +
      'now=$(date +%s); end=$(( now + t )); wend=$(( now + w )); zero=0; while :; do c=0; ' +
      'for p in $pids; do [ "$p" -gt 0 ] || continue; [ -r "/proc/$p/net/tcp" ] || exit 6; ' +
      'c=$(( c + $(awk -v lp=":$ph" -v ips=" $hex" \'$4 == "01" && substr($2, 9) == lp && index(ips, " " substr($3, 1, 8) " ") { k++ } END { print k + 0 }\' "/proc/$p/net/tcp") )); done; ' +
      'if [ "$c" -eq 0 ]; then zero=$((zero + 1)); ' +
      'if [ "$zero" -ge 2 ]; then [ "$(date +%s)" -ge "$wend" ] && exit 0; ps=$(top "$n") || exit 5; [ "$(draining "$ps")" -gt 0 ] || exit 0; fi; ' +
      'else zero=0; fi; ' +
      '[ "$(date +%s)" -lt "$end" ] || { echo "$c"; exit 4; }; sleep 0.1; done',
    nginxId,
    String(port),
    String(timeoutS),
    String(workersS),
    ...containers
  )

/**
 * Waits, polling every 0.1 s for up to timeoutS, until no nginx worker of an older configuration is left (they exit
 * once their requests are done). Exit 4 at the timeout, printing how many still work; 5: processes not listable.
 */
export const waitNginxDrained = (id: string, timeoutS: number): Sh =>
  script(
    NGINX_PS +
      'end=$(( $(date +%s) + $2 )); while :; do ps=$(top "$1") || exit 5; n=$(draining "$ps"); [ "$n" -gt 0 ] || exit 0; ' +
      '[ "$(date +%s)" -lt "$end" ] || { echo "$n"; exit 4; }; sleep 0.1; done',
    id,
    String(timeoutS)
  )
