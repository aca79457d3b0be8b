import { detached, orOnExit, script, seq, type Sh } from '../shell'
import { removeContainers, stopContainers } from './containers'
import { waitConnectionsDrained, waitNginxDrained } from './nginx'

// The old release's retirement, off the deploy's critical path. Pure: returns a command; nothing here runs anything.

export interface Retirement {
  nginxId: string
  /** The app port nginx connects to. */
  port: number
  containers: string[]
  drainTimeoutS: number
  /** How long reloaded-away nginx workers may still send requests to the old containers (keepalive_min_timeout + 1). */
  workersS: number
  stopTimeoutS: number
  /** Host path the job's lines are appended to (rotated to `.1` past 256 KiB). */
  log: string
}

const stamp = (text: string): Sh => script('echo "$(date -u +%Y-%m-%dT%H:%M:%SZ) $1"', text)
const rotate = (log: string): Sh => script('[ -f "$1" ] && [ "$(wc -c <"$1")" -gt 262144 ] && mv -f "$1" "$1.1"; exit 0', log)

/**
 * Starts a job on the host that outlives this run: it waits until nginx has no request in flight to the old
 * containers and no reloaded-away worker can send them one any more (waitConnectionsDrained; where /proc is hidden,
 * until the old workers are gone), then stops (SIGTERM, stop-timeout) and removes them. A run that starts before it
 * is done finds them still running and retires them the same way; the stop and the removal tolerate either having
 * done it first.
 */
export const retireContainers = (r: Retirement): Sh => {
  const names = r.containers.join(' ')
  return seq(
    rotate(r.log),
    detached(
      seq(
        stamp(`retiring ${names}: waiting until nginx is done with them`),
        // Only when the connections cannot be read (5: nginx's processes, 6: /proc hidden) does it wait for the old
        // workers instead; at the drain timeout (4) it stops the containers without waiting a second time.
        orOnExit(
          waitConnectionsDrained(r.nginxId, r.port, r.containers, r.drainTimeoutS, r.workersS),
          [5, 6],
          waitNginxDrained(r.nginxId, r.drainTimeoutS)
        ),
        stamp(`stopping ${names} (stop-timeout ${r.stopTimeoutS} s)`),
        stopContainers(r.containers, r.stopTimeoutS),
        removeContainers(r.containers),
        stamp(`removed ${names}`)
      ),
      r.log
    )
  )
}
