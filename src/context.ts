import * as core from '@actions/core'
import { utils as ssh2utils } from 'ssh2'
import { CATALOGUE, routeReaches, serviceFromRepository, type ServiceSpec } from './catalogue'
import { InputError, InputErrors } from './errors'
import { envLine, parseEnvInput, redisPasswordProblem, type EnvEntries } from './envfile'
import { hostMatches, normalizeFingerprint, parseKnownHosts, type KnownHostEntry } from './hostkey'

export type Mode = 'deploy' | 'infra' | 'rollback' | 'status' | 'backup' | 'plan'
export const MODES: readonly Mode[] = ['deploy', 'infra', 'rollback', 'status', 'backup', 'plan']
/** Modes about the host as a whole: no service, no image. */
export const HOST_MODES: readonly Mode[] = ['infra', 'status', 'backup', 'plan']

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
  /** Settings an app repo's deploy need not repeat: undefined keeps the host's (its .env), else the default. */
  settings: SettingInputs
  infraEnv: EnvEntries
  infraTimeoutS: number
  /** pg_dump backups in <ops-dir>/backups: how many to keep, and whether infra takes one before it recreates db. */
  backups: { keep: number; beforeInfra: boolean }
}

export interface SettingInputs {
  /** '' = HTTP only (input `none`). */
  domain?: string
  httpPort?: number
  httpsPort?: number
}

export interface RegistryLogin {
  server: string
  username: string
  password: string
}

export interface DeployInputs {
  service: string
  /** Image to deploy (mode deploy); empty for mode rollback, which takes it from the history. */
  image: string
  spec: ServiceSpec
  env: EnvEntries
  envFile?: string
  registry?: RegistryLogin
  healthTimeoutS: number
  drainTimeoutS: number
  stopTimeoutS: number
  keepImages: number
  memory?: string
}

