import * as core from '@actions/core'
import { tarball } from './archive'
import { deployedSpec, publicPath } from './catalogue'
import { composeAddContainer, type Compose } from './commands/compose'
import { allAppContainers, projectInspect, removeContainers } from './commands/containers'
import { forgetPrevious, restoreFiles, unpackAndCommit } from './commands/files'
import { probeEach, stopAndRemove } from './commands/front'
import { healthGateLoop } from './commands/http'
import { frontTest } from './commands/nginx'
import { parseInspect, showLogs, type ContainerInfo } from './containers'
import { HostError } from './errors'
import { PROJECT } from './labels'
import { reloadAndWait } from './nginx'
import { hostPath, OPS } from './paths'
import { inMaintenance, listMaintenance, parseMaintenance } from './maintenance'
import { PREVIEW_PORT } from './release'
import { concurrently, section, splitSections } from './shell'
import type { Remote } from './ssh'
import { PREVIEW_HEADER, upstreamName } from './upstream'

// The front (compose service "front") owns the published ports and relays each connection to one nginx container,
// the one upstreams/nginx.stream names. A new nginx (image upgrade, a changed definition) starts beside the old one,
// is verified on its own, gets the front's new connections by a reload of the front, and the old one then finishes
// its requests and stops: nginx is replaced without a refused connection, as an app container is.

/** The front's config in the bundle and in ops-dir (a bundle from before the front has none). */
export const FRONT_CONF_FILE = 'nginx/front/nginx.conf'

/** nginx's ports for connections from the front (with a PROXY protocol header): plain HTTP and TLS. */
export const FRONT_PORTS = { http: 8080, https: 8443 } as const

/**
 * upstreams/nginx.stream naming `target`: a container name, or the service name `nginx` (compose's alias). The front
 * looks the name up per connection (proxy_pass to a variable, through docker's DNS, cached 5 s) rather than in an
 * upstream block with `resolve`, whose servers have no address for a moment after each reload of the front: a
 * connection in that moment would fail ("no live upstreams").
 */
export function frontUpstream(target: string): string {
  return [
    '# Which nginx container the front relays to. Written by ops-action (mode infra) when it hands over to a new',
    '# nginx container; the service name "nginx" only until the first infra run after the stack started.',
    `map "" $ops_nginx_http {
    default ${target}:${FRONT_PORTS.http};
}`,
    `map "" $ops_nginx_https {
    default ${target}:${FRONT_PORTS.https};
}`,
    ''
  ].join('\n')
}

/** The container (or service name) upstreams/nginx.stream names; undefined when it names none. */
export function frontTarget(content: string | undefined): string | undefined {
  return /^\s*default\s+([^\s:;]+):\d+;/m.exec(content ?? '')?.[1]
}

/** Writes upstreams/nginx.stream naming `target`, tests and reloads the front; the old file is back on a failure. */
async function pointFrontAt(remote: Remote, opsDir: string, front: ContainerInfo, target: string): Promise<void> {
  const path = hostPath(opsDir, OPS.frontUpstream)
  await remote.must(unpackAndCommit(opsDir, [OPS.frontUpstream]), `writing ${OPS.frontUpstream}`, {
    stdin: await tarball([{ path: OPS.frontUpstream, content: frontUpstream(target), mode: 0o644 }])
  })
  let signalled = false
  try {
    const test = await remote.run(frontTest(front.id))
    if (test.code !== 0)
      throw new HostError(`nginx -t fails on the front's config naming ${target}:\n${(test.stderr || test.stdout).trim()}`)
    signalled = true
    await reloadAndWait(remote, front.id)
  } catch (e) {
    await remote.must(restoreFiles([path]), `restoring ${OPS.frontUpstream}`)
    // The reload was signalled (it may have taken the new file after all): the front reads the old file again.
    if (signalled) await reloadAndWait(remote, front.id).catch(() => undefined)
    throw e
  }
  await remote.must(forgetPrevious([path]), 'cleaning up')
}

