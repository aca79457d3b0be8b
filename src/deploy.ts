import * as core from '@actions/core'
import { randomBytes } from 'node:crypto'
import { tarball } from './archive'
import { CATALOGUE, publicPath } from './catalogue'
import {
  appendLine,
  IMAGE_LABEL,
  httpRounds,
  httpStatus,
  imageId,
  pull,
  removeContainers,
  removeImages,
  repositoryImages,
  runContainer,
  SERVICE_LABEL,
  serviceContainers,
  stopContainers,
  tail
} from './commands/app'
import { execIn, forgetPrevious, inspectContainers, readFileIfExists, restoreFiles, stackNginxTest, unpackAndCommit } from './commands/host'
import { NGINX_CONF, PROJECT } from './commands/compose'
import { imageRepository, imageTag, type DeployInputs, type InfraInputs, type Inputs } from './context'
import { HostError, RolledBack } from './errors'
import { runInfo } from './runinfo'
import { deployedSpec } from './catalogue'
import { runInfra, type InfraResult } from './infra'
import { acquireLock, type Lock } from './lock'
import { reloadAndWait, waitRequestsDrained } from './nginx'
import { parseInspect, showLogs, type ContainerInfo } from './containers'
import type { Phases } from './phases'
import { concurrently, quiet, section, seq, sleep, splitSections, type Sh } from './shell'
import type { Remote } from './ssh'
import {
  customServiceFiles,
  liveOf,
  locationsPath,
  PREVIEW_HEADER,
  upstreamConf,
  upstreamName,
  upstreamPath,
  varsPath,
  type Live
} from './upstream'

export const HISTORY = 'history.jsonl'
const POLL_MS = 200
const VERIFY_ROUNDS = 3
/** nginx's preview server inside its container (nginx/conf.d/10-undeployed.conf). */
const PREVIEW_PORT = 8504

export interface DeployResult {
  container: string
  image: string
  previousImage: string
  url: string
}

/** One line of `<ops-dir>/history.jsonl`. */
export interface HistoryRecord {
  time: string
  mode: 'deploy' | 'rollback' | 'restart'
  service: string
  image: string
  previousImage: string
  container: string
  result: 'success' | 'rolled-back' | 'failed'
  repository?: string
  sha?: string
  actor?: string
  runUrl?: string
  phases: Record<string, number>
  error?: string
}

interface AppContainer {
  name: string
  id: string
  status: string
  restarts: number
  health: string
  ip: string
  image: string
  /** The memory limit it was started with (its spec label). */
  memory?: string
}

/** `mode: deploy` and `mode: rollback`, top to bottom: image, lock, stack, then the swap (see swap()). */
export async function runDeploy(remote: Remote, inputs: Inputs, phases: Phases): Promise<DeployResult> {
  const d = inputs.deploy as DeployInputs
  const { opsDir } = inputs.infra
  const mode = d.image ? 'deploy' : 'rollback'

  // 1. The image: resolved (rollback) and pulled outside the lock, since that changes nothing anyone sees.
  const image = mode === 'rollback' ? await phases.run('Find previous image', () => rollbackTarget(remote, opsDir, d.service)) : d.image
  await phases.run('Pull image', () => pullImage(remote, image, d))

  // 2. Everything that changes the host happens under the host-wide lock.
  const lock = await phases.run('Take deploy lock', () =>
    acquireLock(remote, opsDir, inputs.lockTimeoutS, `${mode} of ${d.service} (${image})`)
  )
  phases.guard = () => lock.check()
  try {
    // 3. The stack, network and nginx config (a no-op when nothing changed).
    // The preflight's reads go out beside infra's (one round trip saved); if infra changes anything, they are redone.
    const early = remote.run(preflightProbe(d, opsDir, stackNginxTest(PROJECT, NGINX_CONF))).then(r => r.stdout)
    early.catch(() => undefined)
    const infra = await runInfra(remote, inputs.infra, phases, 'Infra: ')
    const r = await swap(remote, {
      infra: inputs.infra,
      d,
      image,
      mode,
      inherit: mode === 'rollback',
      nginxId: infra.nginxId,
      lock,
      phases,
      early: infra.changed ? undefined : early
    })
    return { ...r, url: serviceUrl(inputs, infra, d) }
  } finally {
    phases.guard = () => undefined
    await lock.release()
  }
}

