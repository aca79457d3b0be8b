import * as core from '@actions/core'
import { randomBytes } from 'node:crypto'
import { inspectContainers, removeContainers, runContainer } from './commands/containers'
import { healthGateLoop, httpRounds } from './commands/http'
import { retireContainers } from './commands/retire'
import { publicPath } from './catalogue'
import { parseInspect, showLogs, type ContainerInfo } from './containers'
import { HostError } from './errors'
import type { AppInputs } from './inputs'
import { KEEPALIVE_MIN_TIMEOUT_S } from './nginx'
import { hostPath, OPS } from './paths'
import type { Remote } from './ssh'

// The new release's container: start it, gate it on its health path, verify it through nginx, and remove it
// (failed) or the old one (replaced).

const VERIFY_ROUNDS = 3
/** nginx's preview server inside its container (nginx/conf.d/10-undeployed.conf). */
export const PREVIEW_PORT = 8504

/** `<service>-<8 hex>`: a new name for every release, so old and new run side by side. */
export const newContainerName = (service: string): string => `${service}-${randomBytes(4).toString('hex')}`

/** What starts the new container. */
export interface NewRelease {
  name: string
  app: AppInputs
  image: string
  network: string
  /** Bytes; the input's or the inherited one. */
  memory?: number
  /** A container whose env (minus its image's defaults) the new one gets, for an `env` not given. */
  inheritEnvFrom?: string
}

export async function startContainer(remote: Remote, r: NewRelease): Promise<void> {
  const { app } = r
  const aliases = [app.service, ...app.spec.aliases]
  const memory = r.memory === undefined ? undefined : String(r.memory)
  // docker's --env-file format: KEY=VALUE taken literally to the end of the line (keys and values were checked).
  const envText = app.env.map(([k, v]) => `${k}=${v}\n`).join('')
  const command = runContainer({
    name: r.name,
    service: app.service,
    image: r.image,
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
  await remote.must(command, `starting ${r.name}`, { stdin: envText })
  const inherited = r.inheritEnvFrom ? `, with the env of ${r.inheritEnvFrom}` : ''
  core.info(`Started ${r.name} from ${r.image} on ${r.network} as ${aliases.join(', ')}${inherited}.`)
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

/**
 * The route answers through nginx (a port of the nginx container): health path 2xx, route without a 5xx, 3× in a
 * row. On the preview port, `header` picks the new container.
 */
export async function verify(remote: Remote, app: AppInputs, nginxId: string, port: number, header = ''): Promise<void> {
  const base = `http://127.0.0.1:${port}`
  const healthPath = publicPath(app.spec, app.spec.healthPath)
  const out = await remote.must(
    httpRounds(nginxId, base + healthPath, base + app.spec.route, VERIFY_ROUNDS, VERIFY_ROUNDS * 3, 3, header),
    'probing through nginx'
  )
  const rounds = out.trim().split('\n')
  const [h = '000', r = '000'] = (rounds.filter(l => l !== 'ok').at(-1) ?? '').split(' ')
  const last = `GET ${healthPath} -> ${h}, GET ${app.spec.route} -> ${r}`
  const where = port === PREVIEW_PORT ? "on nginx's preview port (before any client was switched)" : 'through nginx'
  if (rounds.at(-1) !== 'ok') throw new HostError(`The new release does not answer well ${where}: ${last}`)
  core.info(`${where}: ${last} (${VERIFY_ROUNDS} times in a row).`)
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
export async function retireOld(remote: Remote, opsDir: string, nginxId: string, app: AppInputs, old: ContainerInfo[]): Promise<void> {
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