/**
 * Makes the front name the nginx container itself rather than the service name (which a second nginx container
 * would share): after the stack was created, or moved behind the front. Returns whether it changed anything.
 */
export async function pinFront(
  remote: Remote,
  opsDir: string,
  front: ContainerInfo,
  nginx: ContainerInfo,
  current: string | undefined
): Promise<boolean> {
  if (frontTarget(current) === nginx.name) return false
  await pointFrontAt(remote, opsDir, front, nginx.name)
  core.info(`The front relays to ${nginx.name}.`)
  return true
}

export interface Handover {
  from: ContainerInfo
  to: ContainerInfo
  /** How long the old nginx took to finish its requests and stop. */
  retiredMs: number
}

/**
 * The new nginx beside the old one, in four steps. 1. compose starts a second nginx container from the compose file
 * and .env as they are now; the old one keeps serving and the front does not know the new one. 2. It must answer
 * /healthz, and every deployed app's health path through its route as the old one does (a route that fails through
 * the old nginx too is a warning, not the new nginx's fault). 3. The front is pointed at it and reloaded: new
 * connections go to the new nginx; the front's old workers keep the connections they have. 4. The old nginx gets its
 * stop signal (SIGQUIT: it finishes what is in flight) and is removed. A failure in 1–3 removes the new container,
 * points the front back and leaves the old nginx serving, and says why.
 */
export async function handOver(
  remote: Remote,
  opts: {
    compose: Compose
    opsDir: string
    network: string
    old: ContainerInfo
    front: ContainerInfo
    timeoutS: number
    /** upstreams/nginx.stream as preflight read it. */
    current: string | undefined
  }
): Promise<Handover> {
  const { compose, opsDir, old, front } = opts
  // The front must name the old container, not the service name a second nginx shares (a run that died before it
  // pinned the front left that): else it would send clients to the new one before it is verified.
  await pinFront(remote, opsDir, front, old, opts.current)
  const started = await remote.run(composeAddContainer(compose, opsDir, 'nginx'))
  const log = `${started.stdout}${started.stderr}`.trim()
  if (log) core.info(log)
  const now = parseInspect(await remote.must(projectInspect(PROJECT), 'listing the stack containers'))
  const next = now.find(c => c.service === 'nginx' && c.id !== old.id)
  if (started.code !== 0 || !next) {
    if (next) await remote.run(removeContainers([next.id]))
    throw new HostError(`starting a new nginx container beside ${old.name} failed (exit ${started.code})`, 'see the compose output above')
  }
  core.info(`New nginx ${next.name} started beside ${old.name}; the front still relays to ${old.name}.`)
  try {
    await verify(remote, opts, next)
    await pointFrontAt(remote, opsDir, front, next.name)
  } catch (e) {
    await showLogs(remote, next.id, `nginx ${next.name}`, 30)
    await remote.run(removeContainers([next.id]))
    throw new HostError(
      `The new nginx container failed its checks and was removed; ${old.name} keeps serving, unchanged: ${(e as Error).message}`,
      'see its log lines above',
      { cause: e }
    )
  }
  core.info(`The front relays new connections to ${next.name}; ${old.name} finishes its requests (SIGQUIT).`)
  const retiredMs = await retireNginx(remote, old)
  return { from: old, to: next, retiredMs }
}

/**
 * An nginx the front no longer relays to: its stop signal (SIGQUIT: it finishes what is in flight) within 40 s, then
 * removed. A failed stop is a warning (clients are elsewhere already) and it is removed all the same. Returns how long
 * the stop took (as the host measured it).
 */
export async function retireNginx(remote: Remote, c: ContainerInfo): Promise<number> {
  const stop = await remote.run(stopAndRemove(c.id, 40))
  const ms = Number(stop.stdout.trim()) || 0
  if (stop.code === 0) core.info(`${c.name} finished its requests and stopped in ${(ms / 1000).toFixed(1)} s; removed.`)
  else {
    core.warning(`stopping ${c.name} failed (exit ${stop.code}): ${(stop.stderr || stop.stdout).trim()}; removing it`)
    await remote.run(removeContainers([c.id]))
  }
  return ms
}

