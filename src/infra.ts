import * as core from '@actions/core'
import { tarball, type ArchiveEntry } from './archive'
import { backupDatabase } from './backup'
import { STACK_SERVICES } from './catalogue'
import {
  composeConfig,
  composeNginxTest,
  composeServiceHash,
  composeUp,
  composeUpServices,
  ensureNetwork,
  type Compose
} from './commands/compose'
import { hostNow, projectEvents, projectInspect } from './commands/containers'
import { forgetPrevious, removeFiles, restoreFiles, unpackAndCommit } from './commands/files'
import { frontTest, nginxTest } from './commands/nginx'
import { parseInspect, type ContainerInfo } from './containers'
import { HostError } from './errors'
import { readHost, type HostState, type Settings } from './hoststate'
import { planInfra, touched, type InfraPlan } from './infraplan'
import type { InfraInputs } from './inputs'
import { FRONT_CONF_FILE, frontTarget, handOver, pinFront, retireNginx } from './front'
import { COMPOSE_HASH_LABEL, PROJECT } from './labels'
import { nginxTooOld, reloadAndWait } from './nginx'
import { hostPaths, OPS } from './paths'
import type { Phases } from './phases'
import type { Remote } from './ssh'
import { isStackService, unreachableS, waitHealthy } from './stackhealth'
import { loadBundle } from './stackfiles'

/** One thing an infra run changed on the host. */
export type InfraChange =
  | { kind: 'wrote' | 'placeholder' | 'removed'; path: string }
  | { kind: 'env'; keys: string[] }
  | { kind: 'network'; name: string }
  | { kind: 'backup'; path: string }
  | { kind: 'created'; service: string }
  | { kind: 'recreated'; service: string; id?: string; unreachableS?: number }
  | { kind: 'handed-over'; from: string; to: string; retiredMs: number }
  | { kind: 'front-pinned'; to: string }
  | { kind: 'reloaded'; service: 'nginx' | 'front' }

/** A change as a line of the log and the summary. */
export function describeChange(c: InfraChange): string {
  switch (c.kind) {
    case 'wrote':
    case 'removed':
      return `${c.kind} ${c.path}`
    case 'placeholder':
      return `created placeholder ${c.path}`
    case 'env':
      return `.env: set ${c.keys.join(', ')}`
    case 'network':
      return `created docker network ${c.name}`
    case 'backup':
      return `backed up the database to ${c.path}`
    case 'created':
      return `created ${c.service}`
    case 'recreated':
      return `recreated ${c.service}${c.unreachableS === undefined ? '' : ` (unreachable for ${c.unreachableS.toFixed(1)} s: from the old container's stop to the new one's first passing health check)`}`
    case 'handed-over':
      return `replaced nginx ${c.from} by ${c.to} behind the front (no gap; the old one finished its requests in ${(c.retiredMs / 1000).toFixed(1)} s)`
    case 'front-pinned':
      return `the front relays to ${c.to}`
    case 'reloaded':
      return `reloaded ${c.service}`
  }
}

export interface InfraResult {
  /** Everything the run changed, in order; empty when the host already was as wanted. */
  changes: InfraChange[]
  changed: boolean
  /** The running nginx container. */
  nginxId: string
  /** nginx serves HTTPS for the domain. */
  tls: boolean
  settings: Settings
}

/**
 * `mode: infra`, step by step. Each step is one log group; nothing changes on the host before "Upload files", and not
 * before `ready` (what a deploy does beside these first steps: its pull) has succeeded.
 */
