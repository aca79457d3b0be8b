import { execFileSync } from 'node:child_process'
import { cpSync, mkdtempSync, readFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
// @ts-expect-error plain ESM helper shared with `npm run demo`
import { ROOT, runAction as run, sandbox, sandboxInputs } from '../../scripts/run-action.mjs'

export interface ActionRun {
  code: number
  output: string
  outputs: Record<string, string>
  summary: string
  ms: number
}

export const OPS_DIR = '/opt/behindy-ops'
export const NETWORK = 'internal'
export const HTTP_PORT = 18080
export const HTTPS_PORT = 18443
export const DB = { user: 'behindy', pass: "s3cret pass#1", name: 'behindy' }
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

export function runAction(inputs: Record<string, string>, env: Record<string, string> = {}): Promise<ActionRun> {
  return run(inputs, { env })
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
  const out = sh('docker', ['ps', '-a', '--no-trunc', '--filter', 'label=com.docker.compose.project=behindy', '--format', '{{.Label "com.docker.compose.service"}} {{.ID}}'])
  return Object.fromEntries(out.trim().split('\n').filter(Boolean).map(l => l.split(' ')))
}

/** Start time of each container, to prove nothing restarted. */
export function startedAt(ids: string[]): string[] {
  return sh('docker', ['inspect', '--format', '{{.State.StartedAt}}', ...ids]).trim().split('\n')
}

/** Wipes what infra creates, so the next run meets a fresh host (the sandbox itself stays up). */
export function resetHost(): void {
  sh('bash', [join(ROOT, 'scripts', 'sandbox.sh'), 'reset-stack'])
}

/**
 * sha256 of every file under ops-dir (and its mode), to prove a run changed nothing. The deploy lock's files are left
 * out: every run takes the lock, and its holder line names the run.
 */
export function hashOpsDir(): string {
  return tryRun('sh', ['-c', `cd ${OPS_DIR} && find . -type f ! -name '.deploy.lock*' -exec stat -c '%a %n' {} + -exec sha256sum {} + | sort`]).out
}

/** Runs SQL as the app user from a throwaway container on the internal network, as an app would. */
export function psql(sql: string, password = DB.pass): { code: number; out: string } {
  return tryRun('docker', ['run', '--rm', '--network', NETWORK, '-e', `PGPASSWORD=${password}`, connection().images.postgres, 'psql', '-h', 'db', '-U', DB.user, '-d', DB.name, '-tAc', sql])
}

/** redis-cli against the stack's redis from the internal network (password via REDISCLI_AUTH when given). */
export function redisCli(args: string[], password?: string): { code: number; out: string } {
  const auth = password ? ['-e', `REDISCLI_AUTH=${password}`] : []
  return tryRun('docker', ['run', '--rm', '--network', NETWORK, ...auth, connection().images.redis, 'redis-cli', '--no-auth-warning', '-h', 'redis', ...args])
}

export async function http(path: string, port = HTTP_PORT): Promise<{ status: number; body: string; headers: Headers }> {
  const r = await fetch(`http://127.0.0.1:${port}${path}`, { redirect: 'manual', signal: AbortSignal.timeout(10_000) })
  return { status: r.status, body: await r.text(), headers: r.headers }
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
