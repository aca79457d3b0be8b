import { execFileSync } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs'
import { createServer, connect as tcpConnect, type Server } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest'
import { DEFAULTS, getInputs } from '../../src/inputs'
import { connection, runAction, visibleLog, type ActionRun } from './sandbox'

/**
 * Malformed inputs, each run through the real dist/index.js, must fail with an error naming the input before any TCP
 * connection reaches sshd. The runs' `port` points at a counting TCP proxy in front of the sandbox sshd.
 *
 * Safety: this file shares the docker host with other tests. While a malformed case runs, the proxy counts a
 * connection and closes it at once instead of forwarding it, so an input that slipped through validation fails the
 * test (the count is not zero) without ever reaching sshd or changing the host. Only the control run and the
 * unauthorised-key run are forwarded; neither changes anything on the host.
 */

const SSHD_LOG = join(__dirname, '..', '..', '.sandbox', 'log', 'sshd.log')
/** An ops-dir that does not exist on the host: the control rollback finds no history there and stops. */
const CONTROL_OPS_DIR = '/tmp/ops-bad-input-control'
const IMAGE = '127.0.0.1:5000/behindy/sample-app:v1'

interface Proxy {
  port: number
  /** Connections accepted so far. */
  accepted: number
  /** Forward accepted connections to sshd (else they are counted and closed). */
  forward: boolean
  /** Local ports of the proxy's connections to sshd (sshd logs them as "from 127.0.0.1 port N"). */
  upstreamPorts: number[]
  close(): Promise<void>
}

function startProxy(targetHost: string, targetPort: number): Promise<Proxy> {
  const proxy = { port: 0, accepted: 0, forward: false, upstreamPorts: [] as number[] } as Proxy
  const server: Server = createServer(client => {
    proxy.accepted++
    client.on('error', () => undefined)
    if (!proxy.forward) {
      client.destroy()
      return
    }
    const upstream = tcpConnect(targetPort, targetHost)
    upstream.on('connect', () => proxy.upstreamPorts.push(upstream.localPort as number))
    upstream.on('error', () => client.destroy())
    client.on('close', () => upstream.destroy())
    upstream.on('close', () => client.destroy())
    client.pipe(upstream).pipe(client)
  })
  proxy.close = () => new Promise(resolve => server.close(() => resolve()))
  return new Promise((resolve, reject) => {
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => {
      proxy.port = (server.address() as { port: number }).port
      resolve(proxy)
    })
  })
}

/** Keys and host-key material the cases need (read once the sandbox is up). */
interface Material {
  key: string
  encKey: string
  passphrase: string
  pubKey: string
  /** A well-formed key the host does not authorise. */
  strangerKey: string
  strangerFingerprint: string
  /** known_hosts line for the sandbox host at its real port (no entry for the proxy's port). */
  realPortLine: string
  /** known_hosts line for the sandbox host at the proxy's port. */
  proxyLine: string
  fingerprint: string
}

type Base = 'deploy' | 'custom' | 'infra' | 'rollback'
type Over = Record<string, string> | ((m: Material) => Record<string, string>)
/** [label, base input set, input that must be named, what replaces the base values]. */
type Case = [label: string, base: Base, input: string, over: Over]