/**
 * Step 2 of handOver: the new nginx is up, answers /healthz and serves every deployed route as well as the old one (a
 * route in maintenance through its upstream on the preview port: clients get the maintenance page there).
 */
async function verify(
  remote: Remote,
  { network, old, opsDir, timeoutS }: { network: string; old: ContainerInfo; opsDir: string; timeoutS: number },
  next: ContainerInfo
): Promise<void> {
  const gate = (
    await remote.run(healthGateLoop({ container: next.id, network, via: next.id, port: 80, path: '/healthz', timeoutS }))
  ).stdout
    .trim()
    .split('\n')
    .pop()
  if (!gate?.startsWith('healthy')) throw new HostError(`it did not answer /healthz (${gate ?? 'no answer'})`)
  const paths = await deployedHealthPaths(remote, opsDir)
  if (!paths.length) return core.info(`${next.name}: /healthz 200; no app deployed yet.`)
  const urls = paths.map(p => p.url)
  // One probe round per header: the plain routes, and each route in maintenance through its own upstream.
  const rounds = [...new Set(paths.map(p => p.header))]
  const codes = async (c: ContainerInfo) =>
    new Map(
      (
        await Promise.all(
          rounds.map(
            async h =>
              (
                await remote.run(
                  probeEach(
                    c.id,
                    paths.filter(p => p.header === h).map(p => p.url),
                    h
                  )
                )
              ).stdout
          )
        )
      )
        .join('\n')
        .trim()
        .split('\n')
        .map(l => l.split(' ') as [string, string])
        .map(([code, url]) => [url, code])
    )
  const [mine, theirs] = await Promise.all([codes(next), codes(old)])
  const failing = urls.filter(u => !/^2\d\d$/.test(mine.get(u) ?? ''))
  const alsoOld = failing.filter(u => !/^2\d\d$/.test(theirs.get(u) ?? ''))
  for (const u of alsoOld)
    core.warning(`${u.slice('http://127.0.0.1'.length)} fails through the old nginx too (${theirs.get(u)}): not the new nginx's doing`)
  const own = failing.filter(u => !alsoOld.includes(u))
  if (own.length)
    throw new HostError(
      `through it, ${own.map(u => `${u.slice('http://127.0.0.1'.length)} answered ${mine.get(u) ?? '000'} (the old nginx: ${theirs.get(u)})`).join(', ')}`
    )
  core.info(`${next.name}: /healthz 200, ${urls.map(u => `${u.slice('http://127.0.0.1'.length)} ${mine.get(u)}`).join(', ')}.`)
}

/**
 * Each deployed app's health path as a client requests it through nginx (its route), from the app containers'
 * labels; a route in maintenance on the preview port, with the header that picks its upstream.
 */
async function deployedHealthPaths(remote: Remote, opsDir: string): Promise<Array<{ url: string; header: string }>> {
  const s = splitSections(
    (await remote.run(concurrently(section('apps', allAppContainers()), section('maintenance', listMaintenance(opsDir))))).stdout
  )
  const apps = parseInspect(s.get('apps')?.out ?? '')
  const maintenance = parseMaintenance(s.get('maintenance')?.out ?? '')
  const probes = apps
    .filter(c => c.status === 'running')
    .flatMap(c => {
      const d = deployedSpec(c.service, c.labels)
      if (!d) return []
      const path = publicPath(d.spec, d.spec.healthPath)
      return inMaintenance(maintenance, c.service)
        ? [{ url: `http://127.0.0.1:${PREVIEW_PORT}${path}`, header: `${PREVIEW_HEADER}: ${upstreamName(c.service)}` }]
        : [{ url: `http://127.0.0.1${path}`, header: '' }]
    })
  return [...new Map(probes.map(p => [p.url, p])).values()].sort((a, b) => a.url.localeCompare(b.url))
}
