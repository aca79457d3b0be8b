import { CATALOGUE, routeReaches, serviceFromRepository, type ServiceSpec } from '../catalogue'
import { parseEnvInput, type EnvEntries } from '../envfile'
import { InputError } from '../errors'
import { imageTag, isImageReference, REGISTRY_HOST } from '../images'
import { memoryBytes } from '../units'
import { LABEL, parseHostPath, parseInteger, type Collector, type InputReader } from './collector'

export interface RegistryLogin {
  server: string
  username: string
  password: string
}

/** The app a deploy or rollback swaps: its service, how nginx and docker run it, and the swap's timeouts. */
export interface AppInputs {
  service: string
  spec: ServiceSpec
  env: EnvEntries
  envFile?: string
  registry?: RegistryLogin
  healthTimeoutS: number
  drainTimeoutS: number
  stopTimeoutS: number
  keepImages: number
  /** Memory limit in bytes. */
  memory?: number
}

const SERVICE_RE = /^[a-z][a-z0-9-]{0,30}$/
const ALIAS_RE = /^[a-z][a-z0-9-]{0,62}$/
/** Names the stack owns on the shared network: an app alias with one of them would hijack its traffic. */
const RESERVED_NAMES = ['db', 'redis', 'nginx', 'front', 'postgres']
/** The network name of every catalogue service and alias, with the service that owns it (llmserver -> story). */
const APP_NAMES: Record<string, string> = Object.fromEntries(
  Object.entries(CATALOGUE).flatMap(([service, spec]) => [service, ...spec.aliases].map(name => [name, service]))
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
const REGISTRY_RE = new RegExp(`^${REGISTRY_HOST}$|^${LABEL}$`)

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

/** `service` of mode maintenance / live: a route's service (not told by the repository: empty means every route). */
export function maintenanceService(c: Collector): string | undefined {
  return c.check(
    'service',
    v => {
      const s = v.trim()
      if (!s) return undefined
      if (!SERVICE_RE.test(s)) throw new InputError('service', `'${s}' must match [a-z][a-z0-9-]{0,30}`)
      if (RESERVED_NAMES.includes(s) || s === 'all')
        throw new InputError('service', `'${s}' is not an app service (leave service empty for every route)`)
      if (APP_NAMES[s] && APP_NAMES[s] !== s)
        throw new InputError('service', `'${s}' is the network alias of ${APP_NAMES[s]}; name the service`)
      return s
    },
    undefined
  )
}

/** The app's inputs, checked in the order of action.yml; `image` is '' for mode rollback. */
export function appInputs(
  c: Collector,
  mode: 'deploy' | 'rollback',
  read: InputReader,
  repository: string | undefined
): { app: AppInputs; image: string } {
  const service = c.check(
    'service',
    v => {
      const s = v.trim() || serviceFromRepository(repository)
      if (!s) {
        throw new InputError(
          'service',
          `is required: it cannot be told from the repository name '${repository ?? ''}' (known: behindy-front, behindy-back, behindy-story)`
        )
      }
      if (!SERVICE_RE.test(s)) throw new InputError('service', `'${s}' must match [a-z][a-z0-9-]{0,30}`)
      if (RESERVED_NAMES.includes(s)) throw new InputError('service', `'${s}' is a stack service name; pick another`)
      if (s === 'all') throw new InputError('service', "'all' names every route in mode maintenance; pick another")
      if (APP_NAMES[s] && APP_NAMES[s] !== s)
        throw new InputError('service', `'${s}' is the network alias of ${APP_NAMES[s]}; pick another`)
      return s
    },
    ''
  )
  const known = CATALOGUE[service] as ServiceSpec | undefined
  const image = imageInput(c, mode)
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
      const bytes = memoryBytes(s)
      if (bytes === undefined) throw new InputError('memory', `'${s}' is not a memory size like 768m or 1g`)
      if (bytes < MIN_MEMORY) throw new InputError('memory', `'${s}' is below docker's minimum memory limit of 6m`)
      if (bytes > MAX_MEMORY) throw new InputError('memory', `'${s}' is more memory than any host has (at most 1024g)`)
      return bytes
    },
    undefined
  )
  const app: AppInputs = {
    service,
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
  return { app, image }
}

/** The image of mode deploy (mode rollback takes it from the history and refuses one). */
function imageInput(c: Collector, mode: 'deploy' | 'rollback'): string {
  return c.check(
    'image',
    v => {
      if (mode === 'rollback') {
        if (v.trim()) throw new InputError('image', 'is not used by mode rollback (it returns to the previous image in the history)')
        return ''
      }
      if (!v.trim()) throw new InputError('image', 'is required for mode deploy')
      const img = parseImage(v)
      if (imageTag(img) === 'latest')
        c.warn(
          `image ${img} uses the tag 'latest': a rollback cannot tell releases apart. Deploy an immutable tag (e.g. the commit sha) or a digest.`
        )
      return img
    },
    ''
  )
}

export function parseImage(v: string): string {
  const s = v.trim()
  if (!isImageReference(s)) {
    throw new InputError(
      'image',
      `'${s.slice(0, 80)}' is not an image reference like registry.example.com/name:tag or name@sha256:<64 hex>`
    )
  }
  return s
}
