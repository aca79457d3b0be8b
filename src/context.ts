import * as core from '@actions/core'
import { utils as ssh2utils } from 'ssh2'
import { InputError, InputErrors } from './errors'
import { parseEnvInput, type EnvEntries } from './envfile'
import { hostMatches, normalizeFingerprint, parseKnownHosts, type KnownHostEntry } from './hostkey'

export type Mode = 'deploy' | 'infra' | 'rollback'
export const MODES: readonly Mode[] = ['deploy', 'infra', 'rollback']

export interface ConnectionInputs {
  host: string
  port: number
  username: string
  privateKey: string
  passphrase?: string
  knownHosts?: KnownHostEntry[]
  fingerprint?: string
  skipHostKeyCheck: boolean
  connectTimeoutMs: number
  connectRetries: number
}

export interface InfraInputs {
  opsDir: string
  network: string
  domain: string
  httpPort: number
  httpsPort: number
  infraEnv: EnvEntries
  infraTimeoutS: number
}

export interface Inputs {
  mode: Mode
  connection: ConnectionInputs
  infra: InfraInputs
}

/** Every input's default, as declared in action.yml (a unit test keeps the two equal). */
export const DEFAULTS: Record<string, string> = {
  mode: 'deploy',
  host: '',
  port: '22',
  username: 'ubuntu',
  'ssh-key': '',
  'ssh-passphrase': '',
  'known-hosts': '',
  'host-fingerprint': '',
  'insecure-skip-host-key-check': 'false',
  'connect-timeout': '20',
  'connect-retries': '3',
  'ops-dir': '/opt/behindy-ops',
  network: 'internal',
  domain: '',
  'http-port': '80',
  'https-port': '443',
  'infra-env': '',
  'infra-timeout': '120',
  service: '',
  image: '',
  'app-port': '',
  route: '',
  'health-path': '',
  aliases: '',
  env: '',
  'env-file': '',
  registry: '',
  'registry-username': '',
  'registry-password': '',
  'health-timeout': '180',
  'drain-timeout': '30',
  'stop-timeout': '30',
  'lock-timeout': '600',
  'keep-images': '3',
  memory: ''
}

/** Inputs of the deploy issue: declared in action.yml, refused until implemented. */
const NOT_YET = [
  'service',
  'image',
  'app-port',
  'route',
  'health-path',
  'aliases',
  'env',
  'env-file',
  'registry',
  'registry-username',
  'registry-password',
  'health-timeout',
  'drain-timeout',
  'stop-timeout',
  'lock-timeout',
  'keep-images',
  'memory'
]

/** Inputs whose values are secrets: masked in the log the moment they are read. */
const SECRET_INPUTS = ['ssh-key', 'ssh-passphrase', 'registry-password']

export type InputReader = (name: string) => string

/** Reads an input as the runner passes it (INPUT_<NAME>), falling back to the action.yml default when empty. */
export const actionInput: InputReader = name => {
  const value = core.getInput(name, { trimWhitespace: false })
  return value.trim() === '' ? DEFAULTS[name] ?? '' : value
}

