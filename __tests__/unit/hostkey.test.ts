import { InputError } from '../../src/errors'
import { execFileSync, spawnSync } from 'node:child_process'
import { createHash } from 'node:crypto'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import {
  FINGERPRINT_RE,
  HostKeyInputError,
  checkHostKey,
  fingerprintOf,
  hostMatches,
  keyTypeOf,
  normalizeFingerprint,
  parseKnownHosts
} from '../../src/hostkey'

// Real keys generated with ssh-keygen; ssh-keygen is also used as the oracle for
// fingerprints and host-pattern matching.

interface RealKey {
  type: string
  b64: string
  blob: Buffer
  pubPath: string
}

let dir: string
let ed: RealKey
let rsa: RealKey
let ed2: RealKey

function keygen(name: string, type: 'ed25519' | 'rsa'): RealKey {
  const path = join(dir, name)
  const extra = type === 'rsa' ? ['-b', '2048'] : []
  execFileSync('ssh-keygen', ['-q', '-t', type, ...extra, '-N', '', '-C', `${name}@test`, '-f', path])
  const [kt, b64] = readFileSync(`${path}.pub`, 'utf8').trim().split(/\s+/)
  return { type: kt, b64, blob: Buffer.from(b64, 'base64'), pubPath: `${path}.pub` }
}

/** Line numbers of known_hosts `file` that `ssh-keygen -F name` reports as matching. */
function sshKeygenFind(file: string, name: string): number[] {
  const r = spawnSync('ssh-keygen', ['-F', name, '-f', file], { encoding: 'utf8' })
  return [...r.stdout.matchAll(/found: line (\d+)/g)].map(m => Number(m[1]))
}

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'hostkey-test-'))
  ed = keygen('ed', 'ed25519')
  rsa = keygen('rsa', 'rsa')
  ed2 = keygen('ed2', 'ed25519')
})

afterAll(() => {
  rmSync(dir, { recursive: true, force: true })
})

describe('keyTypeOf / fingerprintOf', () => {
  it('reads the key type embedded in real ed25519 and rsa blobs', () => {
    expect(ed.type).toBe('ssh-ed25519')
    expect(rsa.type).toBe('ssh-rsa')
    expect(keyTypeOf(ed.blob)).toBe('ssh-ed25519')
    expect(keyTypeOf(rsa.blob)).toBe('ssh-rsa')
  })

  it('rejects truncated / garbage blobs', () => {
    expect(() => keyTypeOf(Buffer.from([0, 0]))).toThrow(/too short/)
    expect(() => keyTypeOf(Buffer.from([0, 0, 0, 50, 0x61]))).toThrow(/does not fit/)
  })

  it('matches `ssh-keygen -lf` for both key types', () => {
    for (const k of [ed, rsa]) {
      const out = execFileSync('ssh-keygen', ['-lf', k.pubPath], { encoding: 'utf8' })
      const expected = out.split(/\s+/)[1]
      expect(expected).toMatch(FINGERPRINT_RE)
      expect(fingerprintOf(k.blob)).toBe(expected)
    }
    expect(fingerprintOf(ed.blob)).not.toBe(fingerprintOf(ed2.blob))
  })
})

