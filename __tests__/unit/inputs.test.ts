import { execFileSync } from 'node:child_process'
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { beforeAll, beforeEach, describe, expect, it, vi } from 'vitest'
import { InputError, InputErrors } from '../../src/errors'
import { DEFAULTS, getInputs, type Inputs, type InputReader } from '../../src/inputs'
import { Collector } from '../../src/inputs/collector'
import { isMaskable, maskSecrets } from '../../src/inputs/mask'
import { maintenancePage } from '../../src/inputs/release'
import { captureStdout, escapeData, useTempDir } from './helpers'

// Real keys from ssh-keygen: one plain, one protected by the passphrase 'pass'.
const tmp = useTempDir('inputs-test')
let dir: string
let key: string
let encKey: string
let hostPub: { type: string; b64: string }
let hostFp: string

beforeAll(() => {
  dir = tmp()
  execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'user@test', '-f', join(dir, 'id')])
  execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', 'pass', '-C', 'enc@test', '-f', join(dir, 'enc')])
  execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'host@test', '-f', join(dir, 'host')])
  key = readFileSync(join(dir, 'id'), 'utf8')
  encKey = readFileSync(join(dir, 'enc'), 'utf8')
  const [type, b64] = readFileSync(join(dir, 'host.pub'), 'utf8').trim().split(/\s+/)
  hostPub = { type, b64 }
  // `256 SHA256:… host@test (ED25519)`
  hostFp = execFileSync('ssh-keygen', ['-lf', join(dir, 'host.pub')], { encoding: 'utf8' }).split(/\s+/)[1]
})

/** Everything written to stdout by the code under test (@actions/core commands such as ::add-mask::). */
const stdout = captureStdout()

/** The values maskSecrets passed to core.setSecret, as printed (escaped). */
const masked = () => stdout.commands('add-mask')

// The runner's own repository must not decide the service of these tests: each one that wants one passes it.
beforeEach(() => {
  vi.stubEnv('GITHUB_REPOSITORY', undefined)
})

/** An InputReader as the runner would give it: the action.yml defaults with `over` on top. */
function reader(over: Record<string, string>): InputReader {
  const all = { ...DEFAULTS, ...over }
  return name => all[name] ?? ''
}

/** The minimal valid infra input set. */
function base(): Record<string, string> {
  return { mode: 'infra', host: 'example.com', 'ssh-key': key }
}

/** The error getInputs throws for `over` merged over the minimal valid set (`repository`: GITHUB_REPOSITORY). */
function errorOf(over: Record<string, string>, repository?: string): Error {
  try {
    getInputs(reader({ ...base(), ...over }), repository)
  } catch (e) {
    expect(e).toBeInstanceOf(Error)
    return e as Error
  }
  throw new Error(`getInputs accepted ${JSON.stringify(Object.keys(over))}`)
}

/** Asserts that `over` is rejected with an error naming `input`, and returns the message. */
function rejects(over: Record<string, string>, input: string, repository?: string): string {
  const e = errorOf(over, repository)
  expect(e.message).toContain(`Input '${input}': `)
  return e.message
}

describe('getInputs: a valid infra input set', () => {
  it('parses every field', () => {
    const inputs = getInputs(
      reader({
        mode: 'infra',
        host: 'example.com',
        port: '2222',
        username: 'deploy',
        'ssh-key': key,
        'known-hosts': `# comment\n[example.com]:2222 ${hostPub.type} ${hostPub.b64}\nother.org ${hostPub.type} ${hostPub.b64}\n`,
        'host-fingerprint': `  sha256:${hostFp.slice('SHA256:'.length)}=  `,
        'insecure-skip-host-key-check': 'false',
        'connect-timeout': '15',
        'connect-retries': '5',
        'ops-dir': '/srv/behindy-ops/',
        network: 'behindy_net',
        domain: 'Behindy.ME',
        'http-port': '8080',
        'https-port': '8443',
        'infra-env': 'DB_USER=behindy\n\n# a comment\nDB_PASS="s3cr3t pw"\nexport DB_NAME=behindy_db\n',
        'infra-timeout': '300'
      })
    )
    expect(inputs.mode).toBe('infra')
    const c = inputs.connection
    expect(c.host).toBe('example.com')
    expect(c.port).toBe(2222)
    expect(typeof c.port).toBe('number')
    expect(c.username).toBe('deploy')
    expect(c.privateKey).toBe(key.trim() + '\n')
    expect(c.passphrase).toBeUndefined()
    expect(c.skipHostKeyCheck).toBe(false)
    expect(c.connectTimeoutMs).toBe(15_000)
    expect(c.connectRetries).toBe(5)
    expect(c.fingerprint).toBe(hostFp)
    expect(c.knownHosts).toHaveLength(2)
    expect(c.knownHosts?.[0]).toMatchObject({ line: 2, patterns: '[example.com]:2222', keyType: 'ssh-ed25519' })
    expect(c.knownHosts?.[0].key.equals(Buffer.from(hostPub.b64, 'base64'))).toBe(true)
    expect(c.knownHosts?.[1]).toMatchObject({ line: 3, patterns: 'other.org' })

    const i = inputs.infra
    expect(i.opsDir).toBe('/srv/behindy-ops')
    expect(i.network).toBe('behindy_net')
    expect(i.settings).toEqual({ domain: 'behindy.me', httpPort: 8080, httpsPort: 8443 })
    expect(i.infraEnv).toEqual([
      ['DB_USER', 'behindy'],
      ['DB_PASS', 's3cr3t pw'],
      ['DB_NAME', 'behindy_db']
    ])
    expect(i.infraTimeoutS).toBe(300)
  })

  it('uses the action.yml defaults for everything not set', () => {
    const inputs = getInputs(reader(base()))
    expect(inputs.connection).toMatchObject({
      host: 'example.com',
      port: 22,
      username: 'ubuntu',
      knownHosts: undefined,
      fingerprint: undefined,
      skipHostKeyCheck: false,
      connectTimeoutMs: 20_000,
      connectRetries: 3
    })
    expect(inputs.infra).toEqual({
      opsDir: '/opt/behindy-ops',
      network: 'internal',
      // Not given: the host's settings are kept (see effectiveSettings).
      settings: { domain: undefined, httpPort: undefined, httpsPort: undefined },
      infraEnv: [],
      infraTimeoutS: 120,
      backups: { keep: 7, beforeInfra: true }
    })
  })

  it("domain `none` means HTTP only; an empty port keeps the host's; equal ports are refused", () => {
    expect(getInputs(reader({ ...base(), domain: 'none' })).infra.settings.domain).toBe('')
    expect(getInputs(reader({ ...base(), 'https-port': '8443' })).infra.settings).toEqual({
      domain: undefined,
      httpPort: undefined,
      httpsPort: 8443
    })
    expect(() => getInputs(reader({ ...base(), 'http-port': '8080', 'https-port': '8080' }))).toThrow(
      /Input 'https-port': must differ from http-port/
    )
  })

  it('accepts a bracketed IPv6 host, an IPv4 host and TRUE for the skip flag', () => {
    expect(getInputs(reader({ ...base(), host: '[2001:db8::1]' })).connection.host).toBe('2001:db8::1')
    expect(getInputs(reader({ ...base(), host: '10.0.0.7' })).connection.host).toBe('10.0.0.7')
    expect(getInputs(reader({ ...base(), 'insecure-skip-host-key-check': 'TRUE' })).connection.skipHostKeyCheck).toBe(true)
  })

  it('accepts a key whose newlines arrive as literal \\n and CRLF', () => {
    const escaped = key.trim().split('\n').join('\\n')
    expect(getInputs(reader({ ...base(), 'ssh-key': escaped })).connection.privateKey).toBe(key.trim() + '\n')
    const crlf = key.replace(/\n/g, '\r\n')
    expect(getInputs(reader({ ...base(), 'ssh-key': crlf })).connection.privateKey).toBe(key.trim() + '\n')
  })

  it('known-hosts on port 22 matches a plain host entry', () => {
    const inputs = getInputs(reader({ ...base(), 'known-hosts': `example.com ${hostPub.type} ${hostPub.b64}` }))
    expect(inputs.connection.knownHosts).toHaveLength(1)
  })
})

