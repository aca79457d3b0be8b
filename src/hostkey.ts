/**
 * Host-key verification for the SSH connection (pure: no I/O).
 *
 * Semantics follow OpenSSH's known_hosts handling (sshd(8) "SSH_KNOWN_HOSTS
 * FILE FORMAT", hostkeys.c / match.c):
 *  - the name looked up is `host` for port 22 and `[host]:port` otherwise;
 *  - host patterns are comma-separated, case-insensitive, support `*` / `?`
 *    and `!negation` (a matching negated pattern vetoes the whole line);
 *  - hashed names are `|1|base64(salt)|base64(HMAC-SHA1(salt, name))`.
 */
import { InputError } from './errors'
import { createHash, createHmac, timingSafeEqual } from 'node:crypto'

/** SHA256 fingerprint as printed by `ssh-keygen -lf` (unpadded base64). */
export const FINGERPRINT_RE = /^SHA256:[A-Za-z0-9+/]{43}$/

/** An input error of the host-key inputs (the same InputError every input check throws). */
export { InputError as HostKeyInputError }

export interface KnownHostEntry {
  /** 1-based line number in the known_hosts text. */
  line: number
  marker?: '@cert-authority' | '@revoked'
  /** Raw host-pattern field, e.g. `example.com,[10.0.0.1]:2222` or `|1|salt|hash`. */
  patterns: string
  keyType: string
  /** Raw SSH wire-format public key blob. */
  key: Buffer
}

export type HostKeyCheck = { ok: true; via: 'known-hosts' | 'fingerprint' | 'skipped' } | { ok: false; reason: string }

const KNOWN_HOSTS_INPUT = 'known-hosts'
const FINGERPRINT_INPUT = 'host-fingerprint'
const HASH_MAGIC = '|1|'
const SHA1_LEN = 20

// ---------------------------------------------------------------------------
// Key blobs and fingerprints
// ---------------------------------------------------------------------------

/** Reads the key-type name (an SSH `string`: uint32 BE length + bytes) at the start of the blob. */
export function keyTypeOf(keyBlob: Buffer): string {
  if (keyBlob.length < 4) {
    throw new Error(`malformed SSH public key blob: ${keyBlob.length} bytes, too short for a key type`)
  }
  const len = keyBlob.readUInt32BE(0)
  if (len === 0 || len > 256 || len > keyBlob.length - 4) {
    throw new Error(`malformed SSH public key blob: key type length ${len} does not fit in ${keyBlob.length} bytes`)
  }
  const name = keyBlob.subarray(4, 4 + len).toString('latin1')
  if (!/^[\x21-\x7e]+$/.test(name)) {
    throw new Error('malformed SSH public key blob: key type name is not printable ASCII')
  }
  return name
}

function sha256(data: Buffer): Buffer {
  return createHash('sha256').update(data).digest()
}

/** `SHA256:` + unpadded base64 of sha256(blob) — identical to `ssh-keygen -lf`. */
export function fingerprintOf(keyBlob: Buffer): string {
  return 'SHA256:' + sha256(keyBlob).toString('base64').replace(/=+$/, '')
}

function preview(s: string, max = 60): string {
  const oneLine = s.replace(/\s+/g, ' ')
  return oneLine.length > max ? `${oneLine.slice(0, max)}…` : oneLine
}

/**
 * Validates and canonicalises a SHA256 host-key fingerprint (`SHA256:<43 base64 chars>`).
 * Surrounding whitespace and a trailing `=` are tolerated.
 */
