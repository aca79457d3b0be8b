import * as core from '@actions/core'
import { CATALOGUE } from './catalogue'
import { canaryFiles, canaryPaths, canaryUpstream, percentile, watchCanary, type CanaryInputs, type CanaryResult } from './canary'
import { canaryLogPath, clearCanaryLog, removeCanaryLog } from './commands/canary'
import { removeContainers } from './commands/containers'
import { readFileIfExists, stashFiles } from './commands/files'
import { showLogs } from './containers'
import { HostError, RolledBack } from './errors'
import { appendHistory, phaseSeconds, rollbackTarget, type HistoryRecord } from './history'
import { imageRepository, listImages, pullImage, pruneImages } from './images'
import { describeChange, runInfra, type InfraResult } from './infra'
import type { AppInputs, AppRun, InfraInputs } from './inputs'
import { withLock, type Lock } from './lock'
import { forgetFiles, reloadAndWait, restoreUnloaded, revertFiles, writeAndReload, writeAndTest } from './nginx'
import { hostPath, hostPaths } from './paths'
import type { Aside, Log, Phases } from './phases'
import { preflight, probeService, type Before, type ServiceState } from './preflight'
import {
  healthGate,
  newContainerName,
  removeFailed,
  retireOld,
  runReleaseCommand,
  startContainer,
  throughNginx,
  ReleaseFailed,
  ThroughNginxFailed,
  type ReleaseCommand,
  type ReleaseRun
} from './release'
import type { Remote } from './ssh'
import { customServiceFiles, liveOf, locationsPath, upstreamConf, upstreamName, upstreamPath, varsPath } from './upstream'

export interface DeployResult {
  container: string
  image: string
  digest: string
  previousImage: string
  url: string
  /** The release command, when one ran. */
  release?: ReleaseRun
  /** The canary's figures, when one ran (and was promoted). */
  canary?: CanaryResult
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
  // It runs beside the lock (failing, it ends a wait for it) and the stack's preflight, which change nothing either; the
  // host changes only once it is pulled.
  const pulling = phases.aside('Pull image', log => pullImage(remote, wanted.digest || wanted.image, app.registry, log))
  const image = wanted.image

  // 2. Everything that changes the host happens under the host-wide lock.
  const what = `${inputs.mode} of ${app.service} (${image})`
  return withLock(remote, phases, { opsDir: infra.opsDir, timeoutS: inputs.lockTimeoutS, what, beside: pulling }, async lock => {
    // 3. The stack, network and nginx config (a no-op when nothing changed). The service's state is read beside it
    // (one round trip saved) and used when infra changed nothing. Without a release command to run first, the new
    // container's preflight and start (4, 6) happen beside it too (see startBeside).
    const seen = probeService(remote, app.service, infra.opsDir, 'stack').catch(() => undefined)
    const release = { app, image, mode: inputs.mode, inherit: inputs.mode === 'rollback' }
    const beside =
      inputs.mode === 'deploy' && inputs.releaseCommand
        ? undefined
        : phases.aside('Preflight and start container', async log => {
            const [state, pulled] = await Promise.all([seen, pulling.settled()])
            if (!state) throw new HostError(`the state of ${app.service} could not be read`)
            return startBeside(remote, { ...release, digest: pulled.digest }, infra.network, state, log)
          })
    const stack = await runInfra(remote, infra, phases, 'Infra: ', () => pulling.result()).catch(async (e: unknown) => {
      if (beside) await discard(remote, beside)
      throw e
    })
    const pulled = await pulling.result()
    const started = beside && (await keepBeside(remote, beside, stack))
    const r = await swap(remote, {
      infra,
      release: { ...release, digest: pulled.digest },
      nginxId: stack.nginxId,
      lock,
      phases,
      seen: stack.changed ? undefined : await seen,
      started,
      ...(inputs.mode === 'deploy' ? { releaseCommand: inputs.releaseCommand, canary: inputs.canary } : {})
    })
    return { ...r, url: serviceUrl(inputs.connection.host, stack, app) }
  })
}

/** A new container, started: its name and the preflight it started from. */
export interface Started {
  name: string
  before: Before
}

/**
 * Steps 4 and 6 of a swap beside infra's check, which changes nothing the new container needs unless it (re)creates
 * db or redis (keepBeside): the preflight on the service's state, then the start. A start that fails leaves nothing.
 */