const T = ';id' // a command separator
const CASES: Case[] = [
  // --- image ---------------------------------------------------------------------------------------------------
  ['image with ;', 'deploy', 'image', { image: `${IMAGE}${T}` }],
  ['image with $(…)', 'deploy', 'image', { image: '127.0.0.1:5000/behindy/sample-app:$(id)' }],
  ['image with backticks', 'deploy', 'image', { image: '127.0.0.1:5000/behindy/sample-app:`id`' }],
  ['image with a space', 'deploy', 'image', { image: `${IMAGE} --privileged` }],
  ['image with a newline', 'deploy', 'image', { image: `${IMAGE}\nid` }],
  ['image in double quotes', 'deploy', 'image', { image: `"${IMAGE}"` }],
  ['image with a single quote', 'deploy', 'image', { image: `${IMAGE}'` }],
  ['image with uppercase path', 'deploy', 'image', { image: '127.0.0.1:5000/Behindy/App:v1' }],
  ['image registry starting with -', 'deploy', 'image', { image: '-e.io/app:v1' }],
  ['image registry starting with - and a port', 'deploy', 'image', { image: '-x:5000/app:v1' }],
  ['image digest too short', 'deploy', 'image', { image: 'app@sha256:abc' }],
  ['image missing for deploy', 'deploy', 'image', { image: '' }],
  ['image given to rollback', 'rollback', 'image', { image: IMAGE }],
  // --- service -------------------------------------------------------------------------------------------------
  ['service uppercase', 'custom', 'service', { service: 'Frontend' }],
  ['service with /', 'custom', 'service', { service: 'my/svc' }],
  ['service ..', 'custom', 'service', { service: '..' }],
  ['service a stack name', 'custom', 'service', { service: 'redis' }],
  ['service with $(…)', 'custom', 'service', { service: 'svc$(id)' }],
  // --- route / health-path / aliases ------------------------------------------------------------------------------
  ['route without leading /', 'custom', 'route', { route: 'things/' }],
  ['route with a space', 'custom', 'route', { route: '/th ings/', 'health-path': '/' }],
  ['route with ..', 'custom', 'route', { route: '/things/../', 'health-path': '/' }],
  ['route with ;', 'custom', 'route', { route: '/x;y/', 'health-path': '/' }],
  ['route of a known service changed', 'deploy', 'route', { route: '/front/' }],
  ['health-path without /', 'custom', 'health-path', { 'health-path': 'things/health' }],
  ['health-path with $(…)', 'custom', 'health-path', { 'health-path': '/things/$(id)' }],
  ['health-path outside the route', 'custom', 'health-path', { 'health-path': '/health' }],
  ['aliases with ;', 'deploy', 'aliases', { aliases: 'web;id' }],
  ['aliases a stack name', 'deploy', 'aliases', { aliases: 'web, db' }],
  ['aliases another app service', 'deploy', 'aliases', { aliases: 'backend' }],
  // --- ports ---------------------------------------------------------------------------------------------------
  ['port 0', 'deploy', 'port', { port: '0' }],
  ['port 70000', 'deploy', 'port', { port: '70000' }],
  ['port 80a', 'deploy', 'port', { port: '80a' }],
  ['app-port 0', 'custom', 'app-port', { 'app-port': '0' }],
  ['app-port 70000', 'custom', 'app-port', { 'app-port': '70000' }],
  ['app-port 80a', 'custom', 'app-port', { 'app-port': '80a' }],
  ['app-port missing for a custom service', 'custom', 'app-port', { 'app-port': '' }],
  ['http-port 0', 'infra', 'http-port', { 'http-port': '0' }],
  ['https-port 70000', 'infra', 'https-port', { 'https-port': '70000' }],
  ['https-port equal to http-port', 'infra', 'https-port', { 'http-port': '18080', 'https-port': '18080' }],
  // --- env -----------------------------------------------------------------------------------------------------
  ['env line without =', 'deploy', 'env', { env: 'A=1\nNOEQUALS' }],
  ['env key 1A', 'deploy', 'env', { env: '1A=x' }],
  ['env key A-B', 'deploy', 'env', { env: 'A-B=x' }],
  ['env quoted value across two lines', 'deploy', 'env', { env: 'A="line1\nline2"' }],
  ['env value with a CR', 'deploy', 'env', { env: 'A=line1\rline2' }],
  ['env key repeated', 'deploy', 'env', { env: 'A=1\nA=2' }],
  // --- infra-env -----------------------------------------------------------------------------------------------
  ['infra-env line without =', 'infra', 'infra-env', { 'infra-env': 'DB_USER=a\nDB_PASS' }],
  ['infra-env key 1A', 'infra', 'infra-env', { 'infra-env': '1A=x' }],
  ['infra-env key A-B', 'infra', 'infra-env', { 'infra-env': 'A-B=x' }],
  ['infra-env quoted value across two lines', 'infra', 'infra-env', { 'infra-env': 'DB_PASS="line1\nline2"' }],
  ['infra-env value with a CR', 'infra', 'infra-env', { 'infra-env': 'DB_PASS=line1\rline2' }],
  ['infra-env value with a quote and a space', 'infra', 'infra-env', { 'infra-env': "DB_PASS=it's a $secret" }],
  ['infra-env REDIS_PASSWORD with a space', 'infra', 'infra-env', { 'infra-env': 'REDIS_PASSWORD=two words' }],
  ['infra-env sets HTTP_PORT (owned by http-port)', 'infra', 'infra-env', { 'infra-env': 'HTTP_PORT=9999' }],
  // --- ssh-key / ssh-passphrase --------------------------------------------------------------------------------
  ['ssh-key malformed', 'deploy', 'ssh-key', { 'ssh-key': 'not a key; $(id)' }],
  [
    'ssh-key garbage body',
    'deploy',
    'ssh-key',
    { 'ssh-key': '-----BEGIN OPENSSH PRIVATE KEY-----\nbm90IGEga2V5\n-----END OPENSSH PRIVATE KEY-----\n' }
  ],
  [
    'ssh-key truncated',
    'deploy',
    'ssh-key',
    m => ({ 'ssh-key': m.key.slice(0, Math.floor(m.key.length / 2)) + '\n-----END OPENSSH PRIVATE KEY-----\n' })
  ],
  ['ssh-key a public key', 'deploy', 'ssh-key', m => ({ 'ssh-key': m.pubKey })],
  ['ssh-key missing', 'deploy', 'ssh-key', { 'ssh-key': '' }],
  ['ssh-passphrase wrong', 'deploy', 'ssh-passphrase', m => ({ 'ssh-key': m.encKey, 'ssh-passphrase': 'not-the-passphrase' })],
  ['ssh-passphrase missing for an encrypted key', 'deploy', 'ssh-passphrase', m => ({ 'ssh-key': m.encKey })],
  // --- host key ------------------------------------------------------------------------------------------------
  ['host-fingerprint without SHA256:', 'deploy', 'host-fingerprint', m => ({ 'host-fingerprint': m.fingerprint.slice('SHA256:'.length) })],
  ['host-fingerprint MD5', 'deploy', 'host-fingerprint', { 'host-fingerprint': 'MD5:16:27:ac:a5:76:28:2d:36:63:1b:56:4d:eb:df:a6:48' }],
  ['host-fingerprint too short', 'deploy', 'host-fingerprint', m => ({ 'host-fingerprint': m.fingerprint.slice(0, -1) })],
  ['host-fingerprint too long', 'deploy', 'host-fingerprint', m => ({ 'host-fingerprint': m.fingerprint + 'AA' })],
  ['known-hosts without a line for host:port', 'deploy', 'known-hosts', m => ({ 'known-hosts': m.realPortLine })],
  ['known-hosts for another host', 'deploy', 'known-hosts', m => ({ 'known-hosts': m.proxyLine.replace('127.0.0.1', 'other.example') })],
  ['known-hosts malformed line', 'deploy', 'known-hosts', m => ({ 'known-hosts': m.proxyLine.split(' ').slice(0, 2).join(' ') })],
  ['insecure-skip-host-key-check yes', 'deploy', 'insecure-skip-host-key-check', { 'insecure-skip-host-key-check': 'yes' }],
  // --- connection ----------------------------------------------------------------------------------------------
  ['host with ;', 'deploy', 'host', { host: '127.0.0.1;id' }],
  ['host with $(…)', 'deploy', 'host', { host: '$(id).example.com' }],
  ['username uppercase', 'deploy', 'username', { username: 'Deploy' }],
  ['username with ;', 'deploy', 'username', { username: 'deploy;id' }],
  ['connect-retries -1', 'deploy', 'connect-retries', { 'connect-retries': '-1' }],
  ['connect-retries many', 'deploy', 'connect-retries', { 'connect-retries': 'many' }],
  // --- every timeout: non-numeric and negative -----------------------------------------------------------------
  ...['connect-timeout', 'infra-timeout', 'lock-timeout', 'health-timeout', 'drain-timeout', 'stop-timeout'].flatMap((name): Case[] => [
    [`${name} non-numeric`, 'deploy', name, { [name]: 'soon' }],
    [`${name} negative`, 'deploy', name, { [name]: '-5' }]
  ]),
  ['infra-timeout 10s (infra)', 'infra', 'infra-timeout', { 'infra-timeout': '10s' }],
  ['health-timeout 0', 'deploy', 'health-timeout', { 'health-timeout': '0' }],
  // --- mode ----------------------------------------------------------------------------------------------------
  ['mode unknown', 'deploy', 'mode', { mode: 'destroy' }],
  ['mode with ;', 'deploy', 'mode', { mode: 'deploy;id' }],
  // --- infra inputs --------------------------------------------------------------------------------------------
  ['ops-dir relative', 'infra', 'ops-dir', { 'ops-dir': 'opt/behindy-ops' }],
  ['ops-dir with $(…)', 'infra', 'ops-dir', { 'ops-dir': '/opt/$(id)' }],
  ['ops-dir with ..', 'deploy', 'ops-dir', { 'ops-dir': '/opt/../etc' }],
  ['ops-dir with a space', 'infra', 'ops-dir', { 'ops-dir': '/opt/my ops' }],
  ['network starting with -', 'infra', 'network', { network: '-internal' }],
  ['network with ;', 'infra', 'network', { network: 'internal;id' }],
  ['network host (docker built-in)', 'infra', 'network', { network: 'host' }],
  ['network bridge (docker built-in)', 'deploy', 'network', { network: 'bridge' }],
  ['domain with a space', 'infra', 'domain', { domain: 'behindy .me' }],
  ['domain with ;', 'infra', 'domain', { domain: 'behindy.me;id' }],
  ['domain wildcard', 'infra', 'domain', { domain: '*.behindy.me' }],
  ['domain too long', 'infra', 'domain', { domain: `${'a'.repeat(60)}.`.repeat(5) + 'me' }],
  // --- registry ------------------------------------------------------------------------------------------------
  ['registry with a space', 'deploy', 'registry', { registry: 'ghcr .io', 'registry-username': 'ci', 'registry-password': 'tok3n' }],
  ['registry a URL', 'deploy', 'registry', { registry: 'https://ghcr.io', 'registry-username': 'ci', 'registry-password': 'tok3n' }],
  ['registry an option (--help)', 'deploy', 'registry', { registry: '--help', 'registry-username': 'ci', 'registry-password': 'tok3n' }],
  ['registry-username missing', 'deploy', 'registry-username', { registry: '127.0.0.1:5000', 'registry-password': 'tok3n' }],
  [
    'registry-username with a newline',
    'deploy',
    'registry-username',
    { registry: '127.0.0.1:5000', 'registry-username': 'ci\nid', 'registry-password': 'tok3n' }
  ],
  ['registry-password missing', 'deploy', 'registry-password', { registry: '127.0.0.1:5000', 'registry-username': 'ci' }],
  [
    'registry-password two lines',
    'deploy',
    'registry-password',
    { registry: '127.0.0.1:5000', 'registry-username': 'ci', 'registry-password': 'tok\n3n' }
  ],
  ['registry-username without registry', 'deploy', 'registry', { 'registry-username': 'ci' }],
  // --- memory, keep-images, env-file ---------------------------------------------------------------------------
  ['memory lots', 'deploy', 'memory', { memory: 'lots' }],
  ['memory 768mb', 'deploy', 'memory', { memory: '768mb' }],
  ['memory 1.5g', 'deploy', 'memory', { memory: '1.5g' }],
  ['memory below docker minimum (1b)', 'deploy', 'memory', { memory: '1b' }],
  ['memory with ;', 'deploy', 'memory', { memory: '768m;id' }],
  ['keep-images 0', 'deploy', 'keep-images', { 'keep-images': '0' }],
  ['keep-images many', 'deploy', 'keep-images', { 'keep-images': 'many' }],
  ['env-file relative', 'deploy', 'env-file', { 'env-file': 'app.env' }],
  ['env-file with ..', 'deploy', 'env-file', { 'env-file': '/opt/../etc/shadow' }],
  ['env-file with $(…)', 'deploy', 'env-file', { 'env-file': '/opt/$(id).env' }]
]

