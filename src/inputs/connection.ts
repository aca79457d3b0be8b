import { utils as ssh2utils } from 'ssh2'
import { InputError } from '../errors'
import { hostMatches, normalizeFingerprint, parseKnownHosts } from '../hostkey'
import type { ConnectionInputs } from '../ssh'
import { HOST_NAME, parseBoolean, parseInteger, type Collector } from './collector'

const HOST_RE = new RegExp(`^${HOST_NAME}$`)
const IPV6_RE = /^[0-9A-Fa-f:.]+$/
const USER_RE = /^[a-z_][a-z0-9_-]{0,31}$/

export function parseHost(v: string): string {
  const s = v.trim()
  if (s === '') throw new InputError('host', 'is required (host name or IP address of the server)')
  const bare = s.startsWith('[') && s.endsWith(']') ? s.slice(1, -1) : s
  if (s.length > 253 || !(HOST_RE.test(bare) || (bare.includes(':') && IPV6_RE.test(bare)))) {
    throw new InputError('host', `'${s}' is not a valid host name or IP address`)
  }
  return bare
}

export function parseUsername(v: string): string {
  const s = v.trim()
  if (!USER_RE.test(s)) throw new InputError('username', `'${s}' is not a valid user name`)
  return s
}

/** Checks a private key locally (format and passphrase), so a bad key fails before any connection. */
export function checkPrivateKey(key: string, passphrase: string | undefined): string {
  const text = key.replace(/\r\n/g, '\n').replace(/\\n/g, '\n').trim() + '\n'
  if (key.trim() === '') throw new InputError('ssh-key', 'is required (the private key text, from a secret)')
  if (!/-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----/.test(text)) {
    throw new InputError('ssh-key', 'is not a private key (expected text starting with -----BEGIN … PRIVATE KEY-----)')
  }
  const parsed = ssh2utils.parseKey(text, passphrase)
  if (parsed instanceof Error) {
    const msg = parsed.message
    if (/passphrase|decrypt|bad decrypt|integrity/i.test(msg)) {
      throw new InputError(
        'ssh-passphrase',
        passphrase ? `does not decrypt ssh-key (${msg})` : `ssh-key is encrypted: set ssh-passphrase (${msg})`
      )
    }
    throw new InputError('ssh-key', `cannot be parsed: ${msg}`)
  }
  return text
}

/** host, port, username, the key and how to verify the host: what connect() needs. */
export function connectionInputs(c: Collector): ConnectionInputs {
  const host = c.check('host', parseHost, '')
  const port = c.check('port', parseInteger('port', 1, 65535), 0)
  const username = c.check('username', parseUsername, '')
  const passphrase = c.raw('ssh-passphrase') || undefined
  const privateKey = c.check('ssh-key', v => checkPrivateKey(v, passphrase), '')
  const skipHostKeyCheck = c.check('insecure-skip-host-key-check', parseBoolean('insecure-skip-host-key-check'), false)
  const fingerprint = c.check('host-fingerprint', v => (v.trim() ? normalizeFingerprint(v) : undefined), undefined)
  const knownHosts = c.check(
    'known-hosts',
    v => {
      if (v.trim() === '') return undefined
      const entries = parseKnownHosts(v)
      if (host && port && !entries.some(e => e.marker === undefined && hostMatches(e.patterns, host, port))) {
        throw new InputError(
          'known-hosts',
          `has no entry for ${port === 22 ? host : `[${host}]:${port}`} (get one with: ssh-keyscan -p ${port} ${host})`
        )
      }
      return entries
    },
    undefined
  )
  const connectTimeoutS = c.check('connect-timeout', parseInteger('connect-timeout', 1, 600, 'seconds'), 20)
  const connectRetries = c.check('connect-retries', parseInteger('connect-retries', 0, 10), 3)
  return {
    host,
    port,
    username,
    privateKey,
    passphrase,
    knownHosts,
    fingerprint,
    skipHostKeyCheck,
    connectTimeoutMs: connectTimeoutS * 1000,
    connectRetries
  }
}
