import * as core from '@actions/core'
import {
  composeV1Version,
  composeV2Version,
  inspectContainers,
  certificateExists,
  dirWritable,
  diskFree,
  dockerServerVersion,
  ensureNetwork,
  execIn,
  forgetPrevious,
  hashFiles,
  networkExists,
  projectContainers,
  readFileIfExists,
  removeFiles,
  restoreFiles,
  unpackAndCommit
} from './commands/host'
import { composeConfig, composeNginxTest, composeUp, composeV1, composeV2, NGINX_CONF, PROJECT, type Compose } from './commands/compose'
import { tarball, type ArchiveEntry } from './archive'
import { backupDatabase } from './backup'
import { parseInspect, showLogs, type ContainerInfo } from './containers'
import type { InfraInputs } from './context'
import { mergeEnvFile, readEnvFile, redisPasswordProblem, type EnvEntries } from './envfile'
import { HostError, InputError, InputErrors } from './errors'
import { reloadAndWait } from './nginx'
import type { Phases } from './phases'
import { concurrently, section, sleep, splitSections } from './shell'
import type { Remote } from './ssh'
import { loadBundle, planFiles, renderStack, ROUTED_SERVICES, type FileSet } from './stackfiles'
import { placeholderUpstream, upstreamPath } from './upstream'

/** Variables the stack cannot start without. */
export const REQUIRED_ENV = ['DB_USER', 'DB_PASS', 'DB_NAME', 'REDIS_PASSWORD'] as const
export const STACK_SERVICES = ['db', 'redis', 'nginx'] as const
const MANIFEST = '.ops-manifest'
/** sha256 of the certificate nginx was last given (see planInfra). */
const CERT_STATE = '.ops-certificate'
const ENV_FILE = '.env'
export const COMPOSE_FILE = 'compose/docker-compose.yml'
const MIN_FREE_KB = 1024 * 1024
const WARN_FREE_KB = 5 * 1024 * 1024

export interface Container {
  id: string
  service: string
  status: string
}

/** What preflight learned about the host, read-only. */
export interface HostState {
  compose: Compose
  envText: string
  hashes: Map<string, string>
  manifest: string[]
  networkExists: boolean
  containers: Container[]
  /** domain and ports in effect: the inputs, else the host's .env, else the defaults. */
  settings: Settings
  tls: boolean
  /** sha256 of the certificate and key nginx serves ('' without TLS): a renewal changes it. */
  certHash: string
}

export interface Settings {
  domain: string
  httpPort: number
  httpsPort: number
}

export interface InfraPlan {
  files: FileSet
  write: string[]
  remove: string[]
  unchanged: number
  envText: string
  envChangedKeys: string[]
  nginxChanged: boolean
}

export interface InfraResult {
  changed: boolean
  changes: string[]
  /** The running nginx container. */
  nginxId: string
  /** nginx serves HTTPS for the domain. */
  tls: boolean
  settings: Settings
}

