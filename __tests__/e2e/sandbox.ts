import { execFileSync } from 'node:child_process'
import { cpSync, mkdtempSync, readdirSync, readFileSync } from 'node:fs'
import { get } from 'node:http'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
// @ts-expect-error plain ESM helper shared with the benchmark
import { startLoad, summarize } from '../../scripts/load.mjs'
// @ts-expect-error plain ESM helper shared with `npm run demo`
import { ROOT, runAction as run, sandbox, sandboxInputs } from '../../scripts/run-action.mjs'

export interface ActionRun {
  code: number
  /** The signal that ended the process, when a fault killed it. */
  signal?: string | null
  output: string
  outputs: Record<string, string>
  summary: string
  ms: number
}

export const OPS_DIR = '/opt/behindy-ops'
export const NETWORK = 'internal'
export const HTTP_PORT = 18080
export const HTTPS_PORT = 18443
export const DB = { user: 'behindy', pass: 's3cret pass#1', name: 'behindy' }
export const REDIS_PASSWORD = 'redis-pw-123456'
export const INFRA_ENV = `DB_USER=${DB.user}\nDB_PASS=${DB.pass}\nDB_NAME=${DB.name}\nREDIS_PASSWORD=${REDIS_PASSWORD}`

export const connection = (): {
  host: string
  port: number
  username: string
  keyPath: string
  passphraseKeyPath: string
  passphrase: string
  knownHostsLine: string
  fingerprint: string
  images: Record<string, string>
} => sandbox()

/** A fault to inject into a run: once its output matches `when`, the action process gets `signal` after `afterMs`. */
export interface Fault {
  when: RegExp
  afterMs?: number
  /** 0 sends nothing (for faults injected by onSent alone). */
  signal?: NodeJS.Signals | 0
  onSent?: (child: import('node:child_process').ChildProcess) => void
}

export function runAction(inputs: Record<string, string>, env: Record<string, string> = {}, signal?: Fault): Promise<ActionRun> {
  return run(inputs, { env, signal })
}

/** Inputs of an ordinary infra run against the sandbox host. */
export function infraInputs(extra: Record<string, string> = {}): Record<string, string> {
  return sandboxInputs({
    mode: 'infra',
    'ops-dir': OPS_DIR,
    network: NETWORK,
    'http-port': String(HTTP_PORT),
    'https-port': String(HTTPS_PORT),
    'infra-env': INFRA_ENV,
    ...extra
  })
}

export function sh(cmd: string, args: string[], input?: string): string {
  return execFileSync(cmd, args, { encoding: 'utf8', input, stdio: ['pipe', 'pipe', 'pipe'] })
}

/** Like sh, but returns exit code and both streams instead of throwing. */
export function tryRun(cmd: string, args: string[]): { code: number; out: string } {
  try {
    return { code: 0, out: execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }) }
  } catch (e) {
    const err = e as { status?: number; stdout?: string; stderr?: string }
    return { code: err.status ?? 1, out: `${err.stdout ?? ''}${err.stderr ?? ''}` }
  }
}

/** The stack's containers: service -> container id. */
export function stackContainers(): Record<string, string> {
  const out = sh('docker', [
    'ps',
    '-a',
    '--no-trunc',
    '--filter',
    'label=com.docker.compose.project=behindy',
    '--format',
    '{{.Label "com.docker.compose.service"}} {{.ID}}'
  ])
  return Object.fromEntries(
    out
      .trim()
      .split('\n')
      .filter(Boolean)
      .map(l => l.split(' '))
  )
}

/** Start time of each container, to prove nothing restarted. */
export function startedAt(ids: string[]): string[] {
  return sh('docker', ['inspect', '--format', '{{.State.StartedAt}}', ...ids])
    .trim()
    .split('\n')
}

/** scripts/sandbox.sh, whose `stop|start <daemon>` the fault tests use. */
export const sandboxScript = (): string => join(ROOT, 'scripts', 'sandbox.sh')

/** Wipes what infra creates, so the next run meets a fresh host (the sandbox itself stays up). */
export function resetHost(): void {
  sh('bash', [join(ROOT, 'scripts', 'sandbox.sh'), 'reset-stack'])
}

/**
 * sha256 of every file under ops-dir (and its mode), to prove a run changed nothing. The deploy lock's files are left
 * out: every run takes the lock, and its holder line names the run. It first waits for the background retirements
 * of earlier deploys: they append to retire.log after their run has ended, so a snapshot taken while one is still
 * running would differ from a later one without any run having changed anything.
 */
export function hashOpsDir(): string {
  settleRetirements()
  return tryRun('sh', [
    '-c',
    `cd ${OPS_DIR} && find . -type f ! -name '.deploy.lock*' -exec stat -c '%a %n' {} + -exec sha256sum {} + | sort`
  ]).out
}