let proxy: Proxy
let m: Material
let keyDir: string
const results: Array<{ label: string; connections: number; rejected: boolean }> = []

/** Inputs that would run (and only run) what the case changes; the baselines are checked valid below. */
function baseInputs(base: Base): Record<string, string> {
  const c = connection()
  const conn = {
    host: c.host,
    port: String(proxy.port),
    username: c.username,
    'ssh-key': m.key,
    'known-hosts': m.proxyLine,
    // A run that got through would fail at once on the closed connection rather than retry.
    'connect-retries': '0',
    'connect-timeout': '10',
    'ops-dir': '/tmp/ops-bad-input',
    'http-port': '18080',
    'https-port': '18443',
    'lock-timeout': '1'
  }
  switch (base) {
    case 'infra':
      return {
        ...conn,
        mode: 'infra',
        'infra-env': 'DB_USER=behindy\nDB_PASS=s3cret-pass\nDB_NAME=behindy\nREDIS_PASSWORD=redis-pw-123456'
      }
    case 'deploy':
      return { ...conn, mode: 'deploy', service: 'frontend', image: IMAGE, env: 'VERSION=bad-input' }
    case 'custom':
      return {
        ...conn,
        mode: 'deploy',
        service: 'my-svc',
        image: IMAGE,
        'app-port': '9000',
        route: '/things/',
        'health-path': '/things/health'
      }
    case 'rollback':
      return { ...conn, mode: 'rollback', service: 'frontend', 'ops-dir': CONTROL_OPS_DIR }
  }
}

