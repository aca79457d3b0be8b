/** nginx files a deploy writes for one service: its upstreams (live and preview) and, outside the catalogue, its route. */

export interface Live {
  container: string
  /** As deployed (a tag, or a digest). */
  image: string
  /** The registry digest it ran (`repo@sha256:…`); missing in files of earlier releases, '' without one. */
  digest?: string
}

/**
 * Upstream names: `app_<svc>` (`-` spelled `_`) is the upstream block of the container serving clients, defined in
 * its own file under upstreams/. On the preview port, the X-Ops-Upstream request header names the container instead
 * (nginx/conf.d/05-upstream-vars.conf).
 */
export const upstreamName = (service: string): string => `app_${service.replace(/-/g, '_')}`
export const upstreamPath = (service: string): string => `upstreams/app_${service}.conf`
/** The request header that picks the container on nginx's preview port. */
export const PREVIEW_HEADER = 'X-Ops-Upstream'

export const locationsPath = (service: string): string => `upstreams/app_${service}.locations`
export const varsPath = (service: string): string => `upstreams/app_${service}_vars.conf`
/** The nginx variable that picks the live or preview upstream of a service. */
export const upstreamVar = (service: string): string => `$up_${service.replace(/-/g, '_')}`

/** The unix socket of a service's fallback server (see upstreamConf), inside the nginx container. */
export const fallbackSocket = (name: string): string => `/tmp/ops-${name}.sock`

/**
 * The upstream block `name`. An app container is named with `resolve` (nginx resolves it through docker's DNS
 * itself and follows a new address) and its connections are kept alive, closed by nginx after 4 s idle: before the
 * apps' own idle timeouts (Node's and uvicorn's 5 s), so nginx never reuses a connection the app closes.
 */
function upstreamBlock(name: string, servers: string[], keepalive: boolean): string {
  const pool = keepalive ? ['    keepalive 32;', '    keepalive_timeout 4s;'] : []
  return [`upstream ${name} {`, `    zone ${name} 64k;`, ...servers.map(s => `    server ${s};`), ...pool, '}'].join('\n')
}

/**
 * The same container for requests the upstream block cannot place: a worker resolves a `resolve` server a moment
 * after each reload and has no address until then ("no live upstreams", a 502), and after dockerd moved the
 * container its old address fails until the next lookup. This server, the block's backup, looks the container up
 * per request (as nginx did before upstream blocks) and passes the request on unchanged.
 */
function fallbackServer(name: string, target: string): string {
  return [
    'server {',
    `    listen unix:${fallbackSocket(name)};`,
    '    access_log off;',
    '    gzip off;',
    '    location / {',
    `        set $ops_target ${target};`,
    '        proxy_pass http://$ops_target;',
    '        proxy_set_header Host $http_host;',
    '        proxy_set_header Upgrade $http_upgrade;',
    '        proxy_set_header Connection $connection_upgrade;',
    '        proxy_buffering off;',
    '        proxy_read_timeout 7d;',
    '        proxy_send_timeout 7d;',
    '    }',
    '}'
  ].join('\n')
}

/** The upstream for a service that has no container yet: nginx's own 503 page (see nginx/conf.d/10-undeployed.conf). */
export function placeholderUpstream(service: string): string {
  return [
    `# ${service} is not deployed yet: nginx answers 503 for its route. A deploy of ${service} replaces this file.`,
    upstreamBlock(upstreamName(service), ['127.0.0.1:8503'], false),
    ''
  ].join('\n')
}

/**
 * An upstream pointing at one container by its name, which nginx resolves through docker's DNS (the `resolver` in
 * nginx.conf) itself, not only when it starts: nginx starts and reloads whether or not the container exists, and
 * follows the container to its new address when dockerd restarts it.
 */
export function upstreamConf(name: string, port: number, live: Live): string {
  return [
    `# ops-action: ${name} -> container ${live.container} (${live.image})`,
    `# live: ${JSON.stringify(live)}`,
    upstreamBlock(name, [`${live.container}:${port} resolve`, `unix:${fallbackSocket(name)} backup`], true),
    fallbackServer(name, `${live.container}:${port}`),
    ''
  ].join('\n')
}