describe('getInputs: passphrase-protected key', () => {
  it('works with the correct passphrase', () => {
    const c = getInputs(reader({ ...base(), 'ssh-key': encKey, 'ssh-passphrase': 'pass' })).connection
    expect(c.passphrase).toBe('pass')
    expect(c.privateKey).toBe(encKey.trim() + '\n')
  })

  it('without a passphrase names ssh-passphrase', () => {
    const msg = rejects({ 'ssh-key': encKey }, 'ssh-passphrase')
    expect(msg).toMatch(/encrypted/)
  })

  it('with a wrong passphrase names ssh-passphrase', () => {
    const msg = rejects({ 'ssh-key': encKey, 'ssh-passphrase': 'wrong' }, 'ssh-passphrase')
    expect(msg).toMatch(/does not decrypt/)
  })
})

describe('getInputs: each invalid input is named in the message', () => {
  it('mode unknown', () => {
    expect(rejects({ mode: 'destroy' }, 'mode')).toContain("'destroy' is not one of deploy, infra, rollback")
  })

  it.each(['', '   ', 'exa mple.com', 'a;b', '$(x)', 'host`id`', '-leading.example.com'])('host %j', host => {
    rejects({ host }, 'host')
  })

  it('empty host says it is required', () => {
    expect(rejects({ host: '' }, 'host')).toContain('is required')
  })

  it.each(['0', '70000', '65536', '80a', '-1', '', '2 2'])('port %j', port => {
    rejects({ port }, 'port')
  })

  it.each(['Root', 'a b', '1user', 'user;id', ''])('username %j', username => {
    rejects({ username }, 'username')
  })

  it('ssh-key empty', () => {
    expect(rejects({ 'ssh-key': '' }, 'ssh-key')).toContain('is required')
  })

  it('ssh-key not a key', () => {
    expect(rejects({ 'ssh-key': 'hunter2-not-a-key' }, 'ssh-key')).toContain('is not a private key')
  })

  it('ssh-key a public key', () => {
    const pub = readFileSync(join(dir, 'id.pub'), 'utf8')
    expect(rejects({ 'ssh-key': pub }, 'ssh-key')).toContain('is not a private key')
  })

  it('ssh-key with a corrupted body', () => {
    const lines = key.trim().split('\n')
    const truncated = [...lines.slice(0, 2), ...lines.slice(3)].join('\n')
    expect(rejects({ 'ssh-key': truncated }, 'ssh-key')).toContain('cannot be parsed')
    const garbage = [lines[0], 'bm90IGEga2V5IGF0IGFsbA==', lines[lines.length - 1]].join('\n')
    expect(rejects({ 'ssh-key': garbage }, 'ssh-key')).toContain('cannot be parsed')
  })

  it.each(['MD5:16:27:ac:a5:76:28:2d:36:63:1b:56:4d:eb:df:a6:48', '16:27:ac:a5:76:28:2d:36:63:1b:56:4d:eb:df:a6:48'])(
    'host-fingerprint MD5 %s',
    fp => {
      expect(rejects({ 'host-fingerprint': fp }, 'host-fingerprint')).toMatch(/MD5/)
    }
  )

  it.each(['garbage', 'SHA256:tooshort', `SHA256:${'A'.repeat(42)}!`])('host-fingerprint %j', fp => {
    rejects({ 'host-fingerprint': fp }, 'host-fingerprint')
  })

  it('known-hosts malformed line', () => {
    const msg = rejects({ 'known-hosts': 'example.com ssh-ed25519' }, 'known-hosts')
    expect(msg).toContain('line 1')
    rejects({ 'known-hosts': `example.com ssh-ed25519 not*base64` }, 'known-hosts')
  })

  it('known-hosts without an entry for host:port suggests ssh-keyscan', () => {
    const msg = rejects({ port: '2222', 'known-hosts': `other.org ${hostPub.type} ${hostPub.b64}` }, 'known-hosts')
    expect(msg).toContain('[example.com]:2222')
    expect(msg).toContain('ssh-keyscan -p 2222 example.com')
    // A plain entry only matches port 22, as in OpenSSH.
    const msg2 = rejects({ port: '2222', 'known-hosts': `example.com ${hostPub.type} ${hostPub.b64}` }, 'known-hosts')
    expect(msg2).toContain('ssh-keyscan -p 2222 example.com')
  })

  it('known-hosts with only a @revoked entry for the host has no usable entry', () => {
    rejects({ 'known-hosts': `@revoked example.com ${hostPub.type} ${hostPub.b64}` }, 'known-hosts')
  })

  it.each(['maybe', 'yes', '1'])('insecure-skip-host-key-check %j', v => {
    rejects({ 'insecure-skip-host-key-check': v }, 'insecure-skip-host-key-check')
  })

  it.each(['abc', '0', '601', '1.5'])('connect-timeout %j', v => {
    rejects({ 'connect-timeout': v }, 'connect-timeout')
  })

  it.each(['11', '-1', 'x'])('connect-retries %j', v => {
    rejects({ 'connect-retries': v }, 'connect-retries')
  })

  it.each(['opt/ops', './ops', '/opt/../etc', '/opt/./x', '/opt/my ops', '/', '//', '/opt/$(x)', ''])('ops-dir %j', v => {
    rejects({ 'ops-dir': v }, 'ops-dir')
  })

  it.each(['-bad', 'a b', '', 'a;b'])('network %j', v => {
    rejects({ network: v }, 'network')
  })

  it.each(['host', 'bridge', 'none', 'default'])("network %j (docker's predefined) is rejected", v => {
    expect(rejects({ network: v }, 'network')).toContain('predefined')
  })

  it.each(['not a domain', 'exa mple.com', 'localhost', 'behindy.me/', '*.behindy.me', `${'a'.repeat(60)}.`.repeat(5) + 'me'])(
    'domain %j',
    v => {
      rejects({ domain: v }, 'domain')
    }
  )

  it('http-port equal to https-port', () => {
    expect(rejects({ 'http-port': '8080', 'https-port': '8080' }, 'https-port')).toContain('must differ from http-port')
  })

  it.each(['0', '65536', 'http'])('http-port %j / https-port', v => {
    rejects({ 'http-port': v }, 'http-port')
    rejects({ 'https-port': v }, 'https-port')
  })

  it('infra-env line without =', () => {
    expect(rejects({ 'infra-env': 'DB_USER=a\nDB_PASS' }, 'infra-env')).toContain("line 2 has no '='")
  })

  it.each(['1BAD=x', 'BAD-KEY=x', 'A B=x', '=x'])('infra-env bad key %j', line => {
    expect(rejects({ 'infra-env': line }, 'infra-env')).toContain('is not a valid variable name')
  })

  it('infra-env duplicate key', () => {
    expect(rejects({ 'infra-env': 'A=1\nA=2' }, 'infra-env')).toContain('already set on line 1')
  })

  // These were found by the plan step, after connecting; now before.
  it('infra-env value the host .env cannot hold', () => {
    expect(rejects({ 'infra-env': 'DB_PASS=a\rb' }, 'infra-env')).toContain('carriage return')
    expect(rejects({ 'infra-env': "DB_PASS=it's $x" }, 'infra-env')).toContain('single quote')
  })

  it.each(['two words', 'a"b', "a'b", 'a\\b', 'tab\tx'])('infra-env REDIS_PASSWORD %j', v => {
    expect(rejects({ 'infra-env': `REDIS_PASSWORD=${v}` }, 'infra-env')).toContain('REDIS_PASSWORD must not contain')
  })

  it.each([
    ['HTTP_PORT', 'http-port'],
    ['HTTPS_PORT', 'https-port'],
    ['OPS_NETWORK', 'network']
  ])('infra-env %s is owned by the %s input', (key, input) => {
    expect(rejects({ 'infra-env': `${key}=1` }, 'infra-env')).toContain(`set from the ${input} input`)
  })

  it('infra-env values .env holds are accepted', () => {
    const env = getInputs(reader({ ...base(), 'infra-env': 'DB_PASS=p@ss word#1 $HOME\nREDIS_PASSWORD=r3dis-pw' })).infra.infraEnv
    expect(env).toEqual([
      ['DB_PASS', 'p@ss word#1 $HOME'],
      ['REDIS_PASSWORD', 'r3dis-pw']
    ])
  })

  it.each(['10s', '0', '3601', ''])('infra-timeout %j', v => {
    rejects({ 'infra-timeout': v }, 'infra-timeout')
  })
})