export interface SwapContext {
  infra: InfraInputs
  d: DeployInputs
  image: string
  mode: HistoryRecord['mode']
  /** env and memory not given are those of the container serving now (rollback, restart). */
  inherit: boolean
  nginxId: string
  lock: Lock
  phases: Phases
  /** Prefix of the phase names (the ordered re-swap names the service). */
  label?: string
  /** The preflight's reads, made while infra ran: still what the host has when infra changed nothing. */
  early?: Promise<string>
}

/**
 * Steps 4-10 of a deploy, under the lock with the stack ensured: preflight, start, gates, switch, drain, record. A
 * failure before the switch removes the new container and leaves the old one serving; a failure at or after the
 * switch puts the previous upstream back first.
 */
export async function swap(remote: Remote, ctx: SwapContext): Promise<Omit<DeployResult, 'url'>> {
  const { infra: infraInputs, d, image, mode, nginxId, lock, phases, label = '' } = ctx
  const { opsDir, network } = infraInputs
  const phase = <T>(name: string, fn: () => Promise<T>) => phases.run(`${label}${name}`, fn)

  // 4. What serves now, and leftovers of interrupted runs.
  const before = await phase('Preflight', () => preflight(remote, d, opsDir, network, nginxId, ctx.inherit, ctx.early))
  const name = `${d.service}-${randomBytes(4).toString('hex')}`
  const record = (result: HistoryRecord['result'], error?: string) =>
    appendHistory(remote, opsDir, {
      mode,
      service: d.service,
      image,
      previousImage: before.live?.image ?? '',
      container: name,
      result,
      phases: phaseSeconds(phases, label),
      error
    })

  let switched = false
  let drained = Promise.resolve(true)
  try {
    // 5. Start the new container next to the old one.
    const inheritEnv = ctx.inherit && !d.env.length ? before.live?.container : undefined
    await phase('Start container', () => start(remote, { ...d, memory: before.memory }, image, name, network, inheritEnv))
    // 6. Health gate, directly on the new container.
    const ip = await phase('Health gate (direct)', () => healthGate(remote, d, name, network, nginxId))
    // 7a. Preview: nginx's preview port routes to the new container through the very same route config, no reload.
    await phase('Verify preview through nginx', async () => {
      // A service outside the catalogue brings its route (nginx reloads for it); the catalogue's ship with nginx/.
      if (!CATALOGUE[d.service])
        await writeAndReload(remote, opsDir, nginxId, customServiceFiles(d.service, d.spec.route, before.live !== undefined))
      await verify(remote, d, nginxId, PREVIEW_PORT, `${PREVIEW_HEADER}: ${name}:${d.spec.port}`)
    })
    // 7b. Switch: clients go to the new container.
    await phase('Switch nginx', async () => {
      const live = { container: name, image }
      const files = [{ path: upstreamPath(d.service), content: upstreamConf(upstreamName(d.service), d.spec.port, live) }]
      await writeAndReload(remote, opsDir, nginxId, files, () => (switched = true))
      core.info(`nginx now routes ${d.spec.route} to ${name}:${d.spec.port} (now ${ip}).`)
    })
    // 8. Verify through nginx, as clients see it. Meanwhile the old workers finish their requests (step 9 waits).
    await phase('Verify through nginx', () => {
      drained = before.retire.length
        ? waitRequestsDrained(
            remote,
            nginxId,
            d.spec.port,
            before.retire.map(c => c.name),
            d.drainTimeoutS * 1000
          ).catch(() => false)
        : Promise.resolve(true)
      return verify(remote, d, nginxId, 80)
    })
  } catch (e) {
    // Cut off from the host (connection gone, or the lock lost to a run that found this one stale): no rollback from
    // here, since it could not run or would undo another run's work. What is left is safe and the next run clears it.
    const cut = !remote.connected() ? 'the connection to the host was lost' : lock.lost() && `the deploy lock was lost (${lock.lost()})`
    if (cut) {
      const routed = switched ? name : (before.live?.container ?? 'its 503 placeholder')
      throw new HostError(
        `${(e as Error).message}\nThen ${cut}, so this run cannot roll back. nginx routes ${d.spec.route} to ${routed}; the next deploy of ${d.service} removes what this one left.`,
        'run the deploy again'
      )
    }
    const notes = await phase('Roll back', () => rollBack(remote, d, infraInputs, nginxId, name, switched, before.live))
    await record('rolled-back', (e as Error).message).catch(() => undefined)
    throw new RolledBack(e as Error, notes)
  }
  // 9. Drain: nginx finishes its requests in flight to the old container (the wait began at the switch); then stop it.
  await phase('Drain', async () => {
    const [, done] = await Promise.all([remote.run(forgetPrevious(SERVICE_FILES(d.service).map(p => `${opsDir}/${p}`))), drained])
    if (before.retire.length && done) core.info('nginx has no request in flight to the old container any more.')
  })
  await phase('Stop old', () => stopOld(remote, d, before.retire))

  // 10. History, images.
  await phase('Record and prune', () => Promise.all([record('success'), pruneImages(remote, d, image, before.live?.image)]))
  return { container: name, image, previousImage: before.live?.image ?? '' }
}

