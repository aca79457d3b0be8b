import { cmd, type Sh } from '../shell'
import { PROBE, WAVES } from './http'
import { NGINX_PID_FILE, RELOAD } from './nginx'

// The swap's last steps through nginx, in one `docker exec` into it (one round trip, one exec). Pure.

/** A health URL and a route URL to GET through nginx, with the header the requests carry. */
export interface Probes {
  health: string
  route: string
  header: string
}

export interface SwitchSpec {
  nginxId: string
  /** On nginx's preview port, the header picking the new container: before any client is switched. */
  preview: Probes
  /** On nginx's client port, after the reload. */
  live: Probes
  /** Pairs of GETs per wave, all at once; waves at most. */
  need: number
  maxWaves: number
  probeTimeoutS: number
  reloadTimeoutS: number
}

/** The stages, in order; each runs only when the one before succeeded. */
export const SWITCH_STAGES = ['preview', 'switch', 'verify'] as const

/**
 * Inside the nginx container: `preview` (waves on the preview port), then `switch` (reload, and wait until only new
 * workers serve), then `verify` (waves on the client port): each a section (`@@ops <stage>` … `@@ops-rc <rc>`), the
 * next one run only when it succeeded, and `@@ops-at <stage> <uptime>` before each and `@@ops-at end <uptime>` after
 * the last that ran (seconds since boot, to 10 ms).
 */
export const previewSwitchVerify = (s: SwitchSpec): Sh => {
  const stage = (name: string, body: string) =>
    `at ${name}; echo '@@ops ${name}'; { ${body}; } 2>&1; r=$?; echo "@@ops-rc $r"; [ $r -eq 0 ]`
  return cmd(
    'docker',
    'exec',
    s.nginxId,
    'sh',
    '-c',
    `${PROBE}${WAVES}${RELOAD}at() { read -r u _ </proc/uptime; echo "@@ops-at $1 $u"; }; T=$4; ` +
      `{ ${stage('preview', 'H=$5; waves "$6" "$7" "$2" "$3"')}; } && ` +
      `{ ${stage('switch', 'reload "$1" "$8"')}; } && ` +
      `{ ${stage('verify', 'H=$9; waves "${10}" "${11}" "$2" "$3"')}; }; r=$?; at end; exit $r`,
    'sh',
    NGINX_PID_FILE,
    String(s.need),
    String(s.maxWaves),
    String(s.probeTimeoutS),
    s.preview.header,
    s.preview.health,
    s.preview.route,
    String(s.reloadTimeoutS),
    s.live.header,
    s.live.health,
    s.live.route
  )
}