describe('normalizeFingerprint', () => {
  it('accepts the canonical form, trims, and strips one trailing "="', () => {
    const fp = fingerprintOf(ed.blob)
    expect(normalizeFingerprint(fp)).toBe(fp)
    expect(normalizeFingerprint(`  ${fp}=\n`)).toBe(fp)
    expect(normalizeFingerprint(fp.replace('SHA256:', 'sha256:'))).toBe(fp)
  })

  it('rejects an MD5 fingerprint with a pointer to `ssh-keygen -lf`', () => {
    const md5 = execFileSync('ssh-keygen', ['-E', 'md5', '-lf', ed.pubPath], { encoding: 'utf8' }).split(/\s+/)[1]
    expect(md5).toMatch(/^MD5:/)
    for (const input of [md5, md5.slice('MD5:'.length)]) {
      let err: unknown
      try {
        normalizeFingerprint(input)
      } catch (e) {
        err = e
      }
      expect(err).toBeInstanceOf(HostKeyInputError)
      expect((err as HostKeyInputError).input).toBe('host-fingerprint')
      expect((err as Error).message).toMatch(/^Input 'host-fingerprint': /)
      expect((err as Error).message).toMatch(/MD5/)
      expect((err as Error).message).toContain('ssh-keygen -lf')
      expect((err as Error).message).toContain('SHA256')
    }
  })

  it('rejects other malformed values with specific messages', () => {
    const fp = fingerprintOf(ed.blob)
    expect(() => normalizeFingerprint('')).toThrow(/^Input 'host-fingerprint': is empty/)
    expect(() => normalizeFingerprint(fp.slice('SHA256:'.length))).toThrow(/missing the 'SHA256:' prefix/)
    expect(() => normalizeFingerprint(`256 ${fp} me@host (ED25519)`)).toThrow(/paste only the SHA256/)
    expect(() => normalizeFingerprint(fp.slice(0, -1))).toThrow(/43 base64 characters/)
    expect(() => normalizeFingerprint(`${fp}==`)).toThrow(HostKeyInputError)
  })
})

describe('HostKeyInputError', () => {
  it('is the InputError every input check throws, prefixed with the input name', () => {
    const e = new HostKeyInputError('known-hosts', 'boom')
    expect(e.message).toBe("Input 'known-hosts': boom")
    expect(e.input).toBe('known-hosts')
    expect(e).toBeInstanceOf(InputError)
  })
})

describe('parseKnownHosts', () => {
  it('parses markers, comments, blank lines, CRLF and keeps 1-based line numbers', () => {
    const text = [
      '# comment',
      '',
      `example.com,10.0.0.1 ${ed.type} ${ed.b64} some comment here`,
      `@revoked * ${rsa.type} ${rsa.b64}`,
      `   @cert-authority *.corp ${ed2.type} ${ed2.b64}\r`,
      '   # indented comment'
    ].join('\r\n')
    const entries = parseKnownHosts(text)
    expect(entries).toHaveLength(3)
    expect(entries[0]).toMatchObject({ line: 3, patterns: 'example.com,10.0.0.1', keyType: 'ssh-ed25519' })
    expect(entries[0].marker).toBeUndefined()
    expect(entries[0].key.equals(ed.blob)).toBe(true)
    expect(entries[1]).toMatchObject({ line: 4, marker: '@revoked', patterns: '*', keyType: 'ssh-rsa' })
    expect(entries[1].key.equals(rsa.blob)).toBe(true)
    expect(entries[2]).toMatchObject({ line: 5, marker: '@cert-authority', patterns: '*.corp' })
  })

  it('returns no entries for empty / comment-only text', () => {
    expect(parseKnownHosts('')).toEqual([])
    expect(parseKnownHosts('# only\n\n  \n')).toEqual([])
  })

  const bad: Array<[string, (t: string) => string, RegExp]> = [
    ['missing key', () => `host ${ed.type}`, /line 3: missing field\(s\) base64-key/],
    ['missing type and key', () => 'host', /line 3: missing field\(s\) key-type, base64-key/],
    ['marker only', () => '@revoked', /line 3: missing field\(s\) host-patterns/],
    ['unknown marker', () => `@trusted host ${ed.type} ${ed.b64}`, /line 3: unknown marker '@trusted'/],
    ['invalid base64', () => `host ${ed.type} not*base64!`, /line 3: .*not valid base64/],
    ['truncated base64', () => `host ${ed.type} ${ed.b64.slice(0, -3)}`, /line 3: .*not valid base64/],
    ['type mismatch', () => `host ssh-rsa ${ed.b64}`, /line 3: key type field 'ssh-rsa' does not match .*'ssh-ed25519'/],
    ['not a key blob', () => `host ssh-ed25519 ${Buffer.from('hello world!').toString('base64')}`, /line 3: .*not an SSH public key/],
    ['bad hashed name', () => `|1|abc ${ed.type} ${ed.b64}`, /line 3: malformed hashed host name/]
  ]
  it.each(bad)('rejects a malformed line (%s) naming known-hosts and the line number', (_name, make, re) => {
    const text = `# header\n\n${make('')}\nexample.com ${ed.type} ${ed.b64}\n`
    let err: unknown
    try {
      parseKnownHosts(text)
    } catch (e) {
      err = e
    }
    expect(err).toBeInstanceOf(HostKeyInputError)
    expect((err as HostKeyInputError).input).toBe('known-hosts')
    expect((err as Error).message).toMatch(/^Input 'known-hosts': line 3: /)
    expect((err as Error).message).toMatch(re)
  })
})