async function pullImage(remote: Remote, image: string, d: DeployInputs): Promise<void> {
  const mutable = imageTag(image) === 'latest'
  if (!mutable && (await remote.run(imageId(image))).code === 0) return core.info(`${image} is already on the host: no pull.`)
  core.info(`Pulling ${image}${d.registry ? ` (logged in to ${d.registry.server} for this run only)` : ''}…`)
  const r = await remote.run(pull(image, d.registry), { stdin: d.registry ? `${d.registry.password}\n` : undefined })
  if (r.code === 3) {
    const unreachable = /connection refused|no such host|timeout|i\/o timeout|network is unreachable|no route to host/i.test(r.stderr)
    throw new HostError(
      `Login to ${d.registry?.server} as ${d.registry?.username} failed: ${r.stderr.trim()}`,
      unreachable
        ? `check that the host can reach the registry ${d.registry?.server} (DNS, firewall, is it up?)`
        : 'check registry-username and registry-password (a token with read access to the image)'
    )
  }
  if (r.code !== 0) {
    const msg = (r.stderr || r.stdout).trim()
    const fix = /no space left/i.test(msg)
      ? 'free disk space on the host (docker system prune -a)'
      : /not found|manifest unknown|does not exist/i.test(msg)
        ? 'check the image name and tag (was it pushed?)'
        : /denied|unauthorized/i.test(msg)
          ? 'set registry, registry-username and registry-password for a private image'
          : 'check that the host can reach the registry'
    throw new HostError(`Pulling ${image} failed: ${msg}`, fix)
  }
}

interface Before {
  /** The container nginx routes the service to now (per its upstream file), if any. */
  live?: Live
  /** Running containers of the service (the one behind `live`, leftovers of interrupted runs): stopped once the new one serves. */
  retire: AppContainer[]
  /** The new container's memory limit: the input's, or (inheriting) the serving container's. */
  memory?: string
}

