import { envLine, parseEnvInput, redisPasswordProblem, type EnvEntries } from '../envfile'
import { InputError } from '../errors'
import { HOST_NAME, optional, parseBoolean, parseHostPath, parseInteger, type Collector } from './collector'

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

const DOMAIN_RE = new RegExp(`^${HOST_NAME}$`)
const NETWORK_RE = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$/
/** docker's predefined networks: no user-defined bridge, so no network aliases (and `host`/`none` share or cut the network). */
const BUILTIN_NETWORKS = ['bridge', 'host', 'none', 'default']

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
  if (s.length > 253 || !DOMAIN_RE.test(s) || !s.includes('.'))
    throw new InputError('domain', `'${s.slice(0, 80)}' is not a domain name like example.com`)
  return s
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

/** ops-dir, network, domain and ports, infra-env, timeouts and backups: every run ensures the stack with them. */
export function infraInputs(c: Collector): InfraInputs {
  const opsDir = c.check('ops-dir', parseOpsDir, '')
  const network = c.check('network', parseNetwork, '')
  const domain = c.check('domain', parseDomain, undefined)
  const httpPort = c.check('http-port', optional(parseInteger('http-port', 1, 65535)), undefined)
  const httpsPort = c.check('https-port', optional(parseInteger('https-port', 1, 65535)), undefined)
  if (httpPort !== undefined && httpPort === httpsPort) c.fail('https-port', `must differ from http-port (both are ${httpPort})`)
  const infraEnv = c.check('infra-env', parseInfraEnv, [])
  const infraTimeoutS = c.check('infra-timeout', parseInteger('infra-timeout', 1, 3600, 'seconds'), 120)
  const keep = c.check('keep-backups', parseInteger('keep-backups', 1, 365), 7)
  const beforeInfra = c.check('backup-before-infra', parseBoolean('backup-before-infra'), true)
  return { opsDir, network, settings: { domain, httpPort, httpsPort }, infraEnv, infraTimeoutS, backups: { keep, beforeInfra } }
}