describe('getInputs: several invalid inputs', () => {
  it('are reported together in one InputErrors', () => {
    let caught: unknown
    try {
      getInputs(
        reader({
          mode: 'infra',
          host: 'a;b',
          port: '0',
          username: 'Root',
          'ssh-key': 'nope',
          'connect-timeout': 'abc',
          'ops-dir': 'relative',
          network: '-bad',
          domain: 'not a domain',
          'infra-env': 'NOEQUALS',
          'infra-timeout': '10s',
          // Deploy-only: a warning in mode infra, not an error.
          image: 'nginx:latest'
        })
      )
    } catch (e) {
      caught = e
    }
    expect(caught).toBeInstanceOf(InputErrors)
    const err = caught as InputErrors
    const names = err.errors.map(e => e.input).sort()
    expect(names).toEqual(
      ['connect-timeout', 'domain', 'host', 'infra-env', 'infra-timeout', 'network', 'ops-dir', 'port', 'ssh-key', 'username'].sort()
    )
    expect(err.message).toMatch(/^10 inputs are invalid:\n/)
    for (const e of err.errors) {
      expect(e).toBeInstanceOf(InputError)
      expect(err.message).toContain(`  - ${e.message}`)
    }
    // The deploy-only input is a warning, not an error. getInputs prints nothing itself: the warnings travel with
    // the errors (main prints them), and with the inputs once the others are valid.
    expect(stdout.commands('warning')).toEqual([])
    expect(err.warnings).toHaveLength(1)
    expect(err.warnings[0]).toMatch(/^Ignored in mode infra .*: image$/)
    const fixed = getInputs(reader({ ...base(), image: 'nginx:latest' }))
    expect(fixed.warnings).toHaveLength(1)
    expect(fixed.warnings[0]).toContain('Ignored in mode infra')
    expect(fixed.warnings[0]).toMatch(/: image$/)
  })

  it('a single invalid input is an InputErrors whose message is that error', () => {
    let caught: unknown
    try {
      getInputs(reader({ ...base(), port: '0' }))
    } catch (e) {
      caught = e
    }
    expect(caught).toBeInstanceOf(InputErrors)
    expect((caught as InputErrors).errors).toHaveLength(1)
    expect((caught as InputErrors).message).toBe("Input 'port': 0 is out of range (1–65535)")
  })

  // Host-key input errors are InputErrors too, so they are reported together with the rest.
  it('include a bad host-fingerprint or known-hosts line alongside the others', () => {
    let caught: unknown
    try {
      getInputs(reader({ ...base(), port: '0', 'host-fingerprint': 'garbage', 'known-hosts': 'bad line' }))
    } catch (e) {
      caught = e
    }
    expect(caught).toBeInstanceOf(InputErrors)
    expect((caught as InputErrors).errors.map(e => e.input).sort()).toEqual(['host-fingerprint', 'known-hosts', 'port'])
  })
})

