import { cmd, type Sh } from '../shell'

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