export function normalizeFingerprint(input: string): string {
  const how = 'expected the SHA256 form printed by `ssh-keygen -lf <host key .pub file>`, e.g. SHA256:' + 'A'.repeat(43)
  const s = input.trim()
  if (s === '') {
    throw new InputError(FINGERPRINT_INPUT, `is empty; ${how}`)
  }
  if (/^(MD5:)?[0-9a-f]{2}(:[0-9a-f]{2}){15}$/i.test(s)) {
    throw new InputError(
      FINGERPRINT_INPUT,
      `'${preview(s)}' is an MD5 fingerprint, which is not accepted; use the SHA256 fingerprint instead ` +
        '(run `ssh-keygen -lf <host key .pub file>`, or `ssh-keygen -lf <(ssh-keyscan -p PORT HOST)` ' +
        'and verify it out of band), e.g. SHA256:' +
        'A'.repeat(43)
    )
  }
  const m = /^sha256:(.*)$/i.exec(s)
  if (!m) {
    const problem = /^[A-Za-z0-9+/]{43}=?$/.test(s)
      ? "is missing the 'SHA256:' prefix"
      : /\sSHA256:/i.test(s)
        ? 'is a whole `ssh-keygen -l` line; paste only the SHA256:… token'
        : 'is not a SHA256 fingerprint'
    throw new InputError(FINGERPRINT_INPUT, `'${preview(s)}' ${problem}; ${how}`)
  }
  const fp = 'SHA256:' + m[1].replace(/=$/, '')
  if (!FINGERPRINT_RE.test(fp)) {
    throw new InputError(
      FINGERPRINT_INPUT,
      `'${preview(s)}' is not a valid SHA256 fingerprint (need 43 base64 characters after 'SHA256:'); ${how}`
    )
  }
  return fp
}

// ---------------------------------------------------------------------------
// known_hosts parsing
// ---------------------------------------------------------------------------

const B64_RE = /^[A-Za-z0-9+/]+={0,2}$/

/** Strict base64 decode; returns undefined if `s` is not canonical base64. */
function decodeBase64Strict(s: string): Buffer | undefined {
  if (!B64_RE.test(s)) return undefined
  const buf = Buffer.from(s, 'base64')
  if (buf.length === 0) return undefined
  // Round-trip (ignoring padding) to reject truncated / non-canonical input.
  if (buf.toString('base64').replace(/=+$/, '') !== s.replace(/=+$/, '')) return undefined
  return buf
}

function parseHashed(pattern: string): { salt: Buffer; hash: Buffer } | undefined {
  if (!pattern.startsWith(HASH_MAGIC)) return undefined
  const parts = pattern.slice(HASH_MAGIC.length).split('|')
  if (parts.length !== 2) return undefined
  const salt = decodeBase64Strict(parts[0])
  const hash = decodeBase64Strict(parts[1])
  if (!salt || !hash || hash.length !== SHA1_LEN) return undefined
  return { salt, hash }
}

/**
 * Parses OpenSSH known_hosts text. Blank lines and `#` comments are skipped.
 * Line format: `[@marker] hostpatterns keytype base64key [comment]`.
 * Throws HostKeyInputError('known-hosts', …) naming the line for malformed lines.
 */
export function parseKnownHosts(text: string): KnownHostEntry[] {
  const entries: KnownHostEntry[] = []
  const lines = text.replace(/^\uFEFF/, '').split(/\r\n|\n|\r/)
  lines.forEach((raw, i) => {
    const line = i + 1
    const trimmed = raw.trim()
    if (trimmed === '' || trimmed.startsWith('#')) return
    const fail = (why: string): never => {
      throw new InputError(KNOWN_HOSTS_INPUT, `line ${line}: ${why}`)
    }
    const fields = trimmed.split(/\s+/)
    let marker: KnownHostEntry['marker']
    if (fields[0].startsWith('@')) {
      const m = fields.shift() as string
      if (m !== '@cert-authority' && m !== '@revoked') {
        fail(`unknown marker '${preview(m, 30)}' (only @cert-authority and @revoked are valid)`)
      }
      marker = m as KnownHostEntry['marker']
    }
    if (fields.length < 3) {
      const missing = ['host-patterns', 'key-type', 'base64-key'].slice(fields.length).join(', ')
      fail(`missing field(s) ${missing}; expected '[@marker] host-patterns key-type base64-key [comment]'`)
    }
    const [patterns, keyType, b64] = fields
    for (const p of patterns.split(',')) {
      const bare = p.startsWith('!') ? p.slice(1) : p
      if (bare.startsWith('|') && !parseHashed(bare)) {
        fail(`malformed hashed host name '${preview(bare, 40)}' (expected |1|base64-salt|base64-sha1-hmac)`)
      }
    }
    const key = decodeBase64Strict(b64)
    if (!key) {
      fail(`key for '${preview(patterns, 40)}' is not valid base64: '${preview(b64, 30)}'`)
    }
    let embedded: string
    try {
      embedded = keyTypeOf(key as Buffer)
    } catch (e) {
      return fail(`key for '${preview(patterns, 40)}' is not an SSH public key (${(e as Error).message})`)
    }
    if (embedded !== keyType) {
      fail(`key type field '${preview(keyType, 40)}' does not match the key's embedded type '${embedded}'`)
    }
    entries.push({ line, ...(marker ? { marker } : {}), patterns, keyType, key: key as Buffer })
  })
  return entries
}