const HOST_RE = /^(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/
const IPV6_RE = /^[0-9A-Fa-f:.]+$/
const USER_RE = /^[a-z_][a-z0-9_-]{0,31}$/
const NETWORK_RE = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$/
const OPS_DIR_RE = /^(\/[A-Za-z0-9._-]+)+$/

class Collector {
  readonly errors: InputError[] = []
  constructor(private readonly read: InputReader) {}

  raw(name: string): string {
    return this.read(name)
  }

  text(name: string): string {
    return this.read(name).trim()
  }

  check<T>(name: string, parse: (v: string) => T, fallback: T): T {
    try {
      return parse(this.read(name))
    } catch (e) {
      if (e instanceof InputError) {
        this.errors.push(e)
        return fallback
      }
      throw e
    }
  }

  fail(name: string, message: string): void {
    this.errors.push(new InputError(name, message))
  }
}

export function parseInteger(name: string, min: number, max: number, unit = ''): (v: string) => number {
  return v => {
    const s = v.trim()
    if (!/^\d+$/.test(s)) throw new InputError(name, `'${s}' is not a whole number${unit ? ` of ${unit}` : ''}`)
    const n = Number(s)
    if (n < min || n > max) throw new InputError(name, `${n} is out of range (${min}–${max}${unit ? ` ${unit}` : ''})`)
    return n
  }
}

export function parseBoolean(name: string): (v: string) => boolean {
  return v => {
    const s = v.trim()
    if (['true', 'True', 'TRUE'].includes(s)) return true
    if (['false', 'False', 'FALSE'].includes(s)) return false
    throw new InputError(name, `'${s}' is not a boolean (use true or false)`)
  }
}

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

export function parseOpsDir(v: string): string {
  const s = v.trim().replace(/\/+$/, '')
  if (!OPS_DIR_RE.test(s) || s.split('/').some(seg => seg === '.' || seg === '..')) {
    throw new InputError('ops-dir', `'${v.trim()}' must be an absolute path of letters, digits, '.', '_', '-' and '/', without '..'`)
  }
  return s
}

export function parseNetwork(v: string): string {
  const s = v.trim()
  if (!NETWORK_RE.test(s)) throw new InputError('network', `'${s}' is not a valid docker network name`)
  return s
}

export function parseDomain(v: string): string {
  const s = v.trim().toLowerCase()
  if (s === '') return ''
  if (!HOST_RE.test(s) || !s.includes('.')) throw new InputError('domain', `'${s}' is not a domain name like example.com`)
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
      throw new InputError('ssh-passphrase', passphrase ? `does not decrypt ssh-key (${msg})` : `ssh-key is encrypted: set ssh-passphrase (${msg})`)
    }
    throw new InputError('ssh-key', `cannot be parsed: ${msg}`)
  }
  return text
}

/** Masks env values, except ones so short or common (true, 8080) that masking them would garble the whole log. */
export function isMaskable(value: string): boolean {
  return value.length >= 3 && !/^(?:true|false|yes|no|on|off|\d{1,5})$/i.test(value)
}

export function getInputs(read: InputReader = actionInput): Inputs {
  for (const name of SECRET_INPUTS) {
    const value = read(name)
    if (value.trim() !== '') core.setSecret(value)
  }
  const c = new Collector(read)

  const mode = c.check(
    'mode',
    v => {
      const s = v.trim() as Mode
      if (!MODES.includes(s)) throw new InputError('mode', `'${s}' is not one of ${MODES.join(', ')}`)
      return s
    },
    'infra' as Mode
  )
  if (mode === 'deploy' || mode === 'rollback') {
    c.fail('mode', `'${mode}' is not supported yet by this version of ops-action (only 'infra' is)`)
  }
  for (const name of NOT_YET) {
    if (c.text(name) !== DEFAULTS[name]) c.fail(name, 'is not supported yet by this version of ops-action (it belongs to mode deploy)')
  }

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
        throw new InputError('known-hosts', `has no entry for ${port === 22 ? host : `[${host}]:${port}`} (get one with: ssh-keyscan -p ${port} ${host})`)
      }
      return entries
    },
    undefined
  )
  const connectTimeoutS = c.check('connect-timeout', parseInteger('connect-timeout', 1, 600, 'seconds'), 20)
  const connectRetries = c.check('connect-retries', parseInteger('connect-retries', 0, 10), 3)

  const opsDir = c.check('ops-dir', parseOpsDir, '')
  const network = c.check('network', parseNetwork, '')
  const domain = c.check('domain', parseDomain, '')
  const httpPort = c.check('http-port', parseInteger('http-port', 1, 65535), 80)
  const httpsPort = c.check('https-port', parseInteger('https-port', 1, 65535), 443)
  if (httpPort === httpsPort) c.fail('https-port', `must differ from http-port (both are ${httpPort})`)
  const infraEnv = c.check('infra-env', v => parseEnvInput(v, 'infra-env'), [])
  for (const [, value] of infraEnv) if (isMaskable(value)) core.setSecret(value)
  const infraTimeoutS = c.check('infra-timeout', parseInteger('infra-timeout', 1, 3600, 'seconds'), 120)

  if (c.errors.length) throw new InputErrors(c.errors)
  return {
    mode,
    connection: {
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
    },
    infra: { opsDir, network, domain, httpPort, httpsPort, infraEnv, infraTimeoutS }
  }
}