async function startBeside(remote: Remote, release: Release, network: string, state: ServiceState, log: Log): Promise<Started> {
  const name = newContainerName(release.app.service)
  const before = await preflight(remote, state, release.app.service, release.app.memory, release.inherit, log)
  await startNext(remote, release, network, name, before, log).catch(async (e: unknown) => {
    await remote.run(removeContainers([name]))
    throw e
  })
  return { name, before }
}

/** Step 6: the new container, next to the old one (rolling back without env: with the env of the one serving). */
function startNext(remote: Remote, release: Release, network: string, name: string, before: Before, log: Log = core): Promise<void> {
  const { app, image, digest } = release
  const inheritEnvFrom = release.inherit && !app.env.length ? before.live?.container : undefined
  return startContainer(remote, { name, app, image, digest, network, memory: before.memory, inheritEnvFrom }, log)
}

/** What an app runs against of the stack: a container started before compose (re)created one of these goes. */
const APP_NEEDS = ['db', 'redis']

/**
 * The container started beside infra, kept when infra changed nothing it runs against: a db or redis that compose
 * created or recreated meanwhile may have failed its boot, so then it goes and the swap starts a new one (as it does
 * when that start failed: e.g. the network was not there yet, or nginx -t failed before infra's fix).
 */
async function keepBeside(remote: Remote, beside: Aside<Started>, stack: InfraResult): Promise<Started | undefined> {
  const started = await beside.result().catch((e: Error) => void core.info(`Not started beside infra (${e.message}): now, in order.`))
  const restack = stack.changes.find(c => (c.kind === 'created' || c.kind === 'recreated') && APP_NEEDS.includes(c.service))
  if (!started || !restack) return started
  core.info(`${started.name} started before infra ${describeChange(restack)}: it goes, and a new container starts.`)
  await remote.must(removeContainers([started.name]), `removing ${started.name}`)
  return undefined
}

