/**
 * What several unit test files share: the stdout capture (@actions/core writes there), docker argv parsing, fake
 * docker scripts, sample `docker inspect` lines and an in-memory fake Remote.
 */
import { execFileSync, spawn } from 'node:child_process'
import { chmodSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, afterEach, beforeAll, beforeEach, vi } from 'vitest'
import { composeV2 } from '../../src/commands/compose'
import { INSPECT_FORMAT } from '../../src/commands/containers'
import type { ContainerInfo } from '../../src/containers'
import type { HostState } from '../../src/hoststate'
import { COMPOSE_PROJECT_LABEL, COMPOSE_SERVICE_LABEL, IMAGE_LABEL, PORT_LABEL, PROJECT, SERVICE_LABEL } from '../../src/labels'
import type { Sh } from '../../src/shell'
import { stdoutOrThrow, type Remote, type RunResult, type Running } from '../../src/ssh'

// ---------------------------------------------------------------------------------------------------------------
// stdout

export interface Stdout {
  /** Everything the code under test wrote to stdout in this test. */
  text(): string
  /** The data of every `::<name>::` workflow command line (`warning`, `add-mask`, …), still escaped (see escapeData). */
  commands(name: string): string[]
  clear(): void
}

/**
 * For every test of the calling file (or describe block): stdout is captured instead of printed (@actions/core's
 * info, groups, warnings and ::add-mask:: go there), mocks are restored and stubbed env variables put back afterwards.
 */
export function captureStdout(): Stdout {
  let out: string[] = []
  beforeEach(() => {
    out = []
    vi.spyOn(process.stdout, 'write').mockImplementation(((chunk: string | Uint8Array) => {
      out.push(typeof chunk === 'string' ? chunk : Buffer.from(chunk).toString('utf8'))
      return true
    }) as typeof process.stdout.write)
  })
  afterEach(() => {
    vi.restoreAllMocks()
    vi.unstubAllEnvs()
  })
  const text = () => out.join('')
  return {
    text,
    commands: name =>
      text()
        .split(/\r?\n/)
        .filter(l => l.startsWith(`::${name}::`))
        .map(l => l.slice(name.length + 4)),
    clear: () => {
      out = []
    }
  }
}

/** How @actions/core escapes a workflow command's data. */
export const escapeData = (s: string): string => s.replace(/%/g, '%25').replace(/\r/g, '%0D').replace(/\n/g, '%0A')

/** Waits (polling every 20 ms, up to timeoutMs) until the condition holds; false at the timeout. */
export async function until(condition: () => boolean, timeoutMs = 8_000): Promise<boolean> {
  const end = Date.now() + timeoutMs
  while (!condition()) {
    if (Date.now() > end) return false
    await new Promise(r => setTimeout(r, 20))
  }
  return true
}

/** A temp directory for the calling file's (or describe block's) tests, removed after them. */
export function useTempDir(prefix: string): () => string {
  let dir = ''
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), `${prefix}-`))
  })
  afterAll(() => {
    if (dir) rmSync(dir, { recursive: true, force: true })
  })
  return () => dir
}

// ---------------------------------------------------------------------------------------------------------------
// docker argv and fake docker scripts

// A safety net: no unit test may reach a real docker daemon (other sessions share it). A command that slips past the
// fakes (a `sh -c` script calling docker in a child shell, say) fails against a socket that does not exist.
process.env.DOCKER_HOST = 'unix:///nonexistent/ops-action-unit-tests/docker.sock'

let printingDocker: string | undefined
/** A directory with a `docker` that prints its argv (NUL-separated) and does nothing else; removed at exit. */
function printingDockerDir(): string {
  if (!printingDocker) {
    const dir = mkdtempSync(join(tmpdir(), 'docker-print-'))
    writeFileSync(join(dir, 'docker'), '#!/bin/sh\nprintf \'%s\\0\' "$@"\n')
    chmodSync(join(dir, 'docker'), 0o755)
    process.once('exit', () => rmSync(dir, { recursive: true, force: true }))
    printingDocker = dir
  }
  return printingDocker
}

/**
 * The argv docker gets from a command line that runs it once (parsed by a real sh; the `docker` first on PATH only
 * prints its arguments, in child shells too).
 */
export function dockerArgv(c: Sh): string[] {
  const out = execFileSync('sh', ['-c', c.sh], { env: { ...process.env, PATH: `${printingDockerDir()}:${process.env.PATH}` } })
  return out.toString('utf8').split('\0').slice(0, -1)
}

