import { describe, expect, it } from 'vitest'
import { canaryPaths } from '../../src/canary'
import { maintenancePath, SITE_WIDE } from '../../src/maintenance'
import {
  customServiceFiles,
  fallbackSocket,
  liveOf,
  migrateUpstreamFile,
  parseUpstreamFiles,
  placeholderUpstream,
  splitFiles,
  stateIncludes,
  upstreamConf,
  upstreamName,
  upstreamPath,
  upstreamVar
} from '../../src/upstream'

describe('upstream files', () => {
  it('upstreamConf and liveOf round-trip', () => {
    const live = { container: 'backend-1a2b3c4d', image: 'ghcr.io/behindy/back:abc' }
    const conf = upstreamConf('app_backend', 8080, live)
    // An upstream block naming the container (resolved by nginx itself through docker's DNS), never an address that
    // may change, with its connections kept alive (closed by nginx before the app's own 5 s idle timeout), and the
    // service's fallback server as backup (for a worker that has not resolved the container yet).
    expect(conf).toMatch(
      /^upstream app_backend \{\n\s*zone app_backend 64k;\n\s*server backend-1a2b3c4d:8080 resolve;\n\s*server unix:\/tmp\/ops-app_backend\.sock backup;\n\s*keepalive 32;\n\s*keepalive_timeout 4s;\n\}$/m
    )
    expect(fallbackSocket('app_backend')).toBe('/tmp/ops-app_backend.sock')
    // Then the fallback server itself, which looks the container up per request.
    expect(conf).toMatch(
      /^\}\nserver \{\n\s*listen unix:\/tmp\/ops-app_backend\.sock;\n\s*access_log off;\n\s*gzip off;\n\s*location \/ \{\n\s*set \$ops_target backend-1a2b3c4d:8080;\n\s*proxy_pass http:\/\/\$ops_target;\n\s*proxy_set_header Host \$http_host;\n\s*proxy_set_header Upgrade \$http_upgrade;\n\s*proxy_set_header Connection \$connection_upgrade;\n\s*proxy_buffering off;\n\s*proxy_read_timeout 7d;\n\s*proxy_send_timeout 7d;\n\s*\}\n\}\n$/m
    )
    expect(conf.split('\n').slice(0, 2)).toEqual([
      '# ops-action: app_backend -> container backend-1a2b3c4d (ghcr.io/behindy/back:abc)',
      `# live: ${JSON.stringify(live)}`
    ])
    expect(conf).not.toMatch(/^map /m)
    expect(conf.endsWith('\n')).toBe(true)
    expect(liveOf(conf)).toEqual(live)
  })

  it('the digest the container runs travels in the live line; a file of an earlier release has none', () => {
    const live = {
      container: 'backend-1a2b3c4d',
      image: 'ghcr.io/behindy/back:main',
      digest: `ghcr.io/behindy/back@sha256:${'a'.repeat(64)}`
    }
    const conf = upstreamConf('app_backend', 8080, live)
    expect(conf.split('\n')[1]).toBe(`# live: ${JSON.stringify(live)}`)
    expect(liveOf(conf)).toEqual(live)
    expect(liveOf(upstreamConf('app_backend', 8080, { container: 'backend-1a2b3c4d', image: 'b:1' }))?.digest).toBeUndefined()
  })

  it('placeholderUpstream: an upstream block of the local 503 server, without keepalive', () => {
    const p = placeholderUpstream('my-svc')
    expect(p).toMatch(/^upstream app_my_svc \{\n\s*zone app_my_svc 64k;\n\s*server 127\.0\.0\.1:8503;\n\}$/m)
    expect(p).not.toContain('keepalive')
    expect(p).not.toContain('resolve')
    // No fallback server either: there is no container to look up.
    expect(p).not.toContain('backup')
    expect(p).not.toContain('unix:')
    expect(p).not.toMatch(/^server\s*\{/m)
    expect(p.endsWith('\n')).toBe(true)
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
    // The name of the upstream block (proxy_pass http://$up_my_svc picks it), not a variable.
    expect(vars).toMatch(/^\s*default\s+app_my_svc;/m)
    expect(vars).not.toContain('$app_')
    const loc = byPath.get('upstreams/app_my-svc.locations') as string
    expect(loc).toMatch(/location \/things\/ \{/)
    expect(loc).toContain('proxy_pass http://$up_my_svc;')
    expect(loc).toContain('include snippets/proxy.conf;')
    expect(byPath.get('upstreams/app_my-svc.conf')).toBe(placeholderUpstream('my-svc'))

    // The maintenance and canary includes of the shipped maps (05-upstream-vars.conf), after the preview port's line.
    expect(vars).toBe(
      [
        'map $server_port $up_my_svc {',
        '    8504    $http_x_ops_upstream;',
        '    include /etc/nginx/ops-upstreams/my-svc.maintenance.ma[p];',
        '    include /etc/nginx/ops-upstreams/all.maintenance.ma[p];',
        '    include /etc/nginx/ops-upstreams/my-svc.canary.ma[p];',
        '    default app_my_svc;',
        '}',
        ''
      ].join('\n')
    )
    const withLive = customServiceFiles('my-svc', '/things/', true)
    expect(withLive.map(f => f.path).sort()).toEqual(['upstreams/app_my-svc.locations', 'upstreams/app_my-svc_vars.conf'])
  })
})

describe('parseUpstreamFiles', () => {
  it('maps each service to the container its upstream file names; placeholders name none', () => {
    const out = [
      '@@file app_backend.conf',
      upstreamConf('app_backend', 8080, { container: 'backend-1a2b3c4d', image: 'ghcr.io/b/back:1' }),
      '@@file app_frontend.conf',
      placeholderUpstream('frontend'),
      '@@file app_my-svc.conf',
      upstreamConf('app_my_svc', 9000, { container: 'my-svc-00ff00ff', image: 'x/y:z' }),
      // A custom service's other files are not upstreams, even one that says `# live:`.
      '@@file app_my-svc_vars.conf',
      customServiceFiles('my-svc', '/things/', true)[0].content,
      '@@file app_my-svc.locations',
      customServiceFiles('my-svc', '/things/', true)[1].content,
      '@@file app_other_vars.conf',
      upstreamConf('app_other', 9000, { container: 'other-1', image: 'o:1' })
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

describe('splitFiles', () => {
  it('file name -> content, for every file upstreamFiles() prints', () => {
    const files = splitFiles(
      [
        '@@file app_frontend.conf',
        'upstream app_frontend {',
        '}',
        '',
        '@@file app_x_vars.conf',
        'map $server_port $up_x {}',
        '',
        '@@file app_x.locations',
        'location /x/ {}',
        ''
      ].join('\n')
    )
    expect([...files.keys()]).toEqual(['app_frontend.conf', 'app_x_vars.conf', 'app_x.locations'])
    expect(files.get('app_frontend.conf')).toBe('upstream app_frontend {\n}\n\n')
    expect(files.get('app_x_vars.conf')).toBe('map $server_port $up_x {}\n\n')
    expect(files.get('app_x.locations')).toBe('location /x/ {}\n')
  })

  it('a file with no content, and nothing before the first @@file; no output, no files', () => {
    expect([...splitFiles('stray\n@@file empty.conf')]).toEqual([['empty.conf', '']])
    expect([...splitFiles('@@file a.conf\n@@file b.conf\nb\n')]).toEqual([
      ['a.conf', ''],
      ['b.conf', 'b\n']
    ])
    expect(splitFiles('').size).toBe(0)
  })
})

describe('migrateUpstreamFile', () => {
  // Files as ops-action wrote them before upstream blocks: `map "" $app_<svc> { default host:port; }`.
  const legacyLive = (svc: string, container: string, image: string, port: number): string =>
    [
      `# ops-action: app_${svc} -> container ${container} (${image})`,
      `# live: ${JSON.stringify({ container, image })}`,
      `map "" $app_${svc} {`,
      `    default ${container}:${port};`,
      '}',
      ''
    ].join('\n')
  const legacyPlaceholder = (svc: string): string =>
    [
      `# ${svc} is not deployed yet: nginx answers 503 for its route. A deploy of ${svc} replaces this file.`,
      `map "" $app_${svc} {`,
      '    default 127.0.0.1:8503;',
      '}',
      ''
    ].join('\n')

  it('a legacy live file: the upstream block of the same container and port, still read by liveOf', () => {
    const live = { container: 'backend-1a2b3c4d', image: 'ghcr.io/behindy/back:abc' }
    const migrated = migrateUpstreamFile('app_backend.conf', legacyLive('backend', live.container, live.image, 8080))
    expect(migrated).toBe(upstreamConf('app_backend', 8080, live))
    expect(migrated).toMatch(/^\s*server backend-1a2b3c4d:8080 resolve;$/m)
    expect(migrated).toMatch(/^\s*server unix:\/tmp\/ops-app_backend\.sock backup;$/m)
    expect(liveOf(migrated as string)).toEqual(live)
    expect(parseUpstreamFiles(`@@file app_backend.conf\n${migrated}`).get('backend')).toEqual(live)
  })

  it('a legacy live file of a custom service: the block is named with _ and the file keeps its name', () => {
    const live = { container: 'my-svc-00ff00ff', image: 'x/y:z' }
    const migrated = migrateUpstreamFile('app_my-svc.conf', legacyLive('my_svc', live.container, live.image, 9000))
    expect(migrated).toBe(upstreamConf('app_my_svc', 9000, live))
  })

  it('the output upstreamFiles() gives (an extra blank line at the end) migrates the same', () => {
    const live = { container: 'story-0a0b0c0d', image: 'st:1' }
    const out = `@@file app_story.conf\n${legacyLive('story', live.container, live.image, 8000)}\n@@file app_frontend.conf\n${legacyPlaceholder('frontend')}\n`
    const files = splitFiles(out)
    expect(migrateUpstreamFile('app_story.conf', files.get('app_story.conf') as string)).toBe(upstreamConf('app_story', 8000, live))
    expect(migrateUpstreamFile('app_frontend.conf', files.get('app_frontend.conf') as string)).toBe(placeholderUpstream('frontend'))
  })

  it('a legacy placeholder, or a legacy file naming no live container: the placeholder block', () => {
    expect(migrateUpstreamFile('app_frontend.conf', legacyPlaceholder('frontend'))).toBe(placeholderUpstream('frontend'))
    expect(migrateUpstreamFile('app_my-svc.conf', legacyPlaceholder('my_svc'))).toBe(placeholderUpstream('my-svc'))
    // A `# live:` comment that is not readable: no container to keep.
    const broken = legacyLive('backend', 'backend-1', 'b:1', 8080).replace(/^# live: .*$/m, '# live: {not json}')
    expect(migrateUpstreamFile('app_backend.conf', broken)).toBe(placeholderUpstream('backend'))
  })

  it('a current file (live or placeholder) is left alone', () => {
    expect(
      migrateUpstreamFile('app_backend.conf', upstreamConf('app_backend', 8080, { container: 'backend-1', image: 'b:1' }))
    ).toBeUndefined()
    expect(migrateUpstreamFile('app_frontend.conf', placeholderUpstream('frontend'))).toBeUndefined()
    expect(migrateUpstreamFile('app_my-svc.conf', placeholderUpstream('my-svc'))).toBeUndefined()
  })

  it('a legacy vars file: its default names the upstream block instead of the old variable', () => {
    const legacy = 'map $server_port $up_my_svc {\n    8504    $http_x_ops_upstream;\n    default $app_my_svc;\n}\n'
    const fixed = migrateUpstreamFile('app_my-svc_vars.conf', legacy)
    expect(fixed).toBe(customServiceFiles('my-svc', '/things/', true)[0].content)
    expect(fixed).toMatch(/^\s*default app_my_svc;$/m)
    expect(fixed).toMatch(/^\s*8504\s+\$http_x_ops_upstream;$/m)
    // Already fixed: nothing to do.
    expect(migrateUpstreamFile('app_my-svc_vars.conf', fixed as string)).toBeUndefined()
  })

  it('stateIncludes: the files of maintenancePath and canaryPaths as nginx sees them, each pattern ending in [p]', () => {
    expect(stateIncludes('backend')).toEqual([
      `    include /etc/nginx/ops-upstreams/${maintenancePath('backend')
        .replace(/^upstreams\//, '')
        .replace(/p$/, '[p]')};`,
      `    include /etc/nginx/ops-upstreams/${maintenancePath(SITE_WIDE)
        .replace(/^upstreams\//, '')
        .replace(/p$/, '[p]')};`,
      `    include /etc/nginx/ops-upstreams/${canaryPaths('backend')[1]
        .replace(/^upstreams\//, '')
        .replace(/p$/, '[p]')};`
    ])
  })

  it("a custom service's vars file from before maintenance and canaries gets their includes; a current one is left alone", () => {
    const before = 'map $server_port $up_my_svc {\n    8504    $http_x_ops_upstream;\n    default app_my_svc;\n}\n'
    const fixed = migrateUpstreamFile('app_my-svc_vars.conf', before)
    expect(fixed).toBe(customServiceFiles('my-svc', '/things/', true)[0].content)
    const lines = (fixed as string).split('\n')
    expect(lines.slice(1, 5)).toEqual(['    8504    $http_x_ops_upstream;', ...stateIncludes('my-svc')])
    expect(migrateUpstreamFile('app_my-svc_vars.conf', customServiceFiles('my-svc', '/things/', false)[0].content)).toBeUndefined()
    expect(migrateUpstreamFile('app_my-svc_vars.conf', fixed as string)).toBeUndefined()
  })

  it('a vars file without the preview line (not as ops-action writes it) gets no includes', () => {
    const hand = 'map $server_port $up_x {\n    default app_x;\n}\n'
    expect(migrateUpstreamFile('app_x_vars.conf', hand)).toBeUndefined()
  })

  it('other files (locations, files ops-action does not write) are left alone', () => {
    const loc = customServiceFiles('my-svc', '/things/', true)[1]
    expect(migrateUpstreamFile('app_my-svc.locations', loc.content)).toBeUndefined()
    expect(migrateUpstreamFile('README', legacyPlaceholder('frontend'))).toBeUndefined()
    expect(migrateUpstreamFile('extra.conf', legacyPlaceholder('frontend'))).toBeUndefined()
    expect(migrateUpstreamFile('app_Frontend.conf', legacyPlaceholder('frontend'))).toBeUndefined()
  })
})