/** What the preflight reads, in one round trip: the service's containers, its upstream file, memory, nginx -t. */
const preflightProbe = (d: DeployInputs, opsDir: string, nginxTest: Sh): Sh =>
  concurrently(
    section('containers', serviceContainers(d.service)),
    section('upstream', readFileIfExists(`${opsDir}/${upstreamPath(d.service)}`)),
    section('memory', readFileIfExists('/proc/meminfo')),
    section('nginx-test', nginxTest)
  )

async function preflight(
  remote: Remote,
  d: DeployInputs,
  opsDir: string,
  network: string,
  nginxId: string,
  inherit: boolean,
  early?: Promise<string>
): Promise<Before> {
  const probe = () => remote.run(preflightProbe(d, opsDir, execIn(nginxId, 'nginx', '-t', '-c', NGINX_CONF))).then(r => r.stdout)
  const s = splitSections(await (early ?? probe()))
  // nginx's config as it is on the host now (a hand edit or a stray file included by it): if it fails, the switch
  // could never be applied, so nothing starts.
  const nginxTest = s.get('nginx-test')
  if (!nginxTest || nginxTest.rc !== 0)
    throw nginxTestFailed(nginxTest?.out ?? 'no answer from nginx -t', 'nginx was not changed and nothing was started')
  const containers = parseInspect(s.get('containers')?.out ?? '').map(c => appContainer(c, network))
  const live = liveOf(s.get('upstream')?.out ?? '')
  // Containers of interrupted runs. A stopped one goes now. A running one may still get requests (a run cut between
  // writing the upstream file and reloading nginx leaves nginx on the container the file no longer names), so it is
  // stopped like the old release: after the switch, once nginx's old workers are done with it.
  const leftovers = containers.filter(c => c.name !== live?.container)
  const [running, stopped] = [leftovers.filter(c => c.status === 'running'), leftovers.filter(c => c.status !== 'running')]
  if (stopped.length) {
    core.info(`Removing stopped leftovers of interrupted runs: ${stopped.map(c => c.name).join(', ')}`)
    await remote.must(removeContainers(stopped.map(c => c.name)), 'removing leftover containers')
  }
  if (running.length) core.info(`Leftovers of interrupted runs, stopped after the switch: ${running.map(c => c.name).join(', ')}`)
  const liveContainer = containers.find(c => c.name === live?.container)
  if (live)
    core.info(
      `${d.service} is served by ${live.container} (${live.image})${liveContainer ? `, ${liveContainer.status}` : ', which no longer exists'}.`
    )
  else core.info(`${d.service} has not been deployed yet.`)

  const memory = d.memory || (inherit ? liveContainer?.memory : undefined)
  const available = /^MemAvailable:\s+(\d+) kB/m.exec(s.get('memory')?.out ?? '')
  if (available) {
    const mib = Number(available[1]) / 1024
    const need = memory ? memoryMiB(memory) : 256
    if (mib < need)
      core.warning(
        `Only ${Math.round(mib)} MiB of memory available for the overlap of old and new ${d.service} containers (want ≥ ${Math.round(need)} MiB); the host may swap or the OOM killer may step in.`
      )
    else core.info(`${Math.round(mib)} MiB of memory available.`)
  }
  return { live, retire: [...(liveContainer ? [liveContainer] : []), ...running], memory }
}

export function memoryMiB(m: string): number {
  const n = parseInt(m, 10)
  const unit = m.slice(-1)
  return unit === 'g' ? n * 1024 : unit === 'm' ? n : unit === 'k' ? n / 1024 : n / 1024 / 1024
}

function appContainer(c: ContainerInfo, network: string): AppContainer {
  return {
    name: c.name,
    id: c.id,
    status: c.status,
    restarts: c.restarts,
    health: c.health,
    ip: c.ips[network] ?? '',
    image: c.labels[IMAGE_LABEL] ?? '',
    memory: deployedSpec(c.labels[SERVICE_LABEL] ?? '', c.labels)?.memory
  }
}

