import * as core from '@actions/core'
import { CATALOGUE } from './catalogue'
import { HostError, RolledBack } from './errors'
import { appendHistory, phaseSeconds, rollbackTarget, type HistoryRecord } from './history'
import { pullImage, pruneImages } from './images'
import { runInfra, type InfraResult } from './infra'
import type { AppInputs, AppRun, InfraInputs } from './inputs'
import { withLock, type Lock } from './lock'
import { forgetFiles, reloadAndWait, restoreUnloaded, revertFiles, writeAndReload, writeAndTest } from './nginx'
import type { Phases } from './phases'
import { preflight, probeService, type Before, type ServiceState } from './preflight'
import { healthGate, newContainerName, PREVIEW_PORT, removeFailed, retireOld, startContainer, verify } from './release'
import type { Remote } from './ssh'
import { customServiceFiles, locationsPath, PREVIEW_HEADER, upstreamConf, upstreamName, upstreamPath, varsPath } from './upstream'

export interface DeployResult {
  container: string
  image: string
  previousImage: string
  url: string
}

/** `mode: deploy` and `mode: rollback`, top to bottom: image, lock, stack, then the swap (see swap()). */
export async function runDeploy(remote: Remote, inputs: AppRun, phases: Phases): Promise<DeployResult> {
  const { app, infra } = inputs
  // 1. The image: found (rollback) and pulled outside the lock, since that changes nothing anyone sees.
  const image =
    inputs.mode === 'rollback'
      ? await phases.run('Find previous image', () => rollbackTarget(remote, infra.opsDir, app.service))
      : inputs.image
  await phases.run('Pull image', () => pullImage(remote, image, app.registry))

  // 2. Everything that changes the host happens under the host-wide lock.
  const what = `${inputs.mode} of ${app.service} (${image})`
  return withLock(remote, phases, { opsDir: infra.opsDir, timeoutS: inputs.lockTimeoutS, what }, async lock => {
    // 3. The stack, network and nginx config (a no-op when nothing changed). The service's state is read beside it
    // (one round trip saved) and used when infra changed nothing.
    const [stack, seen] = await Promise.all([
      runInfra(remote, infra, phases, 'Infra: '),
      probeService(remote, app.service, infra.opsDir, 'stack').catch(() => undefined)
    ])
    const release: Release = { app, image, mode: inputs.mode, inherit: inputs.mode === 'rollback' }
    const r = await swap(remote, { infra, release, nginxId: stack.nginxId, lock, phases, seen: stack.changed ? undefined : seen })
    return { ...r, url: serviceUrl(inputs.connection.host, stack, app) }
  })
}

/** What a swap puts in place. */
export interface Release {
  app: AppInputs
  image: string
  mode: HistoryRecord['mode']
  /** env and memory not given are those of the container serving now (rollback, restart). */
  inherit: boolean
}

export interface SwapContext {
  infra: InfraInputs
  release: Release
  nginxId: string
  lock: Lock
  phases: Phases
  /** Prefix of the phase names (the ordered re-swap names the service). */
  label?: string
  /** The service's state, read while infra ran: still what the host has when infra changed nothing. */
  seen?: ServiceState
}

/** Where a failed swap stopped: before nginx was told about the new container, or after its upstream file was switched. */
type Stage = 'before switch' | 'switched'

/**
 * Steps 4-10 of a deploy, under the lock with the stack ensured: preflight, start, gates, switch, verify, retire and record. A
 * failure before the switch removes the new container and leaves the old one serving; a failure at or after the
 * switch puts the previous upstream back first.
 */
