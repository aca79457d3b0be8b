import * as core from '@actions/core'
import { deployedSpec } from './catalogue'
import { allAppContainers } from './commands/containers'
import { upstreamFiles } from './commands/files'
import { parseInspect } from './containers'
import { swap } from './deploy'
import { HostError } from './errors'
import { DEFAULTS, type AppInputs, type InfraInputs } from './inputs'
import type { Lock } from './lock'
import type { Phases } from './phases'
import { concurrently, section, splitSections } from './shell'
import type { Remote } from './ssh'
import { parseUpstreamFiles } from './upstream'

/** story first (backend calls it), then backend (the frontend calls it), then frontend; other services after. */
export const RESTART_ORDER = ['story', 'backend', 'frontend']

export function restartOrder(services: string[]): string[] {
  const known = RESTART_ORDER.filter(s => services.includes(s))
  return [...known, ...services.filter(s => !RESTART_ORDER.includes(s)).sort()]
}

/**
 * `restart-services: true` in mode infra: after the stack is ensured, every deployed app is swapped for a fresh
 * container of its current image and env, one at a time in RESTART_ORDER, each through the zero-downtime path of a
 * deploy. The first failure stops the sequence (that service is rolled back as a deploy would be).
 */
export async function restartServices(remote: Remote, infra: InfraInputs, nginxId: string, lock: Lock, phases: Phases): Promise<string[]> {
  const s = splitSections(
    (await remote.run(concurrently(section('upstreams', upstreamFiles(infra.opsDir)), section('apps', allAppContainers())))).stdout
  )
  const live = parseUpstreamFiles(s.get('upstreams')?.out ?? '')
  const containers = parseInspect(s.get('apps')?.out ?? '')
  const order = restartOrder([...live.keys()])
  if (!order.length) return ['restart-services: no app is deployed yet']
  core.info(`Re-swapping ${order.join(' → ')} with their current images.`)
  const done: string[] = []
  for (const service of order) {
    const l = live.get(service)
    const c = containers.find(x => x.name === l?.container && x.status === 'running')
    if (!l || !c)
      throw new HostError(
        `${service} is routed to ${l?.container}, which is not running; re-swapped so far: ${done.join(', ') || 'none'}`,
        `deploy ${service} again`
      )
    const release = { app: appInputsOf(service, c.labels), image: l.image, digest: l.digest ?? '', mode: 'restart' as const, inherit: true }
    await swap(remote, { infra, release, nginxId, lock, phases, label: `${service}: ` }).catch((e: Error) => {
      const rest = order.slice(order.indexOf(service) + 1)
      throw new HostError(
        `Re-swap of ${service} failed (re-swapped before it: ${done.join(', ') || 'none'}; not attempted: ${rest.join(', ') || 'none'}): ${e.message}`,
        undefined,
        { cause: e }
      )
    })
    done.push(service)
  }
  core.info(`Re-swapped ${done.join(' → ')}.`)
  return [`re-swapped ${done.join(' → ')}`]
}

/** The app inputs that start the same container again: its labels, else the catalogue's defaults. */
export function appInputsOf(service: string, labels: Record<string, string>): AppInputs {
  const deployed = deployedSpec(service, labels)
  if (!deployed)
    throw new HostError(`${service}'s container carries no route or port (deployed by an older version?)`, `deploy ${service} again`)
  const seconds = (name: string) => Number(DEFAULTS[name])
  return {
    service,
    spec: deployed.spec,
    env: [],
    healthTimeoutS: seconds('health-timeout'),
    drainTimeoutS: seconds('drain-timeout'),
    stopTimeoutS: seconds('stop-timeout'),
    keepImages: seconds('keep-images'),
    memory: deployed.memory
  }
}