async function inspectOne(remote: Remote, name: string, network: string): Promise<AppContainer | undefined> {
  const [c] = parseInspect((await remote.run(inspectContainers([name]))).stdout)
  return c && appContainer(c, network)
}

async function start(
  remote: Remote,
  d: DeployInputs,
  image: string,
  name: string,
  network: string,
  inheritEnvFrom?: string
): Promise<void> {
  // docker's --env-file format: KEY=VALUE taken literally to the end of the line (keys and values were checked).
  const envText = d.env.map(([k, v]) => `${k}=${v}\n`).join('')
  await remote.must(
    runContainer({
      name,
      service: d.service,
      image,
      network,
      aliases: [d.service, ...d.spec.aliases],
      port: d.spec.port,
      spec: {
        route: d.spec.route,
        healthPath: d.spec.healthPath,
        stripPrefix: d.spec.stripPrefix,
        aliases: d.spec.aliases,
        memory: d.memory
      },
      stopTimeoutS: d.stopTimeoutS,
      memory: d.memory,
      envFile: d.envFile,
      inheritEnvFrom
    }),
    `starting ${name}`,
    { stdin: envText }
  )
  core.info(
    `Started ${name} from ${image} on ${network} as ${[d.service, ...d.spec.aliases].join(', ')}${inheritEnvFrom ? `, with the env of ${inheritEnvFrom}` : ''}.`
  )
}

interface GateState {
  lastProbe: string
}

/** Polls the new container until its health path answers 2xx; an exit, a restart or the timeout fails at once. */
async function healthGate(remote: Remote, d: DeployInputs, name: string, network: string, nginxId: string): Promise<string> {
  const deadline = Date.now() + d.healthTimeoutS * 1000
  const state: GateState = { lastProbe: 'no probe yet' }
  for (;;) {
    const c = await inspectOne(remote, name, network)
    if (!c) throw new GateError(`${name} disappeared`, state.lastProbe)
    const { status, restarts, health, ip } = c
    if (status === 'exited' || status === 'dead' || restarts > 0) {
      throw new GateError(
        `${name} ${status === 'running' || status === 'restarting' ? `restarted ${restarts}×` : status} before becoming healthy`,
        state.lastProbe
      )
    }
    if (health === 'unhealthy') throw new GateError(`${name}'s own HEALTHCHECK reports unhealthy`, state.lastProbe)
    if (status === 'running' && ip) {
      const url = `http://${ip}:${d.spec.port}${d.spec.healthPath}`
      const code = (await remote.run(httpStatus(nginxId, url, 2))).stdout.trim()
      state.lastProbe = `GET ${url} -> ${code === '000' ? 'no answer' : code}`
      if (/^2\d\d$/.test(code)) {
        core.info(`${state.lastProbe}: healthy.`)
        return ip
      }
    }
    if (Date.now() > deadline) throw new GateError(`${name} did not become healthy within ${d.healthTimeoutS} s`, state.lastProbe)
    await sleep(POLL_MS)
  }
}

class GateError extends HostError {
  constructor(
    message: string,
    readonly lastProbe: string
  ) {
    super(`${message} (last health probe: ${lastProbe})`)
  }
}

/** Every nginx file a deploy of the service may write (their `.ops-prev` copies go once the deploy is over). */
const SERVICE_FILES = (service: string): string[] => [upstreamPath(service), locationsPath(service), varsPath(service)]

