import * as core from '@actions/core'
import { createTwoFilesPatch } from 'diff'
import { parse as parseYaml } from 'yaml'
import { STACK_SERVICES } from './catalogue'
import { readFileIfExists } from './commands/files'
import { imageId } from './commands/images'
import { readHost, type HostState } from './hoststate'
import { isDigestReference } from './images'
import { planInfra, type InfraPlan } from './infraplan'
import type { Inputs } from './inputs'
import { hostPath, OPS } from './paths'
import type { Phases } from './phases'
import { concurrently, section, splitSections } from './shell'
import type { Remote } from './ssh'
import { loadBundle } from './stackfiles'
import { inMaintenance, listMaintenance, parseMaintenance } from './maintenance'
import { liveOf, upstreamPath } from './upstream'

export interface PlanReport {
  /** What the run would do, one line each (the log, the summary, the `changes` output's count). */
  changes: string[]
  /** Unified diffs of the files it would write or remove. */
  diff: string
}

/**
 * `mode: plan` (or `dry-run: true` with any mode): what the run would do, computed from the same read-only preflight
 * and local plan as the real run. Nothing on the host is written, started, stopped or reloaded, and no lock is taken.
 */
export async function runPlan(remote: Remote, inputs: Inputs, phases: Phases): Promise<PlanReport> {
  const bundle = loadBundle()
  const host = await phases.run('Preflight', () => readHost(remote, inputs.infra, bundle))
  const plan = await phases.run('Plan', () => planInfra(inputs.infra, host, bundle))
  for (const n of plan.notes) core.info(n)
  for (const w of plan.warnings) core.warning(w)
  const { opsDir } = inputs.infra
  const d = inputs.mode === 'deploy' || inputs.mode === 'rollback' ? inputs.app : undefined
  const image = inputs.mode === 'deploy' ? inputs.image : undefined

  // Current content of every file the run would touch, the serving upstream and the image: one read-only round trip.
  const touched = [...plan.write, ...plan.remove]
  const probes = [
    ...touched.map((p, i) => section(`f${i}`, readFileIfExists(hostPath(opsDir, p)))),
    ...(d
      ? [section('upstream', readFileIfExists(hostPath(opsDir, upstreamPath(d.service)))), section('maintenance', listMaintenance(opsDir))]
      : []),
    ...(image ? [section('image', imageId(image))] : [])
  ]
  const s = probes.length
    ? splitSections((await remote.run(concurrently(...probes))).stdout)
    : new Map<string, { rc: number; out: string }>()
  const current = new Map(touched.map((p, i) => [p, s.get(`f${i}`)?.out ?? '']))

  const changes: string[] = []
  const diffs: string[] = []
  for (const p of plan.write) {
    changes.push(`${host.hashes.has(p) ? 'update' : 'create'} ${p}`)
    diffs.push(patch(p, host.hashes.has(p) ? withNewline(current.get(p) ?? '') : '', plan.files.get(p) ?? ''))
  }
  for (const p of plan.remove) {
    changes.push(`remove ${p}`)
    diffs.push(patch(p, withNewline(current.get(p) ?? ''), ''))
  }
  if (plan.envChangedKeys.length) changes.push(`.env: set ${plan.envChangedKeys.join(', ')} (values not shown)`)
  if (!host.networkExists) changes.push(`create docker network ${inputs.infra.network}`)
  const actions = composeActions(host, plan, current.get(OPS.compose))
  for (const [service, why] of actions) changes.push(stackAction(host, service, why))
  // Every compose action creates or recreates: a new nginx starts with the new config, no reload needed.
  if (plan.nginxChanged && !actions.some(([service]) => service === 'nginx')) changes.push('reload nginx (nginx -t first)')
  if (plan.frontChanged && !actions.some(([service]) => service === 'front')) changes.push('reload the front (nginx -t first)')

  if (d) {
    const live = liveOf(s.get('upstream')?.out ?? '')
    if (image)
      changes.push(
        isDigestReference(image) && s.get('image')?.rc === 0
          ? `use ${image} (pinned by digest, already on the host)`
          : `pull ${image} (ask the registry what it names now${s.get('image')?.rc === 0 ? '; a copy is on the host' : ''})`
      )
    else changes.push(`roll ${d.service} back to the previous image in the history`)
    const release = inputs.mode === 'deploy' ? inputs.releaseCommand : undefined
    const maintenance = inMaintenance(parseMaintenance(s.get('maintenance')?.out ?? ''), d.service)
    const canary = inputs.mode === 'deploy' && live && !maintenance ? inputs.canary : undefined
    if (release)
      changes.push(
        `run the release command once in a one-off container of ${image} (network ${inputs.infra.network}, ${d.service}'s env, no route; release-timeout ${release.timeoutS} s): ${release.command}`
      )
    changes.push(
      `start a new ${d.service}-<8 hex> container${image ? ` from ${image}` : ''}, gate it on ${d.spec.healthPath}, verify it through nginx's preview port`
    )
    if (canary)
      changes.push(
        `send ${canary.percent} % of ${d.spec.route}'s clients (sticky by the ops_client cookie) to the new container for ${canary.seconds} s and compare its 5xx rate and p99 with ${live?.container}'s: promote it, or roll back at once`
      )
    changes.push(
      `switch ${d.spec.route} from ${live ? `${live.container} (${live.image})` : 'the 503 placeholder'} to the new container, verify, drain and stop the old one`
    )
    if (maintenance)
      changes.push(
        `keep ${d.service} in maintenance (clients keep the maintenance page; the new release is verified on nginx's preview port${inputs.mode === 'deploy' && inputs.canary ? '; no canary' : ''})`
      )
  }
  if (inputs.mode === 'maintenance' || inputs.mode === 'live') {
    const what = inputs.service ? `${inputs.service}'s route` : 'every route but /healthz'
    changes.push(
      inputs.mode === 'maintenance'
        ? `put ${what} in maintenance: nginx answers 503 with Retry-After and ${inputs.page ? 'the given maintenance-page' : "the action's maintenance page"} (reload, nginx -t first)`
        : `end the maintenance of ${inputs.service ? inputs.service : 'every route'} (reload, nginx -t first)`
    )
  }

  core.info(changes.length ? `The run would:\n${changes.map(c => `  - ${c}`).join('\n')}` : 'The run would change nothing.')
  const diff = diffs.join('')
  if (diff) {
    core.startGroup(`Diff of ${plan.write.length + plan.remove.length} file(s)`)
    core.info(diff)
    core.endGroup()
  }
  return { changes, diff }
}

