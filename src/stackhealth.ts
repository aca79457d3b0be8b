import * as core from '@actions/core'
import { STACK_SERVICES } from './catalogue'
import { inspectContainers } from './commands/containers'
import { parseInspect, showLogs, type ContainerInfo } from './containers'
import { HostError } from './errors'
import { sleep } from './shell'
import type { Remote } from './ssh'

export function isStackService(s: string): boolean {
  return (STACK_SERVICES as readonly string[]).includes(s)
}

/**
 * Polls every second until the stack's services (db, redis, nginx, front, or the ones given) report healthy; a crash
 * or the timeout fails with their logs.
 */
export async function waitHealthy(
  remote: Remote,
  containers: ContainerInfo[],
  timeoutS: number,
  services: readonly string[] = STACK_SERVICES
): Promise<void> {
  const ids = containers.filter(c => services.includes(c.service)).map(c => c.id)
  const deadline = Date.now() + timeoutS * 1000
  const baseline = new Map<string, number>()
  for (;;) {
    const rows = parseInspect((await remote.run(inspectContainers(ids))).stdout)
    for (const c of rows) if (!baseline.has(c.id)) baseline.set(c.id, c.restarts)
    const broken = rows.find(c => c.status === 'exited' || c.status === 'dead' || c.restarts > (baseline.get(c.id) ?? 0))
    if (broken)
      return failWithLogs(remote, broken.id, broken.service, `${broken.service} crashed (${broken.status}, restarted ${broken.restarts}×)`)
    if (rows.length === services.length && rows.every(c => c.health === 'healthy')) {
      core.info(services.map(s => `${s}: healthy`).join(', '))
      return
    }
    if (Date.now() > deadline) {
      const state = rows.map(c => `${c.service} ${c.status}/${c.health}`).join(', ')
      const bad = rows.find(c => c.health !== 'healthy')
      if (!bad) throw new HostError(`Timed out after ${timeoutS} s waiting for the stack (${state}).`)
      return failWithLogs(remote, bad.id, bad.service, `${bad.service} not healthy after ${timeoutS} s (${state})`)
    }
    await sleep(1000)
  }
}

async function failWithLogs(remote: Remote, id: string, service: string, what: string): Promise<never> {
  await showLogs(remote, id, service, 50)
  throw new HostError(what, `see the ${service} log lines above`)
}

/**
 * How long a recreated stack service could not be reached, from projectEvents() output: from the first stop signal
 * (kill) or exit (die) of a container other than `newId` to the first passing health check of `newId` (which checks
 * every 2 s, so this is an upper bound by up to that much). Undefined when the events do not show both.
 */
export function unreachableS(events: string, service: string, newId: string): number | undefined {
  let down: bigint | undefined
  for (const line of events.split('\n')) {
    const [ns, svc, ...rest] = line.trim().split(' ')
    if (svc !== service || !/^\d+$/.test(ns ?? '')) continue
    const id = rest.pop() ?? ''
    const action = rest.join(' ')
    if (down === undefined && id !== newId && (action.startsWith('kill') || action === 'die')) down = BigInt(ns)
    else if (down !== undefined && id === newId && action === 'health_status: healthy')
      return Number((BigInt(ns) - down) / 1_000_000n) / 1000
  }
  return undefined
}