/** Writes nginx files atomically, checks nginx -t (putting the old files back if it fails), reloads and waits. */
async function writeAndReload(
  remote: Remote,
  opsDir: string,
  nginxId: string,
  files: Array<{ path: string; content: string }>,
  onValid: () => void = () => undefined
): Promise<void> {
  const entries = files.map(f => ({ ...f, mode: 0o644 }))
  const paths = entries.map(e => e.path)
  // One round trip: write, then nginx -t (on the old files if the write failed; that result is not used then).
  const out = await remote.run(
    seq(section('write', unpackAndCommit(opsDir, paths)), section('test', execIn(nginxId, 'nginx', '-t', '-c', NGINX_CONF))),
    { stdin: await tarball(entries) }
  )
  const s = splitSections(out.stdout)
  const write = s.get('write')
  if (write?.rc !== 0)
    throw new HostError(`writing nginx upstream files failed (exit ${write?.rc ?? out.code}): ${write?.out.trim() ?? out.stderr}`)
  const test = s.get('test')
  if (test?.rc !== 0) {
    await remote.must(restoreFiles(paths.map(p => `${opsDir}/${p}`)), 'restoring the nginx files')
    throw nginxTestFailed(test?.out ?? 'no answer from nginx -t', 'nginx was not changed')
  }
  onValid()
  await reloadAndWait(remote, nginxId)
}

function nginxTestFailed(output: string, consequence: string): HostError {
  return new HostError(
    `nginx -t fails on the host's nginx config, so ${consequence}:\n${output.trim()}`,
    'fix or remove the file nginx names above (a hand edit or a stray file in nginx/ or upstreams/ of ops-dir), or run mode infra to restore the shipped config'
  )
}

/** The route answers through nginx (on a port of the nginx container): health path 2xx, route without a 5xx, 3× in a row. */
async function verify(remote: Remote, d: DeployInputs, nginxId: string, port: number, header = ''): Promise<void> {
  const base = `http://127.0.0.1:${port}`
  const healthPath = publicPath(d.spec, d.spec.healthPath)
  const out = await remote.must(
    httpRounds(nginxId, base + healthPath, base + d.spec.route, VERIFY_ROUNDS, VERIFY_ROUNDS * 3, 3, header),
    'probing through nginx'
  )
  const rounds = out.trim().split('\n')
  const [h = '000', r = '000'] = (rounds.filter(l => l !== 'ok').at(-1) ?? '').split(' ')
  const last = `GET ${healthPath} -> ${h}, GET ${d.spec.route} -> ${r}`
  const where = port === PREVIEW_PORT ? "on nginx's preview port (before any client was switched)" : 'through nginx'
  if (rounds.at(-1) !== 'ok') throw new HostError(`The new release does not answer well ${where}: ${last}`)
  core.info(`${where}: ${last} (${VERIFY_ROUNDS} times in a row).`)
}

async function rollBack(
  remote: Remote,
  d: DeployInputs,
  { opsDir, network }: InfraInputs,
  nginxId: string,
  name: string,
  switched: boolean,
  live: Live | undefined
): Promise<string[]> {
  const notes: string[] = []
  if (switched) {
    await remote.must(restoreFiles([`${opsDir}/${upstreamPath(d.service)}`]), 'restoring the previous upstream')
    await reloadAndWait(remote, nginxId)
    await remote.run(forgetPrevious(SERVICE_FILES(d.service).map(p => `${opsDir}/${p}`)))
    notes.push(`nginx routes ${d.spec.route} to ${live ? `${live.container} (${live.image})` : 'the 503 placeholder'} again`)
  }
  const state = await inspectOne(remote, name, network)
  await showLogs(
    remote,
    name,
    name,
    100,
    `state: ${state ? `${state.status}, restarted ${state.restarts}×, health ${state.health}` : 'gone'}`
  )
  await remote.run(removeContainers([name]))
  notes.push(`removed the new container ${name}`)
  notes.push(live ? `${live.container} kept serving` : `${d.service} stays undeployed`)
  for (const n of notes) core.info(n)
  return notes
}

async function stopOld(remote: Remote, d: DeployInputs, old: AppContainer[]): Promise<void> {
  if (!old.length) return core.info('No previous container to stop.')
  const names = old.map(c => c.name)
  // docker stop sends SIGTERM and waits up to stop-timeout; the removal runs whether or not the stop succeeded.
  await remote.must(seq(quiet(stopContainers(names, d.stopTimeoutS)), removeContainers(names)), `removing ${names.join(', ')}`)
  core.info(`Stopped and removed ${old.map(c => `${c.name} (${c.image})`).join(', ')}.`)
}

