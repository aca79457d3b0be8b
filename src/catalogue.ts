import { PORT_LABEL, SPEC_LABEL, type DeployedSpec } from './labels'
import { memoryBytes } from './units'

/** What ops-action knows about the Behindy services; any other service name must give port, route and health path. */
export interface ServiceSpec {
  port: number
  /** Path prefix nginx routes to the service. */
  route: string
  /** Path that answers 2xx when healthy, as the app sees it. */
  healthPath: string
  /** nginx strips the route prefix before passing the request on (story's routes live at the root). */
  stripPrefix: boolean
  /** Network aliases besides the service name. */
  aliases: string[]
}

/** The stack's own services (compose), besides the apps. */
export const STACK_SERVICES = ['db', 'redis', 'nginx', 'front'] as const

export const CATALOGUE: Record<string, ServiceSpec> = {
  frontend: { port: 3000, route: '/', healthPath: '/', stripPrefix: false, aliases: [] },
  // /actuator/health answers 401 (Spring Security) and is outside /api/; this one is public.
  backend: { port: 8080, route: '/api/', healthPath: '/api/ai-stories/health', stripPrefix: false, aliases: [] },
  // The backend calls the story server at http://llmserver:8000.
  story: { port: 8000, route: '/llm/', healthPath: '/health', stripPrefix: true, aliases: ['llmserver'] }
}

const REPOS: Record<string, string> = {
  'behindy-front': 'frontend',
  'behindy-frontend': 'frontend',
  'behindy-back': 'backend',
  'behindy-backend': 'backend',
  'behindy-story': 'story',
  'behindy-llmserver': 'story'
}

/** The service a repository deploys (`owner/behindy-back` -> backend), if it can be told from the name. */
export function serviceFromRepository(repository: string | undefined): string | undefined {
  const name = (repository ?? '').split('/').pop()?.toLowerCase() ?? ''
  return REPOS[name]
}

/** The path to request through nginx to reach `appPath` on the service. */
export function publicPath(spec: Pick<ServiceSpec, 'route' | 'stripPrefix'>, appPath: string): string {
  return spec.stripPrefix ? spec.route.replace(/\/$/, '') + appPath : appPath
}

/** Whether a request for appPath can reach the app through its route (else the health path is an input error). */
export function routeReaches(spec: Pick<ServiceSpec, 'route' | 'stripPrefix'>, appPath: string): boolean {
  return spec.stripPrefix ? appPath.startsWith('/') : appPath.startsWith(spec.route) || appPath === spec.route.replace(/\/$/, '')
}

/**
 * How a container was deployed (port, route, health path, aliases, memory limit): its labels, else the catalogue's
 * defaults for the service; undefined when neither says.
 */
export function deployedSpec(service: string, labels: Record<string, string>): { spec: ServiceSpec; memory?: number } | undefined {
  let label: DeployedSpec | undefined
  try {
    label = JSON.parse(labels[SPEC_LABEL] ?? '') as DeployedSpec
  } catch {
    label = undefined // containers of older versions carry no spec label
  }
  const cat = CATALOGUE[service] as ServiceSpec | undefined
  const port = Number(labels[PORT_LABEL]) || cat?.port
  const route = label?.route ?? cat?.route
  const healthPath = label?.healthPath ?? cat?.healthPath
  if (!port || !route || !healthPath) return undefined
  return {
    spec: {
      port,
      route,
      healthPath,
      stripPrefix: label?.stripPrefix ?? cat?.stripPrefix ?? false,
      aliases: label?.aliases ?? cat?.aliases ?? []
    },
    memory: typeof label?.memory === 'string' ? memoryBytes(label.memory) : label?.memory
  }
}