/**
 * Runs each command in a real sh with a `docker` first on PATH that records its argv instead of running anything;
 * returns, for each command, the argv of every docker call it made (in order).
 */
export function dockerArgvs(commands: Sh[]): string[][][] {
  const dir = mkdtempSync(join(tmpdir(), 'docker-argv-'))
  try {
    mkdirSync(join(dir, 'bin'))
    mkdirSync(join(dir, 'argv'))
    // Count-prefixed and NUL-separated, so any argument (newlines included) comes back as it was.
    writeFileSync(join(dir, 'bin', 'docker'), '#!/bin/sh\nprintf \'%s\\0\' "$#" "$@" >> "$ARGV_FILE"\n')
    chmodSync(join(dir, 'bin', 'docker'), 0o755)
    const text = commands.map((c, n) => `ARGV_FILE=${dir}/argv/${n}; export ARGV_FILE; ( ${c.sh} ) </dev/null >/dev/null 2>&1`).join('\n')
    execFileSync('sh', ['-c', text], { env: { ...process.env, PATH: `${dir}/bin:${process.env.PATH}` } })
    const files = new Set(readdirSync(join(dir, 'argv')))
    return commands.map((_, n) => {
      if (!files.has(String(n))) return []
      const fields = readFileSync(join(dir, 'argv', String(n)), 'utf8')
        .split('\0')
        .slice(0, -1)
      const calls: string[][] = []
      for (let k = 0; k < fields.length;) {
        const count = Number(fields[k])
        calls.push(fields.slice(k + 1, k + 1 + count))
        k += 1 + count
      }
      return calls
    })
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}

let printingSh: string | undefined
/**
 * The argv a `sh -c SCRIPT sh ARGS…` command line (script()) gives its sh, parsed by a real sh: ['-c', SCRIPT, 'sh',
 * ARGS…]. The `sh` first on PATH only prints its arguments.
 */
export function shArgv(c: Sh): string[] {
  if (!printingSh) {
    const dir = mkdtempSync(join(tmpdir(), 'sh-print-'))
    writeFileSync(join(dir, 'sh'), '#!/bin/sh\nprintf \'%s\\0\' "$@"\n')
    chmodSync(join(dir, 'sh'), 0o755)
    process.once('exit', () => rmSync(dir, { recursive: true, force: true }))
    printingSh = dir
  }
  const out = execFileSync('/bin/sh', ['-c', c.sh], { env: { ...process.env, PATH: `${printingSh}:${process.env.PATH}` } })
  return out.toString('utf8').split('\0').slice(0, -1)
}

export interface FakeDockerRun {
  code: number
  stdout: string
  stderr: string
  /** The fake docker's own directory (`$FAKE` in its script), where it can leave files for the test. */
  dir: string
}

/** Runs a command line under sh with a fake `docker` (the given script body) first on PATH, feeding it stdin. */
export function runWithFakeDocker(parent: string, c: Sh, fakeDocker: string, stdin = ''): Promise<FakeDockerRun> {
  const dir = mkdtempSync(join(parent, 'fake-docker-'))
  writeFileSync(join(dir, 'docker'), `#!/bin/sh\n${fakeDocker}\n`)
  chmodSync(join(dir, 'docker'), 0o755)
  return new Promise((resolve, reject) => {
    const p = spawn('sh', ['-c', c.sh], { env: { ...process.env, PATH: `${dir}:${process.env.PATH}`, FAKE: dir } })
    let stdout = ''
    let stderr = ''
    p.stdout.on('data', d => (stdout += d))
    p.stderr.on('data', d => (stderr += d))
    p.on('error', reject)
    p.on('close', code => resolve({ code: code ?? -1, stdout, stderr, dir }))
    // A command that exits without reading its stdin is no error here (EPIPE, unhandled, would fail the whole run).
    p.stdin.on('error', () => undefined)
    p.stdin.end(stdin)
  })
}

// ---------------------------------------------------------------------------------------------------------------
// `docker inspect --format INSPECT_FORMAT` lines

export interface InspectFields {
  Name: string
  Id: string
  State: unknown
  RestartCount: number
  Networks: unknown
  Labels: unknown
  Image?: string
}

/** One line as `docker inspect --format INSPECT_FORMAT` prints it: each {{json .X}} replaced by X's JSON. */
export function inspectLine(fields: InspectFields): string {
  const values: Record<string, unknown> = {
    '.Config.Image': fields.Image ?? 'example/app:v1',
    '.Name': fields.Name,
    '.Id': fields.Id,
    '.State': fields.State,
    '.RestartCount': fields.RestartCount,
    '.NetworkSettings.Networks': fields.Networks,
    '.Config.Labels': fields.Labels
  }
  const line = INSPECT_FORMAT.replace(/\{\{json ([^}]+)\}\}/g, (_, path: string) => {
    if (!(path in values)) throw new Error(`inspectLine knows no field ${path} of INSPECT_FORMAT`)
    return JSON.stringify(values[path])
  })
  if (line.includes('{{')) throw new Error(`INSPECT_FORMAT has a template inspectLine does not fill: ${line}`)
  return line
}