/** `mode: infra`, step by step. Each step is one log group; nothing changes on the host before "Upload files". */
export async function runInfra(remote: Remote, inputs: InfraInputs, phases: Phases, label = ''): Promise<InfraResult> {
  const bundle = loadBundle()
  const host = await phases.run(`${label}Preflight`, () => preflight(remote, inputs, bundle))
  const plan = await phases.run(`${label}Plan`, () => planInfra(inputs, host, bundle))
  const changes: string[] = []

  await phases.run(`${label}Upload files`, () => upload(remote, inputs.opsDir, plan, changes))
  await phases.run(`${label}Network`, async () => {
    if (host.networkExists) return core.info(`Network ${inputs.network} exists.`)
    await remote.must(ensureNetwork(inputs.network), `creating docker network ${inputs.network}`)
    changes.push(`created docker network ${inputs.network}`)
    core.info(`Created network ${inputs.network}.`)
  })

  try {
    await phases.run(`${label}Validate config`, () => validate(remote, inputs.opsDir, host, plan))
  } catch (e) {
    await remote.must(restoreFiles(touched(inputs.opsDir, plan)), 'restoring the previous files')
    throw e
  }
  if (touched(inputs.opsDir, plan).length) await remote.must(forgetPrevious(touched(inputs.opsDir, plan)), 'cleaning up')

  // A change of the compose file or .env may make compose recreate db: take a backup of it first.
  const db = host.containers.find(c => c.service === 'db' && /^Up /.test(c.status))
  if (inputs.backups.beforeInfra && db && (plan.write.includes(COMPOSE_FILE) || plan.envChangedKeys.length)) {
    await phases.run(`${label}Back up the database`, async () => {
      const b = await backupDatabase(remote, inputs.opsDir, db.id, inputs.backups.keep)
      changes.push(`backed up the database to ${b.path}`)
    })
  }

  const after = await phases.run(`${label}Start stack`, async () => {
    if (stackSettled(host, plan, changes)) {
      core.info('Files, .env and network unchanged and db/redis/nginx up and healthy: compose up not needed.')
      return host.containers
    }
    const up = await remote.run(composeUp(host.compose, inputs.opsDir))
    const log = `${up.stdout}${up.stderr}`.trim()
    if (log) core.info(log)
    if (up.code !== 0) throw new HostError(`docker compose up failed (exit ${up.code})`, 'see the compose output above')
    const now = parseContainers(await remote.must(projectContainers(PROJECT), 'listing the stack containers'))
    for (const c of now.filter(c => isStackService(c.service))) {
      const before = host.containers.find(b => b.service === c.service)
      if (!before) changes.push(`created ${c.service}`)
      else if (before.id !== c.id) changes.push(`recreated ${c.service}`)
    }
    return now
  })

  await phases.run(`${label}Wait until healthy`, () => waitHealthy(remote, after, inputs.infraTimeoutS))

  await phases.run(`${label}Reload nginx`, async () => {
    const nginx = after.find(c => c.service === 'nginx')
    const before = host.containers.find(c => c.service === 'nginx')
    if (!plan.nginxChanged) return core.info('nginx config unchanged: no reload.')
    if (!nginx || !before || before.id !== nginx.id) return core.info('nginx was (re)created with the new config: no reload needed.')
    await reloadAndWait(remote, nginx.id)
    changes.push('reloaded nginx')
    core.info('nginx reloaded: new workers serve the new config; old ones finish their requests.')
  })

  if (changes.length === 0) {
    core.info(
      `No changes: ${plan.unchanged} files identical, network present, ${STACK_SERVICES.join('/')} up to date (same containers, nothing restarted).`
    )
  } else {
    core.info(`Changes:\n${changes.map(c => `  - ${c}`).join('\n')}`)
  }
  const nginxId = after.find(c => c.service === 'nginx')?.id
  if (!nginxId) throw new HostError('the nginx container of the stack is missing after compose up')
  return { changed: changes.length > 0, changes, nginxId, tls: host.tls, settings: host.settings }
}

/**
 * Nothing compose would act on: no file or .env change, nothing created so far, and exactly one container per stack
 * service, each up and healthy. Then `compose up` (about a second with v1) can be skipped.
 */
export function stackSettled(host: HostState, plan: InfraPlan, changes: string[]): boolean {
  if (plan.write.length || plan.remove.length || plan.envChangedKeys.length || changes.length) return false
  const stack = host.containers.filter(c => isStackService(c.service))
  return (
    stack.length === STACK_SERVICES.length &&
    STACK_SERVICES.every(s => stack.some(c => c.service === s && /^Up .*\(healthy\)/.test(c.status)))
  )
}

function isStackService(s: string): boolean {
  return (STACK_SERVICES as readonly string[]).includes(s)
}

export function parseContainers(out: string): Container[] {
  return out
    .split('\n')
    .filter(l => l.trim())
    .map(l => {
      const [id, service, status] = l.split('\t')
      return { id, service, status }
    })
}