describe('hostMatches', () => {
  it('plain host matches only port 22; [host]:port only that port', () => {
    expect(hostMatches('example.com', 'example.com', 22)).toBe(true)
    expect(hostMatches('example.com', 'example.com', 2222)).toBe(false)
    expect(hostMatches('[127.0.0.1]:2222', '127.0.0.1', 2222)).toBe(true)
    expect(hostMatches('[127.0.0.1]:2222', '127.0.0.1', 22)).toBe(false)
    expect(hostMatches('[127.0.0.1]:2222', '127.0.0.1', 2223)).toBe(false)
    expect(hostMatches('127.0.0.1', '127.0.0.1', 2222)).toBe(false)
    expect(hostMatches('[::1]:2222', '::1', 2222)).toBe(true)
  })

  it('is case-insensitive for host names', () => {
    expect(hostMatches('Example.COM', 'example.com', 22)).toBe(true)
    expect(hostMatches('example.com', 'EXAMPLE.com', 22)).toBe(true)
    expect(hostMatches('[Example.com]:2200', 'example.COM', 2200)).toBe(true)
  })

  it('handles comma lists, wildcards and negation', () => {
    expect(hostMatches('a.example.com,b.example.com', 'b.example.com', 22)).toBe(true)
    expect(hostMatches('a.example.com,b.example.com', 'c.example.com', 22)).toBe(false)
    expect(hostMatches('*.example.com', 'deep.sub.example.com', 22)).toBe(true)
    expect(hostMatches('*.example.com', 'example.com', 22)).toBe(false)
    expect(hostMatches('10.0.0.?', '10.0.0.7', 22)).toBe(true)
    expect(hostMatches('10.0.0.?', '10.0.0.17', 22)).toBe(false)
    expect(hostMatches('[10.0.0.*]:2222', '10.0.0.42', 2222)).toBe(true)
    expect(hostMatches('*.example.com', 'a.example.com', 2222)).toBe(false)
    // a matching negated pattern vetoes the whole line, wherever it appears
    expect(hostMatches('*.example.com,!bad.example.com', 'bad.example.com', 22)).toBe(false)
    expect(hostMatches('!bad.example.com,*.example.com', 'bad.example.com', 22)).toBe(false)
    expect(hostMatches('*.example.com,!bad.example.com', 'good.example.com', 22)).toBe(true)
    // negation alone never produces a match
    expect(hostMatches('!bad.example.com', 'good.example.com', 22)).toBe(false)
  })

  it('agrees with `ssh-keygen -F` on plain patterns (oracle)', () => {
    const patterns = [
      'example.com',
      '[127.0.0.1]:2222',
      '*.example.com,!bad.example.com',
      'h?st,[h?st]:2*',
      '!10.0.0.5,10.0.0.*',
      '[*]:2222',
      '*'
    ]
    const file = join(dir, 'oracle_known_hosts')
    writeFileSync(file, patterns.map(p => `${p} ${ed.type} ${ed.b64}\n`).join(''))
    const entries = parseKnownHosts(readFileSync(file, 'utf8'))
    const cases: Array<[string, number]> = [
      ['example.com', 22],
      ['example.com', 2222],
      ['127.0.0.1', 2222],
      ['127.0.0.1', 22],
      ['a.example.com', 22],
      ['bad.example.com', 22],
      ['a.example.com', 2222],
      ['host', 22],
      ['hust', 2022],
      ['hoost', 22],
      ['10.0.0.5', 22],
      ['10.0.0.6', 22],
      ['10.0.0.6', 2222]
    ]
    for (const [host, port] of cases) {
      const name = port === 22 ? host : `[${host}]:${port}`
      const ours = entries.filter(e => hostMatches(e.patterns, host, port)).map(e => e.line)
      expect({ name, lines: ours }).toEqual({ name, lines: sshKeygenFind(file, name) })
    }
  })

  it('matches entries hashed by `ssh-keygen -H`', () => {
    const file = join(dir, 'hashed_known_hosts')
    writeFileSync(file, `[127.0.0.1]:2222 ${ed.type} ${ed.b64}\nexample.com ${rsa.type} ${rsa.b64}\n`)
    execFileSync('ssh-keygen', ['-H', '-f', file], { stdio: 'ignore' })
    const entries = parseKnownHosts(readFileSync(file, 'utf8'))
    expect(entries).toHaveLength(2)
    for (const e of entries) expect(e.patterns).toMatch(/^\|1\|[^|]+\|[^|]+$/)
    const [local, example] = entries
    expect(local.key.equals(ed.blob)).toBe(true)
    expect(example.key.equals(rsa.blob)).toBe(true)

    expect(hostMatches(local.patterns, '127.0.0.1', 2222)).toBe(true)
    expect(hostMatches(local.patterns, '127.0.0.1', 22)).toBe(false)
    expect(hostMatches(local.patterns, '127.0.0.2', 2222)).toBe(false)
    expect(hostMatches(example.patterns, 'example.com', 22)).toBe(true)
    expect(hostMatches(example.patterns, 'EXAMPLE.COM', 22)).toBe(true) // ssh lowercases before hashing
    expect(hostMatches(example.patterns, 'example.com', 2222)).toBe(false)
    expect(hostMatches(example.patterns, 'example.org', 22)).toBe(false)
    // a negated hashed name vetoes
    expect(hostMatches(`*,!${example.patterns}`, 'example.com', 22)).toBe(false)
    expect(hostMatches(`*,!${example.patterns}`, 'example.org', 22)).toBe(true)

    // and agree with ssh-keygen's own lookup
    for (const name of ['[127.0.0.1]:2222', '127.0.0.1', 'example.com', '[example.com]:2222']) {
      const [host, port] = name.startsWith('[') ? [name.slice(1, name.indexOf(']')), Number(name.split(':').pop())] : [name, 22]
      const ours = entries.filter(e => hostMatches(e.patterns, host, port)).map(e => e.line)
      expect({ name, lines: ours }).toEqual({ name, lines: sshKeygenFind(file, name) })
    }
  })
})