/** A running backend container with a HEALTHCHECK, on two networks, as a real docker prints it (every State field). */
export const INSPECT_WITH_HEALTH = inspectLine({
  Name: '/backend-1a2b3c4d',
  Id: 'a'.repeat(64),
  State: {
    Status: 'running',
    Running: true,
    Paused: false,
    Restarting: false,
    OOMKilled: false,
    Dead: false,
    Pid: 4242,
    ExitCode: 0,
    Error: '',
    StartedAt: '2026-01-01T00:00:00.123456789Z',
    FinishedAt: '0001-01-01T00:00:00Z',
    Health: {
      Status: 'healthy',
      FailingStreak: 0,
      Log: [{ Start: '2026-01-01T00:00:05Z', End: '2026-01-01T00:00:05Z', ExitCode: 0, Output: 'ok\n' }]
    }
  },
  RestartCount: 0,
  Networks: {
    internal: {
      IPAMConfig: null,
      Links: null,
      Aliases: ['backend', 'backend-1a2b3c4d'],
      MacAddress: '02:42:ac:12:00:05',
      NetworkID: 'c'.repeat(64),
      EndpointID: 'd'.repeat(64),
      Gateway: '172.18.0.1',
      IPAddress: '172.18.0.5',
      IPPrefixLen: 16,
      IPv6Gateway: '',
      GlobalIPv6Address: '',
      GlobalIPv6PrefixLen: 0,
      DriverOpts: null,
      DNSNames: ['backend-1a2b3c4d', 'backend']
    },
    bridge: { IPAddress: '172.17.0.3', Gateway: '172.17.0.1' }
  },
  Labels: {
    [SERVICE_LABEL]: 'backend',
    [IMAGE_LABEL]: 'ghcr.io/behindy/back:abc',
    [PORT_LABEL]: '8080',
    'org.opencontainers.image.title': 'back <app> & co'
  }
})

/** An exited container without HEALTHCHECK, networks or labels, restarted twice. */
export const INSPECT_NO_HEALTH = inspectLine({
  Name: '/backend-5e6f7a8b',
  Id: 'b'.repeat(64),
  State: {
    Status: 'exited',
    Running: false,
    Restarting: false,
    Dead: false,
    Pid: 0,
    ExitCode: 1,
    Error: '',
    StartedAt: '2026-01-01T00:00:00Z',
    FinishedAt: '2026-01-01T00:00:09Z'
  },
  RestartCount: 2,
  Networks: {},
  Labels: null
})

/** A container for a scenario: an app container (ops-action's labels) or one of the stack (compose's labels). */
export interface ContainerSample {
  name: string
  id?: string
  /** running (default), exited, restarting, … */
  status?: string
  /** healthy (default), unhealthy, starting; null for a container without HEALTHCHECK. */
  health?: string | null
  restarts?: number
  /** network -> IP address. */
  ips?: Record<string, string>
  image?: string
  labels?: Record<string, string>
}

function sampleLine(c: ContainerSample, labels: Record<string, string>): string {
  const health = c.health === undefined ? 'healthy' : c.health
  return inspectLine({
    Name: `/${c.name}`,
    Id: c.id ?? `${c.name}-id`,
    State: { Status: c.status ?? 'running', StartedAt: '2026-01-01T00:00:00Z', ...(health === null ? {} : { Health: { Status: health } }) },
    RestartCount: c.restarts ?? 0,
    Networks: Object.fromEntries(Object.entries(c.ips ?? {}).map(([n, ip]) => [n, { IPAddress: ip }])),
    Labels: { ...labels, ...c.labels },
    Image: c.image
  })
}

/** The inspect line of a container ops-action started for `service`. */
export function appContainer(service: string, c: ContainerSample & { port?: number }): string {
  return sampleLine(c, {
    [SERVICE_LABEL]: service,
    [IMAGE_LABEL]: c.image ?? 'example/app:v1',
    ...(c.port ? { [PORT_LABEL]: String(c.port) } : {})
  })
}

