import { cmd, script, type Sh } from '../shell'

// HTTP probes run from inside a container on the docker network (nginx's, which has wget). Pure.

/**
 * `probe URL`: one HTTP GET with wget (busybox or GNU, which both print the status line with -S), timeout $T, header
 * $H; prints the status code, or 000 when nothing answered.
 */
const PROBE =
  'probe() { out=$(wget -S -q -O /dev/null -T "$T" -t 1 --header "${H:-X-Ops-Probe: 1}" "$1" 2>&1); rc=$?; ' +
  'code=$(printf "%s\\n" "$out" | sed -n "s/^ *HTTP\\/[0-9.]* \\([0-9][0-9][0-9]\\).*/\\1/p" | tail -n 1); ' +
  '[ -n "$code" ] || { [ $rc -eq 0 ] && code=200 || code=000; }; echo "$code"; }; '

/** An HTTP GET from inside another container (nginx's, on the same network): prints the status code, or 000. */
export const httpStatus = (via: string, url: string, timeoutS = 3, header = ''): Sh =>
  cmd('docker', 'exec', via, 'sh', '-c', `${PROBE}T=$2; H=$3; probe "$1"`, 'sh', url, String(timeoutS), header)

/**
 * GETs a health URL and a route URL (at the same time) from inside another container, round after round, until
 * `need` rounds in a row answer well (health 2xx, route 1xx-4xx) or `max` rounds are done: one round trip for the
 * whole check. Prints `<health code> <route code>` per round, then `ok` if it got there.
 */
export const httpRounds = (via: string, healthUrl: string, routeUrl: string, need: number, max: number, timeoutS = 3, header = ''): Sh =>
  cmd(
    'docker',
    'exec',
    via,
    'sh',
    '-c',
    `${PROBE}T=$5; H=$6; ok=0; i=0; ` +
      'while [ $i -lt "$4" ] && [ $ok -lt "$3" ]; do ' +
      'hr=$( { probe "$1" | sed "s/^/h /" & probe "$2" | sed "s/^/r /"; wait; } ); ' +
      'h=$(printf "%s\\n" "$hr" | sed -n "s/^h //p"); r=$(printf "%s\\n" "$hr" | sed -n "s/^r //p"); echo "$h $r"; ' +
      'case "$h:$r" in 2??:[1-4]??) ok=$((ok + 1)) ;; *) ok=0 ;; esac; i=$((i + 1)); done; ' +
      '[ $ok -lt "$3" ] || echo ok',
    'sh',
    healthUrl,
    routeUrl,
    String(need),
    String(max),
    String(timeoutS),
    header
  )

/** The health gate's poll: what `docker inspect` says, then (running, with an address on the network) one probe. */
const GATE_FORMAT =
  '{{.State.Status}} {{.RestartCount}} {{if .State.Health}}{{.State.Health.Status}}{{else}}none{{end}}{{range $k, $v := .NetworkSettings.Networks}} {{$k}}={{$v.IPAddress}}{{end}}'

export interface GateSpec {
  container: string
  network: string
  /** The container the probes run in (nginx's, on the same network). */
  via: string
  port: number
  path: string
  timeoutS: number
}

/**
 * The whole health gate in one round trip: polls the container every 0.1 s until its health path answers 2xx from
 * inside `via`, it exits, restarts or reports unhealthy, or timeoutS pass. Prints one line at the end:
 * `healthy <ip> <code>`, `exited <status> <restarts> <last code>`, `unhealthy <last code>`, `gone <last code>` or
 * `timeout <last code> <ip>` (last code: the last probe's status, 000 when nothing answered, none before any probe).
 */
export const healthGateLoop = (g: GateSpec): Sh =>
  script(
    'n=$1 net=$2 via=$3 port=$4 path=$5 t=$6 p=$7 f=$8; end=$(( $(date +%s) + t )); last=none; ip=; ' +
      'while :; do s=$(docker inspect --format "$f" "$n" 2>/dev/null) || { echo "gone $last"; exit 0; }; ' +
      'set -- $s; st=$1 rs=$2 hs=$3; shift 3; ip=; for w; do case $w in "$net="*) ip=${w#*=} ;; esac; done; ' +
      'case $st in exited|dead) echo "exited $st $rs $last"; exit 0 ;; esac; ' +
      '[ "$rs" -gt 0 ] && { echo "exited $st $rs $last"; exit 0; }; ' +
      '[ "$hs" = unhealthy ] && { echo "unhealthy $last"; exit 0; }; ' +
      'if [ "$st" = running ] && [ -n "$ip" ]; then ' +
      'last=$(docker exec "$via" sh -c "$p" sh "http://$ip:$port$path" 2>/dev/null) || last=000; ' +
      'case $last in 2??) echo "healthy $ip $last"; exit 0 ;; esac; fi; ' +
      '[ "$(date +%s)" -lt "$end" ] || { echo "timeout $last $ip"; exit 0; }; sleep 0.1; done',
    g.container,
    g.network,
    g.via,
    String(g.port),
    g.path,
    String(g.timeoutS),
    `${PROBE}T=2; H=; probe "$1"`,
    GATE_FORMAT
  )