export async function runInfra(
  remote: Remote,
  inputs: InfraInputs,
  phases: Phases,
  label = '',
  ready: () => Promise<unknown> = () => Promise.resolve()
): Promise<InfraResult> {
  const { opsDir } = inputs
  const phase = <T>(name: string, fn: () => T | Promise<T>) => phases.run(`${label}${name}`, fn)
  const bundle = loadBundle()
  // 1. What the host has, and what it should have (computed here; nothing is changed yet).
  const host = await phase('Preflight', () => readHost(remote, inputs, bundle))
  const plan = await phase('Plan', () => logPlan(planInfra(inputs, host, bundle)))
  await ready()

  // 2. Files and network.
  const files = await phase('Upload files', () => upload(remote, opsDir, plan, host))
  const network = await phase('Network', () => ensureNetworkOf(remote, host, inputs.network))
  // 3. compose config and nginx -t on what was written; a failure puts the previous files back.
  await phase('Validate config', () => validate(remote, opsDir, host, plan)).catch(async e => {
    await remote.must(restoreFiles(hostPaths(opsDir, touched(plan))), 'restoring the previous files')
    throw e
  })
  if (touched(plan).length) await remote.must(forgetPrevious(hostPaths(opsDir, touched(plan))), 'cleaning up')

  // 4. A change of the compose file or .env may make compose recreate db: a backup of it first.
  const db = host.containers.find(c => c.service === 'db' && c.status === 'running')
  const backup =
    inputs.backups.beforeInfra && db && (plan.write.includes(OPS.compose) || plan.envChangedKeys.length)
      ? await phase('Back up the database', () => backupDatabase(remote, opsDir, db.id, inputs.backups.keep))
      : undefined
  const before: InfraChange[] = [...files, ...network, ...(backup ? [{ kind: 'backup' as const, path: backup.path }] : [])]

  // 5. The stack: compose up only when something compose acts on changed; then everything healthy.
  const stack = await phase('Start stack', () => startStack(remote, inputs, host, plan, before))
  // Settled: Preflight just read db, redis and nginx healthy, and nothing was started since.
  if (!stack.settled) await phase('Wait until healthy', () => waitHealthy(remote, stack.containers, inputs.infraTimeoutS))
  if (stack.since) stack.changes = await measureOutages(remote, stack.since, stack.changes)
  // 6. nginx picks up a changed config by a reload (unless it was just created with it).
  const reload = await phase('Reload nginx', () => reloadIfChanged(remote, opsDir, host, plan, stack.containers, stack.changes))

  const changes = [...before, ...stack.changes, ...reload]
  if (changes.length === 0) {
    core.info(
      `No changes: ${plan.unchanged} files identical, network present, ${STACK_SERVICES.join('/')} up to date (same containers, nothing restarted).`
    )
  } else {
    core.info(`Changes:\n${changes.map(c => `  - ${describeChange(c)}`).join('\n')}`)
  }
  const nginxId = stack.containers.find(c => c.service === 'nginx')?.id
  if (!nginxId) throw new HostError('the nginx container of the stack is missing after compose up')
  return { changes, changed: changes.length > 0, nginxId, tls: host.tls, settings: host.settings }
}

function logPlan(plan: InfraPlan): InfraPlan {
  for (const n of plan.notes) core.info(n)
  for (const w of plan.warnings) core.warning(w)
  return plan
}

/**
 * Nothing compose would act on: no file or .env change, nothing changed so far, and exactly one container per stack
 * service, each up and healthy. Then `compose up` (about a second with v1) can be skipped.
 */
export function stackSettled(host: HostState, plan: InfraPlan, changes: InfraChange[]): boolean {
  if (plan.write.length || plan.remove.length || plan.envChangedKeys.length || changes.length) return false
  const stack = host.containers.filter(c => isStackService(c.service))
  return (
    stack.length === STACK_SERVICES.length &&
    STACK_SERVICES.every(s => stack.some(c => c.service === s && c.status === 'running' && c.health === 'healthy'))
  )
}

async function ensureNetworkOf(remote: Remote, host: HostState, name: string): Promise<InfraChange[]> {
  if (host.networkExists) {
    core.info(`Network ${name} exists.`)
    return []
  }
  await remote.must(ensureNetwork(name), `creating docker network ${name}`)
  core.info(`Created network ${name}.`)
  return [{ kind: 'network', name }]
}

/**
 * The stack as the files say, nginx replaced without a gap. With the front and one nginx running: compose up of db,
 * redis and the front only (unless settled), and when compose would recreate nginx (its definition or image
 * changed) a handover to a new nginx container instead (front.ts). Otherwise (a fresh host, a host whose nginx still
 * publishes the ports itself, an interrupted handover) one compose up of everything.
 */
