import { describe, expect, it } from 'vitest'
import {
  customServiceFiles,
  liveOf,
  parseUpstreamFiles,
  placeholderUpstream,
  upstreamConf,
  upstreamName,
  upstreamPath,
  upstreamVar
} from '../../src/upstream'

describe('upstream files', () => {
  it('upstreamConf and liveOf round-trip', () => {
    const live = { container: 'backend-1a2b3c4d', image: 'ghcr.io/behindy/back:abc' }
    const conf = upstreamConf('app_backend', 8080, live)
    // The container by name (resolved by nginx per request through docker's DNS), never an address that may change.
    expect(conf).toMatch(/^map "" \$app_backend \{\s*default backend-1a2b3c4d:8080;\s*\}$/m)
    expect(conf.endsWith('\n')).toBe(true)
    expect(liveOf(conf)).toEqual(live)
  })

  it('liveOf of the 503 placeholder, garbage or an empty file is undefined', () => {
    expect(liveOf(placeholderUpstream('backend'))).toBeUndefined()
    expect(liveOf('')).toBeUndefined()
    expect(liveOf('# live: {not json}\n')).toBeUndefined()
    expect(liveOf('# live: {"container":1,"image":"x"}\n')).toBeUndefined()
  })

  it('upstreamVar and upstreamName replace - by _; the file keeps the service name', () => {
    expect(upstreamVar('my-svc')).toBe('$up_my_svc')
    expect(upstreamVar('backend')).toBe('$up_backend')
    expect(upstreamName('my-svc')).toBe('app_my_svc')
    expect(upstreamPath('my-svc')).toBe('upstreams/app_my-svc.conf')
  })

  it('customServiceFiles: map, location through the variable, and a placeholder only when nothing is live', () => {
    const files = customServiceFiles('my-svc', '/things/', false)
    const byPath = new Map(files.map(f => [f.path, f.content]))
    expect([...byPath.keys()].sort()).toEqual([
      'upstreams/app_my-svc.conf',
      'upstreams/app_my-svc.locations',
      'upstreams/app_my-svc_vars.conf'
    ])
    const vars = byPath.get('upstreams/app_my-svc_vars.conf') as string
    expect(vars).toMatch(/map \$server_port \$up_my_svc \{/)
    expect(vars).toMatch(/^\s*8504\s+\$http_x_ops_upstream;/m)
    expect(vars).toMatch(/^\s*default\s+\$app_my_svc;/m)
    const loc = byPath.get('upstreams/app_my-svc.locations') as string
    expect(loc).toMatch(/location \/things\/ \{/)
    expect(loc).toContain('proxy_pass http://$up_my_svc;')
    expect(loc).toContain('include snippets/proxy.conf;')
    expect(byPath.get('upstreams/app_my-svc.conf')).toBe(placeholderUpstream('my-svc'))

    const withLive = customServiceFiles('my-svc', '/things/', true)
    expect(withLive.map(f => f.path).sort()).toEqual(['upstreams/app_my-svc.locations', 'upstreams/app_my-svc_vars.conf'])
  })
})

describe('parseUpstreamFiles', () => {
  it('maps each service to the container its upstream file names; placeholders name none', () => {
    const out = [
      '@@file backend',
      upstreamConf('app_backend', 8080, { container: 'backend-1a2b3c4d', image: 'ghcr.io/b/back:1' }),
      '@@file frontend',
      placeholderUpstream('frontend'),
      '@@file my-svc',
      upstreamConf('app_my_svc', 9000, { container: 'my-svc-00ff00ff', image: 'x/y:z' })
    ].join('\n')
    const live = parseUpstreamFiles(out)
    expect([...live.keys()]).toEqual(['backend', 'my-svc'])
    expect(live.get('backend')).toEqual({ container: 'backend-1a2b3c4d', image: 'ghcr.io/b/back:1' })
    expect(live.get('my-svc')).toEqual({ container: 'my-svc-00ff00ff', image: 'x/y:z' })
  })

  it('an empty upstreams dir: nothing deployed', () => {
    expect(parseUpstreamFiles('').size).toBe(0)
  })
})