describe('maskSecrets', () => {
  it('masks ssh-key, ssh-passphrase and infra-env secret values, but not true/8080 or plain names', () => {
    const inputs = getInputs(
      reader({
        ...base(),
        'ssh-key': encKey,
        'ssh-passphrase': 'pass',
        'infra-env': 'DB_PASS=s3cr3t-pw\nREDIS_PASSWORD=r3dis%pw\nFEATURE=true\nAPP_PORT=8080\nSHORT=ab\nDB_USER=behindy'
      })
    )
    // Reading the inputs masks nothing; maskSecrets does, once.
    expect(masked()).toEqual([])
    maskSecrets(inputs)
    const m = masked()
    expect(m).toContain(escapeData(encKey))
    expect(m).toContain('pass')
    expect(m).toContain('s3cr3t-pw')
    expect(m).toContain(escapeData('r3dis%pw'))
    expect(m).not.toContain('behindy') // DB_USER: a plain name with a plain value
    expect(m).not.toContain('true')
    expect(m).not.toContain('8080')
    expect(m).not.toContain('ab')
  })

  it('masks nothing but the key (whole, and each line of its body) when no other secret is given', () => {
    maskSecrets(getInputs(reader(base())))
    const bodyLines = key
      .trim()
      .split('\n')
      .filter(l => !l.startsWith('-----'))
    const m = masked()
    expect(m[0]).toBe(escapeData(key))
    // A line of the key echoed on its own (a command printing the file) is masked too.
    for (const l of bodyLines.filter(l => l.length >= 8)) expect(m).toContain(l)
    // Nothing else, and no empty secret input (passphrase, registry password) is masked.
    for (const v of m) {
      expect(v.trim()).not.toBe('')
      expect(v === escapeData(key) || bodyLines.includes(v), v).toBe(true)
    }
    expect(new Set(m).size).toBe(m.length)
  })

  // Masking used to happen while the inputs were read, so secrets were masked even when the inputs were invalid;
  // maskSecrets needs valid inputs. What still holds: the error printed for invalid inputs carries no secret.
  it('invalid inputs: the error message carries none of the secrets', () => {
    const e = errorOf({ port: '0', 'ssh-key': encKey, 'ssh-passphrase': 'wrong', 'infra-env': 'DB_PASS=s3cr3t-pw\nX' })
    expect(e).toBeInstanceOf(InputErrors)
    expect((e as InputErrors).errors.map(x => x.input).sort()).toEqual(['infra-env', 'port', 'ssh-passphrase'])
    for (const secret of ['s3cr3t-pw', 'wrong', ...encKey.trim().split('\n').slice(1, -1)]) expect(e.message).not.toContain(secret)
    expect(masked()).toEqual([])
  })
})

describe('isMaskable', () => {
  it.each(['true', 'False', 'YES', 'no', 'on', 'OFF', '8080', '1', '65535', 'ab', ''])('%j is never masked, even as a password', v => {
    expect(isMaskable('DB_PASS', v)).toBe(false)
  })
  it.each([
    ['DB_PASS', 'abc'],
    ['REDIS_PASSWORD', 'behindy'],
    ['OPENAI_API_KEY', 'sk-live'],
    ['JWT_SECRET', 'truely'],
    ['GITHUB_TOKEN', 'ghp'],
    ['SPRING_DATASOURCE_URL', 'jdbc:postgresql://db:5432/behindy'],
    ['SENTRY_DSN', 'https://x@o1.ingest.example/1'],
    ['FEATURE_FLAGS', 'a1b2c3d4e5'], // looks like a token whatever its name
    ['ANYTHING', 'ghp_0a1b2c3d4e5f6a7b8c9d']
  ])('%s=%j is masked', (name, v) => {
    expect(isMaskable(name, v)).toBe(true)
  })
  it.each([
    ['SPRING_DATA_REDIS_HOST', 'redis'],
    ['NODE_ENV', 'production'],
    ['TZ', 'Asia/Seoul'],
    ['DB_USER', 'behindy'],
    ['LOG_LEVEL', 'info'],
    ['GREETING', 'hello world 2024']
  ])('%s=%j is not masked (plain value, plain name)', (name, v) => {
    expect(isMaskable(name, v)).toBe(false)
  })
  it.each([
    ['NGINX_IMAGE', 'nginx:1.30.6-alpine'],
    ['POSTGRES_IMAGE', 'postgres:15.10-bookworm'],
    ['REDIS_IMAGE', 'registry.example.com:5000/mirror/redis:7.4.1-alpine'],
    ['nginx_image', `nginx@sha256:${'a1'.repeat(32)}`],
    ['IMAGE', 'ghcr.io/behindy/app:3f9c2a1b7d']
  ])('%s=%j is not masked: an image reference under an image name stays readable in the log', (name, v) => {
    expect(isMaskable(name, v)).toBe(false)
  })
  it.each([
    ['NGINX_IMAGE', 'abc123def456#x'], // not a reference: the usual rules (token-like)
    ['DB_PASS', 'nginx:1.30.6-alpine'], // a reference's shape under a credential's name
    ['BUILD_TOKEN', 'admin:S3cr3tPass99'],
    ['ANYTHING', 'admin:S3cr3tPass99'] // token-like, not under an image name
  ])('%s=%j is still masked', (name, v) => {
    expect(isMaskable(name, v)).toBe(true)
  })
})

describe('getInputs: deploy-only inputs given to mode infra', () => {
  it.each([
    ['image', 'ghcr.io/behindy/app:1.0'],
    ['service', 'backend'],
    ['app-port', '8080'],
    ['registry-password', 'tok3n'],
    ['health-timeout', '60'],
    ['memory', '768m']
  ])('%s is ignored with a warning naming it, not an error', (name, value) => {
    const inputs = getInputs(reader({ ...base(), [name]: value }))
    expect(inputs.mode).toBe('infra')
    expect(inputs).not.toHaveProperty('app')
    expect(inputs).not.toHaveProperty('image')
    // Returned for the caller to print: getInputs itself prints no warning.
    expect(stdout.commands('warning')).toEqual([])
    const w = inputs.warnings
    expect(w).toHaveLength(1)
    expect(w[0]).toContain('Ignored in mode infra')
    expect(w[0]).toMatch(new RegExp(`: ${name}$`))
  })

  it('one warning names all of them, and none is printed without them', () => {
    const w = getInputs(reader({ ...base(), image: 'a:1', env: 'A=b', 'keep-images': '5' })).warnings
    expect(w).toHaveLength(1)
    expect(w[0]).toMatch(/: image, env, keep-images$/)
    expect(getInputs(reader(base())).warnings).toEqual([])
  })
})