describe('checkHostKey', () => {
  const local = { host: '127.0.0.1', port: 2222 }

  it('skip=true accepts anything without verification', () => {
    expect(checkHostKey({ ...local, skip: true }, ed.blob)).toEqual({ ok: true, via: 'skipped' })
  })

  it('with nothing configured, refuses and prints the fingerprint and a pasteable known_hosts line', () => {
    const r = checkHostKey(local, ed.blob)
    expect(r.ok).toBe(false)
    if (r.ok) return
    expect(r.reason).toContain('`known-hosts`')
    expect(r.reason).toContain('`host-fingerprint`')
    expect(r.reason).toContain(fingerprintOf(ed.blob))
    const line = `[127.0.0.1]:2222 ssh-ed25519 ${ed.b64}`
    expect(r.reason.split('\n')).toContain(line)
    // the suggested line really works when pasted back
    expect(checkHostKey({ ...local, knownHosts: parseKnownHosts(line) }, ed.blob)).toEqual({ ok: true, via: 'known-hosts' })

    const r22 = checkHostKey({ host: 'example.com', port: 22 }, rsa.blob)
    expect(r22.ok).toBe(false)
    if (!r22.ok) expect(r22.reason.split('\n')).toContain(`example.com ssh-rsa ${rsa.b64}`)
  })

  it('accepts a matching fingerprint (with or without padding), rejects a different one', () => {
    const fp = fingerprintOf(ed.blob)
    expect(checkHostKey({ ...local, fingerprint: fp }, ed.blob)).toEqual({ ok: true, via: 'fingerprint' })
    expect(checkHostKey({ ...local, fingerprint: `${fp}=` }, ed.blob)).toEqual({ ok: true, via: 'fingerprint' })
    const r = checkHostKey({ ...local, fingerprint: fingerprintOf(ed2.blob) }, ed.blob)
    expect(r).toEqual({
      ok: false,
      reason:
        `host key fingerprint mismatch for [127.0.0.1]:2222: presented ssh-ed25519 ${fp}, expected ${fingerprintOf(ed2.blob)} ` +
        '(possible man-in-the-middle or host re-installed)'
    })
  })

  it('reports an invalid fingerprint input instead of throwing', () => {
    const r = checkHostKey({ ...local, fingerprint: 'aa:bb' }, ed.blob)
    expect(r.ok).toBe(false)
    if (!r.ok) expect(r.reason).toMatch(/^Input 'host-fingerprint': /)
  })

  it('accepts a known-hosts entry with the same key for host:port', () => {
    const kh = parseKnownHosts(`example.com ${rsa.type} ${rsa.b64}\n[127.0.0.1]:2222 ${ed.type} ${ed.b64}\n`)
    expect(checkHostKey({ ...local, knownHosts: kh }, ed.blob)).toEqual({ ok: true, via: 'known-hosts' })
    expect(checkHostKey({ host: 'example.com', port: 22, knownHosts: kh }, rsa.blob)).toEqual({ ok: true, via: 'known-hosts' })
    // one host with several key types: any matching one is accepted
    const multi = parseKnownHosts(`[127.0.0.1]:2222 ${rsa.type} ${rsa.b64}\n[127.0.0.1]:2222 ${ed.type} ${ed.b64}\n`)
    expect(checkHostKey({ ...local, knownHosts: multi }, ed.blob)).toEqual({ ok: true, via: 'known-hosts' })
  })

  it('reports a key mismatch with both fingerprints', () => {
    const kh = parseKnownHosts(`[127.0.0.1]:2222 ${ed2.type} ${ed2.b64}\n`)
    const r = checkHostKey({ ...local, knownHosts: kh }, ed.blob)
    expect(r).toEqual({
      ok: false,
      reason:
        `host key mismatch for [127.0.0.1]:2222: presented ssh-ed25519 ${fingerprintOf(ed.blob)}, ` +
        `known-hosts has ssh-ed25519 ${fingerprintOf(ed2.blob)} (line 1) (possible man-in-the-middle or host re-installed)`
    })
  })

  it('reports a missing entry and lists which hosts do have entries', () => {
    const file = join(dir, 'kh_missing')
    writeFileSync(file, `secret.host ${ed.type} ${ed.b64}\n`)
    execFileSync('ssh-keygen', ['-H', '-f', file], { stdio: 'ignore' })
    const kh = [
      ...parseKnownHosts(`example.com ${ed.type} ${ed.b64}\n127.0.0.1 ${ed.type} ${ed.b64}\n`),
      ...parseKnownHosts(readFileSync(file, 'utf8'))
    ]
    const r = checkHostKey({ ...local, knownHosts: kh }, ed.blob)
    expect(r.ok).toBe(false)
    if (r.ok) return
    expect(r.reason).toMatch(
      /^no known-hosts entry for \[127\.0\.0\.1\]:2222 \(entries exist for: example\.com, 127\.0\.0\.1, 1 hashed entry\)/
    )
    expect(r.reason).not.toContain('secret.host')
    expect(r.reason).toContain(fingerprintOf(ed.blob))
    expect(r.reason.split('\n')).toContain(`[127.0.0.1]:2222 ssh-ed25519 ${ed.b64}`)

    const empty = checkHostKey({ ...local, knownHosts: [] }, ed.blob)
    expect(empty.ok).toBe(false)
    if (!empty.ok) expect(empty.reason).toContain('known-hosts contains no entries')
  })

  it('rejects a @revoked key even when the fingerprint or another entry would accept it', () => {
    const kh = parseKnownHosts(`[127.0.0.1]:2222 ${ed.type} ${ed.b64}\n@revoked * ${ed.type} ${ed.b64}\n`)
    const r = checkHostKey({ ...local, knownHosts: kh, fingerprint: fingerprintOf(ed.blob) }, ed.blob)
    expect(r).toEqual({
      ok: false,
      reason: `host key for [127.0.0.1]:2222 is revoked: presented ssh-ed25519 ${fingerprintOf(ed.blob)} is marked @revoked in known-hosts line 2`
    })
    // a revoked *other* key does not affect this one
    const other = parseKnownHosts(`[127.0.0.1]:2222 ${ed.type} ${ed.b64}\n@revoked * ${rsa.type} ${rsa.b64}\n`)
    expect(checkHostKey({ ...local, knownHosts: other }, ed.blob)).toEqual({ ok: true, via: 'known-hosts' })
  })

  it('ignores @cert-authority entries and says so when they are the only match', () => {
    const kh = parseKnownHosts(`@cert-authority [127.0.0.1]:* ${ed.type} ${ed.b64}\n`)
    const r = checkHostKey({ ...local, knownHosts: kh }, ed.blob)
    expect(r.ok).toBe(false)
    if (!r.ok) {
      expect(r.reason).toContain('no known-hosts entry for [127.0.0.1]:2222')
      expect(r.reason).toContain('@cert-authority')
      expect(r.reason).toContain('line 1')
    }
  })

  it('accepts if either configured method matches; reports both failures otherwise', () => {
    const kh = parseKnownHosts(`[127.0.0.1]:2222 ${ed2.type} ${ed2.b64}\n`)
    expect(checkHostKey({ ...local, knownHosts: kh, fingerprint: fingerprintOf(ed.blob) }, ed.blob)).toEqual({
      ok: true,
      via: 'fingerprint'
    })
    const both = checkHostKey({ ...local, knownHosts: kh, fingerprint: fingerprintOf(rsa.blob) }, ed.blob)
    expect(both.ok).toBe(false)
    if (!both.ok) {
      expect(both.reason).toContain('host key fingerprint mismatch')
      expect(both.reason).toContain('host key mismatch for [127.0.0.1]:2222')
    }
  })

  it('rejects an unparseable presented key blob without throwing', () => {
    const r = checkHostKey({ ...local, fingerprint: fingerprintOf(ed.blob) }, Buffer.from([1, 2]))
    expect(r.ok).toBe(false)
    if (!r.ok) expect(r.reason).toMatch(/unparseable host key/)
  })

  it('fingerprintOf is the unpadded base64 sha256 of the exact blob', () => {
    // sanity: our fingerprint is exactly sha256 of the blob
    const digest = createHash('sha256').update(ed.blob).digest('base64').replace(/=$/, '')
    expect(fingerprintOf(ed.blob)).toBe(`SHA256:${digest}`)
  })
})