/** Runs SQL as the app user from a throwaway container on the internal network, as an app would. */
export function psql(sql: string, password = DB.pass): { code: number; out: string } {
  return tryRun('docker', [
    'run',
    '--rm',
    '--network',
    NETWORK,
    '-e',
    `PGPASSWORD=${password}`,
    connection().images.postgres,
    'psql',
    '-h',
    'db',
    '-U',
    DB.user,
    '-d',
    DB.name,
    '-tAc',
    sql
  ])
}

/** redis-cli against the stack's redis from the internal network (password via REDISCLI_AUTH when given). */
export function redisCli(args: string[], password?: string): { code: number; out: string } {
  const auth = password ? ['-e', `REDISCLI_AUTH=${password}`] : []
  return tryRun('docker', [
    'run',
    '--rm',
    '--network',
    NETWORK,
    ...auth,
    connection().images.redis,
    'redis-cli',
    '--no-auth-warning',
    '-h',
    'redis',
    ...args
  ])
}

/**
 * One GET on a connection of its own (no keep-alive pool): after a reload it is served by nginx's new workers, while
 * a reused connection may still be an old worker's for keepalive_min_timeout (with the old config).
 */
export async function http(path: string, port = HTTP_PORT): Promise<{ status: number; body: string; headers: Headers }> {
  return new Promise((resolve, reject) => {
    const req = get({ host: '127.0.0.1', port, path, agent: false, timeout: 10_000 }, res => {
      const chunks: Buffer[] = []
      res.on('data', (c: Buffer) => chunks.push(c))
      res.on('end', () => {
        const headers = new Headers()
        for (const [k, v] of Object.entries(res.headers)) if (v !== undefined) headers.set(k, Array.isArray(v) ? v.join(', ') : v)
        resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8'), headers })
      })
      res.on('error', reject)
    })
    req.on('timeout', () => req.destroy(new Error(`GET ${path}: no answer in 10 s`)))
    req.on('error', reject)
  })
}

/** Lines in sshd's log that show a successful login (to prove a refused run never logged in). */
export function sshLogins(): number {
  const log = readFileSync(join(ROOT, '.sandbox', 'log', 'sshd.log'), 'utf8')
  return (log.match(/Accepted publickey/g) ?? []).length
}

/** A copy of the action's compose/ and nginx/ that a test may edit; pass it as OPS_ACTION_ROOT. */
export function actionCopy(): string {
  const dir = mkdtempSync(join(tmpdir(), 'ops-action-root-'))
  cpSync(join(ROOT, 'compose'), join(dir, 'compose'), { recursive: true })
  cpSync(join(ROOT, 'nginx'), join(dir, 'nginx'), { recursive: true })
  return dir
}

/** What a runner shows of the action's output: `::add-mask::` commands are consumed by the runner, never shown. */
export function visibleLog(output: string): string {
  return output
    .split('\n')
    .filter(l => !l.startsWith('::add-mask::'))
    .join('\n')
}

export const REGISTRY = '127.0.0.1:5000'
/** The tiny python sample app (scripts/images/sample-app), for services outside Behindy's three. */
export const APP = `${REGISTRY}/behindy/sample-app`
/** Each service's sample app in its real framework (scripts/images/sample-*): Next.js, Tomcat, FastAPI on uvicorn. */
export const APPS = {
  frontend: `${REGISTRY}/behindy/sample-frontend`,
  backend: `${REGISTRY}/behindy/sample-backend`,
  story: `${REGISTRY}/behindy/sample-story`
} as const
/** The image a test deploys as `service`: its framework's sample app, or the python one for other services. */
export const imageOf = (service: string, tag: string): string => `${APPS[service as keyof typeof APPS] ?? APP}:${tag}`
export const SECRET = 'sk-very-secret-token-4711'

export interface LoadStats {
  total: number
  failed: number
  rawResets: number
  versions: Record<string, number>
  errors: string[]
  /** Per client kind (scripts/load.mjs CLIENT_KINDS): requests and failures. */
  byClient: Record<string, { total: number; failed: number }>
}

export function registryPassword(): string {
  return JSON.parse(readFileSync(`${process.cwd()}/.sandbox/connection.json`, 'utf8')).registryPassword as string
}

/** Inputs of a deploy of the sample app as `service`. */
export function deployInputs(service: string, tag: string, env: string, extra: Record<string, string> = {}): Record<string, string> {
  return infraInputs({
    'infra-env': '',
    mode: 'deploy',
    service,
    image: imageOf(service, tag),
    env,
    registry: REGISTRY,
    'registry-username': 'ci',
    'registry-password': registryPassword(),
    'health-timeout': '30',
    'drain-timeout': '15',
    'stop-timeout': '15',
    ...extra
  })
}