describe('getInputs: mode deploy / rollback', () => {
  /** The minimal valid deploy input set. */
  function dep(over: Record<string, string> = {}): Record<string, string> {
    return { ...base(), mode: 'deploy', service: 'backend', image: 'ghcr.io/behindy/back:abc', ...over }
  }
  type Deploy = Extract<Inputs, { mode: 'deploy' }>
  /** The inputs of the deploy set with `over` (`repository`: the runner's GITHUB_REPOSITORY). */
  function deployOf(over: Record<string, string> = {}, repository?: string): Deploy {
    const i = getInputs(reader(dep(over)), repository)
    expect(i.mode).toBe('deploy')
    return i as Deploy
  }
  const appOf = (over: Record<string, string> = {}, repository?: string) => deployOf(over, repository).app
  /** Asserts that the deploy set with `over` is rejected naming `input`. */
  function rejectsDeploy(over: Record<string, string>, input: string, repository?: string): string {
    return rejects({ mode: 'deploy', service: 'backend', image: 'ghcr.io/behindy/back:abc', ...over }, input, repository)
  }

  it('mode deploy and rollback are supported', () => {
    expect(getInputs(reader(dep())).mode).toBe('deploy')
    const r = getInputs(reader(dep({ mode: 'rollback', image: '' })))
    expect(r.mode).toBe('rollback')
    // A rollback finds its image in the history: the inputs have none.
    expect(r).not.toHaveProperty('image')
    expect(r.mode === 'rollback' && r.app.service).toBe('backend')
  })

  describe('service', () => {
    it.each([
      ['behindy/behindy-front', 'frontend'],
      ['behindy/behindy-back', 'backend'],
      ['behindy/behindy-story', 'story'],
      ['someone/Behindy-Back', 'backend']
    ])('is inferred from the repository %s -> %s', (repo, service) => {
      expect(appOf({ service: '' }, repo).service).toBe(service)
    })

    it('the repository is GITHUB_REPOSITORY unless given', () => {
      vi.stubEnv('GITHUB_REPOSITORY', 'behindy/behindy-story')
      expect(appOf({ service: '' }).service).toBe('story')
      expect(appOf({ service: '' }, 'behindy/behindy-front').service).toBe('frontend')
    })

    it('an explicit service wins over the repository name', () => {
      expect(appOf({ service: 'story' }, 'behindy/behindy-front').service).toBe('story')
    })

    it('cannot be inferred from another repository name: error naming service', () => {
      expect(rejectsDeploy({ service: '' }, 'service', 'behindy/website')).toContain("'behindy/website'")
      expect(rejectsDeploy({ service: '' }, 'service', 'behindy/website')).toContain('is required')
      rejectsDeploy({ service: '' }, 'service')
    })

    it.each(['db', 'redis', 'nginx', 'llmserver', 'Bad', 'a/b', '..', '1svc', 'a b', 'x'.repeat(40)])('%j is rejected', service => {
      rejectsDeploy({ service, 'app-port': '9000', route: '/x/', 'health-path': '/x/health' }, 'service')
    })
  })

  describe('catalogue', () => {
    it('backend defaults: port 8080, route /api/, health /api/ai-stories/health', () => {
      const d = appOf()
      expect(d.spec).toEqual({ port: 8080, route: '/api/', healthPath: '/api/ai-stories/health', stripPrefix: false, aliases: [] })
    })

    it('story defaults: port 8000, route /llm/, health /health, prefix stripped, alias llmserver', () => {
      const d = appOf({ service: 'story', image: 'ghcr.io/behindy/story:1' })
      expect(d.spec).toMatchObject({ port: 8000, route: '/llm/', healthPath: '/health', stripPrefix: true })
      expect(d.spec.aliases).toContain('llmserver')
    })

    it('frontend defaults: port 3000, route /', () => {
      expect(appOf({ service: 'frontend' }).spec).toMatchObject({ port: 3000, route: '/', healthPath: '/', stripPrefix: false })
    })

    it('extra aliases are added to the catalogue ones, without duplicates', () => {
      const d = appOf({ service: 'story', aliases: 'llm-a, llmserver\nllm-b' })
      expect(d.spec.aliases).toEqual(['llmserver', 'llm-a', 'llm-b'])
    })

    it('the port and health path of a known service can be overridden', () => {
      const d = appOf({ 'app-port': '9090', 'health-path': '/api/ping' })
      expect(d.spec.port).toBe(9090)
      expect(d.spec.healthPath).toBe('/api/ping')
    })

    it("a known service's route cannot be changed", () => {
      expect(rejectsDeploy({ route: '/backend/' }, 'route')).toContain('/api/')
      // The same route spelled out is fine.
      expect(appOf({ route: '/api/' }).spec.route).toBe('/api/')
    })

    it('a health path the route cannot reach is an error naming health-path', () => {
      expect(rejectsDeploy({ 'health-path': '/actuator/health' }, 'health-path')).toContain('/api/')
    })

    it('story: any health path is reachable since the prefix is stripped', () => {
      expect(appOf({ service: 'story', 'health-path': '/docs' }).spec.healthPath).toBe('/docs')
    })
  })

  describe('a service outside the catalogue', () => {
    const custom = {
      service: 'my-svc',
      image: 'ghcr.io/behindy/my-svc:1',
      'app-port': '9000',
      route: '/things/',
      'health-path': '/things/health'
    }

    it('is accepted with app-port, route and health-path', () => {
      const d = appOf(custom)
      expect(d.service).toBe('my-svc')
      expect(d.spec).toEqual({ port: 9000, route: '/things/', healthPath: '/things/health', stripPrefix: false, aliases: [] })
    })

    it.each(['app-port', 'route', 'health-path'])('requires %s', name => {
      expect(rejectsDeploy({ ...custom, [name]: '' }, name)).toContain('is required')
    })

    it.each(['things/', '/things', '/th ings/', '/a b/', 'things', '/things//x'])('route %j is rejected', route => {
      rejectsDeploy({ ...custom, route, 'health-path': '/' }, 'route')
    })

    it('route / and nested routes are fine', () => {
      expect(appOf({ ...custom, route: '/a/b/', 'health-path': '/a/b/health' }).spec.route).toBe('/a/b/')
    })

    it.each(['0', '65536', 'http', '80a'])('app-port %j is rejected', port => {
      rejectsDeploy({ ...custom, 'app-port': port }, 'app-port')
    })

    it.each(['health', '/h h', '/x;y'])('health-path %j is rejected', h => {
      rejectsDeploy({ ...custom, 'health-path': h }, 'health-path')
    })

    it('health path outside the route is rejected', () => {
      rejectsDeploy({ ...custom, 'health-path': '/health' }, 'health-path')
    })
  })

  describe('image', () => {
    it('is required for deploy', () => {
      expect(rejectsDeploy({ image: '' }, 'image')).toContain('is required')
    })

    it('is forbidden for rollback', () => {
      expect(rejectsDeploy({ mode: 'rollback', image: 'ghcr.io/behindy/back:abc' }, 'image')).toContain('rollback')
    })

    it.each([
      'ghcr.io/behindy/back:abc;id',
      'ghcr.io/behindy/back:$(id)',
      'ghcr.io/behindy/back:`id`',
      'ghcr.io/behindy/back:a b',
      'ghcr.io/behindy/back:abc\nid',
      "ghcr.io/behindy/back:'abc'",
      'ghcr.io/behindy/back:"abc"',
      'ghcr.io/Behindy/Back:abc',
      'Back:abc',
      'name@sha256:abc',
      '-name:1',
      'ghcr.io/behindy/back:abc|id',
      '-e.io/app:1',
      '-x:5000/app:1',
      'ghcr-.io/app:1',
      'a.-b.io/app:1'
    ])('%j is rejected naming image', image => {
      rejectsDeploy({ image }, 'image')
    })

    it.each([
      '127.0.0.1:5000/behindy/sample-app:v1',
      'ghcr.io/behindy/back:abc',
      `name@sha256:${'a'.repeat(64)}`,
      'localhost:5000/app:1.2.3',
      'ghcr.io/behindy/back:v1@sha256:' + '0f'.repeat(32)
    ])('%j is accepted without a warning', image => {
      const i = deployOf({ image })
      expect(i.image).toBe(image)
      expect(i.warnings).toEqual([])
    })

    it.each(['ghcr.io/behindy/back:latest', 'ghcr.io/behindy/back', '127.0.0.1:5000/behindy/sample-app'])(
      '%j (mutable tag) is accepted with a warning',
      image => {
        const i = deployOf({ image })
        expect(i.image).toBe(image)
        const w = i.warnings
        expect(w).toHaveLength(1)
        expect(w[0]).toContain("'latest'")
      }
    )
  })

  describe('env', () => {
    it('is parsed; secret values are masked, plain and trivial ones not', () => {
      const inputs = deployOf({
        env: 'SPRING_PROFILES=prod\nDB_PASS="s3cr3t pw"\nFEATURE=true\nPORT=8080\n# comment\nexport JWT_SECRET=jwt-s3cret'
      })
      expect(inputs.app.env).toEqual([
        ['SPRING_PROFILES', 'prod'],
        ['DB_PASS', 's3cr3t pw'],
        ['FEATURE', 'true'],
        ['PORT', '8080'],
        ['JWT_SECRET', 'jwt-s3cret']
      ])
      maskSecrets(inputs)
      const m = masked()
      expect(m).not.toContain('prod')
      expect(m).toContain('s3cr3t pw')
      expect(m).toContain('jwt-s3cret')
      expect(m).not.toContain('true')
      expect(m).not.toContain('8080')
    })

    it('a line without = is an error naming env', () => {
      expect(rejectsDeploy({ env: 'A=1\nNOEQUALS' }, 'env')).toContain("line 2 has no '='")
    })

    it('a value with a carriage return is an error naming env (CRLF line ends are fine)', () => {
      expect(rejectsDeploy({ env: 'A=1\nB=x\ry' }, 'env')).toContain('line 2: value of B contains a carriage return')
      expect(rejectsDeploy({ env: 'A=1\rB=2' }, 'env')).toContain('value of A contains a carriage return')
      expect(appOf({ env: 'A=1\r\nB=2\r\n' }).env).toEqual([
        ['A', '1'],
        ['B', '2']
      ])
    })

    it('a quoted value cannot span lines', () => {
      expect(rejectsDeploy({ env: 'A="line1\nline2"' }, 'env')).toContain("line 2 has no '='")
    })

    it('env-file must be an absolute path', () => {
      expect(appOf({ 'env-file': '/opt/app/back.env' }).envFile).toBe('/opt/app/back.env')
      rejectsDeploy({ 'env-file': 'back.env' }, 'env-file')
      rejectsDeploy({ 'env-file': '/opt/../etc/shadow' }, 'env-file')
    })
  })

  describe('registry', () => {
    it('with username and password is a login; the password is masked', () => {
      const inputs = deployOf({ registry: 'ghcr.io', 'registry-username': 'bot', 'registry-password': ' tok3n-s3cret ' })
      expect(inputs.app.registry).toEqual({ server: 'ghcr.io', username: 'bot', password: 'tok3n-s3cret' })
      maskSecrets(inputs)
      // The password as it is used (trimmed): masking it masks it wherever it appears, spaces around or not.
      expect(masked()).toContain('tok3n-s3cret')
    })

    it('none by default', () => {
      expect(appOf().registry).toBeUndefined()
    })

    it('without username names registry-username', () => {
      rejectsDeploy({ registry: 'ghcr.io', 'registry-password': 'tok3n' }, 'registry-username')
    })

    it('without password names registry-password', () => {
      rejectsDeploy({ registry: 'ghcr.io', 'registry-username': 'bot' }, 'registry-password')
    })

    it('username or password without registry names registry', () => {
      rejectsDeploy({ 'registry-username': 'bot', 'registry-password': 'tok3n' }, 'registry')
      rejectsDeploy({ 'registry-username': 'bot' }, 'registry')
      rejectsDeploy({ 'registry-password': 'tok3n' }, 'registry')
    })

    it.each(['registry-username\nx', 'bot\tx', 'bot\u2028x'])(
      'registry-username %j (a line break or control character) is rejected',
      username => {
        expect(
          rejectsDeploy({ registry: 'ghcr.io', 'registry-username': username, 'registry-password': 'tok3n' }, 'registry-username')
        ).toContain('one line')
      }
    )

    it('a registry-username with $ or spaces inside is fine (it is an argument, not shell)', () => {
      expect(appOf({ registry: 'nvcr.io', 'registry-username': '$oauthtoken', 'registry-password': 'tok3n' }).registry?.username).toBe(
        '$oauthtoken'
      )
    })

    it.each(['registry', 'registry.example.com:5000', 'localhost:5000', '127.0.0.1:5000'])('registry %j is accepted', registry => {
      expect(appOf({ registry, 'registry-username': 'bot', 'registry-password': 'tok3n' }).registry?.server).toBe(registry)
    })

    // A registry (or image domain) starting with '-' would reach docker as an option.
    it.each(['ghcr.io/x', 'a b', 'https://ghcr.io', '--help', '-x', '-ghcr.io', 'ghcr-.io', 'ghcr.io-', '-x:5000'])(
      'registry %j is rejected',
      registry => {
        rejectsDeploy({ registry, 'registry-username': 'bot', 'registry-password': 'tok3n' }, 'registry')
      }
    )
  })

  describe('timeouts, keep-images, memory, aliases', () => {
    it('defaults', () => {
      const d = appOf()
      expect(d).toMatchObject({ healthTimeoutS: 180, drainTimeoutS: 30, stopTimeoutS: 30, keepImages: 3, memory: undefined })
    })

    it.each(['health-timeout', 'drain-timeout', 'stop-timeout', 'keep-images'])('%s non-numeric is an error naming it', name => {
      rejectsDeploy({ [name]: 'soon' }, name)
      rejectsDeploy({ [name]: '10s' }, name)
    })

    it('keep-images 0 is an error', () => {
      rejectsDeploy({ 'keep-images': '0' }, 'keep-images')
    })

    it('health-timeout 0 is an error, drain-timeout 0 is fine', () => {
      rejectsDeploy({ 'health-timeout': '0' }, 'health-timeout')
      expect(appOf({ 'drain-timeout': '0' }).drainTimeoutS).toBe(0)
    })

    it.each([
      ['768m', 768 * 1024 ** 2],
      ['1G', 1024 ** 3],
      ['8192k', 8192 * 1024],
      ['6m', 6 * 1024 ** 2],
      ['1024g', 1024 ** 4],
      [' 805306368 ', 768 * 1024 ** 2]
    ])('memory %j is accepted as %d bytes', (v, expected) => {
      expect(appOf({ memory: v }).memory).toBe(expected)
    })

    it.each(['lots', '0', '1.5g', '-1m', '768mb'])('memory %j is an error', memory => {
      rejectsDeploy({ memory }, 'memory')
    })

    // docker refuses a limit below 6 MiB only when it starts the container, i.e. after connecting.
    it.each(['1b', '512k', '5m', '6291455b'])("memory %j below docker's 6m minimum is an error", memory => {
      expect(rejectsDeploy({ memory }, 'memory')).toContain('minimum')
    })

    it.each(['1025g', '99999999999999999999999g'])('memory %j is too large', memory => {
      rejectsDeploy({ memory }, 'memory')
    })

    it.each([
      ['frontend', 'backend'],
      ['frontend', 'llmserver'],
      ['backend', 'story'],
      ['story', 'frontend']
    ])('%s with the alias %j of another app service is rejected', (service, alias) => {
      expect(rejectsDeploy({ service, aliases: alias }, 'aliases')).toContain('network name of')
    })

    it("an alias that is the service's own name is fine", () => {
      expect(appOf({ service: 'story', aliases: 'story' }).spec.aliases).toEqual(['llmserver', 'story'])
    })

    it.each(['Api', 'db', 'redis', 'nginx', 'postgres', 'a_b', '1abc'])('alias %j is rejected', alias => {
      rejectsDeploy({ aliases: `ok-alias, ${alias}` }, 'aliases')
    })
  })

  it('several deploy input errors are reported together', () => {
    let caught: unknown
    try {
      getInputs(reader(dep({ image: 'Bad Image', memory: 'lots', 'keep-images': '0', aliases: 'db', env: 'X' })))
    } catch (e) {
      caught = e
    }
    expect(caught).toBeInstanceOf(InputErrors)
    expect((caught as InputErrors).errors.map(e => e.input).sort()).toEqual(['aliases', 'env', 'image', 'keep-images', 'memory'])
  })
})

