import * as core from '@actions/core'
import { randomBytes } from 'node:crypto'
import { inspectContainers, removeContainers, runContainer, runOneOff } from './commands/containers'
import { healthGateLoop } from './commands/http'
import { previewSwitchVerify, SWITCH_STAGES } from './commands/switch'
import { retireContainers } from './commands/retire'
import { publicPath } from './catalogue'
import { parseInspect, showLogs, type ContainerInfo } from './containers'
import { HostError } from './errors'
import type { AppInputs } from './inputs'
import { KEEPALIVE_MIN_TIMEOUT_S, reloadFailed } from './nginx'
import { hostPath, OPS } from './paths'
import type { Log } from './phases'
import { splitSections } from './shell'
import type { Remote } from './ssh'
import { PREVIEW_HEADER } from './upstream'

// The new release's container: start it, gate it on its health path, verify it through nginx, and remove it
// (failed) or the old one (replaced).

/** Requests to the health path and to the route at once, per wave; waves at most before a check fails. */
const VERIFY_PAIRS = 3
const VERIFY_WAVES = 5
const RELOAD_TIMEOUT_S = 10
/** nginx's preview server inside its container (nginx/conf.d/10-undeployed.conf). */
export const PREVIEW_PORT = 8504

/** `<service>-<8 hex>`: a new name for every release, so old and new run side by side. */
export const newContainerName = (service: string): string => `${service}-${randomBytes(4).toString('hex')}`

/** What starts the new container. */
export interface NewRelease {
  name: string
  app: AppInputs
  image: string
  /** What it runs when given (`repo@sha256:…`); else `image`. */
  digest: string
  network: string
  /** Bytes; the input's or the inherited one. */
  memory?: number
  /** A container whose env (minus its image's defaults) the new one gets, for an `env` not given. */
  inheritEnvFrom?: string
}

/** docker's --memory value for a limit in bytes (none: no limit). */
const memoryArg = (bytes: number | undefined): string | undefined => (bytes === undefined ? undefined : String(bytes))

/** The app's inline env in docker's --env-file format: KEY=VALUE taken literally to the end of the line (keys and values were checked). */
const envText = (app: AppInputs): string => app.env.map(([k, v]) => `${k}=${v}\n`).join('')

export async function startContainer(remote: Remote, r: NewRelease, log: Log = core): Promise<void> {
  const { app } = r
  const aliases = [app.service, ...app.spec.aliases]
  const memory = memoryArg(r.memory)
  const command = runContainer({
    name: r.name,
    service: app.service,
    image: r.image,
    digest: r.digest,
    network: r.network,
    aliases,
    port: app.spec.port,
    spec: {
      route: app.spec.route,
      healthPath: app.spec.healthPath,
      stripPrefix: app.spec.stripPrefix,
      aliases: app.spec.aliases,
      memory: r.memory
    },
    stopTimeoutS: app.stopTimeoutS,
    memory,
    envFile: app.envFile,
    inheritEnvFrom: r.inheritEnvFrom
  })
  await remote.must(command, `starting ${r.name}`, { stdin: envText(app) })
  const inherited = r.inheritEnvFrom ? `, with the env of ${r.inheritEnvFrom}` : ''
  log.info(`Started ${r.name} from ${r.digest || r.image} on ${r.network} as ${aliases.join(', ')}${inherited}.`)
}

/** `release-command`: what to run once, before the new container starts. */
export interface ReleaseCommand {
  command: string
  timeoutS: number
}

/** What the release command did (the history and the summary record it). */
export interface ReleaseRun {
  command: string
  exit: number | 'timeout'
  seconds: number
}

/** A release command that did not exit 0 (or was killed at its timeout): what it did, for the history. */
export class ReleaseFailed extends HostError {
  constructor(
    message: string,
    fix: string,
    readonly run: ReleaseRun
  ) {
    super(message, fix)
  }
}

/** Lines of the release command's output an error shows. */
const RELEASE_ERROR_LINES = 20