/** Which container an upstream file points at (undefined for the 503 placeholder or an unreadable file). */
export function liveOf(conf: string): Live | undefined {
  const m = /^# live: (\{.*\})$/m.exec(conf)
  if (!m) return undefined
  try {
    const v = JSON.parse(m[1]) as Live
    return typeof v.container === 'string' && typeof v.image === 'string' && (v.digest === undefined || typeof v.digest === 'string')
      ? v
      : undefined
  } catch {
    return undefined
  }
}

/** Route and upstream variable of a service outside the catalogue (the catalogue's ship in nginx/). */
export function customServiceFiles(service: string, route: string, hasLive: boolean): Array<{ path: string; content: string }> {
  const v = upstreamVar(service)
  const files = [
    {
      path: varsPath(service),
      content: [
        `map $server_port ${v} {`,
        '    8504    $http_x_ops_upstream;',
        ...stateIncludes(service),
        `    default ${upstreamName(service)};`,
        '}',
        ''
      ].join('\n')
    },
    {
      path: locationsPath(service),
      content: `# ops-action: route ${route} -> ${service}\nlocation ${route} {\n    include snippets/proxy.conf;\n    proxy_pass http://${v};\n}\n`
    }
  ]
  if (!hasLive) files.push({ path: upstreamPath(service), content: placeholderUpstream(service) })
  return files
}

/**
 * The lines of a service's upstream map (nginx/conf.d/05-upstream-vars.conf, a custom service's vars file) that put
 * the maintenance page or a canary in front of the live upstream while their files exist.
 */
export const stateIncludes = (service: string): string[] => [
  `    include /etc/nginx/ops-upstreams/${service}.maintenance.ma[p];`,
  '    include /etc/nginx/ops-upstreams/all.maintenance.ma[p];',
  `    include /etc/nginx/ops-upstreams/${service}.canary.ma[p];`
]

/** The output of upstreamFiles(): file name (in upstreams/) -> content. */
export function splitFiles(out: string): Map<string, string> {
  const files = new Map<string, string>()
  for (const chunk of out.split(/^@@file /m).slice(1)) {
    const nl = chunk.indexOf('\n')
    const name = chunk.slice(0, nl < 0 ? undefined : nl).trim()
    if (name) files.set(name, nl < 0 ? '' : chunk.slice(nl + 1))
  }
  return files
}

const SERVICE_FILE = /^app_([a-z][a-z0-9-]*)\.conf$/

/** service -> the container its upstream file names (the 503 placeholder names none), from upstreamFiles(). */
export function parseUpstreamFiles(out: string): Map<string, Live> {
  const live = new Map<string, Live>()
  for (const [name, content] of splitFiles(out)) {
    const service = SERVICE_FILE.exec(name)?.[1]
    const l = liveOf(content)
    if (service && l) live.set(service, l)
  }
  return live
}

/**
 * A file of upstreams/ as ops-action wrote it before upstream blocks (`map "" $app_<svc> { default host:port; }`),
 * rewritten for today's config: the same container (or placeholder) as an upstream block, a custom service's map
 * to the block's name. Undefined when the file is current (or not ops-action's).
 */
export function migrateUpstreamFile(name: string, content: string): string | undefined {
  const service = SERVICE_FILE.exec(name)?.[1]
  if (service) {
    // Only a file in ops-action's earlier format (its header and a `map "" $app_…` instead of an upstream block); a
    // hand-written file is left as it is (nginx -t tells when it does not fit).
    const legacy = /^# (ops-action: |\S+ is not deployed yet: nginx answers 503)/m.test(content) && /^map "" \$app_/m.test(content)
    if (!legacy) return undefined
    const live = liveOf(content)
    const port = /^\s*default [^;\s]+:(\d+);/m.exec(content)?.[1]
    return live && port ? upstreamConf(upstreamName(service), Number(port), live) : placeholderUpstream(service)
  }
  if (!name.endsWith('_vars.conf')) return undefined
  let fixed = content.replace(/default \$(app_[a-z0-9_]+);/, 'default $1;')
  // Before maintenance and canaries: the map gets their includes (a service's own vars file, as ops-action writes it).
  const own = /^app_([a-z][a-z0-9-]*)_vars\.conf$/.exec(name)?.[1]
  if (own && !fixed.includes('.maintenance.ma[p]'))
    fixed = fixed.replace(/^(\s*8504\s+\$http_x_ops_upstream;\n)/m, `$1${stateIncludes(own).join('\n')}\n`)
  return fixed === content ? undefined : fixed
}
