import * as core from '@actions/core'
import { randomBytes } from 'node:crypto'
import { inspectContainers, removeContainers, runContainer, stopContainers } from './commands/containers'
import { httpRounds, httpStatus } from './commands/http'
import { publicPath } from './catalogue'
import { parseInspect, showLogs, type ContainerInfo } from './containers'
import { HostError } from './errors'
import type { AppInputs } from './inputs'
import { quiet, seq, sleep } from './shell'
import type { Remote } from './ssh'

// The new release's container: start it, gate it on its health path, verify it through nginx, and remove it
// (failed) or the old one (replaced).

const POLL_MS = 200
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

/** Polls the new container until its health path answers 2xx; an exit, a restart or the timeout fails at once. Returns its address. */
export async function healthGate(remote: Remote, app: AppInputs, name: string, network: string, nginxId: string): Promise<string> {
  const deadline = Date.now() + app.healthTimeoutS * 1000
  let lastProbe = 'no probe yet'
  const fail = (message: string) => new HostError(`${message} (last health probe: ${lastProbe})`)
  for (;;) {
    const c = await inspectOne(remote, name)
    if (!c) throw fail(`${name} disappeared`)
    const { status, restarts, health } = c
    const ip = c.ips[network] ?? ''
    if (status === 'exited' || status === 'dead' || restarts > 0)
      throw fail(`${name} ${status === 'running' || status === 'restarting' ? `restarted ${restarts}×` : status} before becoming healthy`)
    if (health === 'unhealthy') throw fail(`${name}'s own HEALTHCHECK reports unhealthy`)
    if (status === 'running' && ip) {
      const url = `http://${ip}:${app.spec.port}${app.spec.healthPath}`
      const code = (await remote.run(httpStatus(nginxId, url, 2))).stdout.trim()
      lastProbe = `GET ${url} -> ${code === '000' ? 'no answer' : code}`
      if (/^2\d\d$/.test(code)) {
        core.info(`${lastProbe}: healthy.`)
        return ip
      }
    }
    if (Date.now() > deadline) throw fail(`${name} did not become healthy within ${app.healthTimeoutS} s`)
    await sleep(POLL_MS)
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

/** Stops (SIGTERM, up to stop-timeout) and removes the containers a release replaced. */
export async function stopOld(remote: Remote, old: ContainerInfo[], stopTimeoutS: number): Promise<void> {
  if (!old.length) return core.info('No previous container to stop.')
  const names = old.map(c => c.name)
  // The removal runs whether or not the stop succeeded.
  await remote.must(seq(quiet(stopContainers(names, stopTimeoutS)), removeContainers(names)), `removing ${names.join(', ')}`)
  core.info(`Stopped and removed ${old.map(c => `${c.name} (${c.image})`).join(', ')}.`)
}