/** One round trip of read-only probes; every failure says how to fix it. */
export async function preflight(remote: Remote, inputs: InfraInputs, bundle: FileSet): Promise<HostState> {
  const probes = concurrently(
    section('docker', dockerServerVersion()),
    section('compose-v2', composeV2Version()),
    section('compose-v1', composeV1Version()),
    section('disk', diskFree(inputs.opsDir)),
    section('opsdir', dirWritable(inputs.opsDir)),
    section('hashes', hashFiles(inputs.opsDir, ['compose', 'nginx', 'upstreams', MANIFEST, CERT_STATE])),
    section('manifest', readFileIfExists(`${inputs.opsDir}/${MANIFEST}`)),
    section('network', networkExists(inputs.network)),
    section('containers', projectContainers(PROJECT))
  )
  const s = splitSections((await remote.run(probes)).stdout)
  const get = (name: string) => s.get(name) ?? { rc: 255, out: '' }

  const docker = get('docker')
  if (docker.rc !== 0) {
    if (/permission denied/i.test(docker.out)) {
      throw new HostError(
        'The SSH user cannot reach the docker daemon (permission denied on /var/run/docker.sock).',
        'add the user to the docker group on the host: sudo usermod -aG docker <user>, then log in again'
      )
    }
    if (/not found/i.test(docker.out))
      throw new HostError('docker is not installed on the host.', 'install Docker Engine (https://docs.docker.com/engine/install/)')
    throw new HostError(`docker is not usable on the host: ${docker.out.trim()}`, 'make sure dockerd runs: sudo systemctl start docker')
  }
  const v2 = get('compose-v2')
  const v1 = get('compose-v1')
  const compose = v2.rc === 0 ? composeV2(v2.out.trim()) : v1.rc === 0 ? composeV1(v1.out.trim()) : undefined
  if (!compose)
    throw new HostError(
      'Neither `docker compose` (v2) nor `docker-compose` (v1) is installed on the host.',
      'install the compose plugin: sudo apt-get install docker-compose-plugin'
    )
  core.info(`docker ${docker.out.trim()}, compose ${compose.argv.join(' ')} ${compose.version}`)

  for (const line of get('disk').out.trim().split('\n')) {
    const [path, kb] = line.split(' ')
    const free = Number(kb)
    if (!Number.isFinite(free)) continue
    if (free < MIN_FREE_KB)
      throw new HostError(
        `Only ${Math.round(free / 1024)} MiB free on ${path}.`,
        'free disk space: docker system prune -a (removes unused images)'
      )
    if (free < WARN_FREE_KB) core.warning(`Only ${Math.round(free / 1024)} MiB free on ${path}.`)
    else core.info(`${(free / 1024 / 1024).toFixed(1)} GiB free on ${path}`)
  }

  const opsdir = get('opsdir').out.trim()
  if (opsdir.startsWith('denied')) {
    throw new HostError(
      `ops-dir ${inputs.opsDir} is not writable by the SSH user (${opsdir.slice(7)} is not writable).`,
      `sudo install -d -o <user> -m 0750 ${inputs.opsDir}`
    )
  }

  // The .env holds secrets: read in a call of its own, never logged.
  const envText = opsdir === 'exists' ? await remote.must(readFileIfExists(`${inputs.opsDir}/${ENV_FILE}`), 'reading .env') : ''
  const hashes = new Map<string, string>()
  for (const line of get('hashes').out.split('\n')) {
    const m = /^([0-9a-f]{64})\s+\*?(.+)$/.exec(line)
    if (m) hashes.set(m[2], m[1])
  }

  const settings = effectiveSettings(inputs, readEnvFile(envText))
  let tls = false
  let certHash = ''
  if (settings.domain) {
    const image = nginxImage(readEnvFile(envText), bundle.get(COMPOSE_FILE) ?? '')
    const cert = await remote.run(certificateExists(settings.domain, image))
    const present = /^present ([0-9a-f]{64})$/m.exec(cert.stdout)
    tls = Boolean(present)
    certHash = present?.[1] ?? ''
    if (!tls)
      core.warning(
        `No certificate for ${settings.domain} under /etc/letsencrypt/live on the host: nginx serves HTTP only. Obtain one with certbot (webroot /var/www/certbot), then run infra again.`
      )
    else core.info(`Certificate for ${settings.domain} found: HTTPS enabled.`)
  }

  return {
    compose,
    envText,
    hashes,
    manifest: get('manifest').out.split('\n').filter(Boolean),
    networkExists: get('network').rc === 0,
    containers: parseContainers(get('containers').out),
    settings,
    tls,
    certHash
  }
}

/**
 * domain, http-port and https-port: the input when given, else what the host has (its .env, written by earlier runs),
 * else the default. So an app repo's deploy, which does not repeat them, never turns HTTPS off or moves nginx.
 */