async function startStack(
  remote: Remote,
  inputs: InfraInputs,
  host: HostState,
  plan: InfraPlan,
  changes: InfraChange[]
): Promise<{ containers: ContainerInfo[]; changes: InfraChange[]; settled: boolean; since?: string }> {
  const { opsDir } = inputs
  if (stackSettled(host, plan, changes)) {
    core.info('Files, .env and network unchanged and db/redis/nginx/front up and healthy: compose up not needed.')
    return { containers: host.containers, changes: [], settled: true }
  }
  const front = host.containers.find(c => c.service === 'front' && c.status === 'running')
  const nginx = front ? await dropLeftoverNginx(remote, host) : host.containers.filter(c => c.service === 'nginx')
  const live = nginx.length === 1 && nginx[0].status === 'running' ? nginx[0] : undefined
  const handover = front && live ? await nginxOutdated(remote, host.compose, opsDir, live) : false
  const services = front && live ? STACK_SERVICES.filter(s => s !== 'nginx') : undefined
  if (!services && nginx.length)
    core.info(
      front
        ? `${nginx.length} nginx containers: compose up puts one back.`
        : 'nginx moves behind the front (once): a gap of a few seconds while compose recreates it without ports.'
    )
  const since = (await remote.must(hostNow(), "reading the host's clock")).trim()
  const up = await remote.run(services ? composeUpServices(host.compose, opsDir, services) : composeUp(host.compose, opsDir))
  const log = `${up.stdout}${up.stderr}`.trim()
  if (log) core.info(log)
  if (up.code !== 0) throw new HostError(`docker compose up failed (exit ${up.code})`, 'see the compose output above')
  let now = parseInspect(await remote.must(projectInspect(PROJECT), 'listing the stack containers'))
  const made: InfraChange[] = []
  if (handover && live) {
    // The front as compose left it (recreated when its own definition changed too, then ready before its reload).
    const nowFront = now.find(c => c.service === 'front')
    if (!nowFront) throw new HostError('the front container of the stack is missing after compose up')
    if (nowFront.id !== front?.id) await waitHealthy(remote, [nowFront], inputs.infraTimeoutS, ['front'])
    const h = await handOver(remote, {
      compose: host.compose,
      opsDir,
      network: inputs.network,
      old: live,
      front: nowFront,
      timeoutS: inputs.infraTimeoutS,
      current: host.upstreams.get('nginx.stream')
    })
    made.push({ kind: 'handed-over', from: h.from.name, to: h.to.name, retiredMs: h.retiredMs })
    now = parseInspect(await remote.must(projectInspect(PROJECT), 'listing the stack containers'))
  }
  for (const c of now.filter(c => isStackService(c.service))) {
    const before = host.containers.find(b => b.service === c.service)
    if (c.service === 'nginx' && handover) continue
    if (!before) made.push({ kind: 'created', service: c.service })
    else if (!host.containers.some(b => b.id === c.id)) made.push({ kind: 'recreated', service: c.service, id: c.id })
  }
  return { containers: now, changes: made, settled: false, since }
}

/**
 * Two nginx containers behind a running front: a handover was interrupted. The one the front relays to (if it runs)
 * stays; the others finish their requests and are removed (compose would pick by container number, and might remove
 * the one serving). Returns the nginx containers left.
 */
async function dropLeftoverNginx(remote: Remote, host: HostState): Promise<ContainerInfo[]> {
  const nginx = host.containers.filter(c => c.service === 'nginx')
  const serving = nginx.find(c => c.name === frontTarget(host.upstreams.get('nginx.stream')) && c.status === 'running')
  if (nginx.length < 2 || !serving) return nginx
  for (const c of nginx.filter(c => c !== serving)) {
    core.warning(`${c.name} is left from an interrupted handover (the front relays to ${serving.name}): removing it`)
    await retireNginx(remote, c)
  }
  return [serving]
}

/** db and redis recreated: how long each was unreachable, from docker's events (printed with the change). */
async function measureOutages(remote: Remote, since: string, changes: InfraChange[]): Promise<InfraChange[]> {
  const measured = changes.filter(c => c.kind === 'recreated' && (c.service === 'db' || c.service === 'redis'))
  if (!measured.length) return changes
  const events = (await remote.run(projectEvents(PROJECT, since))).stdout
  return changes.map(c =>
    c.kind === 'recreated' && measured.includes(c) && c.id ? { ...c, unreachableS: unreachableS(events, c.service, c.id) } : c
  )
}

/** compose would recreate the running nginx: the hash of its definition now differs from the one it was created from. */
async function nginxOutdated(remote: Remote, compose: Compose, opsDir: string, nginx: ContainerInfo): Promise<boolean> {
  const out = await remote.must(composeServiceHash(compose, opsDir, 'nginx'), "reading nginx's definition (docker compose config --hash)")
  const hash = /^nginx\s+(\S+)/m.exec(out)?.[1]
  if (!hash) throw new HostError(`docker compose config --hash nginx printed no hash: ${out.trim()}`)
  return hash !== nginx.labels[COMPOSE_HASH_LABEL]
}

/**
 * The front names the nginx container itself (not the service name, which a second nginx would share): after the
 * stack was created or moved behind the front. Then nginx and the front pick up changed files by a reload, unless
 * they were just (re)created, handed over or pointed with them.
 */
