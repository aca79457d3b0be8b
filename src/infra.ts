import * as core from '@actions/core'
import { tarball, type ArchiveEntry } from './archive'
import { backupDatabase } from './backup'
import { STACK_SERVICES } from './catalogue'
import { composeConfig, composeNginxTest, composeUp, ensureNetwork } from './commands/compose'
import { projectInspect } from './commands/containers'
import { forgetPrevious, removeFiles, restoreFiles, unpackAndCommit } from './commands/files'
import { nginxTest } from './commands/nginx'
import { parseInspect, type ContainerInfo } from './containers'
import { HostError } from './errors'
import { readHost, type HostState, type Settings } from './hoststate'
import { planInfra, touched, type InfraPlan } from './infraplan'
import type { InfraInputs } from './inputs'
import { PROJECT } from './labels'
import { nginxTooOld, reloadAndWait } from './nginx'
import { hostPaths, OPS } from './paths'
import type { Phases } from './phases'
import type { Remote } from './ssh'
import { isStackService, waitHealthy } from './stackhealth'
import { loadBundle } from './stackfiles'

/** One thing an infra run changed on the host. */
export type InfraChange =
  | { kind: 'wrote' | 'placeholder' | 'removed'; path: string }
  | { kind: 'env'; keys: string[] }
  | { kind: 'network'; name: string }
  | { kind: 'backup'; path: string }
  | { kind: 'created' | 'recreated'; service: string }
  | { kind: 'reloaded' }

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
    case 'recreated':
      return `${c.kind} ${c.service}`
    case 'reloaded':
      return 'reloaded nginx'
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

/** `mode: infra`, step by step. Each step is one log group; nothing changes on the host before "Upload files". */
export async function runInfra(remote: Remote, inputs: InfraInputs, phases: Phases, label = ''): Promise<InfraResult> {
  const { opsDir } = inputs
  const phase = <T>(name: string, fn: () => T | Promise<T>) => phases.run(`${label}${name}`, fn)
  const bundle = loadBundle()
  // 1. What the host has, and what it should have (computed here; nothing is changed yet).
  const host = await phase('Preflight', () => readHost(remote, inputs, bundle))
  const plan = await phase('Plan', () => logPlan(planInfra(inputs, host, bundle)))

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
  const stack = await phase('Start stack', () => startStack(remote, opsDir, host, plan, before))
  // Settled: Preflight just read db, redis and nginx healthy, and nothing was started since.
  if (!stack.settled) await phase('Wait until healthy', () => waitHealthy(remote, stack.containers, inputs.infraTimeoutS))
  // 6. nginx picks up a changed config by a reload (unless it was just created with it).
  const reload = await phase('Reload nginx', () => reloadIfChanged(remote, host, plan, stack.containers))

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

/** compose up (unless settled), and which stack services it created or recreated. */
async function startStack(
  remote: Remote,
  opsDir: string,
  host: HostState,
  plan: InfraPlan,
  changes: InfraChange[]
): Promise<{ containers: ContainerInfo[]; changes: InfraChange[]; settled: boolean }> {
  if (stackSettled(host, plan, changes)) {
    core.info('Files, .env and network unchanged and db/redis/nginx up and healthy: compose up not needed.')
    return { containers: host.containers, changes: [], settled: true }
  }
  const up = await remote.run(composeUp(host.compose, opsDir))
  const log = `${up.stdout}${up.stderr}`.trim()
  if (log) core.info(log)
  if (up.code !== 0) throw new HostError(`docker compose up failed (exit ${up.code})`, 'see the compose output above')
  const now = parseInspect(await remote.must(projectInspect(PROJECT), 'listing the stack containers'))
  const made = now
    .filter(c => isStackService(c.service))
    .flatMap((c): InfraChange[] => {
      const before = host.containers.find(b => b.service === c.service)
      if (!before) return [{ kind: 'created', service: c.service }]
      return before.id !== c.id ? [{ kind: 'recreated', service: c.service }] : []
    })
  return { containers: now, changes: made, settled: false }
}

async function reloadIfChanged(remote: Remote, host: HostState, plan: InfraPlan, containers: ContainerInfo[]): Promise<InfraChange[]> {
  const nginx = containers.find(c => c.service === 'nginx')
  const before = host.containers.find(c => c.service === 'nginx')
  if (!plan.nginxChanged) {
    core.info('nginx config unchanged: no reload.')
    return []
  }
  if (!nginx || !before || before.id !== nginx.id) {
    core.info('nginx was (re)created with the new config: no reload needed.')
    return []
  }
  await reloadAndWait(remote, nginx.id)
  core.info('nginx reloaded: new workers serve the new config; old ones finish their requests.')
  return [{ kind: 'reloaded' }]
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
 * throwaway container of the nginx the stack will run.
 */
async function validate(remote: Remote, opsDir: string, host: HostState, plan: InfraPlan): Promise<void> {
  const stackChanged = plan.write.includes(OPS.compose) || plan.envChangedKeys.length > 0
  if (stackChanged) await remote.must(composeConfig(host.compose, opsDir), 'checking the compose file with .env (docker compose config)')
  if (!plan.nginxChanged && !stackChanged) return core.info('nginx config unchanged.')
  const running = host.containers.find(c => c.service === 'nginx' && c.status === 'running')
  const test = running && !stackChanged ? nginxTest({ container: running.id }) : composeNginxTest(host.compose, opsDir)
  const r = await remote.run(test)
  const out = (r.stderr || r.stdout).trim()
  if (r.code !== 0) {
    const tooOld = nginxTooOld(out)
    if (tooOld) throw tooOld
    throw new HostError(`The nginx config test failed; the previous files were restored and nothing was reloaded:\n${out}`)
  }
  core.info(out || 'nginx -t: ok')
}