export function effectiveSettings(inputs: InfraInputs, env: Map<string, string>): Settings {
  const port = (key: string) => (/^\d+$/.test(env.get(key) ?? '') ? Number(env.get(key)) : undefined)
  const given = inputs.settings
  const settings = {
    domain: given.domain ?? env.get('DOMAIN') ?? '',
    httpPort: given.httpPort ?? port('HTTP_PORT') ?? 80,
    httpsPort: given.httpsPort ?? port('HTTPS_PORT') ?? 443
  }
  if (settings.httpPort === settings.httpsPort) {
    throw new InputError(
      given.httpsPort === undefined ? 'http-port' : 'https-port',
      `must differ from the HTTPS port the host uses (both would be ${settings.httpPort})`
    )
  }
  const from = (v: unknown) => (v === undefined ? ' (from the host)' : '')
  core.info(
    `Settings: domain ${settings.domain || 'none (HTTP only)'}${from(given.domain)}, HTTP port ${settings.httpPort}${from(given.httpPort)}, HTTPS port ${settings.httpsPort}${from(given.httpsPort)}`
  )
  return settings
}

/** The nginx image the stack runs: NGINX_IMAGE from .env, else the compose file's default. */
export function nginxImage(env: Map<string, string>, composeText: string): string {
  return env.get('NGINX_IMAGE') || /\$\{NGINX_IMAGE:-([^}]+)\}/.exec(composeText)?.[1] || 'nginx'
}

/** Everything the run will write, computed locally; input errors surface here, before any change. */
export function planInfra(inputs: InfraInputs, host: HostState, bundle: FileSet): InfraPlan {
  const files = renderStack(bundle, { domain: host.settings.domain, tls: host.tls })
  // The certificate nginx loaded, as a file of the run: when certbot renews it, this file changes and nginx reloads.
  if (host.tls) files.set(CERT_STATE, `${host.certHash}\n`)
  files.set(MANIFEST, [...files.keys()].join('\n') + '\n')
  // A service's upstream belongs to its deploys; infra only puts the 503 placeholder where none exists yet.
  for (const service of ROUTED_SERVICES) {
    const path = upstreamPath(service)
    if (!host.hashes.has(path)) files.set(path, placeholderUpstream(service))
  }
  const updates: EnvEntries = [
    ...inputs.infraEnv,
    ['HTTP_PORT', String(host.settings.httpPort)],
    ['HTTPS_PORT', String(host.settings.httpsPort)],
    ['DOMAIN', host.settings.domain],
    ['OPS_NETWORK', inputs.network]
  ]
  const merged = mergeEnvFile(host.envText, updates, 'infra-env')
  checkStackEnv(readEnvFile(merged.text))

  const plan = planFiles(files, host.hashes, host.manifest)
  const nginxChanged = [...plan.write, ...plan.remove].some(p => p.startsWith('nginx/') || p.startsWith('upstreams/') || p === CERT_STATE)
  if (plan.write.includes(CERT_STATE) && host.hashes.has(CERT_STATE))
    core.info(`The certificate of ${host.settings.domain} changed on the host (renewed?): nginx will reload it.`)
  core.info(`${plan.write.length} file(s) to write, ${plan.remove.length} to remove, ${plan.unchanged} unchanged.`)
  for (const p of plan.write) core.info(`  ${host.hashes.has(p) ? 'update' : 'create'} ${p}`)
  for (const p of plan.remove) core.info(`  remove ${p}`)
  if (merged.changed.length) core.info(`  .env: set ${merged.changed.join(', ')}`)
  const dbKeys = merged.changed.filter(k => ['DB_USER', 'DB_PASS', 'DB_NAME'].includes(k))
  if (dbKeys.length && host.containers.some(c => c.service === 'db')) {
    core.warning(
      `${dbKeys.join(', ')} changed, but postgres applies POSTGRES_USER/PASSWORD/DB only when it initialises an empty data volume: the existing database keeps its old user and password. Change them in postgres too (ALTER USER … PASSWORD …).`
    )
  }
  return {
    files,
    write: plan.write,
    remove: plan.remove,
    unchanged: plan.unchanged,
    envText: merged.text,
    envChangedKeys: merged.changed,
    nginxChanged
  }
}

/** All problems with the stack's variables at once, naming where to set them. */
export function checkStackEnv(env: Map<string, string>): void {
  const errors: InputError[] = []
  const missing = REQUIRED_ENV.filter(k => !env.get(k))
  if (missing.length) {
    errors.push(
      new InputError(
        'infra-env',
        `missing required variable${missing.length > 1 ? 's' : ''} ${missing.join(', ')} (set them in infra-env or in <ops-dir>/.env on the host); nothing was changed`
      )
    )
  }
  const redis = redisPasswordProblem(env.get('REDIS_PASSWORD') ?? '')
  if (redis) errors.push(new InputError('infra-env', redis))
  if (errors.length) throw new InputErrors(errors)
}