/** A frontend deploy; `env` lines are added (a VERSION there replaces the default one). */
export const frontend = (tag: string, extra: Record<string, string> = {}, env = '') =>
  deployInputs(
    'frontend',
    tag,
    [/^VERSION=/m.test(env) ? '' : `VERSION=f-${tag}`, `SECRET_TOKEN=${SECRET}`, env].filter(Boolean).join('\n'),
    extra
  )
export const backend = (tag: string) => deployInputs('backend', tag, `VERSION=b-${tag}\nHEALTH_PATH=/api/ai-stories/health`)
export const story = (tag: string) => deployInputs('story', tag, `VERSION=s-${tag}`)

export function expectOk(r: ActionRun): void {
  if (r.code !== 0) throw new Error(`action failed (exit ${r.code}):\n${r.output}`)
}

/** Background retirements of old containers (commands/retire.ts) still running on the host, by their job's text. */
export const retirementsRunning = (): number => Number(tryRun('pgrep', ['-c', '-f', 'until nginx is done with them']).out.trim() || 0)

/** Waits (up to timeoutMs) until no old container is being retired in the background; false at the timeout. */
export function retirementsDone(timeoutMs = 45_000): boolean {
  const end = Date.now() + timeoutMs
  while (retirementsRunning() > 0) {
    if (Date.now() > end) return false
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 100)
  }
  return true
}

/** Waits for the background retirements (retirementsDone); throws when one is still running after 45 s. */
export function settleRetirements(): void {
  if (!retirementsDone()) throw new Error('old containers still being retired after 45 s')
}

/** The service's containers once the background retirements are done (a deploy returns before the old one goes). */
export function serviceContainers(service: string): string[] {
  settleRetirements()
  return sh('docker', ['ps', '-a', '--filter', `label=ops-action.service=${service}`, '--format', '{{.Names}}'])
    .trim()
    .split('\n')
    .filter(Boolean)
}

/** Runs the action while constant load goes through nginx to `/` (the frontend route); returns both. */
export async function underLoad(
  inputs: Record<string, string>,
  { path = '/', fault, settleMs = 500 }: { path?: string; fault?: Fault; settleMs?: number } = {}
): Promise<{ run: ActionRun; load: LoadStats }> {
  const load = startLoad({ url: `http://127.0.0.1:${HTTP_PORT}${path}`, keepaliveClients: 6, naiveClients: 4, plainClients: 6 })
  await new Promise(r => setTimeout(r, 500))
  const run = await runAction(inputs, {}, fault)
  await new Promise(r => setTimeout(r, settleMs))
  const stats = (await load.stop()) as LoadStats
  console.log(
    `[load] ${inputs.service ?? ''} ${inputs.image ?? inputs.mode}${fault ? ` (fault at ${fault.when})` : ''}: ${summarize(stats)}`
  )
  return { run, load: stats }
}

/** Constant load through nginx on several paths while `during` runs (never-retrying keep-alive clients on request). */
export async function loadDuring<T>(
  paths: string[],
  during: () => Promise<T>,
  { naiveClients = 0 }: { naiveClients?: number } = {}
): Promise<{ result: T; loads: Record<string, LoadStats> }> {
  const loads = paths.map(p => startLoad({ url: `http://127.0.0.1:${HTTP_PORT}${p}`, keepaliveClients: 4, plainClients: 4, naiveClients }))
  await new Promise(r => setTimeout(r, 500))
  const result = await during()
  await new Promise(r => setTimeout(r, 500))
  const stats = (await Promise.all(loads.map(l => l.stop()))) as LoadStats[]
  for (const [i, p] of paths.entries()) console.log(`[load] ${p}: ${summarize(stats[i])}`)
  return { result, loads: Object.fromEntries(paths.map((p, i) => [p, stats[i]])) }
}

/** Samples every process's argv on the host while `during` runs; returns the command lines that held a secret. */
export async function watchArgv<T>(secrets: string[], during: () => Promise<T>): Promise<{ result: T; leaks: string[]; samples: number }> {
  const leaks: string[] = []
  let samples = 0
  let running = true
  const sampler = (async () => {
    while (running) {
      for (const pid of readdirSync('/proc').filter(p => /^\d+$/.test(p))) {
        let argv = ''
        try {
          argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8').replace(/\0/g, ' ')
        } catch {
          continue
        }
        // The test runner's own process holds the inputs in its memory, not its argv; any argv with a secret is a leak.
        if (secrets.some(s => argv.includes(s))) leaks.push(argv)
      }
      samples++
      await new Promise(r => setTimeout(r, 10))
    }
  })()
  const result = await during()
  running = false
  await sampler
  return { result, leaks, samples }
}