export interface Inputs {
  mode: Mode
  connection: ConnectionInputs
  infra: InfraInputs
  lockTimeoutS: number
  /** mode infra: re-swap every deployed app afterwards (story → backend → frontend). */
  restartServices: boolean
  /** Only print what the run would do (as mode plan, for infra, deploy or rollback). */
  dryRun: boolean
  /** Set for mode deploy and rollback. */
  deploy?: DeployInputs
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
  'http-port': '',
  'https-port': '',
  'infra-env': '',
  'infra-timeout': '120',
  'keep-backups': '7',
  'backup-before-infra': 'true',
  'restart-services': 'false',
  'dry-run': 'false',
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

/** Inputs that only mode deploy / rollback use (a warning names them when given to mode infra). */
const DEPLOY_ONLY = [
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
  'keep-images',
  'memory'
]

/** Inputs whose values are secrets: masked in the log the moment they are read. */
const SECRET_INPUTS = ['ssh-key', 'ssh-passphrase', 'registry-password']

export type InputReader = (name: string) => string

/** Reads an input as the runner passes it (INPUT_<NAME>), falling back to the action.yml default when empty. */
export const actionInput: InputReader = name => {
  const value = core.getInput(name, { trimWhitespace: false })
  return value.trim() === '' ? (DEFAULTS[name] ?? '') : value
}

const HOST_RE = /^(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/
const IPV6_RE = /^[0-9A-Fa-f:.]+$/
const USER_RE = /^[a-z_][a-z0-9_-]{0,31}$/
const NETWORK_RE = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$/
/** docker's predefined networks: no user-defined bridge, so no network aliases (and `host`/`none` share or cut the network). */
const BUILTIN_NETWORKS = ['bridge', 'host', 'none', 'default']
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

/** An input whose empty value means "not given" (undefined). */
export function optional<T>(parse: (v: string) => T): (v: string) => T | undefined {
  return v => (v.trim() === '' ? undefined : parse(v))
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
  return parseHostPath('ops-dir', v.trim().replace(/\/+$/, '') || v)
}

export function parseNetwork(v: string): string {
  const s = v.trim()
  if (!NETWORK_RE.test(s)) throw new InputError('network', `'${s}' is not a valid docker network name`)
  if (BUILTIN_NETWORKS.includes(s)) {
    throw new InputError(
      'network',
      `'${s}' is one of docker's predefined networks (${BUILTIN_NETWORKS.join(', ')}); the stack needs its own network (e.g. internal) for its service names and aliases`
    )
  }
  return s
}

/** '' keeps the host's domain (undefined); `none` turns HTTPS off (''). */
export function parseDomain(v: string): string | undefined {
  const s = v.trim().toLowerCase()
  if (s === '') return undefined
  if (s === 'none') return ''
  if (s.length > 253 || !HOST_RE.test(s) || !s.includes('.'))
    throw new InputError('domain', `'${s.slice(0, 80)}' is not a domain name like example.com`)
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

/** Names of variables that hold credentials (or URLs and DSNs, which often embed them). */
const SECRET_NAME = /PASS|PWD|SECRET|TOKEN|KEY|CRED|AUTH|PRIVATE|SALT|SIGN|DSN|URL|URI|CONN/i

/**
 * Whether an env value is masked in the log (the action never prints env values; this guards against a command's
 * output echoing one). Masked: values of credential-like names, and values that look like tokens (8+ characters
 * with letters and digits). Not masked: plain values such as `redis`, `production` or `Asia/Seoul`: masking would
 * turn every mention of them in the log into *** (a container named behindy_redis_1 included), and GitHub already
 * masks whatever came from `secrets.*`. Never masked: values so short or common (true, 8080) they garble the log.
 */
export function isMaskable(name: string, value: string): boolean {
  if (value.length < 3 || /^(?:true|false|yes|no|on|off|\d{1,5})$/i.test(value)) return false
  return SECRET_NAME.test(name) || (value.length >= 8 && /[A-Za-z]/.test(value) && /\d/.test(value) && !/\s/.test(value))
}

/** Variables of the host's .env that other inputs own (infra writes them from http-port, https-port and network). */
const OWNED_ENV: Record<string, string> = { HTTP_PORT: 'http-port', HTTPS_PORT: 'https-port', OPS_NETWORK: 'network', DOMAIN: 'domain' }

/**
 * infra-env, checked here as the plan step would write it into the host's .env, so a value .env cannot hold fails
 * before connecting instead of after.
 */
export function parseInfraEnv(v: string): EnvEntries {
  const entries = parseEnvInput(v, 'infra-env')
  for (const [key, value] of entries) {
    if (OWNED_ENV[key]) throw new InputError('infra-env', `${key} is set from the ${OWNED_ENV[key]} input; set that instead`)
    const redis = key === 'REDIS_PASSWORD' ? redisPasswordProblem(value) : undefined
    if (redis) throw new InputError('infra-env', redis)
    envLine(key, value, 'infra-env')
  }
  return entries
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
    'infra'
  )
  if (HOST_MODES.includes(mode)) {
    const given = DEPLOY_ONLY.filter(name => c.text(name) !== DEFAULTS[name])
    if (given.length) core.warning(`Ignored in mode ${mode} (they belong to mode deploy/rollback): ${given.join(', ')}`)
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

  const opsDir = c.check('ops-dir', parseOpsDir, '')
  const network = c.check('network', parseNetwork, '')
  const domain = c.check('domain', parseDomain, undefined)
  const httpPort = c.check('http-port', optional(parseInteger('http-port', 1, 65535)), undefined)
  const httpsPort = c.check('https-port', optional(parseInteger('https-port', 1, 65535)), undefined)
  if (httpPort !== undefined && httpPort === httpsPort) c.fail('https-port', `must differ from http-port (both are ${httpPort})`)
  const infraEnv = c.check('infra-env', parseInfraEnv, [])
  for (const [name, value] of infraEnv) if (isMaskable(name, value)) core.setSecret(value)
  const infraTimeoutS = c.check('infra-timeout', parseInteger('infra-timeout', 1, 3600, 'seconds'), 120)
  const keepBackups = c.check('keep-backups', parseInteger('keep-backups', 1, 365), 7)
  const beforeInfra = c.check('backup-before-infra', parseBoolean('backup-before-infra'), true)
  const lockTimeoutS = c.check('lock-timeout', parseInteger('lock-timeout', 0, 7200, 'seconds'), 600)
  const restartServices = c.check('restart-services', parseBoolean('restart-services'), false)
  if (restartServices && mode !== 'infra') c.fail('restart-services', `is for mode infra (this run is mode ${mode})`)
  const dryRun = c.check('dry-run', parseBoolean('dry-run'), false)
  const deploy = HOST_MODES.includes(mode) ? undefined : deployInputs(c, mode, read)

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
    infra: {
      opsDir,
      network,
      settings: { domain, httpPort, httpsPort },
      infraEnv,
      infraTimeoutS,
      backups: { keep: keepBackups, beforeInfra }
    },
    lockTimeoutS,
    restartServices,
    dryRun,
    deploy
  }
}

const SERVICE_RE = /^[a-z][a-z0-9-]{0,30}$/
const ALIAS_RE = /^[a-z][a-z0-9-]{0,62}$/
/** Names the stack owns on the shared network: an app alias with one of them would hijack its traffic. */
const RESERVED_NAMES = ['db', 'redis', 'nginx', 'postgres']
/** The network name of every catalogue service and alias, with the service that owns it (llmserver -> story). */
const APP_NAMES: Record<string, string> = Object.fromEntries(
  Object.entries(CATALOGUE).flatMap(([service, spec]) => [service, ...spec.aliases].map(name => [name, service]))
)
/** A host name label: letters, digits and '-', not starting or ending with '-' (so never an option to docker). */
const LABEL = String.raw`[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?`
const DOMAIN = String.raw`(?:${LABEL}(?:\.${LABEL})*:[0-9]{1,5}|${LABEL}(?:\.${LABEL})+|localhost)`
const COMPONENT = String.raw`[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*`
const IMAGE_RE = new RegExp(
  String.raw`^(?:${DOMAIN}/)?${COMPONENT}(?:/${COMPONENT})*(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(?:@sha256:[a-f0-9]{64})?$`
)
/** docker refuses a memory limit below 6 MiB; above 1 TiB is a typo. */
const MIN_MEMORY = 6 * 1024 ** 2
const MAX_MEMORY = 1024 ** 4
const ROUTE_RE = /^\/(?:[A-Za-z0-9._~-]+\/)*$/
const HEALTH_RE = /^\/[A-Za-z0-9._~/-]*(?:\?[A-Za-z0-9._~=&%-]*)?$/
/** Prefixes the shipped nginx config routes already (a custom service cannot take them). */
const RESERVED_ROUTES = ['/', '/api/', '/llm/', '/ws', '/swagger-ui/', '/v3/api-docs', '/healthz', '/.well-known/']
const hasDotSegment = (path: string): boolean =>
  path
    .split('?')[0]
    .split('/')
    .some(seg => seg === '.' || seg === '..')
const REGISTRY_RE = new RegExp(`^${DOMAIN}$|^${LABEL}$`)

export function parseImage(v: string): string {
  const s = v.trim()
  if (s.length > 255 || !IMAGE_RE.test(s)) {
    throw new InputError(
      'image',
      `'${s.slice(0, 80)}' is not an image reference like registry.example.com/name:tag or name@sha256:<64 hex>`
    )
  }
  return s
}

/** The tag of an image reference ('' for a digest-only reference, 'latest' when none is given). */
export function imageTag(image: string): string {
  const noDigest = image.split('@')[0]
  const last = noDigest.split('/').pop() as string
  if (last.includes(':')) return last.split(':')[1]
  return image.includes('@') ? '' : 'latest'
}

/** The repository of an image reference, without tag or digest (registry:port/name). */
export function imageRepository(image: string): string {
  const noDigest = image.split('@')[0]
  const tag = imageTag(noDigest)
  return noDigest.endsWith(`:${tag}`) ? noDigest.slice(0, -tag.length - 1) : noDigest
}

function parseAliases(v: string, service: string): string[] {
  const list = v.split(/[\s,]+/).filter(Boolean)
  for (const a of list) {
    if (!ALIAS_RE.test(a)) throw new InputError('aliases', `'${a}' is not a valid network alias (lowercase letters, digits, '-')`)
    if (RESERVED_NAMES.includes(a)) throw new InputError('aliases', `'${a}' is the name of a stack service on the shared network`)
    if (APP_NAMES[a] && APP_NAMES[a] !== service)
      throw new InputError('aliases', `'${a}' is the network name of ${APP_NAMES[a]} (it would take ${APP_NAMES[a]}'s traffic)`)
  }
  return list
}

function deployInputs(c: Collector, mode: Mode, read: InputReader): DeployInputs {
  const service = c.check(
    'service',
    v => {
      const s = v.trim() || serviceFromRepository(process.env.GITHUB_REPOSITORY)
      if (!s) {
        throw new InputError(
          'service',
          `is required: it cannot be told from the repository name '${process.env.GITHUB_REPOSITORY ?? ''}' (known: behindy-front, behindy-back, behindy-story)`
        )
      }
      if (!SERVICE_RE.test(s)) throw new InputError('service', `'${s}' must match [a-z][a-z0-9-]{0,30}`)
      if (RESERVED_NAMES.includes(s)) throw new InputError('service', `'${s}' is a stack service name; pick another`)
      if (APP_NAMES[s] && APP_NAMES[s] !== s)
        throw new InputError('service', `'${s}' is the network alias of ${APP_NAMES[s]}; pick another`)
      return s
    },
    ''
  )
  const known = CATALOGUE[service] as ServiceSpec | undefined
  const image = c.check(
    'image',
    v => {
      if (mode === 'rollback') {
        if (v.trim()) throw new InputError('image', 'is not used by mode rollback (it returns to the previous image in the history)')
        return ''
      }
      if (!v.trim()) throw new InputError('image', 'is required for mode deploy')
      const img = parseImage(v)
      if (imageTag(img) === 'latest')
        core.warning(
          `image ${img} uses the tag 'latest': a rollback cannot tell releases apart. Deploy an immutable tag (e.g. the commit sha) or a digest.`
        )
      return img
    },
    ''
  )
  const port = c.check(
    'app-port',
    v => {
      if (!v.trim()) {
        if (known) return known.port
        throw new InputError('app-port', `is required for service '${service}' (not in the catalogue: frontend, backend, story)`)
      }
      return parseInteger('app-port', 1, 65535)(v)
    },
    0
  )
  const route = c.check(
    'route',
    v => {
      const s = v.trim()
      if (!s) {
        if (known) return known.route
        throw new InputError('route', `is required for service '${service}' (a path prefix like /things/)`)
      }
      if (!ROUTE_RE.test(s) || hasDotSegment(s))
        throw new InputError(
          'route',
          `'${s}' must be a path prefix starting and ending with '/' (letters, digits, . _ ~ -; no '.' or '..' segments)`
        )
      if (known && s !== known.route)
        throw new InputError('route', `${service}'s route is ${known.route} (fixed by the shipped nginx config)`)
      if (!known && RESERVED_ROUTES.some(r => s === r || (s.startsWith(r) && r !== '/'))) {
        throw new InputError('route', `'${s}' is already routed by nginx (${RESERVED_ROUTES.join(', ')} are taken); pick another prefix`)
      }
      return s
    },
    '/'
  )
  const stripPrefix = known?.stripPrefix ?? false
  const healthPath = c.check(
    'health-path',
    v => {
      const s = v.trim() || known?.healthPath
      if (!s) throw new InputError('health-path', `is required for service '${service}'`)
      if (!HEALTH_RE.test(s) || hasDotSegment(s))
        throw new InputError('health-path', `'${s}' must be a path starting with '/' (letters, digits, . _ ~ - /)`)
      if (route && !routeReaches({ route, stripPrefix }, s)) {
        throw new InputError('health-path', `'${s}' cannot be reached through the route ${route} (it must start with ${route})`)
      }
      return s
    },
    '/'
  )
  const aliases = c.check('aliases', v => parseAliases(v, service), [])
  const env = c.check('env', v => parseEnvInput(v, 'env'), [])
  for (const [name, value] of env) if (isMaskable(name, value)) core.setSecret(value)
  const envFile = c.check('env-file', v => (v.trim() ? parseHostPath('env-file', v) : undefined), undefined)
  const registry = c.check(
    'registry',
    v => {
      const server = v.trim()
      const username = read('registry-username').trim()
      const password = read('registry-password')
      if (!server) {
        if (username || password.trim())
          throw new InputError('registry', 'is required when registry-username/registry-password are set (use docker.io for Docker Hub)')
        return undefined
      }
      if (!REGISTRY_RE.test(server))
        throw new InputError('registry', `'${server}' is not a registry host like ghcr.io or registry.example.com:5000`)
      if (!username) throw new InputError('registry-username', `is required to log in to ${server}`)
      if (/[\p{Cc}\p{Zl}\p{Zp}]/u.test(username)) throw new InputError('registry-username', 'must be one line without control characters')
      if (!password.trim()) throw new InputError('registry-password', `is required to log in to ${server}`)
      if (/[\r\n]/.test(password.trim())) throw new InputError('registry-password', 'must be one line')
      return { server, username, password: password.trim() }
    },
    undefined
  )
  const healthTimeoutS = c.check('health-timeout', parseInteger('health-timeout', 1, 3600, 'seconds'), 180)
  const drainTimeoutS = c.check('drain-timeout', parseInteger('drain-timeout', 0, 600, 'seconds'), 30)
  const stopTimeoutS = c.check('stop-timeout', parseInteger('stop-timeout', 0, 600, 'seconds'), 30)
  const keepImages = c.check('keep-images', parseInteger('keep-images', 1, 50), 3)
  const memory = c.check(
    'memory',
    v => {
      const s = v.trim().toLowerCase()
      if (!s) return undefined
      if (!/^[1-9][0-9]*[bkmg]?$/.test(s)) throw new InputError('memory', `'${s}' is not a memory size like 768m or 1g`)
      const bytes = Number(s.replace(/[bkmg]$/, '')) * 1024 ** 'bkmg'.indexOf(/[bkmg]$/.test(s) ? s.slice(-1) : 'b')
      if (bytes < MIN_MEMORY) throw new InputError('memory', `'${s}' is below docker's minimum memory limit of 6m`)
      if (bytes > MAX_MEMORY) throw new InputError('memory', `'${s}' is more memory than any host has (at most 1024g)`)
      return s
    },
    undefined
  )
  return {
    service,
    image,
    spec: { port, route, healthPath, stripPrefix, aliases: [...new Set([...(known?.aliases ?? []), ...aliases])] },
    env,
    envFile,
    registry,
    healthTimeoutS,
    drainTimeoutS,
    stopTimeoutS,
    keepImages,
    memory
  }
}

export function parseHostPath(name: string, v: string): string {
  const s = v.trim()
  if (!OPS_DIR_RE.test(s) || s.split('/').some(seg => seg === '.' || seg === '..')) {
    throw new InputError(name, `'${s}' must be an absolute path of letters, digits, '.', '_', '-' and '/', without '..'`)
  }
  return s
}