function withNewline(text: string): string {
  return text === '' || text.endsWith('\n') ? text : `${text}\n`
}

function patch(path: string, before: string, after: string): string {
  return createTwoFilesPatch(`a/${path}`, `b/${path}`, before, after, '', '', { context: 3 })
}

/**
 * What `compose up` would do to db, redis and nginx: create a missing one; recreate one whose definition in the
 * compose file changed or that reads a variable of .env that changes. (Compose also recreates on an image digest
 * change; a plan cannot see one that the files do not show.)
 */
export function composeActions(host: HostState, plan: InfraPlan, currentCompose: string | undefined): Array<[string, string]> {
  const wanted = services(plan.files.get(OPS.compose) ?? '')
  const now = services(currentCompose ?? '')
  const composeChanged = plan.write.includes(OPS.compose)
  const out: Array<[string, string]> = []
  for (const service of STACK_SERVICES) {
    const running = host.containers.some(c => c.service === service)
    const text = JSON.stringify(wanted[service] ?? null)
    if (!running) out.push([service, 'create'])
    else if (composeChanged && text !== JSON.stringify(now[service] ?? null)) out.push([service, 'recreate (its definition changed)'])
    else if (plan.envChangedKeys.some(k => new RegExp(`\\$\\{${k}(?::?[-?][^}]*)?\\}`).test(text)))
      out.push([service, `recreate (.env ${plan.envChangedKeys.filter(k => text.includes(`\${${k}`)).join(', ')} changed)`])
  }
  return out
}

/**
 * One compose action as the run carries it out: with the front and one nginx running, nginx is handed over (a new
 * container beside the old one) rather than recreated; the front holds the ports, so recreating it is a short gap.
 */
export function stackAction(host: HostState, service: string, why: string): string {
  const has = (s: string) => host.containers.some(c => c.service === s)
  const running = (s: string) => host.containers.filter(c => c.service === s && c.status === 'running')
  const behindFront =
    running('front').length === 1 && host.containers.filter(c => c.service === 'nginx').length === 1 && running('nginx').length === 1
  if (service === 'nginx' && why !== 'create' && behindFront)
    return `hand nginx over to a new container (${why.replace(/^recreate \((.*)\)$/, '$1')}): started beside the old one, verified (/healthz, every deployed route), then the front sends it new connections and the old one finishes its requests; no gap`
  if (service === 'nginx' && why !== 'create' && !has('front'))
    return `compose would ${why} nginx without published ports and create the front after it: a one-time gap of a few seconds while nginx moves behind the front`
  if (service === 'front' && why !== 'create')
    return `compose would ${why} front: a gap of about a second (the front holds the published ports)`
  return `compose would ${why} ${service}`
}

function services(composeText: string): Record<string, unknown> {
  try {
    return (parseYaml(composeText) as { services?: Record<string, unknown> } | null)?.services ?? {}
  } catch {
    return {}
  }
}