function inputsOf(base: Base, over: Over): Record<string, string> {
  return { ...baseInputs(base), ...(typeof over === 'function' ? over(m) : over) }
}

/** The message of the run's ::error:: line, unescaped. */
function errorOf(r: ActionRun): string {
  const line = visibleLog(r.output)
    .split('\n')
    .find(l => l.startsWith('::error::'))
  return (line ?? '').slice('::error::'.length).replace(/%0D/g, '\r').replace(/%0A/g, '\n').replace(/%25/g, '%')
}

/** Inputs an error message names (`Input 'x': …`). */
function namedInputs(message: string): string[] {
  return [...new Set([...message.matchAll(/Input '([a-z-]+)': /g)].map(x => x[1]))]
}

/** Waits until the proxy has seen every connection the finished run made (accept events may trail the exit). */
const settle = () => new Promise(resolve => setTimeout(resolve, 50))

beforeAll(async () => {
  const c = connection()
  proxy = await startProxy(c.host, c.port)
  keyDir = mkdtempSync(join(tmpdir(), 'bad-input-keys-'))
  execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'stranger@bad-input', '-f', join(keyDir, 'stranger')])
  const [, type, b64] = c.knownHostsLine.split(/\s+/)
  m = {
    key: readFileSync(c.keyPath, 'utf8'),
    encKey: readFileSync(c.passphraseKeyPath, 'utf8'),
    passphrase: c.passphrase,
    pubKey: readFileSync(`${c.keyPath}.pub`, 'utf8'),
    strangerKey: readFileSync(join(keyDir, 'stranger'), 'utf8'),
    strangerFingerprint: execFileSync('ssh-keygen', ['-lf', join(keyDir, 'stranger.pub')], { encoding: 'utf8' }).split(/\s+/)[1],
    realPortLine: c.knownHostsLine,
    proxyLine: `[${c.host}]:${proxy.port} ${type} ${b64}`,
    fingerprint: c.fingerprint
  }
})