/**
 * The release phase: the command, once, with `sh -c` in a one-off container of the new image, with the app's env
 * (a file), network and memory limit, no aliases and no route; its output in the log. Exit 0 or it throws (exit
 * code or timeout, and the last lines); the container is gone either way.
 */
export async function runReleaseCommand(
  remote: Remote,
  r: Omit<NewRelease, 'name' | 'inheritEnvFrom'> & { release: ReleaseCommand }
): Promise<ReleaseRun> {
  const { app, release } = r
  const name = `${app.service}-release-${randomBytes(4).toString('hex')}`
  core.info(
    `Running the release command in ${name} (${r.digest || r.image}, network ${r.network}, ${app.service}'s env; release-timeout ${release.timeoutS} s): ${release.command}`
  )
  const start = Date.now()
  const out = await remote.run(
    runOneOff({
      name,
      service: app.service,
      image: r.digest || r.image,
      network: r.network,
      memory: memoryArg(r.memory),
      envFile: app.envFile,
      command: release.command,
      timeoutS: release.timeoutS
    }),
    { stdin: envText(app) }
  )
  const seconds = (Date.now() - start) / 1000
  // The last line (the command's own output cannot end with it: docker's marker comes after).
  const m = /(?:^|\n)@@ops-release (\S+)(?: (.*))?\n?$/.exec(out.stdout)
  const output = (m ? out.stdout.slice(0, m.index) : out.stdout).trimEnd()
  const exit = m && /^\d+$/.test(m[1]) ? Number(m[1]) : 'timeout'
  core.info(output ? `output:\n${output}` : '(no output)')
  if (!m)
    throw new HostError(
      `the release command's container ${name} could not be started (exit ${out.code}): ${(out.stderr || out.stdout).trim()}`
    )
  const last = output.split('\n').slice(-RELEASE_ERROR_LINES).join('\n') || '(no output)'
  const fix = 'the previous release keeps serving and nothing else changed; fix the command (or the image) and deploy again'
  const run: ReleaseRun = { command: release.command, exit, seconds }
  if (m[1] === 'running')
    throw new HostError(
      `a release command of an interrupted run is still running (${(m[2] ?? '').trim()}, label ops-action.release=${app.service}): this one was not started and nothing changed`,
      'wait for it to finish, or stop it (docker rm -f), and deploy again'
    )
  if (m[1] === 'error') throw new HostError(`waiting for the release command failed; its last lines:\n${last}`, fix)
  if (m[1] === 'timeout')
    throw new ReleaseFailed(
      `the release command did not finish within ${release.timeoutS} s (release-timeout) and was killed; its last lines:\n${last}`,
      fix,
      run
    )
  if (m[1] !== '0')
    throw new ReleaseFailed(`the release command exited ${m[1]} after ${seconds.toFixed(1)} s; its last lines:\n${last}`, fix, run)
  core.info(`The release command exited 0 after ${seconds.toFixed(1)} s.`)
  return run
}

export async function inspectOne(remote: Remote, name: string): Promise<ContainerInfo | undefined> {
  return parseInspect((await remote.run(inspectContainers([name]))).stdout)[0]
}

/** Polls the new container until its health path answers 2xx (in one round trip); an exit, a restart or the timeout fails at once. Returns its address. */
export async function healthGate(remote: Remote, app: AppInputs, name: string, network: string, nginxId: string): Promise<string> {
  const { healthPath: path, port } = app.spec
  const out = await remote.must(
    healthGateLoop({ container: name, network, via: nginxId, port, path, timeoutS: app.healthTimeoutS }),
    `waiting for ${name} to become healthy`
  )
  const gate = parseGate(out)
  const probe = (code: string, ip: string) =>
    code === 'none' ? 'no probe yet' : `GET http://${ip || '<ip>'}:${port}${path} -> ${code === '000' ? 'no answer' : code}`
  switch (gate.kind) {
    case 'healthy':
      core.info(`${probe(gate.code, gate.ip)}: healthy.`)
      return gate.ip
    case 'exited': {
      const how = gate.status === 'running' || gate.status === 'restarting' ? `restarted ${gate.restarts}×` : gate.status
      throw new HostError(`${name} ${how} before becoming healthy (last health probe: ${probe(gate.code, '')})`)
    }
    case 'unhealthy':
      throw new HostError(`${name}'s own HEALTHCHECK reports unhealthy (last health probe: ${probe(gate.code, '')})`)
    case 'gone':
      throw new HostError(`${name} disappeared (last health probe: ${probe(gate.code, '')})`)
    case 'timeout':
      throw new HostError(`${name} did not become healthy within ${app.healthTimeoutS} s (last health probe: ${probe(gate.code, gate.ip)})`)
  }
}