// ---------------------------------------------------------------------------
// Host matching
// ---------------------------------------------------------------------------

/** The name OpenSSH looks up in known_hosts: `host` for port 22, else `[host]:port`. */
function lookupName(host: string, port: number): string {
  const h = host.toLowerCase()
  return port === 22 ? h : `[${h}]:${port}`
}

/** Glob match with `*` and `?` (iterative, linear backtracking — no regex, no ReDoS). */
function globMatch(pattern: string, text: string): boolean {
  let p = 0
  let t = 0
  let star = -1
  let mark = 0
  while (t < text.length) {
    if (p < pattern.length && (pattern[p] === '?' || pattern[p] === text[t])) {
      p++
      t++
    } else if (p < pattern.length && pattern[p] === '*') {
      star = p++
      mark = t
    } else if (star !== -1) {
      p = star + 1
      t = ++mark
    } else {
      return false
    }
  }
  while (p < pattern.length && pattern[p] === '*') p++
  return p === pattern.length
}

function hashedMatches(pattern: string, name: string): boolean {
  const h = parseHashed(pattern)
  if (!h) return false
  const mac = createHmac('sha1', h.salt).update(name).digest()
  return timingSafeEqual(mac, h.hash)
}

/**
 * Whether a known_hosts host-pattern field matches host:port.
 * Plain `host` matches only port 22, `[host]:port` that port; wildcards apply to the
 * whole looked-up name (so `*` matches any host and port, as in OpenSSH).
 */
export function hostMatches(patterns: string, host: string, port: number): boolean {
  const name = lookupName(host, port)
  let positive = false
  for (const raw of patterns.split(',')) {
    if (raw === '') continue
    const negated = raw.startsWith('!')
    const pat = negated ? raw.slice(1) : raw
    const hit = pat.startsWith('|') ? hashedMatches(pat, name) : globMatch(pat.toLowerCase(), name)
    if (hit) {
      if (negated) return false
      positive = true
    }
  }
  return positive
}

// ---------------------------------------------------------------------------
// Verification
// ---------------------------------------------------------------------------

/** A line ready to paste into known_hosts for this host and key. */
function knownHostsLine(host: string, port: number, keyBlob: Buffer, keyType: string): string {
  return `${lookupName(host, port)} ${keyType} ${keyBlob.toString('base64')}`
}

function describeEntries(entries: KnownHostEntry[]): string {
  if (entries.length === 0) return 'known-hosts contains no entries'
  const names: string[] = []
  let hashed = 0
  for (const e of entries) {
    if (e.patterns.split(',').some(p => p.replace(/^!/, '').startsWith('|'))) {
      hashed++
    } else if (!names.includes(e.patterns)) {
      names.push(e.patterns)
    }
  }
  const shown = names.slice(0, 10)
  if (names.length > shown.length) shown.push(`… ${names.length - shown.length} more`)
  if (hashed > 0) shown.push(`${hashed} hashed entr${hashed === 1 ? 'y' : 'ies'}`)
  return `entries exist for: ${shown.join(', ')}`
}