describe('getInputs: release-command and the canary (mode deploy)', () => {
  const dep = (over: Record<string, string> = {}): Record<string, string> => ({
    ...base(),
    mode: 'deploy',
    service: 'backend',
    image: 'ghcr.io/behindy/back:abc',
    ...over
  })
  type Deploy = Extract<Inputs, { mode: 'deploy' }>
  const deployOf = (over: Record<string, string> = {}): Deploy => getInputs(reader(dep(over))) as Deploy
  const rejectsDeploy = (over: Record<string, string>, input: string): string =>
    rejects({ mode: 'deploy', service: 'backend', image: 'ghcr.io/behindy/back:abc', ...over }, input)

  it('none by default: no release command, no canary', () => {
    const d = deployOf()
    expect(d.releaseCommand).toBeUndefined()
    expect(d.canary).toBeUndefined()
  })

  it('release-command: trimmed, with release-timeout (300 s by default)', () => {
    expect(deployOf({ 'release-command': '  ./migrate.sh up\n' }).releaseCommand).toEqual({ command: './migrate.sh up', timeoutS: 300 })
    expect(deployOf({ 'release-command': 'npm run migrate', 'release-timeout': '3600' }).releaseCommand).toEqual({
      command: 'npm run migrate',
      timeoutS: 3600
    })
  })

  it.each(['0', '3601', '5m', '-1'])('release-timeout %j is rejected naming it', v => {
    rejectsDeploy({ 'release-command': 'true', 'release-timeout': v }, 'release-timeout')
  })

  it('release-command longer than 4096 characters is rejected naming it', () => {
    expect(rejectsDeploy({ 'release-command': `echo ${'x'.repeat(4092)}` }, 'release-command')).toContain('at most 4096')
    expect(deployOf({ 'release-command': `echo ${'x'.repeat(4091)}` }).releaseCommand?.command).toHaveLength(4096)
  })

  it('release-command in mode rollback is an error naming release-command (nothing new to release)', () => {
    const m = rejects({ mode: 'rollback', service: 'backend', 'release-command': './migrate.sh' }, 'release-command')
    expect(m).toContain('is for mode deploy (this run is mode rollback')
  })

  it('canary-percent: the canary with its defaults (60 s, 20 requests, 1 point, 2×)', () => {
    expect(deployOf({ 'canary-percent': '10' }).canary).toEqual({
      percent: 10,
      seconds: 60,
      minRequests: 20,
      errorMargin: 1,
      latencyFactor: 2
    })
    expect(deployOf({ 'canary-percent': '1' }).canary?.percent).toBe(1)
    expect(deployOf({ 'canary-percent': '50' }).canary?.percent).toBe(50)
  })

  it.each(['0', '51', 'x', '10%', '2.5'])('canary-percent %j is rejected naming it', v => {
    rejectsDeploy({ 'canary-percent': v }, 'canary-percent')
  })

  it('canary in mode rollback is rejected naming canary-percent', () => {
    expect(rejects({ mode: 'rollback', service: 'backend', 'canary-percent': '10' }, 'canary-percent')).toContain(
      'is for mode deploy (this run is mode rollback)'
    )
  })

  it('canary-seconds and canary-min-requests: whole numbers in range', () => {
    const d = deployOf({ 'canary-percent': '5', 'canary-seconds': '120', 'canary-min-requests': '30' })
    expect(d.canary).toMatchObject({ seconds: 120, minRequests: 30 })
    rejectsDeploy({ 'canary-percent': '5', 'canary-seconds': '4' }, 'canary-seconds')
    rejectsDeploy({ 'canary-percent': '5', 'canary-seconds': '3601' }, 'canary-seconds')
    rejectsDeploy({ 'canary-percent': '5', 'canary-min-requests': '0' }, 'canary-min-requests')
  })

  it('canary-error-margin and canary-latency-factor accept decimals', () => {
    expect(deployOf({ 'canary-percent': '5', 'canary-error-margin': '0.5', 'canary-latency-factor': '1.5' }).canary).toMatchObject({
      errorMargin: 0.5,
      latencyFactor: 1.5
    })
    expect(deployOf({ 'canary-percent': '5', 'canary-error-margin': '0', 'canary-latency-factor': '1' }).canary).toMatchObject({
      errorMargin: 0,
      latencyFactor: 1
    })
  })

  it.each([
    ['canary-error-margin', '100.5'],
    ['canary-error-margin', '-1'],
    ['canary-error-margin', 'one'],
    ['canary-error-margin', '.5'],
    ['canary-latency-factor', '0.9'],
    ['canary-latency-factor', '101'],
    ['canary-latency-factor', '2x']
  ])('%s %j is rejected naming it', (name, v) => {
    rejectsDeploy({ 'canary-percent': '5', [name]: v }, name)
  })

  it('release-command and the canary together, with their errors reported with the others', () => {
    let caught: unknown
    try {
      getInputs(reader(dep({ 'release-timeout': '0', 'canary-percent': '60', 'canary-latency-factor': '0', image: 'Bad Image' })))
    } catch (e) {
      caught = e
    }
    expect(caught).toBeInstanceOf(InputErrors)
    expect((caught as InputErrors).errors.map(e => e.input).sort()).toEqual([
      'canary-latency-factor',
      'canary-percent',
      'image',
      'release-timeout'
    ])
  })

  it.each(['infra', 'status', 'plan', 'backup', 'maintenance', 'live'])(
    'mode %s ignores release and canary inputs (even invalid ones) with an "Ignored in mode" warning naming them',
    mode => {
      const i = getInputs(reader({ ...base(), mode, 'release-command': './migrate.sh', 'release-timeout': '0', 'canary-percent': 'x' }))
      expect(i.mode).toBe(mode)
      expect(i).not.toHaveProperty('releaseCommand')
      expect(i).not.toHaveProperty('canary')
      expect(i.warnings).toEqual([
        `Ignored in mode ${mode} (they belong to mode deploy/rollback): release-command, release-timeout, canary-percent`
      ])
    }
  )
})