/** The inspect line of a container of the stack's compose project (db, redis, nginx). */
export function stackContainer(service: string, c: ContainerSample): string {
  return sampleLine(c, { [COMPOSE_PROJECT_LABEL]: PROJECT, [COMPOSE_SERVICE_LABEL]: service })
}

/** A ContainerInfo of the stack, built directly (for tests of pure functions over the host's containers). */
export function stackInfo(service: string, status = 'running', health = 'healthy', id = `${service}-id`): ContainerInfo {
  return {
    name: `behindy-${service}-1`,
    id,
    service,
    status,
    restarts: 0,
    health,
    ips: {},
    labels: { [COMPOSE_PROJECT_LABEL]: PROJECT, [COMPOSE_SERVICE_LABEL]: service },
    image: `${service}:1`,
    startedAt: '2026-01-01T00:00:00Z'
  }
}

/** The output of a script made of section()s (what seq/concurrently print): name -> output, or {rc, out}. */
export function sectionsOut(parts: Record<string, string | { rc: number; out: string }>): string {
  return Object.entries(parts)
    .map(([name, p]) => {
      const { rc, out } = typeof p === 'string' ? { rc: 0, out: p } : p
      return `@@ops ${name}\n${out}${out === '' || out.endsWith('\n') ? '' : '\n'}@@ops-rc ${rc}\n`
    })
    .join('')
}

// ---------------------------------------------------------------------------------------------------------------
// A fake Remote

/** One command the code under test sent. */
export interface Call {
  sh: string
  stdin?: string | Buffer
  /** Sent with start() (a long-running command such as the lock's holder). */
  held?: boolean
}

export type Answer = Partial<RunResult> | ((call: Call, remote: FakeRemote) => Partial<RunResult>)
/** A command whose text matches the pattern gets the answer (exit 0 and empty output unless it says otherwise). */
export type Rule = [RegExp, Answer]

/**
 * An in-memory host: each command is answered by the first rule whose pattern matches its text, and recorded in
 * order. A command no rule matches is recorded in `unmatched` and answered with exit 127 (tests assert there is
 * none). Once cut(), every command fails with exit 255 (still recorded) and connected() is false.
 */
export class FakeRemote implements Remote {
  readonly calls: Call[] = []
  readonly unmatched: string[] = []
  private up = true
  private readonly held: Array<(r: RunResult) => void> = []

  constructor(private rules: Rule[]) {}

  /** Rules tried before the ones the fake was made with (a test's variation of a scenario). */
  prepend(...rules: Rule[]): this {
    this.rules = [...rules, ...this.rules]
    return this
  }

  async run(command: Sh, opts: { stdin?: string | Buffer } = {}): Promise<RunResult> {
    const call: Call = { sh: command.sh, stdin: opts.stdin }
    this.calls.push(call)
    if (!this.up) return { code: 255, stdout: '', stderr: 'the connection is gone' }
    const rule = this.rules.find(([re]) => re.test(command.sh))
    if (!rule) {
      this.unmatched.push(command.sh)
      return { code: 127, stdout: '', stderr: `fake remote: no rule for ${command.sh}` }
    }
    const answer = typeof rule[1] === 'function' ? rule[1](call, this) : rule[1]
    return { code: 0, stdout: '', stderr: '', ...answer }
  }

  /** As the real one: the stdout, or a HostError naming `what` with the exit code and the output's last lines. */
  async must(command: Sh, what: string, opts: { stdin?: string | Buffer; fix?: string } = {}): Promise<string> {
    return stdoutOrThrow(await this.run(command, opts), what, opts.fix)
  }

  /** A held command prints `heldOutput` (the lock script's LOCKED by default) and runs until end() or endHeld(). */
  heldOutput = 'LOCKED\n'
  /** How many held commands the code under test ended (closed their stdin). */
  endedHeld = 0

  start(command: Sh, onStdout: (text: string) => void): Running {
    this.calls.push({ sh: command.sh, held: true })
    let finish: (r: RunResult) => void = () => undefined
    const done = new Promise<RunResult>(resolve => (finish = resolve))
    this.held.push(finish)
    const output = this.heldOutput
    setImmediate(() => onStdout(output))
    const end = () => {
      this.endedHeld++
      finish({ code: 0, stdout: output, stderr: '' })
    }
    return { done, write: () => undefined, end }
  }

  /** Every held command ends with this exit code, as if its process died on the host. */
  endHeld(code: number): void {
    for (const finish of this.held) finish({ code, stdout: this.heldOutput, stderr: '' })
  }

  connected(): boolean {
    return this.up
  }

  /** The connection drops: connected() is false and every later command fails. */
  cut(): void {
    this.up = false
  }

