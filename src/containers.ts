import * as core from '@actions/core'
import { containerLogs, healthLog } from './commands/containers'
import { COMPOSE_SERVICE_LABEL, SERVICE_LABEL } from './labels'
import { concurrently, section, splitSections } from './shell'
import type { Remote } from './ssh'

/** What `docker inspect` (INSPECT_FORMAT) says about a container: the one container record of the action. */
export interface ContainerInfo {
  name: string
  id: string
  /** The app service (ops-action's label) or the stack service (compose's label); '' for neither. */
  service: string
  status: string
  restarts: number
  /** healthy / unhealthy / starting, or none when the container has no HEALTHCHECK. */
  health: string
  ips: Record<string, string>
  labels: Record<string, string>
  /** The image as the container was created from (name:tag as given to docker). */
  image: string
  /** ISO time the container last started. */
  startedAt: string
}

interface RawState {
  Status?: string
  StartedAt?: string
  Health?: { Status?: string } | null
}

/** Parses the output of inspectContainers / serviceContainers; lines that are not inspect output are skipped. */
export function parseInspect(out: string): ContainerInfo[] {
  return out
    .split('\n')
    .filter(l => l.startsWith('"'))
    .flatMap(line => {
      try {
        const [name, id, state, restarts, networks, rawLabels, image] = line.split('\t').map(f => JSON.parse(f) as unknown)
        const st = (state ?? {}) as RawState
        const nets = (networks ?? {}) as Record<string, { IPAddress?: string }>
        const labels = (rawLabels ?? {}) as Record<string, string>
        return [
          {
            name: String(name).replace(/^\//, ''),
            id: String(id),
            service: labels[SERVICE_LABEL] ?? labels[COMPOSE_SERVICE_LABEL] ?? '',
            status: st.Status ?? 'unknown',
            restarts: Number(restarts) || 0,
            health: st.Health?.Status ?? 'none',
            ips: Object.fromEntries(Object.entries(nets).map(([n, v]) => [n, v?.IPAddress ?? ''])),
            labels,
            image: typeof image === 'string' ? image : '',
            startedAt: st.StartedAt ?? ''
          }
        ]
      } catch {
        return []
      }
    })
}

/** Prints a container's last log lines and its last health-check outputs in one log group (one round trip). */
export async function showLogs(remote: Remote, id: string, title: string, lines: number, extra?: string): Promise<void> {
  const s = splitSections(
    (await remote.run(concurrently(section('logs', containerLogs(id, lines)), section('health', healthLog(id))))).stdout
  )
  core.startGroup(`${title}: last ${lines} log lines`)
  core.info(s.get('logs')?.out.trim() || '(no output)')
  const health = s.get('health')?.out.trim()
  if (health) core.info(`health checks:\n${health}`)
  if (extra) core.info(extra)
  core.endGroup()
}