export type GateResult =
  | { kind: 'healthy'; ip: string; code: string }
  | { kind: 'exited'; status: string; restarts: number; code: string }
  | { kind: 'unhealthy' | 'gone'; code: string }
  | { kind: 'timeout'; code: string; ip: string }

/** The last line healthGateLoop printed, as a value. */
export function parseGate(out: string): GateResult {
  const w = (out.trim().split('\n').at(-1) ?? '').split(' ')
  switch (w[0]) {
    case 'healthy':
      return { kind: 'healthy', ip: w[1] ?? '', code: w[2] ?? '' }
    case 'exited':
      return { kind: 'exited', status: w[1] ?? '', restarts: Number(w[2] ?? 0), code: w[3] ?? 'none' }
    case 'unhealthy':
    case 'gone':
      return { kind: w[0], code: w[1] ?? 'none' }
    case 'timeout':
      return { kind: 'timeout', code: w[1] ?? 'none', ip: w[2] ?? '' }
    default:
      throw new HostError(`the health gate printed nothing it knows: ${out.trim() || '(nothing)'}`)
  }
}

/** A stage of previewSwitchVerify that failed; `stage` says whether clients may have been switched ('preview': not). */
export class ThroughNginxFailed extends HostError {
  constructor(
    readonly stage: SwitchStage,
    message: string,
    fix?: string
  ) {
    super(message, fix)
  }
}

type SwitchStage = (typeof SWITCH_STAGES)[number]

/**
 * The new release through nginx, in one round trip: on nginx's preview port (the header picks the new container,
 * through the very same route config, before any client is switched), then the switch (a reload: the upstream file
 * naming the new container was written and tested before), then as clients see it. Each check: health path 2xx and
 * route without a 5xx, VERIFY_PAIRS requests of each at once. Returns the seconds each stage took.
 */
export async function throughNginx(
  remote: Remote,
  app: AppInputs,
  nginxId: string,
  name: string,
  verifyVia?: string
): Promise<Record<SwitchStage, number>> {
  const healthPath = publicPath(app.spec, app.spec.healthPath)
  const at = (port: number, header: string) => ({
    health: `http://127.0.0.1:${port}${healthPath}`,
    route: `http://127.0.0.1:${port}${app.spec.route}`,
    header
  })
  // Without an answer (the connection went mid-way) it may have switched.
  const maybe = (e: Error) => new ThroughNginxFailed('switch', `probing and switching through nginx failed: ${e.message}`)
  const r = await remote
    .run(
      previewSwitchVerify({
        nginxId,
        preview: at(PREVIEW_PORT, `${PREVIEW_HEADER}: ${name}:${app.spec.port}`),
        // Clients' port, unless they do not reach the upstream (maintenance) or only some do (a canary): then the
        // preview port, through the upstream block by its name.
        live: verifyVia ? at(PREVIEW_PORT, `${PREVIEW_HEADER}: ${verifyVia}`) : at(80, ''),
        need: VERIFY_PAIRS,
        maxWaves: VERIFY_WAVES,
        probeTimeoutS: 3,
        reloadTimeoutS: RELOAD_TIMEOUT_S
      })
    )
    .catch((e: Error) => {
      throw maybe(e)
    })
  const s = splitSections(r.stdout)
  const times = stageTimes(r.stdout)
  if (!s.size) throw maybe(new Error(`exit ${r.code}: ${(r.stderr || r.stdout).trim()}`))
  for (const stage of SWITCH_STAGES) {
    const done = s.get(stage)
    if (!done) throw new ThroughNginxFailed('switch', `the ${stage} through nginx did not finish: ${(r.stderr || r.stdout).trim()}`)
    if (done.rc === 0) continue
    if (stage === 'switch') {
      const e = reloadFailed(done.rc, done.out, RELOAD_TIMEOUT_S)
      throw new ThroughNginxFailed(stage, e.message, e.fix)
    }
    const where = stage === 'preview' ? "on nginx's preview port (before any client was switched)" : 'through nginx'
    const bad = done.out.split('\n').filter(l => /^\d{3} \d{3}$/.test(l) && !/^2\d\d [1-4]\d\d$/.test(l))
    const [h = '000', rt = '000'] = (bad.at(-1) ?? '000 000').split(' ')
    throw new ThroughNginxFailed(
      stage,
      `The new release does not answer well ${where}: GET ${healthPath} -> ${h}, GET ${app.spec.route} -> ${rt}`
    )
  }
  core.info(
    `GET ${healthPath} and GET ${app.spec.route}, ${VERIFY_PAIRS} of each at once, answer well on nginx's preview port and, after the switch, through nginx (${SWITCH_STAGES.map(st => `${st} ${times[st].toFixed(2)} s`).join(', ')}).`
  )
  return times
}

