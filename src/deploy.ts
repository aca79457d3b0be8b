import * as core from '@actions/core'
import { CATALOGUE } from './catalogue'
import { HostError, RolledBack } from './errors'
import { appendHistory, phaseSeconds, rollbackTarget, type HistoryRecord } from './history'
import { imageRepository, pullImage, pruneImages } from './images'
import { runInfra, type InfraResult } from './infra'
import type { AppInputs, AppRun, InfraInputs } from './inputs'
import { withLock, type Lock } from './lock'
import { forgetFiles, restoreUnloaded, revertFiles, writeAndReload, writeAndTest } from './nginx'
import type { Phases } from './phases'
import { preflight, probeService, type Before, type ServiceState } from './preflight'
import { healthGate, newContainerName, removeFailed, retireOld, startContainer, throughNginx, ThroughNginxFailed } from './release'
import type { Remote } from './ssh'
import { customServiceFiles, locationsPath, upstreamConf, upstreamName, upstreamPath, varsPath } from './upstream'

export interface DeployResult {
  container: string
  image: string
  digest: string
  previousImage: string
  url: string
}

/** `mode: deploy` and `mode: rollback`, top to bottom: image, lock, stack, then the swap (see swap()). */
export async function runDeploy(remote: Remote, inputs: AppRun, phases: Phases): Promise<DeployResult> {
  const { app, infra } = inputs
  // 1. The image: found (rollback: the digest that served before) and pulled outside the lock, since that changes
  // nothing anyone sees; a tag is resolved to the digest it names now.
  const wanted =
    inputs.mode === 'rollback'
      ? await phases.run('Find previous image', () => rollbackTarget(remote, infra.opsDir, app.service))
      : { image: inputs.image, digest: '' }
  const pulled = await phases.run('Pull image', () => pullImage(remote, wanted.digest || wanted.image, app.registry))
  const image = wanted.image

  // 2. Everything that changes the host happens under the host-wide lock.
  const what = `${inputs.mode} of ${app.service} (${image})`
  return withLock(remote, phases, { opsDir: infra.opsDir, timeoutS: inputs.lockTimeoutS, what }, async lock => {
    // 3. The stack, network and nginx config (a no-op when nothing changed). The service's state is read beside it
    // (one round trip saved) and used when infra changed nothing.
    const [stack, seen] = await Promise.all([
      runInfra(remote, infra, phases, 'Infra: '),
      probeService(remote, app.service, infra.opsDir, 'stack').catch(() => undefined)
    ])
    const release: Release = { app, image, digest: pulled.digest, mode: inputs.mode, inherit: inputs.mode === 'rollback' }
    const r = await swap(remote, { infra, release, nginxId: stack.nginxId, lock, phases, seen: stack.changed ? undefined : seen })
    return { ...r, url: serviceUrl(inputs.connection.host, stack, app) }
  })
}

/** What a swap puts in place. */
export interface Release {
  app: AppInputs
  /** As given (or, rolling back, as recorded). */
  image: string
  /** What the container runs: `repo@sha256:…` ('' for an image without one: it runs by `image`). */
  digest: string
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
  const { app, image, digest } = release
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
      digest,
      previousImage: before.live?.image ?? '',
      previousDigest: before.live?.digest ?? '',
      container: name,
      result,
      phases: phaseSeconds(phases.records, label),
      error
    })
  const failed =
    (stage: Stage, unloaded: string[] = []) =>
    (e: unknown) =>
      abandon(remote, ctx, { before, name, stage, unloaded, record }, e as Error)

  // 5. Start the new container next to the old one.
  const inheritEnvFrom = release.inherit && !app.env.length ? before.live?.container : undefined
  await phase('Start container', () =>
    startContainer(remote, { name, app, image, digest, network, memory: before.memory, inheritEnvFrom })
  ).catch(failed('before switch'))
  // 6. Health gate, directly on the new container. Meanwhile the upstream file that names it is written and passes
  // nginx -t (nginx loads it only at the switch; a failure before puts the old one back). A service outside the
  // catalogue brings its route, applied first (nginx reloads for it; the catalogue's ship with nginx/).
  const upstream = {
    path: upstreamPath(app.service),
    content: upstreamConf(upstreamName(app.service), app.spec.port, { container: name, image, digest })
  }
  const routeFiles = CATALOGUE[app.service] ? [] : customServiceFiles(app.service, app.spec.route, before.live !== undefined)
  const written: Promise<Error | undefined> = (async () => {
    if (routeFiles.length) await writeAndReload(remote, opsDir, nginxId, routeFiles)
    await writeAndTest(remote, opsDir, nginxId, [upstream])
  })().then(
    () => undefined,
    (e: Error) => e
  )
  // A failure before the switch puts the old upstream file back if the new one was written (abandon() does).
  const beforeSwitch = async (e: unknown) => failed('before switch', (await written) ? [] : [upstream.path])(e)
  const ip = await phase('Health gate (direct)', () => healthGate(remote, app, name, network, nginxId)).catch(beforeSwitch)
  // 7-9. Preview, switch, verify, in one round trip: nginx's preview port routes to the new container through the very
  // same route config (no reload); then the reload that switches clients; then the route as clients see it. Where it
  // stopped is known from its output; without it (the connection lost mid-way) it may have switched.
  await phase('Preview, switch and verify through nginx', async () => {
    const writeError = await written
    if (writeError) throw writeError
    await throughNginx(remote, app, nginxId, name)
    core.info(`nginx routes ${app.spec.route} to ${name}:${app.spec.port} (now ${ip}).`)
  }).catch(async (e: unknown) => {
    // The write or its nginx -t failed: writeAndTest put its files back.
    if (e === (await written)) return failed('before switch')(e)
    if (e instanceof ThroughNginxFailed && e.stage !== 'preview') return failed('switched')(e)
    return beforeSwitch(e)
  })

  // 10. The switch is final. The old container stops in the background once nginx is done with it; history, images.
  await phase('Retire old and record', () =>
    Promise.all([
      forgetFiles(remote, opsDir, serviceFiles(app.service)),
      retireOld(remote, opsDir, nginxId, app, before.retire),
      record('success'),
      pruneImages(remote, app.keepImages, imageRepository(image), [image, digest, before.live?.image ?? '', before.live?.digest ?? ''])
    ])
  )
  return { container: name, image, digest, previousImage: before.live?.image ?? '' }
}

interface Attempt {
  before: Before
  name: string
  stage: Stage
  /** nginx files written for the new container but not loaded: put back (no reload) before the switch. */
  unloaded: string[]
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
    if (!switched && a.unloaded.length) await restoreUnloaded(remote, ctx.infra.opsDir, a.unloaded)
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