/**
 * Decides whether to trust the host key presented by the server.
 * `keyBlob` is the raw SSH wire-format public key (what ssh2's hostVerifier receives).
 * Never throws: invalid configuration is reported as `{ ok: false, reason }`.
 */
export function checkHostKey(
  opts: { host: string; port: number; knownHosts?: KnownHostEntry[]; fingerprint?: string; skip?: boolean },
  keyBlob: Buffer
): HostKeyCheck {
  if (opts.skip) return { ok: true, via: 'skipped' }

  const target = lookupName(opts.host, opts.port)
  let keyType: string
  try {
    keyType = keyTypeOf(keyBlob)
  } catch (e) {
    return { ok: false, reason: `server ${target} presented an unparseable host key: ${(e as Error).message}` }
  }
  const presentedFp = fingerprintOf(keyBlob)
  const presented = `${keyType} ${presentedFp}`
  const pasteLine = knownHostsLine(opts.host, opts.port, keyBlob, keyType)
  const knownHosts = opts.knownHosts

  // A revoked key is never accepted, whatever else is configured (and for any host).
  const revoked = knownHosts?.find(e => e.marker === '@revoked' && e.key.equals(keyBlob))
  if (revoked) {
    return {
      ok: false,
      reason: `host key for ${target} is revoked: presented ${presented} is marked @revoked ` + `in known-hosts line ${revoked.line}`
    }
  }

  if (knownHosts === undefined && opts.fingerprint === undefined) {
    return {
      ok: false,
      reason:
        `host key verification is not configured for ${target}: set the \`known-hosts\` or \`host-fingerprint\` input. ` +
        `The server presented ${presented}. After verifying it out of band, either set ` +
        `host-fingerprint: ${presentedFp}\nor add this line to known-hosts:\n${pasteLine}`
    }
  }

  const failures: string[] = []

  if (opts.fingerprint !== undefined) {
    let expected: string
    try {
      expected = normalizeFingerprint(opts.fingerprint)
    } catch (e) {
      return { ok: false, reason: (e as Error).message }
    }
    const want = Buffer.from(expected.slice('SHA256:'.length), 'base64')
    const got = sha256(keyBlob)
    if (want.length === got.length && timingSafeEqual(want, got)) {
      return { ok: true, via: 'fingerprint' }
    }
    failures.push(
      `host key fingerprint mismatch for ${target}: presented ${presented}, expected ${expected} ` +
        '(possible man-in-the-middle or host re-installed)'
    )
  }

  if (knownHosts !== undefined) {
    const matching = knownHosts.filter(e => hostMatches(e.patterns, opts.host, opts.port))
    const plain = matching.filter(e => e.marker === undefined)
    if (plain.some(e => e.key.equals(keyBlob))) {
      return { ok: true, via: 'known-hosts' }
    }
    if (plain.length > 0) {
      const has = plain.map(e => `${e.keyType} ${fingerprintOf(e.key)} (line ${e.line})`).join(', ')
      failures.push(
        `host key mismatch for ${target}: presented ${presented}, known-hosts has ${has} ` +
          '(possible man-in-the-middle or host re-installed)'
      )
    } else {
      const ca = matching.filter(e => e.marker === '@cert-authority')
      if (ca.length > 0) {
        failures.push(
          `no known-hosts entry for ${target}: only @cert-authority entries match ` +
            `(line${ca.length > 1 ? 's' : ''} ${ca.map(e => e.line).join(', ')}), and host certificates are ` +
            `not supported, so they are ignored; add the host's own key. The server presented ${presented}; ` +
            `known_hosts line:\n${pasteLine}`
        )
      } else {
        failures.push(
          `no known-hosts entry for ${target} (${describeEntries(knownHosts)}). ` +
            `The server presented ${presented}; known_hosts line:\n${pasteLine}`
        )
      }
    }
  }

  return { ok: false, reason: failures.join('\n') }
}
