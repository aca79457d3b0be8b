import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { parse as parseYaml } from 'yaml'
import { loadBundle, planFiles, renderStack, ROUTED_SERVICES, sha256, type FileSet } from '../../src/stackfiles'
import { FRONT_PORTS, frontUpstream } from '../../src/front'
import { KEEPALIVE_MIN_TIMEOUT_S } from '../../src/nginx'
import { canaryFiles } from '../../src/canary'
import { MAINTENANCE_PAGE } from '../../src/maintenance'
import { fallbackSocket, placeholderUpstream, stateIncludes, upstreamConf, upstreamName } from '../../src/upstream'
import { frontRelays } from './helpers'

const ROOT = join(__dirname, '..', '..')
const bundle = loadBundle(ROOT)

/** The file's text, failing the test when it is missing. */
function file(files: FileSet, path: string): string {
  const text = files.get(path)
  expect(text, `${path} is in the file set`).toBeDefined()
  return text as string
}

/** nginx config without comments. */
function code(text: string): string {
  return text
    .split('\n')
    .map(l => l.replace(/(^|\s)#.*$/, ''))
    .join('\n')
}

/** The `{ … }` body of each block whose header matches `header` (brace-balanced). */
function blocks(text: string, header: RegExp): string[] {
  const src = code(text)
  const found: string[] = []
  const re = new RegExp(header.source, 'g')
  let m: RegExpExecArray | null
  while ((m = re.exec(src))) {
    const open = src.indexOf('{', m.index + m[0].length - 1)
    let depth = 0
    for (let i = open; i < src.length; i++) {
      if (src[i] === '{') depth++
      else if (src[i] === '}' && --depth === 0) {
        found.push(src.slice(open + 1, i))
        break
      }
    }
  }
  return found
}

/** The directives at the top level of a block body (nested blocks removed). */
function topLevel(body: string): string {
  let out = ''
  let depth = 0
  for (const ch of body) {
    if (ch === '{') depth++
    if (depth === 0) out += ch
    if (ch === '}') depth--
  }
  return out
}

const nginxFiles = [...bundle].filter(([p]) => p.startsWith('nginx/') && p.endsWith('.conf'))

describe('loadBundle', () => {
  it('reads compose/ and nginx/ with posix relative paths', () => {
    const paths = [...bundle.keys()]
    expect(paths).toContain('compose/docker-compose.yml')
    expect(paths).toContain('nginx/nginx.conf')
    expect(paths).toContain('nginx/templates/servers-http.conf')
    expect(paths).toContain('nginx/templates/servers-tls.conf')
    expect(paths).toContain('nginx/html/503.html')
    for (const p of paths) expect(p).toMatch(/^(compose|nginx)\/[^\\]+$/)
  })
})

describe('renderStack', () => {
  const http = renderStack(bundle, { domain: '', tls: false })
  const tls = renderStack(bundle, { domain: 'behindy.me', tls: true })
  const httpWithDomain = renderStack(bundle, { domain: 'behindy.me', tls: false })

  it('HTTP only: one default server on 80 (and 8080 for the front, PROXY protocol), no TLS', () => {
    const servers = file(http, 'nginx/conf.d/20-servers.conf')
    expect(servers).toContain('listen 80 default_server;')
    expect(servers).toContain(`listen ${FRONT_PORTS.http} default_server proxy_protocol;`)
    expect(servers).not.toMatch(/listen\s+443/)
    expect(servers).not.toMatch(/\bssl/)
    expect(servers).not.toContain('Strict-Transport-Security')
    expect(servers).toContain('no domain set')
    expect(blocks(servers, /\bserver\s*\{/)).toHaveLength(1)
    expect(servers).toContain('include snippets/common.conf;')
    expect(servers).toContain('include routes/*.conf;')
  })

  it('HTTP only with a domain but no certificate says why', () => {
    const servers = file(httpWithDomain, 'nginx/conf.d/20-servers.conf')
    expect(servers).toContain('no certificate for behindy.me on the host yet')
    expect(servers).not.toMatch(/listen\s+443/)
  })

  it('TLS: certificate, protocols, HSTS for the domain', () => {
    const servers = file(tls, 'nginx/conf.d/20-servers.conf')
    expect(servers).toContain('ssl_certificate /etc/letsencrypt/live/behindy.me/fullchain.pem;')
    expect(servers).toContain('ssl_certificate_key /etc/letsencrypt/live/behindy.me/privkey.pem;')
    expect(servers).toMatch(/ssl_protocols TLSv1\.2 TLSv1\.3;/)
    expect(servers).not.toMatch(/TLSv1(\.1)?[ ;]/)
    // The front publishes 443 and relays TLS connections (a PROXY protocol header first) to nginx's 8443.
    expect(servers).not.toMatch(/listen\s+443\b/)
    const https = blocks(servers, /\bserver\s*\{/).filter(b => /listen\s+8443\s+ssl\s+proxy_protocol;/.test(b))
    expect(https).toHaveLength(1)
    expect(https[0]).toContain('server_name behindy.me www.behindy.me;')
    expect(https[0]).toMatch(/add_header Strict-Transport-Security \$hsts always;/)
    expect(code(file(bundle, 'nginx/conf.d/00-zones.conf'))).toMatch(
      /map \$https \$hsts \{\s*on\s+"max-age=31536000; includeSubDomains";\s*default\s+"";\s*\}/
    )
    expect(https[0]).toContain('include routes/*.conf;')
    expect(https[0]).toContain('include snippets/common.conf;')
  })

  it("every location with add_header of its own repeats HSTS (nginx would drop the server's there)", () => {
    let checked = 0
    for (const [path, text] of [...bundle].filter(([p]) => p.startsWith('nginx/routes/') || p.startsWith('nginx/snippets/'))) {
      for (const body of blocks(text, /\blocation\b[^{]*\{/)) {
        const own = topLevel(body)
          .split(';')
          .map(d => d.trim().replace(/\s+/g, ' '))
          .filter(d => d.startsWith('add_header '))
          .map(d => `${d};`)
        if (!own.length) continue
        checked++
        expect(own, `${path}: ${own.join(' | ')}`).toContain('add_header Strict-Transport-Security $hsts always;')
      }
    }
    expect(checked).toBeGreaterThan(0)
  })

  it('TLS: HTTP for the domain redirects to https, ACME challenge still served over HTTP', () => {
    const servers = file(tls, 'nginx/conf.d/20-servers.conf')
    const redirect = blocks(servers, /\bserver\s*\{/).filter(
      b => /server_name behindy\.me www\.behindy\.me;/.test(b) && /listen\s+80;/.test(b)
    )
    expect(redirect).toHaveLength(1)
    expect(redirect[0]).toMatch(/location \/ \{\s*return 301 https:\/\/\$host\$request_uri;\s*\}/)
    expect(redirect[0]).toContain('include snippets/common.conf;')
    // common.conf keeps the challenge path out of the redirect (^~ beats the `/` prefix and any regex).
    const common = file(tls, 'nginx/snippets/common.conf')
    expect(common).toMatch(/location \^~ \/\.well-known\/acme-challenge\/ \{[^}]*root \/var\/www\/certbot;/)
    // The IP / default server stays plain HTTP.
    const dflt = blocks(servers, /\bserver\s*\{/).filter(b => /listen 80 default_server;/.test(b))
    expect(dflt).toHaveLength(1)
    expect(dflt[0]).not.toContain('return 301')
  })

  it('leaves no {{placeholder}} and no template in the output', () => {
    for (const files of [http, tls, httpWithDomain]) {
      for (const [path, text] of files) {
        expect(text, path).not.toContain('{{')
        expect(text, path).not.toContain('}}')
        expect(path).not.toMatch(/^nginx\/templates\//)
      }
    }
  })

  it('keeps every other bundle file unchanged and sorts paths', () => {
    for (const [path, text] of bundle) {
      if (path.startsWith('nginx/templates/')) continue
      expect(http.get(path)).toBe(text)
    }
    const paths = [...tls.keys()]
    expect(paths).toEqual([...paths].sort((a, b) => a.localeCompare(b)))
    expect(http.size).toBe(bundle.size - 2 + 1)
  })

  it('fails clearly when a template is missing', () => {
    const broken = new Map(bundle)
    broken.delete('nginx/templates/servers-tls.conf')
    expect(() => renderStack(broken, { domain: 'behindy.me', tls: true })).toThrow(/lacks nginx\/templates\/servers-tls\.conf/)
  })
})

describe('shipped nginx config', () => {
  const main = file(bundle, 'nginx/nginx.conf')
  const proxy = file(bundle, 'nginx/snippets/proxy.conf')
  const zones = file(bundle, 'nginx/conf.d/00-zones.conf')
  const backend = file(bundle, 'nginx/routes/backend.conf')
  const story = file(bundle, 'nginx/routes/story.conf')

  it("resolves app container names through docker's embedded DNS at request time, briefly cached", () => {
    expect(code(main)).toMatch(/^\s*resolver 127\.0\.0\.11 valid=5s ipv6=off;/m)
    expect(code(main)).toMatch(/^\s*resolver_timeout \d+s;/m)
  })

  it('hides the version and speaks HTTP/1.1 to upstreams', () => {
    expect(code(main)).toMatch(/^\s*server_tokens off;/m)
    expect(code(main)).toMatch(/^\s*proxy_http_version 1\.1;/m)
  })

  it("moves a request on only when the connection failed or timed out, never on the app's own 502/503 (which would mark the container failed for all its routes)", () => {
    expect(code(main)).toMatch(/^\s*proxy_next_upstream error timeout;/m)
    expect(code(main)).not.toMatch(/http_50[23]/)
  })

  it("keeps reused client connections open across a reload longer than the apps' idle timeouts", () => {
    expect(code(main)).toMatch(new RegExp(`^\\s*keepalive_min_timeout ${KEEPALIVE_MIN_TIMEOUT_S}s;`, 'm'))
    expect(code(main)).toMatch(/^\s*keepalive_timeout 65s;/m)
  })

  it('the default nginx image is one that has `server … resolve` (1.27.3) and keepalive_min_timeout (1.27.4)', () => {
    const compose = file(bundle, 'compose/docker-compose.yml')
    const m = /\$\{NGINX_IMAGE:-nginx:(\d+)\.(\d+)\.(\d+)-alpine\}/.exec(compose)
    expect(m, 'NGINX_IMAGE default').not.toBeNull()
    const [major, minor, patch] = (m as RegExpExecArray).slice(1).map(Number)
    expect(major * 1e6 + minor * 1e3 + patch).toBeGreaterThanOrEqual(1_027_004)
  })

  it('snippets/proxy.conf clears Connection for keep-alive and includes the forwarding headers', () => {
    expect(code(proxy)).toContain('proxy_set_header Connection "";')
    expect(code(proxy)).toContain('include snippets/proxy-headers.conf;')
    const headers = code(file(bundle, 'nginx/snippets/proxy-headers.conf'))
    for (const h of ['Host $host', 'X-Real-IP $remote_addr', 'X-Forwarded-For $proxy_add_x_forwarded_for', 'X-Forwarded-Proto $scheme']) {
      expect(headers).toContain(`proxy_set_header ${h};`)
    }
  })

  it('/ws upgrades the connection and does not include snippets/proxy.conf', () => {
    const ws = blocks(backend, /location \/ws\s*\{/)
    expect(ws).toHaveLength(1)
    expect(ws[0]).toContain('proxy_set_header Upgrade $http_upgrade;')
    expect(ws[0]).toContain('proxy_set_header Connection $connection_upgrade;')
    expect(ws[0]).not.toContain('snippets/proxy.conf')
    // Setting any proxy_set_header drops the inherited ones: the forwarding headers must be included.
    expect(ws[0]).toContain('include snippets/proxy-headers.conf;')
    expect(ws[0]).toContain('proxy_pass http://$up_backend;')
    expect(code(zones)).toMatch(/map \$http_upgrade \$connection_upgrade \{\s*default upgrade;\s*''\s+close;\s*\}/)
  })

  it('every location that sets proxy_set_header also gets the forwarding headers', () => {
    for (const [path, text] of nginxFiles) {
      if (!path.startsWith('nginx/routes/')) continue
      for (const body of blocks(text, /location[^{;]*\{/)) {
        const own = topLevel(body)
        if (!/proxy_pass/.test(own)) continue
        expect(own, `${path}: ${own.trim().slice(0, 60)}`).toMatch(/include snippets\/proxy(-headers)?\.conf;/)
      }
    }
  })

  it('rate-limit zones: auth 5r/m, posts 10r/m, api 10r/s, answered with 429', () => {
    const z = code(zones)
    expect(z).toMatch(/limit_req_zone \$binary_remote_addr zone=auth:\d+m rate=5r\/m;/)
    expect(z).toMatch(/limit_req_zone \$binary_remote_addr zone=posts:\d+m rate=10r\/m;/)
    expect(z).toMatch(/limit_req_zone \$binary_remote_addr zone=api:\d+m rate=10r\/s;/)
    expect(z).toContain('limit_req_status 429;')
  })

  it('backend routes use the zones with bursts 3/5/20', () => {
    const b = code(backend)
    expect(b).toContain('limit_req zone=auth burst=3 nodelay;')
    expect(b).toContain('limit_req zone=posts burst=5 nodelay;')
    expect(b).toContain('limit_req zone=api burst=20 nodelay;')
    const auth = blocks(backend, /location ~ \^\/api\/\(\?:auth\|oauth\)\/\s*\{/)
    expect(auth).toHaveLength(1)
    expect(auth[0]).toContain('zone=auth')
    const posts = blocks(backend, /location ~ \^\/api\/posts\s*\{/)
    expect(posts).toHaveLength(1)
    expect(posts[0]).toContain('zone=posts')
    const api = blocks(backend, /location \/api\/\s*\{/)
    expect(topLevel(api[0])).toContain('zone=api')
  })

  it('story route strips its /llm/ prefix', () => {
    const llm = blocks(story, /location \/llm\/\s*\{/)
    expect(llm).toHaveLength(1)
    expect(llm[0]).toContain('rewrite ^/llm(/.*)$ $1 break;')
    // No URI part: with a variable in proxy_pass, nginx passes the rewritten URI as it is.
    expect(llm[0]).toMatch(/proxy_pass http:\/\/\$up_story;/)
    expect(code(story)).toMatch(/location = \/llm \{\s*return 301 \/llm\/;\s*\}/)
  })

  /** service -> [default upstream, upstream on the preview port] of every `map $server_port $up_<service>`. */
  function upstreamMaps(): Map<string, { dflt?: string; preview?: string }> {
    const maps = new Map<string, { dflt?: string; preview?: string }>()
    for (const [, text] of nginxFiles) {
      for (const m of code(text).matchAll(/map \$server_port \$up_([a-z0-9_]+)\s*\{([^}]*)\}/g)) {
        const body = m[2]
        maps.set(m[1], { dflt: /^\s*default\s+([^;\s]+);/m.exec(body)?.[1], preview: /^\s*8504\s+([^;\s]+);/m.exec(body)?.[1] })
      }
    }
    return maps
  }

  /** Names of the upstream blocks a file of upstreams/ defines. */
  const upstreamsIn = (text: string): string[] => [...code(text).matchAll(/^\s*upstream\s+([a-z0-9_]+)\s*\{/gm)].map(m => m[1])

  it('every proxy_pass goes to an upstream of a routed service via its map, never a docker host name', () => {
    const maps = upstreamMaps()
    const targets = new Set<string>()
    // The front's config is a stream (TCP) relay to nginx, not nginx's http config: tested in 'the front' below.
    for (const [path, text] of nginxFiles.filter(([p]) => !p.startsWith('nginx/front/'))) {
      for (const m of code(text).matchAll(/proxy_pass\s+([^;]+);/g)) {
        const t = /^http:\/\/\$up_([a-z0-9_]+)$/.exec(m[1])
        expect(t, `${path}: proxy_pass ${m[1]}`).not.toBeNull()
        const svc = (t as RegExpExecArray)[1]
        // The map's default is the literal name of an upstream block (proxy_pass picks the block it names).
        expect(maps.get(svc)?.dflt, `${path}: $up_${svc} has a map`).toBe(`app_${svc}`)
        targets.add(svc)
      }
      // Apps' upstreams live in upstreams/ (written by deploys); the bundle defines none, and names no container. Its
      // one upstream block is nginx's own maintenance server (ops_maintenance, in 10-undeployed.conf: tested below).
      expect(
        upstreamsIn(text).filter(u => u !== 'ops_maintenance'),
        path
      ).toEqual([])
      expect(code(text), path).not.toMatch(/\bserver\s+[a-z][a-z0-9_-]*:\d+/)
      expect(code(text), path).not.toMatch(/https?:\/\/(frontend|backend|story|llmserver|db|redis)\b/)
      expect(code(text), path).not.toMatch(/proxy_pass\s+https?:\/\/app_/)
    }
    expect([...targets].sort()).toEqual([...ROUTED_SERVICES].sort())
    expect(nginxFiles.filter(([, text]) => upstreamsIn(text).length).map(([p]) => p)).toEqual(['nginx/conf.d/10-undeployed.conf'])
    for (const s of ROUTED_SERVICES) expect(bundle.has(`nginx/routes/${s}.conf`)).toBe(true)
    // The block each map names is the one its upstreams/ file defines, placeholder or deployed.
    for (const s of ROUTED_SERVICES) {
      const name = maps.get(s.replace(/-/g, '_'))?.dflt
      expect(name, s).toBe(upstreamName(s))
      expect(upstreamsIn(placeholderUpstream(s)), `placeholder of ${s}`).toEqual([name])
      expect(upstreamsIn(upstreamConf(upstreamName(s), 8080, { container: `${s}-1a2b3c4d`, image: 'x:1' })), s).toEqual([name])
    }
  })

  it('every $up_X variable used has a map: upstream app_X by default, the X-Ops-Upstream header names on the preview port 8504', () => {
    const maps = upstreamMaps()
    const used = new Set<string>()
    for (const [, text] of nginxFiles) for (const m of code(text).matchAll(/\$up_([a-z0-9_]+)/g)) used.add(m[1])
    expect(used.size).toBeGreaterThan(0)
    for (const svc of used) {
      expect(maps.get(svc), `map for $up_${svc}`).toEqual({ dflt: `app_${svc}`, preview: '$http_x_ops_upstream' })
    }
    for (const s of ROUTED_SERVICES) expect(maps.has(s), s).toBe(true)
    // The maps are in http context (conf.d/), before the servers that use them.
    const vars = code(file(bundle, 'nginx/conf.d/05-upstream-vars.conf'))
    for (const s of ROUTED_SERVICES) expect(vars).toContain(`map $server_port $up_${s} {`)
    // No $app_X variable is left anywhere (upstream files define blocks, not variables).
    for (const [path, text] of nginxFiles) expect(code(text), path).not.toMatch(/\$app_/)
  })

  it("each service's map includes its maintenance file, the site-wide one and its canary file, between the preview port and the default", () => {
    const vars = code(file(bundle, 'nginx/conf.d/05-upstream-vars.conf'))
    for (const s of ROUTED_SERVICES) {
      const body = blocks(vars, new RegExp(`\\bmap \\$server_port \\$up_${s.replace(/-/g, '_')}\\s*\\{`))
      expect(body, s).toHaveLength(1)
      const lines = body[0]
        .split('\n')
        .map(l => l.trim())
        .filter(Boolean)
      // The same lines a custom service's vars file gets (upstream.ts), in the same order: maintenance before the
      // canary (a map's first matching regex wins), each pattern ending in [p] (a missing file includes nothing).
      expect(lines, s).toEqual(['8504    $http_x_ops_upstream;', ...stateIncludes(s).map(l => l.trim()), `default ${upstreamName(s)};`])
      for (const inc of stateIncludes(s)) expect(inc).toMatch(/^ {4}include \/etc\/nginx\/ops-upstreams\/[a-z0-9-]+\.[a-z]+\.ma\[p\];$/)
    }
  })

  it("a canary's client id: the ops_client cookie, else the request's id, which the cookie line of a canary hands out", () => {
    const vars = code(file(bundle, 'nginx/conf.d/05-upstream-vars.conf'))
    expect(vars).toMatch(/map \$cookie_ops_client \$ops_client \{\s*""\s+\$request_id;\s*default \$cookie_ops_client;\s*\}/)
    expect(vars).toMatch(
      /map \$cookie_ops_client \$ops_canary_cookie \{\s*include \/etc\/nginx\/ops-upstreams\/canary\.cooki\[e\];\s*default "";\s*\}/
    )
    const cookie = canaryFiles('backend', 8080, { container: 'backend-1a2b3c4d', image: 'x:1' }, 10).find(
      f => f.path === 'upstreams/canary.cookie'
    )
    expect(cookie?.content).toMatch(/^"" "ops_client=\$request_id; /)
    // Every server sets it (an empty value sends no header); the log format the canary's access_log names is defined.
    expect(code(file(bundle, 'nginx/snippets/common.conf'))).toMatch(/^add_header Set-Cookie \$ops_canary_cookie;$/m)
    expect(code(main)).toContain("log_format ops_canary '$msec $server_port $proxy_host $status $upstream_response_time';")
  })

  it('includes the per-service upstream files from ops-upstreams', () => {
    expect(code(main)).toContain('include /etc/nginx/ops-upstreams/*.conf;')
    expect(code(main)).toContain('include conf.d/*.conf;')
  })
})

describe('placeholder upstream', () => {
  it('is the upstream block app_<service> of the local 503 server', () => {
    const p = placeholderUpstream('frontend')
    const body = blocks(p, /\bupstream app_frontend\s*\{/)
    expect(body).toHaveLength(1)
    expect(body[0]).toMatch(/^\s*zone app_frontend 64k;$/m)
    expect(body[0]).toMatch(/^\s*server 127\.0\.0\.1:8503;$/m)
    expect([...body[0].matchAll(/^\s*server\s/gm)]).toHaveLength(1)
    expect(code(p)).not.toMatch(/^\s*map\s/m)
    expect(p.endsWith('\n')).toBe(true)
  })

  it('nginx/conf.d/10-undeployed.conf listens on 127.0.0.1:8503 and answers 503', () => {
    const conf = file(bundle, 'nginx/conf.d/10-undeployed.conf')
    const servers = blocks(conf, /\bserver\s*\{/)
    const server = servers.filter(b => /listen 127\.0\.0\.1:8503;/.test(b))
    expect(server).toHaveLength(1)
    expect(server[0]).toMatch(/location \/ \{[^}]*return 503;/)
    expect(server[0]).toContain('error_page 503 /503.html;')
    expect(server[0]).not.toContain('proxy_pass')
    expect(server[0]).not.toContain('include routes/')
    expect(bundle.get('nginx/html/503.html')).toBeTruthy()
  })

  it('nginx/conf.d/10-undeployed.conf has a preview server on 127.0.0.1:8504 with the same routes as the public one', () => {
    const conf = file(bundle, 'nginx/conf.d/10-undeployed.conf')
    const servers = blocks(conf, /\bserver\s*\{/)
    // The 503 placeholder's, the preview's and the maintenance page's: each on its own loopback port.
    expect(servers.map(b => /^\s*listen\s+([^;]+);/m.exec(b)?.[1])).toEqual(['127.0.0.1:8503', '127.0.0.1:8504', '127.0.0.1:8505'])
    const preview = servers.filter(b => /listen 127\.0\.0\.1:8504;/.test(b))
    expect(preview).toHaveLength(1)
    // Only on loopback: never reachable from outside the nginx container.
    expect(preview[0]).not.toMatch(/listen\s+(?!127\.0\.0\.1:)/)
    const publicServer = blocks(file(renderStack(bundle, { domain: '', tls: false }), 'nginx/conf.d/20-servers.conf'), /\bserver\s*\{/)[0]
    for (const inc of ['include routes/*.conf;', 'include /etc/nginx/ops-upstreams/*.locations;']) {
      expect(preview[0]).toContain(inc)
      expect(publicServer).toContain(inc)
    }
    // The map that picks the _next upstreams keys on this very port.
    expect(code(file(bundle, 'nginx/conf.d/05-upstream-vars.conf'))).toMatch(/^\s*8504\s+\$http_x_ops_upstream;/m)
  })

  it('nginx/conf.d/10-undeployed.conf: upstream ops_maintenance is its loopback 8505 server, which answers 503 with the maintenance page', () => {
    const conf = file(bundle, 'nginx/conf.d/10-undeployed.conf')
    const up = blocks(conf, /\bupstream ops_maintenance\s*\{/)
    expect(up).toHaveLength(1)
    expect([...up[0].matchAll(/^\s*server\s+([^;]+);/gm)].map(m => m[1])).toEqual(['127.0.0.1:8505'])
    const server = blocks(conf, /\bserver\s*\{/).filter(b => /listen 127\.0\.0\.1:8505;/.test(b))
    expect(server).toHaveLength(1)
    expect(server[0]).not.toMatch(/listen\s+(?!127\.0\.0\.1:)/)
    // Every path answers 503, its body the page mode maintenance uploads (upstreams/ is /etc/nginx/ops-upstreams).
    expect(server[0]).toMatch(/location \/ \{\s*return 503;\s*\}/)
    expect(server[0]).toContain('error_page 503 /maintenance.html;')
    const page = blocks(server[0], /location = \/maintenance\.html\s*\{/)
    expect(page).toHaveLength(1)
    expect(MAINTENANCE_PAGE).toBe('upstreams/maintenance.html')
    expect(page[0]).toMatch(/^\s*root \/etc\/nginx\/ops-upstreams;$/m)
    expect(page[0]).toMatch(/^\s*internal;$/m)
    // The error page's headers need `always` (a 503 gets no add_header without it).
    expect(page[0]).toMatch(/^\s*add_header Retry-After \d+ always;$/m)
    expect(page[0]).toMatch(/^\s*add_header Cache-Control "no-store" always;$/m)
    expect(server[0]).not.toContain('proxy_pass')
    expect(server[0]).not.toContain('include routes/')
    expect(bundle.get('nginx/html/maintenance.html')).toMatch(/maintenance/i)
  })
})

describe('deployed upstream', () => {
  const zones = code(file(bundle, 'nginx/conf.d/00-zones.conf'))
  /** Variables the shipped http context defines with `map`. */
  const mapped = new Set(
    [...nginxFiles].flatMap(([, text]) => [...code(text).matchAll(/\bmap\s+\S+\s+\$([a-z0-9_]+)\s*\{/g)].map(m => m[1]))
  )
  const deployed: [string, number][] = [
    ...ROUTED_SERVICES.map((s, i): [string, number] => [upstreamName(s), 8080 + i]),
    ['app_my_svc', 9000]
  ]

  it('its fallback server listens on the backup socket and proxies to the same container:port, looked up per request', () => {
    const sockets = new Set<string>()
    for (const [name, port] of deployed) {
      const conf = upstreamConf(name, port, { container: `${name}-1a2b3c4d`, image: 'x:1' })
      const up = blocks(conf, new RegExp(`\\bupstream ${name}\\s*\\{`))
      expect(up, name).toHaveLength(1)
      const servers = [...up[0].matchAll(/^\s*server\s+([^;]+);/gm)].map(m => m[1].trim().split(/\s+/))
      expect(servers, name).toHaveLength(2)
      // The container by name (resolved by the worker), and the fallback as backup (used only when that one fails).
      const primary = servers.filter(s => s.includes('resolve'))
      const backup = servers.filter(s => s.includes('backup'))
      expect(primary, name).toHaveLength(1)
      expect(backup, name).toHaveLength(1)
      expect(primary[0], name).toEqual([`${name}-1a2b3c4d:${port}`, 'resolve'])
      const target = primary[0][0]
      expect(backup[0][0], name).toMatch(/^unix:\//)
      const socket = backup[0][0].slice('unix:'.length)
      expect(socket, name).toBe(fallbackSocket(name))
      sockets.add(socket)

      // Exactly one server block, listening on nothing but that socket (never a TCP port a client could reach).
      const fb = blocks(conf, /\bserver\s*\{/)
      expect(fb, name).toHaveLength(1)
      expect(
        [...topLevel(fb[0]).matchAll(/^\s*listen\s+([^;]+);/gm)].map(m => m[1].trim()),
        name
      ).toEqual([`unix:${socket}`])
      const loc = blocks(fb[0], /\blocation \/\s*\{/)
      expect(loc, name).toHaveLength(1)

      // proxy_pass through a variable: nginx resolves the name per request with the resolver of nginx.conf,
      // rather than once at startup; the variable is set to the very container:port the resolve server names.
      const passes = [...loc[0].matchAll(/^\s*proxy_pass\s+([^;]+);/gm)].map(m => m[1].trim())
      expect(passes, name).toHaveLength(1)
      const v = /^http:\/\/\$([a-z0-9_]+)$/.exec(passes[0])
      expect(v, `${name}: proxy_pass ${passes[0]}`).not.toBeNull()
      const sets = [...loc[0].matchAll(/^\s*set\s+\$([a-z0-9_]+)\s+([^;\s]+);/gm)].map(m => [m[1], m[2]])
      expect(
        sets.filter(([k]) => k === (v as RegExpExecArray)[1]),
        name
      ).toEqual([[(v as RegExpExecArray)[1], target]])

      // The request reaches the app as the client sent it: its Host, and WebSocket upgrades.
      expect(loc[0], name).toMatch(/^\s*proxy_set_header Host \$http_host;$/m)
      expect(loc[0], name).toMatch(/^\s*proxy_set_header Upgrade \$http_upgrade;$/m)
      expect(loc[0], name).toMatch(/^\s*proxy_set_header Connection \$connection_upgrade;$/m)

      // Every variable it uses is nginx's own ($http_*), set right there, or mapped by the shipped config.
      const own = new Set(sets.map(([k]) => k))
      for (const [, u] of code(fb[0]).matchAll(/\$([a-z0-9_]+)/g)) {
        if (u.startsWith('http_') || own.has(u)) continue
        expect(mapped.has(u), `${name}: $${u} is defined by a map of the shipped config`).toBe(true)
      }
    }
    // No two services listen on the same socket (nginx -t would fail on a duplicate listen).
    expect(sockets.size).toBe(deployed.length)
  })

  it('$connection_upgrade, which the fallback server uses, comes from nginx/conf.d/00-zones.conf, in the same http context as the upstream files', () => {
    expect(zones).toMatch(/map \$http_upgrade \$connection_upgrade \{\s*default upgrade;\s*''\s+close;\s*\}/)
    const main = code(file(bundle, 'nginx/nginx.conf'))
    const http = blocks(main, /\bhttp\s*\{/)
    expect(http).toHaveLength(1)
    // Both in http context, where a server block and a map belong.
    expect(topLevel(http[0])).toContain('include conf.d/*.conf;')
    expect(topLevel(http[0])).toContain('include /etc/nginx/ops-upstreams/*.conf;')
    expect(http[0]).toMatch(/^\s*resolver\s+\S+/m)
  })
})

describe('compose/docker-compose.yml', () => {
  const text = file(bundle, 'compose/docker-compose.yml')
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  const doc = parseYaml(text) as any
  const services = doc.services as Record<string, Record<string, unknown>>

  it('has exactly db, redis, nginx and the front', () => {
    expect(Object.keys(services).sort()).toEqual(['db', 'front', 'nginx', 'redis'])
  })

  it('publishes nothing but the front, on HTTP_PORT / HTTPS_PORT (nginx has no ports: a second one can start beside it)', () => {
    expect(services.db.ports).toBeUndefined()
    expect(services.redis.ports).toBeUndefined()
    expect(services.nginx.ports).toBeUndefined()
    expect(services.db.expose).toBeUndefined()
    const ports = services.front.ports as string[]
    expect(ports).toHaveLength(2)
    expect(ports[0]).toMatch(/^\$\{HTTP_PORT(:-80)?\}:80$/)
    expect(ports[1]).toMatch(/^\$\{HTTPS_PORT(:-443)?\}:443$/)
  })

  it('every service has a healthcheck and joins the internal network', () => {
    for (const [name, s] of Object.entries(services)) {
      const hc = s.healthcheck as { test: string[] }
      expect(hc, name).toBeDefined()
      expect(Array.isArray(hc.test) && hc.test.length > 1, name).toBe(true)
      expect(s.networks, name).toEqual(['internal'])
      expect(s.restart, name).toBe('always')
    }
  })

  it('the internal network is external and named by OPS_NETWORK', () => {
    expect(doc.networks.internal).toEqual({ external: true, name: '${OPS_NETWORK:-internal}' })
  })

  it('db keeps its data in a named volume', () => {
    const vols = services.db.volumes as string[]
    const data = vols.find(v => v.endsWith(':/var/lib/postgresql/data'))
    expect(data).toBeDefined()
    const source = (data as string).split(':')[0]
    expect(source).toMatch(/^[a-z][a-z0-9_-]*$/)
    expect(Object.keys(doc.volumes)).toContain(source)
  })

  it('redis: LRU cache without persistence, password from stdin not argv', () => {
    const command = services.redis.command as string[]
    const script = command.join('\n')
    expect(script).toContain('allkeys-lru')
    expect(script).toContain('--appendonly no')
    expect(script).not.toContain('--requirepass')
    const line = script.split('\n').find(l => /\bredis-server\b/.test(l)) as string
    expect(line).toBeDefined()
    // Arguments of redis-server, up to the heredoc redirection: the last one is "-" (config from stdin).
    const args = line
      .slice(line.indexOf('redis-server'))
      .replace(/\s*<<-?\s*'?EOF'?\s*$/, '')
      .trim()
      .split(/\s+/)
    expect(args[args.length - 1]).toBe('-')
    expect(line).not.toMatch(/REDIS_PASSWORD/)
    expect(script).toMatch(/^requirepass \$\$REDIS_PASSWORD$/m)
    expect(script).toMatch(/^EOF$/m)
  })

  it('images are pinned and overridable', () => {
    const expected: Record<string, string> = { db: 'POSTGRES_IMAGE', redis: 'REDIS_IMAGE', nginx: 'NGINX_IMAGE', front: 'FRONT_IMAGE' }
    for (const [name, variable] of Object.entries(expected)) {
      const image = services[name].image as string
      expect(image.startsWith(`\${${variable}:-`), name).toBe(true)
      const dflt = /^\$\{[A-Z_]+:-([^}]+)\}$/.exec(image)?.[1] as string
      expect(dflt, name).toBeDefined()
      const tag = dflt.includes('@') ? dflt.split('@')[1] : dflt.slice(dflt.lastIndexOf(':') + 1)
      expect(dflt.includes(':') || dflt.includes('@'), name).toBe(true)
      expect(tag, name).not.toBe('latest')
      expect(tag, name).toMatch(/\d/)
    }
  })

  it('nginx mounts the config, upstreams and /etc/letsencrypt read-only', () => {
    const vols = services.nginx.volumes as string[]
    expect(vols).toContain('/etc/letsencrypt:/etc/letsencrypt:ro')
    expect(vols).toContain('../nginx:/etc/nginx/ops:ro')
    expect(vols).toContain('../upstreams:/etc/nginx/ops-upstreams:ro')
    for (const v of vols) expect(v.endsWith(':ro'), v).toBe(true)
    expect(services.nginx.command).toEqual(['nginx', '-c', '/etc/nginx/ops/nginx.conf', '-g', 'daemon off;'])
  })

  it('nginx stops gracefully (SIGQUIT) within its grace period; the front is created after it and runs its own config', () => {
    expect(services.nginx.stop_signal).toBe('SIGQUIT')
    expect(services.nginx.stop_grace_period).toBe('40s')
    expect(services.front.stop_signal).toBe('SIGQUIT')
    expect(services.front.depends_on).toEqual(['nginx'])
    expect(services.front.command).toEqual(['nginx', '-c', '/etc/nginx/ops/front/nginx.conf', '-g', 'daemon off;'])
    const vols = services.front.volumes as string[]
    expect(vols).toContain('../nginx:/etc/nginx/ops:ro')
    expect(vols).toContain('../upstreams:/etc/nginx/ops-upstreams:ro')
    for (const v of vols) expect(v.endsWith(':ro'), v).toBe(true)
  })
})

describe('the front (nginx/front/nginx.conf)', () => {
  const front = code(file(bundle, 'nginx/front/nginx.conf'))
  const main = code(file(bundle, 'nginx/nginx.conf'))
  const stream = blocks(front, /\bstream\s*\{/)

  it('is a stream relay with PROXY protocol, and no http context', () => {
    expect(stream).toHaveLength(1)
    expect(front).not.toMatch(/\bhttp\s*\{/)
    expect(topLevel(stream[0])).toMatch(/^\s*proxy_protocol on;/m)
    expect(topLevel(stream[0])).toMatch(/^\s*resolver 127\.0\.0\.11 /m)
    expect(front).toMatch(/^\s*pid \/tmp\/nginx\.pid;/m)
  })

  it("listens on 80 and 443 and relays them to nginx's PROXY protocol ports of the container upstreams/nginx.stream names", () => {
    expect(topLevel(stream[0])).toContain('include /etc/nginx/ops-upstreams/nginx.stream;')
    for (const target of ['nginx', 'behindy-nginx-2']) {
      expect(frontRelays(front, frontUpstream(target)), target).toEqual({
        80: `${target}:${FRONT_PORTS.http}`,
        443: `${target}:${FRONT_PORTS.https}`
      })
    }
  })

  it("nginx's http config never includes the front's files", () => {
    expect(main).not.toMatch(/include\s+[^;]*front\//)
    expect(main).not.toMatch(/include\s+[^;]*\.stream;/)
  })
})

describe('planFiles', () => {
  const wanted: FileSet = new Map([
    ['a.conf', 'same'],
    ['b.conf', 'new content'],
    ['c.conf', 'brand new']
  ])

  it('writes new and changed files, removes files dropped from the manifest', () => {
    const onHost = new Map([
      ['a.conf', sha256('same')],
      ['b.conf', sha256('old content')],
      ['old.conf', sha256('x')],
      ['users-own.conf', sha256('y')]
    ])
    const plan = planFiles(wanted, onHost, ['a.conf', 'b.conf', 'old.conf', 'gone-already.conf'])
    expect(plan.write).toEqual(['b.conf', 'c.conf'])
    expect(plan.remove).toEqual(['old.conf'])
    expect(plan.unchanged).toBe(1)
  })

  it('nothing to do when the host has the same files', () => {
    const onHost = new Map([...wanted].map(([p, c]) => [p, sha256(c)]))
    expect(planFiles(wanted, onHost, [...wanted.keys()])).toEqual({ write: [], remove: [], unchanged: 3 })
  })

  it('removes files nobody shipped from compose/ and nginx/ (hand edits, stray files), never from elsewhere', () => {
    const files: FileSet = new Map([
      ['nginx/conf.d/00-zones.conf', 'x'],
      ['compose/docker-compose.yml', 'y']
    ])
    const host = new Map([
      ['nginx/conf.d/00-zones.conf', sha256('x')],
      ['compose/docker-compose.yml', sha256('y')],
      ['nginx/conf.d/zz-stray.conf', sha256('broken')],
      ['compose/docker-compose.override.yml', sha256('z')],
      ['upstreams/app_my-svc.locations', sha256('custom service')]
    ])
    expect(planFiles(files, host, [...files.keys()]).remove.sort()).toEqual([
      'compose/docker-compose.override.yml',
      'nginx/conf.d/zz-stray.conf'
    ])
  })

  it('empty host: everything is written', () => {
    expect(planFiles(wanted, new Map(), [])).toEqual({ write: ['a.conf', 'b.conf', 'c.conf'], remove: [], unchanged: 0 })
  })

  it('sha256 is the hex digest sha256sum prints', () => {
    expect(sha256('')).toBe('e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855')
    expect(sha256('abc\n')).toBe('edeaaff3f1774ad2888673770c6d64097e391bc362d7d6fb34982ddf0efd18cb')
  })
})
