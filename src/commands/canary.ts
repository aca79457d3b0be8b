import { cmd, type Sh } from '../shell'

// The canary's log inside the nginx container: cleared before, read in pieces during, removed after. Pure.

/** Where nginx logs what each side of a service's canary answered (upstreams/canary_<svc>.conf's access_log). */
export const canaryLogPath = (service: string): string => `/tmp/ops-canary-${service}.log`

/** Empties the log (nginx opens it at the reload that starts the canary; a leftover of an earlier run goes). */
export const clearCanaryLog = (nginxId: string, path: string): Sh => cmd('docker', 'exec', nginxId, 'sh', '-c', ': > "$1"', 'sh', path)

/** The log from byte `offset` on (nothing when it does not exist yet). */
export const readCanaryLog = (nginxId: string, path: string, offset: number): Sh =>
  cmd('docker', 'exec', nginxId, 'sh', '-c', 'tail -c +"$(( $2 + 1 ))" "$1" 2>/dev/null; exit 0', 'sh', path, String(offset))

export const removeCanaryLog = (nginxId: string, path: string): Sh => cmd('docker', 'exec', nginxId, 'rm', '-f', path)