async function reloadIfChanged(
  remote: Remote,
  opsDir: string,
  host: HostState,
  plan: InfraPlan,
  containers: ContainerInfo[],
  changes: InfraChange[]
): Promise<InfraChange[]> {
  const out: InfraChange[] = []
  const front = containers.find(x => x.service === 'front')
  const nginx = containers.find(x => x.service === 'nginx')
  const handedOver = changes.some(c => c.kind === 'handed-over')
  if (front && nginx && !handedOver && (await pinFront(remote, opsDir, front, nginx, host.upstreams.get('nginx.stream'))))
    out.push({ kind: 'front-pinned', to: nginx.name })
  const pointed = handedOver || out.length > 0
  for (const [service, c, changed] of [
    ['nginx', nginx, plan.nginxChanged],
    ['front', front, plan.frontChanged && !pointed]
  ] as const) {
    if (!changed) {
      if (service === 'nginx' || !pointed) core.info(`${service} config unchanged: no reload.`)
      continue
    }
    if (!c || !host.containers.some(b => b.id === c.id)) {
      core.info(`${service} was (re)created with the new config: no reload needed.`)
      continue
    }
    await reloadAndWait(remote, c.id)
    core.info(`${service} reloaded: new workers serve the new config; old ones finish their requests.`)
    out.push({ kind: 'reloaded', service })
  }
  return out
}

/** Sends every changed file in one archive and swaps them into place in one command. */
async function upload(remote: Remote, opsDir: string, plan: InfraPlan, host: HostState): Promise<InfraChange[]> {
  const entries: ArchiveEntry[] = plan.write.map(path => ({ path, content: plan.files.get(path) as string, mode: 0o644 }))
  if (plan.envChangedKeys.length) entries.push({ path: OPS.env, content: plan.envText, mode: 0o600 })
  if (entries.length) {
    await remote.must(
      unpackAndCommit(
        opsDir,
        entries.map(e => e.path)
      ),
      `writing files into ${opsDir}`,
      { stdin: await tarball(entries) }
    )
  }
  if (plan.remove.length) await remote.must(removeFiles(hostPaths(opsDir, plan.remove)), 'removing stale files')
  if (!entries.length && !plan.remove.length) core.info('All files up to date.')
  return [
    ...plan.write.map(path => ({
      kind: path.startsWith(`${OPS.upstreams}/`) && !host.hashes.has(path) ? ('placeholder' as const) : ('wrote' as const),
      path
    })),
    ...plan.remove.map(path => ({ kind: 'removed' as const, path })),
    ...(plan.envChangedKeys.length ? [{ kind: 'env' as const, keys: plan.envChangedKeys }] : [])
  ]
}

/**
 * compose config, and `nginx -t` on the new nginx files before anything (re)starts or reloads: in the running nginx,
 * or, when the compose file or .env changed (nginx's image may change with them) or nginx is not running, in a
 * throwaway container of the nginx the stack will run. The front's config the same way.
 */
async function validate(remote: Remote, opsDir: string, host: HostState, plan: InfraPlan): Promise<void> {
  const stackChanged = plan.write.includes(OPS.compose) || plan.envChangedKeys.length > 0
  if (stackChanged) await remote.must(composeConfig(host.compose, opsDir), 'checking the compose file with .env (docker compose config)')
  if (!plan.nginxChanged && !plan.frontChanged && !stackChanged) return core.info('nginx config unchanged.')
  // In the running container when only its files changed; else in a throwaway one of what compose will run.
  const runningId = (service: string) =>
    stackChanged ? undefined : host.containers.find(c => c.service === service && c.status === 'running')?.id
  const nginxId = runningId('nginx')
  const frontId = runningId('front')
  const tests = [
    ...(plan.nginxChanged || stackChanged
      ? [
          {
            what: 'nginx',
            image: 'NGINX_IMAGE' as const,
            sh: nginxId ? nginxTest({ container: nginxId }) : composeNginxTest(host.compose, opsDir)
          }
        ]
      : []),
    ...((plan.frontChanged || stackChanged) && plan.files.has(FRONT_CONF_FILE)
      ? [
          {
            what: 'front',
            image: 'FRONT_IMAGE' as const,
            sh: frontId ? frontTest(frontId) : composeNginxTest(host.compose, opsDir, 'front')
          }
        ]
      : [])
  ]
  for (const t of tests) {
    const r = await remote.run(t.sh)
    const out = (r.stderr || r.stdout).trim()
    if (r.code !== 0) {
      const tooOld = nginxTooOld(out, t.image)
      if (tooOld) throw tooOld
      throw new HostError(`The ${t.what} config test failed; the previous files were restored and nothing was reloaded:\n${out}`)
    }
    core.info(`${t.what}: ${out || 'nginx -t: ok'}`)
  }
}