afterAll(async () => {
  await proxy?.close()
  if (keyDir) rmSync(keyDir, { recursive: true, force: true })
  const rejected = results.filter(r => r.rejected).length
  console.log(`[bad-input] ${results.length} malformed inputs tried, ${rejected} rejected before connecting`)
})

describe('bad input', () => {
  it('the baselines are valid, so each case fails only for what it changes', () => {
    // getInputs masks the key through @actions/core (stdout): keep it out of the test log.
    const write = vi.spyOn(process.stdout, 'write').mockImplementation((() => true) as typeof process.stdout.write)
    try {
      for (const base of ['deploy', 'custom', 'infra', 'rollback'] as const) {
        const all = { ...DEFAULTS, ...baseInputs(base) }
        expect(() => getInputs(name => all[name] ?? ''), base).not.toThrow()
      }
    } finally {
      write.mockRestore()
    }
    // Every case changes something of its base.
    for (const [label, base, , over] of CASES) {
      const b = baseInputs(base)
      const o = typeof over === 'function' ? over(m) : over
      expect(
        Object.entries(o).some(([k, v]) => (b[k] ?? DEFAULTS[k]) !== v),
        label
      ).toBe(true)
    }
    expect(CASES.length).toBeGreaterThanOrEqual(36)
  })

  it('control: valid inputs connect through the proxy (so a zero count means something)', async () => {
    expect(() => statSync(CONTROL_OPS_DIR)).toThrow()
    const before = proxy.accepted
    proxy.forward = true
    let r: ActionRun
    try {
      r = await runAction(inputsOf('rollback', {}))
      await settle()
    } finally {
      proxy.forward = false
    }
    expect(r.code, r.output).toBe(1)
    expect(errorOf(r)).toContain('No previous image of frontend')
    expect(namedInputs(errorOf(r))).toEqual([])
    expect(proxy.accepted - before).toBeGreaterThanOrEqual(1)
  })

  it.each(CASES)('%s: rejected naming the input, without connecting', async (label, base, input, over) => {
    const before = proxy.accepted
    const r = await runAction(inputsOf(base, over))
    await settle()
    const connections = proxy.accepted - before
    const message = errorOf(r)
    const rejected = r.code === 1 && connections === 0 && namedInputs(message).includes(input)
    results.push({ label, connections, rejected })
    expect(r.code, r.output).toBe(1)
    expect(message).toContain(`Input '${input}': `)
    expect(namedInputs(message), message).toEqual([input])
    expect(connections, `${label}: the run connected; its error: ${message}`).toBe(0)
    // A rejected run reports its failure and nothing else.
    expect(r.outputs.container ?? '').toBe('')
  })

  it('a well-formed key the host does not authorise fails at authentication, and sshd logs no login', async () => {
    const logBefore = statSync(SSHD_LOG).size
    const before = proxy.accepted
    const portsBefore = proxy.upstreamPorts.length
    proxy.forward = true
    let r: ActionRun
    try {
      r = await runAction(inputsOf('deploy', { 'ssh-key': m.strangerKey }))
      await settle()
    } finally {
      proxy.forward = false
    }
    expect(r.code, r.output).toBe(1)
    expect(errorOf(r)).toMatch(/Authentication failed for deploy@127\.0\.0\.1:\d+: the host refused the key from ssh-key/)
    expect(proxy.accepted - before).toBe(1)
    const ports = proxy.upstreamPorts.slice(portsBefore)
    expect(ports).toHaveLength(1)
    await new Promise(resolve => setTimeout(resolve, 200))
    const newLog = readFileSync(SSHD_LOG).subarray(logBefore).toString('utf8')
    // sshd saw this connection (so the absence of a login below is not just a missing log) …
    expect(newLog).toContain(`Connection from 127.0.0.1 port ${ports[0]} `)
    // … and logged no login for it or for the stranger's key (other runs may log in meanwhile).
    const accepted = newLog.split('\n').filter(l => l.includes('Accepted publickey'))
    expect(accepted.filter(l => l.includes(` port ${ports[0]} `) || l.includes(m.strangerFingerprint))).toEqual([])
  })
})