/** After a failed infra run: the container started beside it goes (its log shown). */
async function discard(remote: Remote, beside: Aside<Started>): Promise<void> {
  const started = await beside.result().catch(() => undefined)
  if (started) await remote.run(removeContainers([started.name]))
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
  /** The new container, when it was started (after its preflight) beside infra. */
  started?: Started
  /** Run once before the new container starts (mode deploy). */
  releaseCommand?: ReleaseCommand
  /** Send a share of clients to the new release first and promote it only if it answers as well as the old one. */
  canary?: CanaryInputs
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
  // 4. What serves now, and leftovers of interrupted runs (done already for a container started beside infra).
  const name = ctx.started?.name ?? newContainerName(app.service)
  const before =
    ctx.started?.before ??
    (await phase('Preflight', async () => {
      const state = ctx.seen ?? (await probeService(remote, app.service, opsDir, { container: nginxId }))
      return preflight(remote, state, app.service, app.memory, release.inherit)
    }))
  let releaseRun: ReleaseRun | undefined
  let canaryRun: CanaryResult | undefined
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
      ...(releaseRun && { release: releaseRun }),
      ...(canaryRun && { canary: canaryRecord(canaryRun, ctx.canary?.percent ?? 0) }),
      error
    })
  const failed =
    (stage: Stage, unloaded: string[] = []) =>
    (e: unknown) =>
      abandon(remote, ctx, { before, name, stage, unloaded, record }, e as Error)

  // 5. The release command (migrations), once, before anything of the new release serves: a failure changes nothing.
  if (ctx.releaseCommand) {
    const releaseCommand = ctx.releaseCommand
    releaseRun = await phase('Release command', () =>
      runReleaseCommand(remote, { app, image, digest, network, memory: before.memory, release: releaseCommand })
    ).catch(async (e: Error) => {
      if (e instanceof ReleaseFailed) releaseRun = e.run
      await record('failed', e.message).catch(() => undefined)
      throw e
    })
  }
  const canary = canaryFor(ctx.canary, before, app.service)

  // 6. Start the new container next to the old one (unless it was started beside infra).
  if (!ctx.started) await phase('Start container', () => startNext(remote, release, network, name, before)).catch(failed('before switch'))
  // 7. Health gate, directly on the new container. Meanwhile the upstream file that names it is written and passes
  // nginx -t (nginx loads it only at the switch; a failure before puts the old one back), and a canary's leftovers of
  // an interrupted run go; with a canary, its files are written instead (the upstream file waits for the promotion).
  // A service outside the catalogue brings its route, applied first (nginx reloads for it; the catalogue's ship with nginx/).
  const next = { container: name, image, digest }
  const upstream = { path: upstreamPath(app.service), content: upstreamConf(upstreamName(app.service), app.spec.port, next) }
  const routeFiles = CATALOGUE[app.service] ? [] : customServiceFiles(app.service, app.spec.route, before.live !== undefined)
  const staged = canary ? canaryPaths(app.service) : [upstream.path, ...canaryPaths(app.service)]
  const written: Promise<Error | undefined> = (async () => {
    if (routeFiles.length) await writeAndReload(remote, opsDir, nginxId, routeFiles)
    if (canary) {
      await remote.must(clearCanaryLog(nginxId, canaryLogPath(app.service)), 'clearing the canary log')
      await writeAndTest(remote, opsDir, nginxId, canaryFiles(app.service, app.spec.port, next, canary.percent))
    } else await writeAndTest(remote, opsDir, nginxId, [upstream], canaryPaths(app.service))
  })().then(
    () => undefined,
    (e: Error) => e
  )
  // A failure before the switch puts the old files back if the new ones were written (abandon() does).
  const beforeSwitch = async (e: unknown) => failed('before switch', (await written) ? [] : staged)(e)
  const ip = await phase('Health gate (direct)', () => healthGate(remote, app, name, network, nginxId)).catch(beforeSwitch)
  // 8-10. Preview, switch, verify, in one round trip: nginx's preview port routes to the new container through the very
  // same route config (no reload); then the reload that switches clients (with a canary: a share of them); then the
  // route as clients see it. Where it stopped is known from its output; without it (the connection lost mid-way) it
  // may have switched. In maintenance, clients get the maintenance page: the route is verified on the preview port.
  let images: Promise<string> | undefined
  const verifyVia = canary ? canaryUpstream(app.service) : before.maintenance ? upstreamName(app.service) : undefined
  await phase(
    canary ? `Preview, start the canary (${canary.percent} %) and verify` : 'Preview, switch and verify through nginx',
    async () => {
      const writeError = await written
      if (writeError) throw writeError
      // Without a canary, the repository's images are read beside it (nothing adds one now): step 12 then only removes
      // what goes.
      if (!canary) images = listImages(remote, imageRepository(image))
      await throughNginx(remote, app, nginxId, name, verifyVia)
      core.info(
        `nginx routes ${canary ? `${canary.percent} % of clients of ` : ''}${app.spec.route} to ${name}:${app.spec.port} (now ${ip}).`
      )
    }
  ).catch(async (e: unknown) => {
    // The write or its nginx -t failed: writeAndTest put its files back.
    if (e === (await written)) return failed('before switch')(e)
    if (e instanceof ThroughNginxFailed && e.stage !== 'preview')
      return canary ? endCanary(remote, ctx, { name, record }, e) : failed('switched')(e)
    return beforeSwitch(e)
  })

  // 11. The canary: watched, then promoted (the same switch, to every client) or rolled back.
  if (canary) {
    canaryRun = await phase(`Canary (${canary.percent} % for ${canary.seconds} s)`, () =>
      watchCanary(remote, nginxId, app.service, canary)
    ).catch((e: Error) => endCanary(remote, ctx, { name, record }, e))
    const verdict = canaryRun.verdict
    if (verdict.kind === 'fail')
      await endCanary(remote, ctx, { name, record }, new HostError(`The canary failed: ${verdict.reason}`), canaryRun.figures)
    // The promotion: the upstream file naming the new container replaces the canary's files, then the very switch of a
    // deploy without a canary. Until its reload, a failure ends the canary; after it, the old upstream file goes back.
    await phase('Promote the canary', async () => {
      await writeAndTest(remote, opsDir, nginxId, [upstream], canaryPaths(app.service))
      await throughNginx(remote, app, nginxId, name)
      await remote.run(removeCanaryLog(nginxId, canaryLogPath(app.service)))
      core.info(`Promoted: nginx routes every client of ${app.spec.route} to ${name}.`)
    }).catch(async (e: unknown) => {
      if (e instanceof ThroughNginxFailed && e.stage !== 'preview') {
        await remote.run(removeCanaryLog(nginxId, canaryLogPath(app.service))).catch(() => undefined)
        return failed('switched')(e)
      }
      return endCanary(remote, ctx, { name, record }, e as Error, canaryRun?.figures, true)
    })
  }

  // 12. The switch is final. The old container stops in the background once nginx is done with it; history, images.
  await phase('Retire old and record', () =>
    Promise.all([
      forgetFiles(remote, opsDir, serviceFiles(app.service)),
      retireOld(remote, opsDir, nginxId, app, before.retire),
      record('success'),
      pruneImages(
        remote,
        app.keepImages,
        imageRepository(image),
        [image, digest, before.live?.image ?? '', before.live?.digest ?? ''],
        images
      )
    ])
  )
  return { container: name, image, digest, previousImage: before.live?.image ?? '', release: releaseRun, canary: canaryRun }
}