  close(): void {
    this.up = false
  }

  /** Index of the first call at or after `from` whose text matches (-1: none). */
  indexOf(re: RegExp, from = 0): number {
    const i = this.calls.slice(from).findIndex(c => re.test(c.sh))
    return i < 0 ? -1 : i + from
  }

  /** Every call whose text matches. */
  matching(re: RegExp): Call[] {
    return this.calls.filter(c => re.test(c.sh))
  }
}

/** What readHost's one round trip of probes prints (docker, compose, disk, ops-dir, hashes, manifest, network, stack, upstreams, .env). */
export function hostProbeOut(
  over: Partial<{
    docker: string | { rc: number; out: string }
    composeV2: string | { rc: number; out: string }
    composeV1: string | { rc: number; out: string }
    disk: string
    opsdir: string
    /** path -> sha256 */
    hashes: Map<string, string>
    manifest: string[]
    network: boolean
    /** `docker inspect` lines of the stack's containers. */
    containers: string[]
    /** Files of upstreams/ (name -> content), as upstreamFiles() prints them. */
    upstreams: Map<string, string>
    /** The .env's text (base64-encoded and wrapped at 76 columns, as `base64` prints it), or the section as is. */
    env: string | { rc: number; out: string }
  }> = {}
): string {
  return sectionsOut({
    docker: over.docker ?? '27.3.1',
    'compose-v2': over.composeV2 ?? '2.29.7',
    'compose-v1': over.composeV1 ?? { rc: 127, out: 'docker-compose: not found' },
    disk: over.disk ?? '/var/lib/docker 52428800\n/opt 52428800',
    opsdir: over.opsdir ?? 'exists',
    hashes: [...(over.hashes ?? new Map())].map(([p, h]) => `${h}  ${p}`).join('\n'),
    manifest: (over.manifest ?? []).join('\n'),
    network: { rc: over.network === false ? 1 : 0, out: '' },
    containers: (over.containers ?? []).join('\n'),
    upstreams: [...(over.upstreams ?? new Map())].map(([name, content]) => `@@file ${name}\n${content}\n`).join(''),
    env: typeof over.env === 'object' ? over.env : base64Lines(over.env ?? '')
  })
}

/** A text as `base64` prints it: wrapped at 76 columns. */
export const base64Lines = (text: string): string =>
  (
    Buffer.from(text, 'utf8')
      .toString('base64')
      .match(/.{1,76}/g) ?? []
  ).join('\n')

/** What readHost would say about a host with the stack up, nothing written yet by infra, and HTTP only. */
export function hostState(over: Partial<HostState> = {}): HostState {
  return {
    compose: composeV2('2.29.1'),
    envText: '',
    hashes: new Map(),
    upstreams: new Map(),
    manifest: [],
    networkExists: true,
    containers: [],
    settings: { domain: '', httpPort: 80, httpsPort: 443 },
    tls: false,
    certHash: '',
    ...over
  }
}

// ---------------------------------------------------------------------------------------------------------------
// The front's config

/**
 * Where the front relays each port it listens on, from its config (nginx/front/nginx.conf) and an
 * upstreams/nginx.stream text: listen port -> `host:port`, following proxy_pass to an upstream block (its first
 * server) or to a variable (the default of the map that sets it); undefined when the file does not define it.
 */
export function frontRelays(frontConf: string, stream: string): Record<string, string | undefined> {
  const strip = (t: string) => t.replace(/#.*$/gm, '')
  const conf = strip(frontConf)
  const defs = strip(stream)
  const resolve = (target: string): string | undefined => {
    const name = target.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')
    if (target.startsWith('$')) {
      const body = new RegExp(`\\bmap\\s+\\S+\\s+${name}\\s*\\{([^}]*)\\}`).exec(defs)?.[1]
      return body && /^\s*default\s+([^;\s]+);/m.exec(body)?.[1]
    }
    const body = new RegExp(`\\bupstream\\s+${name}\\s*\\{([^}]*)\\}`).exec(defs)?.[1]
    return body && /^\s*server\s+([^;\s]+)/m.exec(body)?.[1]
  }
  const out: Record<string, string | undefined> = {}
  for (const [, body] of conf.matchAll(/\bserver\s*\{([^{}]*)\}/g)) {
    const port = /^\s*listen\s+(\d+)\s*;/m.exec(body)?.[1]
    const target = /^\s*proxy_pass\s+([^;\s]+)\s*;/m.exec(body)?.[1]
    if (port && target) out[port] = resolve(target)
  }
  return out
}
