import { PROBE } from './http'
import { cmd, script, type Sh } from '../shell'

// The handover from one nginx container to the next, behind the front. Pure: each returns a command.

/**
 * GETs each URL once from inside the container (PROBE, 5 s each, with the header when given), all at the same time;
 * prints `<code> <url>` per URL in the given order (000: nothing answered).
 */
export const probeEach = (container: string, urls: string[], header = ''): Sh =>
  cmd(
    'docker',
    'exec',
    container,
    'sh',
    '-c',
    `${PROBE}T=5; H=$1; shift; d=$(mktemp -d) || exit 1; i=0; for u; do i=$((i + 1)); probe "$u" >"$d/$i" & done; wait; ` +
      'i=0; for u; do i=$((i + 1)); echo "$(cat "$d/$i") $u"; done; rm -rf "$d"',
    'sh',
    header,
    ...urls
  )

/**
 * Stops the container with its stop signal (nginx: SIGQUIT, its graceful stop: it closes its listeners, finishes the
 * requests in flight and closes idle connections) within timeoutS, then removes it; prints the milliseconds the
 * stop took.
 */
export const stopAndRemove = (id: string, timeoutS: number): Sh =>
  script(
    's=$(date +%s%N); docker stop -t "$2" "$1" >/dev/null || exit $?; e=$(date +%s%N); docker rm "$1" >/dev/null || exit $?; echo $(( (e - s) / 1000000 ))',
    id,
    String(timeoutS)
  )