export async function swap(remote: Remote, ctx: SwapContext): Promise<Omit<DeployResult, 'url'>> {
  const { infra, release, nginxId, phases, label = '' } = ctx
  const { app, image } = release
  const { opsDir, network } = infra
  const phase = <T>(name: string, fn: () => Promise<T>) => phases.run(`${label}${name}`, fn)
  const name = newContainerName(app.service)

  // 4. What serves now, and leftovers of interrupted runs.
  const before = await phase('Preflight', async () => {
    const state = ctx.seen ?? (await probeService(remote, app.service, opsDir, { container: nginxId }))
    return preflight(remote, state, app.service, app.memory, release.inherit)
  })
  const record = (result: HistoryRecord['result'], error?: string) =>
    appendHistory(remote, opsDir, {
      mode: release.mode,
      service: app.service,
      image,
      previousImage: before.live?.image ?? '',
      container: name,
      result,
      phases: phaseSeconds(phases.records, label),
      error
    })
  const failed = (stage: Stage) => (e: unknown) => abandon(remote, ctx, { before, name, stage, record }, e as Error)

  // 5. Start the new container next to the old one.
  const inheritEnvFrom = release.inherit && !app.env.length ? before.live?.container : undefined
  await phase('Start container', () => startContainer(remote, { name, app, image, network, memory: before.memory, inheritEnvFrom })).catch(
    failed('before switch')
  )
  // 6. Health gate, directly on the new container.
  const ip = await phase('Health gate (direct)', () => healthGate(remote, app, name, network, nginxId)).catch(failed('before switch'))
  // 7. Preview: nginx's preview port routes to the new container through the very same route config, no reload.
  // Meanwhile the upstream file that names the new container is written and passes nginx -t: nginx loads it only at
  // the switch, and a failed preview puts the old file back.
  const upstream = {
    path: upstreamPath(app.service),
    content: upstreamConf(upstreamName(app.service), app.spec.port, { container: name, image })
  }
  await phase('Verify preview through nginx', async () => {
    // A service outside the catalogue brings its route (nginx reloads for it); the catalogue's ship with nginx/.
    if (!CATALOGUE[app.service])
      await writeAndReload(remote, opsDir, nginxId, customServiceFiles(app.service, app.spec.route, before.live !== undefined))
    const [preview, written] = await Promise.allSettled([
      verify(remote, app, nginxId, PREVIEW_PORT, `${PREVIEW_HEADER}: ${name}:${app.spec.port}`),
      writeAndTest(remote, opsDir, nginxId, [upstream])
    ])
    if (preview.status === 'rejected') {
      if (written.status === 'fulfilled') await restoreUnloaded(remote, opsDir, [upstream.path])
      throw preview.reason
    }
    if (written.status === 'rejected') throw written.reason
  }).catch(failed('before switch'))
  // 8. Switch: nginx reloads with the new upstream file and clients go to the new container.
  await phase('Switch nginx', async () => {
    await reloadAndWait(remote, nginxId)
    core.info(`nginx now routes ${app.spec.route} to ${name}:${app.spec.port} (now ${ip}).`)
  }).catch(failed('switched'))
  // 9. Verify through nginx, as clients see it.
  await phase('Verify through nginx', () => verify(remote, app, nginxId, 80)).catch(failed('switched'))

  // 10. The switch is final. The old container stops in the background once nginx is done with it; history, images.
  await phase('Retire old and record', () =>
    Promise.all([
      forgetFiles(remote, opsDir, serviceFiles(app.service)),
      retireOld(remote, opsDir, nginxId, app, before.retire),
      record('success'),
      pruneImages(remote, app.keepImages, image, before.live?.image)
    ])
  )
  return { container: name, image, previousImage: before.live?.image ?? '' }
}

interface Attempt {
  before: Before
  name: string
  stage: Stage
  record: (result: HistoryRecord['result'], error?: string) => Promise<void>
}

/**
 * A swap that failed: nginx back on the old container (once switched), the new container removed, the attempt
 * recorded; throws RolledBack. Cut off from the host (connection gone, or the lock lost to a run that found this
 * one stale) it does not roll back, since that could not run or would undo another run's work: what is left is
 * safe and the next run clears it.
 */
async function abandon(remote: Remote, ctx: SwapContext, a: Attempt, e: Error): Promise<never> {
  const { app } = ctx.release
  const switched = a.stage === 'switched'
  const cut = !remote.connected()
    ? 'the connection to the host was lost'
    : ctx.lock.lost() && `the deploy lock was lost (${ctx.lock.lost()})`
  if (cut) {
    const routed = switched ? a.name : (a.before.live?.container ?? 'its 503 placeholder')
    throw new HostError(
      `${e.message}\nThen ${cut}, so this run cannot roll back. nginx routes ${app.spec.route} to ${routed}; the next deploy of ${app.service} removes what this one left.`,
      'run the deploy again',
      { cause: e }
    )
  }
  const notes = await ctx.phases.run(`${ctx.label ?? ''}Roll back`, async () => {
    const live = a.before.live
    const notes: string[] = []
    if (switched) {
      await revertFiles(remote, ctx.infra.opsDir, ctx.nginxId, [upstreamPath(app.service)])
      await forgetFiles(remote, ctx.infra.opsDir, serviceFiles(app.service))
      notes.push(`nginx routes ${app.spec.route} to ${live ? `${live.container} (${live.image})` : 'the 503 placeholder'} again`)
    }
    await removeFailed(remote, a.name)
    notes.push(`removed the new container ${a.name}`, live ? `${live.container} kept serving` : `${app.service} stays undeployed`)
    for (const n of notes) core.info(n)
    return notes
  })
  await a.record('rolled-back', e.message).catch(() => undefined)
  throw new RolledBack(e, notes)
}

/** Every nginx file a deploy of the service may write (their `.ops-prev` copies go once the deploy is over). */
const serviceFiles = (service: string): string[] => [upstreamPath(service), locationsPath(service), varsPath(service)]

function serviceUrl(host: string, infra: InfraResult, app: AppInputs): string {
  const i = infra.settings
  if (infra.tls) return `https://${i.domain}${i.httpsPort === 443 ? '' : `:${i.httpsPort}`}${app.spec.route}`
  return `http://${i.domain || host}${i.httpPort === 80 ? '' : `:${i.httpPort}`}${app.spec.route}`
}