describe('getInputs: mode maintenance / live', () => {
  const pages = useTempDir('inputs-pages')
  const mode = (m: 'maintenance' | 'live', over: Record<string, string> = {}, repository?: string) =>
    getInputs(reader({ ...base(), mode: m, ...over }), repository) as Extract<Inputs, { mode: 'maintenance' | 'live' }>

  it('service empty: every route (undefined), not inferred from the repository', () => {
    for (const m of ['maintenance', 'live'] as const) {
      const i = mode(m, {}, 'behindy/behindy-back')
      expect(i.mode).toBe(m)
      expect(i.service).toBeUndefined()
      expect(i.warnings).toEqual([])
    }
    vi.stubEnv('GITHUB_REPOSITORY', 'behindy/behindy-front')
    expect(mode('maintenance').service).toBeUndefined()
  })

  it('service names one route: a catalogue service or one outside it, without a warning', () => {
    expect(mode('maintenance', { service: 'backend' })).toMatchObject({ service: 'backend', warnings: [] })
    expect(mode('live', { service: 'my-svc' })).toMatchObject({ service: 'my-svc', warnings: [] })
  })

  it.each([
    ['all', 'not an app service'],
    ['db', 'not an app service'],
    ['nginx', 'not an app service'],
    ['llmserver', 'the network alias of story'],
    ['Bad_Name', 'must match']
  ])('service %j is rejected naming service', (service, why) => {
    expect(rejects({ mode: 'maintenance', service }, 'service')).toContain(why)
    rejects({ mode: 'live', service }, 'service')
  })

  it("a deploy or rollback of a service named 'all' is rejected naming service (it names every route in mode maintenance)", () => {
    expect(rejects({ mode: 'deploy', service: 'all', image: 'ghcr.io/behindy/back:abc' }, 'service')).toContain(
      "'all' names every route in mode maintenance"
    )
    rejects({ mode: 'rollback', service: 'all' }, 'service')
  })

  it("other deploy inputs are ignored with a warning (service is the mode's own)", () => {
    expect(mode('maintenance', { service: 'backend', image: 'a:1' }).warnings).toEqual([
      'Ignored in mode maintenance (they belong to mode deploy/rollback): image'
    ])
  })

  it('maintenance-page: the file of the workspace (GITHUB_WORKSPACE), read whole; none by default', () => {
    const dir = mkdtempSync(join(pages(), 'ws-'))
    mkdirSync(join(dir, 'ops'))
    const html = '<!doctype html><h1>Back soon — ünïcode</h1>\n'
    writeFileSync(join(dir, 'ops', 'maintenance.html'), html)
    vi.stubEnv('GITHUB_WORKSPACE', dir)
    expect(mode('maintenance', { 'maintenance-page': 'ops/maintenance.html' }).page).toBe(html)
    // An absolute path is taken as it is.
    expect(mode('maintenance', { 'maintenance-page': join(dir, 'ops', 'maintenance.html') }).page).toBe(html)
    expect(mode('maintenance').page).toBeUndefined()
    expect(mode('live').page).toBeUndefined()
  })

  it('maintenancePage: the workspace passed in resolves a relative path', () => {
    const dir = mkdtempSync(join(pages(), 'ws-'))
    writeFileSync(join(dir, 'page.html'), '<p>down</p>')
    const c = new Collector(reader({ 'maintenance-page': 'page.html' }))
    expect(maintenancePage(c, 'maintenance', dir)).toBe('<p>down</p>')
    expect(c.errors).toEqual([])
  })

  it('maintenance-page: a missing file, a directory, a file too large or not UTF-8 are errors naming maintenance-page', () => {
    const dir = mkdtempSync(join(pages(), 'ws-'))
    writeFileSync(join(dir, 'big.html'), Buffer.alloc(512 * 1024 + 1, 'a'))
    writeFileSync(join(dir, 'ok.html'), Buffer.alloc(512 * 1024, 'a'))
    writeFileSync(join(dir, 'logo.png'), Buffer.from([0x89, 0x50, 0x4e, 0x47, 0xff, 0xfe, 0x00]))
    mkdirSync(join(dir, 'html'))
    vi.stubEnv('GITHUB_WORKSPACE', dir)
    const missing = rejects({ mode: 'maintenance', 'maintenance-page': 'ops/none.html' }, 'maintenance-page')
    expect(missing).toContain(`'ops/none.html' is not a file of the repository (looked for ${join(dir, 'ops', 'none.html')}`)
    rejects({ mode: 'maintenance', 'maintenance-page': 'html' }, 'maintenance-page')
    expect(rejects({ mode: 'maintenance', 'maintenance-page': 'big.html' }, 'maintenance-page')).toContain('at most 512 KiB')
    expect(mode('maintenance', { 'maintenance-page': 'ok.html' }).page).toHaveLength(512 * 1024)
    expect(rejects({ mode: 'maintenance', 'maintenance-page': 'logo.png' }, 'maintenance-page')).toContain('not UTF-8')
  })

  it.each(['live', 'deploy', 'infra'])('maintenance-page in mode %s is ignored with a warning naming it (the file is not read)', m => {
    const extra: Record<string, string> = m === 'deploy' ? { service: 'backend', image: 'ghcr.io/behindy/back:abc' } : {}
    vi.stubEnv('GITHUB_WORKSPACE', mkdtempSync(join(pages(), 'ws-')))
    const i = getInputs(reader({ ...base(), mode: m, 'maintenance-page': 'ops/none.html', ...extra }))
    expect(i.mode).toBe(m)
    expect(i).not.toHaveProperty('page', expect.anything())
    expect(i.warnings).toEqual([`Ignored in mode ${m} (it belongs to mode maintenance): maintenance-page`])
  })
})
