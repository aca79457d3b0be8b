import { cmd, script, type Sh } from '../shell'

// HTTP probes run from inside a container on the docker network (nginx's, which has wget). Pure.

/**
 * `fetch URL`: one HTTP GET with wget (busybox or GNU, which both print the status line with -S), timeout $T, header
 * $H, its output in $out and exit code in $rc (one process: wget); `status`: the status code in $code (the last
 * status line's: a redirect is followed), or 000 when nothing answered, parsed by the shell itself (no process);
 * `probe URL`: both, printing the code.
 */
export const PROBE =
  'fetch() { out=$(wget -S -q -O /dev/null -T "$T" -t 1 --header "${H:-X-Ops-Probe: 1}" "$1" 2>&1); rc=$?; }; ' +
  'status() { code=; r=$out; while :; do case $r in *HTTP/*) r=${r#*HTTP/}; ' +
  'case $r in [0-9]*" "[0-9][0-9][0-9]*) c=${r#* }; code=${c%"${c#???}"} ;; esac ;; *) break ;; esac; done; ' +
  '[ -n "$code" ] || { [ $rc -eq 0 ] && code=200 || code=000; }; }; ' +
  'probe() { fetch "$1"; status; echo "$code"; }; '

/** An HTTP GET from inside another container (nginx's, on the same network): prints the status code, or 000. */
export const httpStatus = (via: string, url: string, timeoutS = 3, header = ''): Sh =>
  cmd('docker', 'exec', via, 'sh', '-c', `${PROBE}T=$2; H=$3; probe "$1"`, 'sh', url, String(timeoutS), header)

/**
 * Shell function `waves HEALTH ROUTE NEED MAX` (PROBE's T and H apply): GETs the health URL and the route URL
 * NEED times each, all at the same time, wave after wave (0.2 s apart), until one wave answers well throughout (health 2xx, route
 * 1xx-4xx) or MAX waves are done. Prints `<health code> <route code>` per pair, then `ok` after the good wave;
 * returns 1 without one. Two processes a GET (its job and wget): each job prints `<h|r><pair> <code>` in one write.
 */
export const WAVES =
  'got() { case $out in *"$1 "*) v=${out#*"$1 "}; v=${v%"${v#???}"} ;; *) v=000 ;; esac; }; ' +
  'wave() { j=0; while [ $j -lt "$3" ]; do { fetch "$1"; status; echo "h$j $code"; } & { fetch "$2"; status; echo "r$j $code"; } & j=$((j + 1)); done; wait; }; ' +
  'waves() { i=0; while [ $i -lt "$4" ]; do out=$(wave "$1" "$2" "$3"); good=1; j=0; ' +
  'while [ $j -lt "$3" ]; do got "h$j"; h=$v; got "r$j"; echo "$h $v"; case "$h $v" in 2[0-9][0-9]" "[1-4][0-9][0-9]) ;; *) good= ;; esac; j=$((j + 1)); done; ' +
  '[ -n "$good" ] && { echo ok; return 0; }; i=$((i + 1)); [ $i -lt "$4" ] && sleep 0.2; done; return 1; }; '

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
 * One burst of the health gate, inside `via`: GETs $1 every 0.05 s for up to 2 s and stops at the first success
 * (wget exits 0 on a 2xx), printing the last status. One docker exec per burst instead of one per probe, and no
 * process per probe but wget and sleep (the status is parsed once, the clock read from /proc/uptime): the CPU goes to
 * the apps serving and the one booting, not to the gate.
 */
const GATE_BURST = `${PROBE}T=2; H=; read -r u _ </proc/uptime; e=$(( \${u%.*} + 2 )); while :; do fetch "$1"; [ $rc -eq 0 ] && break; read -r u _ </proc/uptime; [ "\${u%.*}" -lt "$e" ] || break; sleep 0.05; done; status; echo "$code"`

/**
 * The whole health gate in one round trip: until the container's health path answers 2xx from inside `via` (probed
 * every 0.05 s, in bursts of up to 2 s), it exits, restarts or reports unhealthy (read between bursts, every 0.05 s
 * before it runs with an address), or timeoutS pass. Prints one line at the end:
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
      'out=$(docker exec "$via" sh -c "$p" sh "http://$ip:$port$path" 2>/dev/null); last=$(printf "%s\\n" "$out" | tail -n 1); [ -n "$last" ] || last=000; ' +
      'case $last in 2??) echo "healthy $ip $last"; exit 0 ;; esac; else sleep 0.05; fi; ' +
      '[ "$(date +%s)" -lt "$end" ] || { echo "timeout $last $ip"; exit 0; }; done',
    g.container,
    g.network,
    g.via,
    String(g.port),
    g.path,
    String(g.timeoutS),
    GATE_BURST,
    GATE_FORMAT
  )