function touched(opsDir: string, plan: InfraPlan): string[] {
  const paths = plan.envChangedKeys.length ? [...plan.write, ENV_FILE] : plan.write
  return paths.map(p => `${opsDir}/${p}`)
}

/** Sends every changed file in one archive and swaps them into place in one command. */
async function upload(remote: Remote, opsDir: string, plan: InfraPlan, changes: string[]): Promise<void> {
  const entries: ArchiveEntry[] = plan.write.map(path => ({ path, content: plan.files.get(path) as string, mode: 0o644 }))
  if (plan.envChangedKeys.length) entries.push({ path: ENV_FILE, content: plan.envText, mode: 0o600 })
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
  if (plan.remove.length) await remote.must(removeFiles(plan.remove.map(p => `${opsDir}/${p}`)), 'removing stale files')
  for (const p of plan.write) changes.push(`${p.startsWith('upstreams/') ? 'created placeholder' : 'wrote'} ${p}`)
  for (const p of plan.remove) changes.push(`removed ${p}`)
  if (plan.envChangedKeys.length) changes.push(`.env: set ${plan.envChangedKeys.join(', ')}`)
  if (!entries.length && !plan.remove.length) core.info('All files up to date.')
}

/** compose config, and `nginx -t` on the new nginx files before anything (re)starts or reloads. */
async function validate(remote: Remote, opsDir: string, host: HostState, plan: InfraPlan): Promise<void> {
  if (plan.write.includes(COMPOSE_FILE) || plan.envChangedKeys.length) {
    await remote.must(composeConfig(host.compose, opsDir), 'checking the compose file with .env (docker compose config)')
  }
  if (!plan.nginxChanged) return core.info('nginx config unchanged.')
  const running = host.containers.find(c => c.service === 'nginx' && c.status.startsWith('Up'))
  const test = running ? execIn(running.id, 'nginx', '-t', '-c', NGINX_CONF) : composeNginxTest(host.compose, opsDir)
  const r = await remote.run(test)
  if (r.code !== 0) {
    throw new HostError(
      `The nginx config test failed; the previous files were restored and nothing was reloaded:\n${(r.stderr || r.stdout).trim()}`
    )
  }
  core.info((r.stderr || r.stdout).trim() || 'nginx -t: ok')
}

/** Polls every second until db, redis and nginx report healthy; a crash or the timeout fails with their logs. */
async function waitHealthy(remote: Remote, containers: Container[], timeoutS: number): Promise<void> {
  const ids = containers.filter(c => isStackService(c.service)).map(c => c.id)
  const deadline = Date.now() + timeoutS * 1000
  const baseline = new Map<string, number>()
  for (;;) {
    const rows = parseInspect((await remote.run(inspectContainers(ids))).stdout)
    const service = (c: ContainerInfo) => c.labels['com.docker.compose.service']
    for (const c of rows) if (!baseline.has(c.id)) baseline.set(c.id, c.restarts)
    const broken = rows.find(c => c.status === 'exited' || c.status === 'dead' || c.restarts > (baseline.get(c.id) ?? 0))
    if (broken)
      return failWithLogs(
        remote,
        broken.id,
        service(broken),
        `${service(broken)} crashed (${broken.status}, restarted ${broken.restarts}×)`
      )
    if (rows.length === STACK_SERVICES.length && rows.every(c => c.health === 'healthy')) {
      core.info(STACK_SERVICES.map(s => `${s}: healthy`).join(', '))
      return
    }
    if (Date.now() > deadline) {
      const state = rows.map(c => `${service(c)} ${c.status}/${c.health}`).join(', ')
      const bad = rows.find(c => c.health !== 'healthy')
      if (!bad) throw new HostError(`Timed out after ${timeoutS} s waiting for the stack (${state}).`)
      return failWithLogs(remote, bad.id, service(bad), `${service(bad)} not healthy after ${timeoutS} s (${state})`)
    }
    await sleep(1000)
  }
}

async function failWithLogs(remote: Remote, id: string, service: string, what: string): Promise<never> {
  await showLogs(remote, id, service, 50)
  throw new HostError(what, `see the ${service} log lines above`)
}