/** The canary to run: none without an old release to compare with, or while clients get the maintenance page. */
function canaryFor(c: CanaryInputs | undefined, before: Before, service: string): CanaryInputs | undefined {
  if (!c) return undefined
  if (!before.live) return void core.info(`${service} has no release serving yet: no canary, the first release takes every client.`)
  if (before.maintenance) return void core.info(`${service} is in maintenance (no client reaches it): no canary.`)
  return c
}

/**
 * A canary that failed (or could not be watched or promoted): every client back on the old release (the upstream
 * file the promotion wrote goes back, the canary's files go, nginx reloads), the new container stopped and removed
 * in the background once nginx is done with it (no request in flight to it fails), the attempt recorded; throws
 * RolledBack with both sides' figures. Cut off from the host it changes nothing (as abandon()).
 */
async function endCanary(
  remote: Remote,
  ctx: SwapContext,
  a: Pick<Attempt, 'name' | 'record'>,
  e: Error,
  figures: string[] = [],
  promoting = false
): Promise<never> {
  const { app, image, digest } = ctx.release
  const { opsDir } = ctx.infra
  const { name } = a
  const cut = cutOff(remote, ctx)
  if (cut)
    throw new HostError(
      `${e.message}\nThen ${cut}, so this run cannot end the canary: nginx sends ${ctx.canary?.percent ?? 0} % of ${app.spec.route}'s clients to ${name}; the next deploy of ${app.service} ends it.`,
      'run the deploy again',
      { cause: e }
    )
  const notes = await ctx.phases.run(`${ctx.label ?? ''}Roll back the canary`, async () => {
    // A failed promotion may have left the upstream file naming the canary: the old one goes back first.
    if (promoting) {
      const path = upstreamPath(app.service)
      const current = liveOf(await remote.must(readFileIfExists(hostPath(opsDir, path)), 'reading the upstream file'))
      if (current?.container === name) await restoreUnloaded(remote, opsDir, [path])
    }
    // Without the canary's files the config is the one nginx ran until the canary's reload: no nginx -t to wait for
    // while a share of clients still gets the canary.
    await remote.must(stashFiles(hostPaths(opsDir, canaryPaths(app.service))), 'removing the canary files')
    await reloadAndWait(remote, ctx.nginxId)
    await forgetFiles(remote, opsDir, serviceFiles(app.service))
    await remote.run(removeCanaryLog(ctx.nginxId, canaryLogPath(app.service)))
    await showLogs(remote, name, name, 50)
    await retireOld(remote, opsDir, ctx.nginxId, app, [{ name, image: digest || image }])
    return [
      ...figures,
      `nginx routes every client of ${app.spec.route} to the old release again`,
      `${name} is stopped and removed once nginx has no request in flight to it`
    ]
  })
  await a.record('rolled-back', e.message).catch(() => undefined)
  throw new RolledBack(e, notes)
}

/** The canary in the history: both sides' counts and p99. */
function canaryRecord(r: CanaryResult, percent: number): NonNullable<HistoryRecord['canary']> {
  const side = (s: CanaryResult['count']['old']) => ({ requests: s.requests, errors: s.errors, p99: percentile(s.latencies, 99) })
  return { percent, seconds: Math.round(r.seconds), verdict: r.verdict.kind, canary: side(r.count.canary), old: side(r.count.old) }
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
  const cut = cutOff(remote, ctx)
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

/** Why this run can no longer change the host (the connection gone, or the lock lost to a run that found it stale). */
const cutOff = (remote: Remote, ctx: SwapContext): string | undefined =>
  !remote.connected()
    ? 'the connection to the host was lost'
    : ctx.lock.lost()
      ? `the deploy lock was lost (${ctx.lock.lost()})`
      : undefined

/** Every nginx file a deploy of the service may write (their `.ops-prev` copies go once the deploy is over). */
const serviceFiles = (service: string): string[] => [
  upstreamPath(service),
  locationsPath(service),
  varsPath(service),
  ...canaryPaths(service)
]

function serviceUrl(host: string, infra: InfraResult, app: AppInputs): string {
  const i = infra.settings
  if (infra.tls) return `https://${i.domain}${i.httpsPort === 443 ? '' : `:${i.httpsPort}`}${app.spec.route}`
  return `http://${i.domain || host}${i.httpPort === 80 ? '' : `:${i.httpPort}`}${app.spec.route}`
}