/** Seconds per phase for the history; with a label, only that service's phases of a multi-service run. */
function phaseSeconds(phases: Phases, label = ''): Record<string, number> {
  return Object.fromEntries(phases.records.filter(r => r.name.startsWith(label)).map(r => [r.name, Math.round(r.ms) / 1000]))
}

async function appendHistory(remote: Remote, opsDir: string, r: Omit<HistoryRecord, 'time'>): Promise<void> {
  const { repository, sha, actor, runUrl } = runInfo()
  const full: HistoryRecord = { time: new Date().toISOString(), ...r, repository, sha, actor, runUrl }
  await remote.must(appendLine(`${opsDir}/${HISTORY}`), 'recording the deploy', { stdin: `${JSON.stringify(full)}\n` })
}

export async function readHistory(remote: Remote, opsDir: string, lines = 500): Promise<HistoryRecord[]> {
  return parseHistory(await remote.must(tail(`${opsDir}/${HISTORY}`, lines), 'reading the deploy history'))
}

/** history.jsonl lines; a damaged line is skipped. */
export function parseHistory(text: string): HistoryRecord[] {
  return text
    .split('\n')
    .filter(Boolean)
    .flatMap(l => {
      try {
        return [JSON.parse(l) as HistoryRecord]
      } catch {
        return []
      }
    })
}

/** The image a rollback returns to: the newest successful release of the service other than the one serving now. */
export function previousImage(history: HistoryRecord[], service: string, current: string | undefined): string | undefined {
  const releases = history.filter(h => h.service === service && h.result === 'success')
  const serving = current ?? releases.at(-1)?.image
  return [...releases].reverse().find(h => h.image !== serving)?.image
}

async function rollbackTarget(remote: Remote, opsDir: string, service: string): Promise<string> {
  const history = await readHistory(remote, opsDir)
  const live = liveOf(await remote.must(readFileIfExists(`${opsDir}/${upstreamPath(service)}`), 'reading the upstream'))
  const target = previousImage(history, service, live?.image)
  if (!target)
    throw new HostError(
      `No previous image of ${service} in the deploy history (${opsDir}/${HISTORY}) to roll back to.`,
      'deploy the wanted image with mode deploy'
    )
  core.info(`${service} serves ${live?.image ?? 'nothing'}; rolling back to ${target}.`)
  return target
}

/** Keeps the newest keep-images images of the service's repository, the one serving and the rollback target. */
async function pruneImages(remote: Remote, d: DeployInputs, image: string, previous: string | undefined): Promise<void> {
  const repository = imageRepository(image)
  const rows = (await remote.must(repositoryImages(repository), 'listing images'))
    .split('\n')
    .filter(Boolean)
    .map(l => l.split(' ')[0])
    .filter(ref => !ref.endsWith(':<none>'))
  const keep = new Set([image, previous ?? '', ...rows.slice(0, d.keepImages)])
  const drop = rows.filter(ref => !keep.has(ref))
  if (!drop.length) return core.info(`${rows.length} image(s) of ${repository} on the host; nothing to prune.`)
  const out = await remote.must(removeImages(drop), 'removing old images')
  core.info(`Pruned ${drop.join(', ')}${out.trim() ? `\n${out.trim()}` : ''}`)
}

function serviceUrl(inputs: Inputs, infra: InfraResult, d: DeployInputs): string {
  const i = infra.settings
  if (infra.tls) return `https://${i.domain}${i.httpsPort === 443 ? '' : `:${i.httpsPort}`}${d.spec.route}`
  return `http://${i.domain || inputs.connection.host}${i.httpPort === 80 ? '' : `:${i.httpPort}`}${d.spec.route}`
}