/** Seconds per stage from the `@@ops-at <stage> <uptime>` marks (each stage ends where the next mark is). */
export function stageTimes(stdout: string): Record<SwitchStage, number> {
  const marks = [...stdout.matchAll(/^@@ops-at ([a-z]+) ([0-9.]+)$/gm)].map(m => ({ name: m[1], at: Number(m[2]) }))
  const times = Object.fromEntries(SWITCH_STAGES.map(st => [st, 0])) as Record<SwitchStage, number>
  marks.forEach((m, i) => {
    const next = marks[i + 1]
    if (next && m.name in times) times[m.name as SwitchStage] = Math.max(0, next.at - m.at)
  })
  return times
}

/** Shows a failed release's state and last log lines, then removes it. */
export async function removeFailed(remote: Remote, name: string): Promise<void> {
  const c = await inspectOne(remote, name)
  await showLogs(remote, name, name, 100, `state: ${c ? `${c.status}, restarted ${c.restarts}×, health ${c.health}` : 'gone'}`)
  await remote.run(removeContainers([name]))
}

/**
 * The containers a release replaced stop and go in a job of their own on the host (commands/retire.ts) once nginx is
 * done with them: old nginx workers keep reused client connections, which may still send requests to the old
 * container, for keepalive_min_timeout after the reload. The run does not wait for that.
 */
export async function retireOld(
  remote: Remote,
  opsDir: string,
  nginxId: string,
  app: AppInputs,
  old: Array<Pick<ContainerInfo, 'name' | 'image'>>
): Promise<void> {
  if (!old.length) return core.info('No previous container to stop.')
  const containers = old.map(c => c.name)
  const log = hostPath(opsDir, OPS.retireLog)
  const workersS = Math.min(KEEPALIVE_MIN_TIMEOUT_S + 1, app.drainTimeoutS)
  const r = await remote.run(
    retireContainers({
      nginxId,
      port: app.spec.port,
      containers,
      drainTimeoutS: app.drainTimeoutS,
      workersS,
      stopTimeoutS: app.stopTimeoutS,
      log
    })
  )
  // The new release serves either way: a job that did not start leaves the old container running, not the deploy failed.
  if (r.code !== 0)
    return core.warning(
      `Could not start the retirement of ${containers.join(', ')} (exit ${r.code}): ${(r.stderr || r.stdout).trim()}. It keeps running, without clients; the next deploy of ${app.service} stops and removes it.`
    )
  core.info(
    `${old.map(c => `${c.name} (${c.image})`).join(', ')}: stopped (SIGTERM, stop-timeout ${app.stopTimeoutS} s) and removed in the background on the host once nginx has no request in flight to it and none of its reloaded-away workers can send one (≤ ${workersS} s; drain-timeout ${app.drainTimeoutS} s); log: ${log}.`
  )
}
