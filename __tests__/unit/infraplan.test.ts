import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { InputErrors } from '../../src/errors'
import { frontTarget, frontUpstream } from '../../src/front'
import { checkStackEnv, planInfra, touched } from '../../src/infraplan'
import type { InfraInputs } from '../../src/inputs'
import { loadBundle, renderStack, ROUTED_SERVICES, sha256 } from '../../src/stackfiles'
import { customServiceFiles, liveOf, placeholderUpstream, upstreamConf } from '../../src/upstream'
import { captureStdout, hostState, stackInfo } from './helpers'

const bundle = loadBundle(join(__dirname, '..', '..'))
const stdout = captureStdout()

describe('planInfra', () => {
  const fullEnv: Array<[string, string]> = [
    ['DB_USER', 'behindy'],
    ['DB_PASS', 'db-s3cret'],
    ['DB_NAME', 'behindy'],
    ['REDIS_PASSWORD', 'r3dis-s3cret']
  ]

  const behindyMe = { domain: 'behindy.me', httpPort: 80, httpsPort: 443 }

  function inputs(over: Partial<InfraInputs> = {}): InfraInputs {
    return {
      opsDir: '/opt/behindy-ops',
      network: 'internal',
      settings: {},
      infraEnv: fullEnv,
      infraTimeoutS: 120,
      backups: { keep: 7, beforeInfra: true },
      ...over
    }
  }

  const host = hostState

  function errorsOf(fn: () => unknown): InputErrors {
    try {
      fn()
    } catch (e) {
      expect(e).toBeInstanceOf(InputErrors)
      return e as InputErrors
    }
    throw new Error('expected InputErrors')
  }

  it('missing DB_PASS and REDIS_PASSWORD: one InputErrors naming both', () => {
    const err = errorsOf(() =>
      planInfra(
        inputs({
          infraEnv: [
            ['DB_USER', 'u'],
            ['DB_NAME', 'n']
          ]
        }),
        host(),
        bundle
      )
    )
    expect(err.message).toContain("Input 'infra-env'")
    expect(err.message).toContain('DB_PASS')
    expect(err.message).toContain('REDIS_PASSWORD')
    expect(err.message).not.toContain('DB_USER')
    expect(err.message).toContain('nothing was changed')
  })

  it('variables already in the host .env count', () => {
    const plan = planInfra(
      inputs({
        infraEnv: [
          ['DB_USER', 'u'],
          ['DB_NAME', 'n']
        ]
      }),
      host({ envText: "# host secrets\nDB_PASS='p w'\nREDIS_PASSWORD=abcdef\n" }),
      bundle
    )
    expect(plan.envText).toContain("DB_PASS='p w'")
    expect(plan.envText.startsWith('# host secrets\n')).toBe(true)
    expect(plan.envChangedKeys).toEqual(['DB_USER', 'DB_NAME', 'HTTP_PORT', 'HTTPS_PORT', 'DOMAIN', 'OPS_NETWORK'])
  })

  it.each(['with space', 'quo"te', "quo'te", 'back\\slash'])('REDIS_PASSWORD %j is rejected', pw => {
    const env: Array<[string, string]> = [...fullEnv.filter(([k]) => k !== 'REDIS_PASSWORD'), ['REDIS_PASSWORD', pw]]
    let err: unknown
    try {
      planInfra(inputs({ infraEnv: env }), host(), bundle)
    } catch (e) {
      err = e
    }
    // A value mixing ' with other specials is refused earlier (by envLine) — still an infra-env input error.
    expect((err as Error).message).toMatch(/Input 'infra-env'/)
    if (!pw.includes("'")) {
      expect(err).toBeInstanceOf(InputErrors)
      expect((err as Error).message).toContain('REDIS_PASSWORD must not contain')
    }
  })

  it('checkStackEnv reports missing variables and a bad REDIS_PASSWORD together', () => {
    const err = errorsOf(() => checkStackEnv(new Map([['REDIS_PASSWORD', 'a b']])))
    expect(err.errors).toHaveLength(2)
    expect(err.message).toContain('DB_USER, DB_PASS, DB_NAME')
    expect(err.message).toContain('REDIS_PASSWORD must not contain')
    expect(() => checkStackEnv(new Map(fullEnv))).not.toThrow()
  })

  it('first run writes everything, with the placeholder upstreams and the manifest', () => {
    const plan = planInfra(inputs(), host(), bundle)
    const rendered = renderStack(bundle, { domain: '', tls: false })
    for (const p of rendered.keys()) expect(plan.write).toContain(p)
    for (const s of ROUTED_SERVICES) {
      expect(plan.write).toContain(`upstreams/app_${s}.conf`)
      expect(plan.files.get(`upstreams/app_${s}.conf`)).toBe(placeholderUpstream(s))
      expect(placeholderUpstream(s)).toMatch(
        new RegExp(`^upstream app_${s} \\{\\s*zone app_${s} 64k;\\s*server 127\\.0\\.0\\.1:8503;`, 'm')
      )
    }
    expect(plan.write).toContain('.ops-manifest')
    const manifest = (plan.files.get('.ops-manifest') as string).split('\n').filter(Boolean)
    expect(manifest).toEqual([...rendered.keys()])
    expect(manifest.some(p => p.startsWith('upstreams/'))).toBe(false)
    expect(plan.remove).toEqual([])
    expect(plan.nginxChanged).toBe(true)
    expect(plan.envText).toBe(
      'DB_USER=behindy\nDB_PASS=db-s3cret\nDB_NAME=behindy\nREDIS_PASSWORD=r3dis-s3cret\nHTTP_PORT=80\nHTTPS_PORT=443\nDOMAIN=\nOPS_NETWORK=internal\n'
    )
  })

  it('never overwrites an existing upstream file, even with different content', () => {
    const plan = planInfra(
      inputs(),
      host({ hashes: new Map([['upstreams/app_backend.conf', sha256('upstream app_backend { server 10.0.0.5:8080; }')]]) }),
      bundle
    )
    expect(plan.write).not.toContain('upstreams/app_backend.conf')
    expect(plan.files.has('upstreams/app_backend.conf')).toBe(false)
    expect(plan.remove).not.toContain('upstreams/app_backend.conf')
    expect(plan.write).toContain('upstreams/app_frontend.conf')
    expect(plan.write).toContain('upstreams/app_story.conf')
  })

  it('rewrites an upstream file of an older ops-action in today’s format (same container), and leaves current ones alone', () => {
    const first = planInfra(inputs(), host(), bundle)
    const live = { container: 'frontend-1a2b3c4d', image: 'ghcr.io/behindy/front:abc' }
    const legacy = [
      `# ops-action: app_frontend -> container ${live.container} (${live.image})`,
      `# live: ${JSON.stringify(live)}`,
      'map "" $app_frontend {',
      `    default ${live.container}:3000;`,
      '}',
      ''
    ].join('\n')
    const current = upstreamConf('app_backend', 8080, { container: 'backend-11112222', image: 'bk:1' })
    // A settled host (the first run's files), whose frontend was deployed by an older ops-action.
    const hashes = new Map([...first.files].map(([p, c]) => [p, sha256(c)]))
    hashes.set('upstreams/app_frontend.conf', sha256(legacy))
    hashes.set('upstreams/app_backend.conf', sha256(current))
    const manifest = (first.files.get('.ops-manifest') as string).split('\n').filter(Boolean)
    const upstreams = new Map([
      ['app_frontend.conf', `${legacy}\n`],
      ['app_backend.conf', `${current}\n`],
      ['app_story.conf', placeholderUpstream('story')]
    ])
    const plan = planInfra(inputs(), host({ hashes, manifest, envText: first.envText, upstreams }), bundle)
    expect(plan.write).toEqual(['upstreams/app_frontend.conf'])
    const migrated = plan.files.get('upstreams/app_frontend.conf') as string
    expect(migrated).toBe(upstreamConf('app_frontend', 3000, live))
    expect(migrated).toMatch(
      /^upstream app_frontend \{\s*zone app_frontend 64k;\s*server frontend-1a2b3c4d:3000 resolve;\s*server unix:\/tmp\/ops-app_frontend\.sock backup;/m
    )
    expect(migrated).toMatch(/^\s*listen unix:\/tmp\/ops-app_frontend\.sock;$/m)
    // Still the same container for status, restart and rollback.
    expect(liveOf(migrated)).toEqual(live)
    expect(plan.files.has('upstreams/app_backend.conf')).toBe(false)
    expect(plan.files.has('upstreams/app_story.conf')).toBe(false)
    expect(plan.remove).toEqual([])
    expect(plan.nginxChanged).toBe(true)
    expect(plan.notes).toContain('  update upstreams/app_frontend.conf')
    // Not a file of the stack: it stays out of the manifest, so a later run never removes it.
    expect(plan.files.get('.ops-manifest')).toBe(first.files.get('.ops-manifest'))
    // Migrated once: against its result, nothing more to write.
    hashes.set('upstreams/app_frontend.conf', sha256(migrated))
    upstreams.set('app_frontend.conf', `${migrated}\n`)
    const again = planInfra(inputs(), host({ hashes, manifest, envText: first.envText, upstreams }), bundle)
    expect(again.write).toEqual([])
    expect(again.nginxChanged).toBe(false)
  })

  it('rewrites a legacy placeholder and a custom service’s legacy map; other files of upstreams/ are left alone', () => {
    const first = planInfra(inputs(), host(), bundle)
    const hashes = new Map([...first.files].map(([p, c]) => [p, sha256(c)]))
    const manifest = (first.files.get('.ops-manifest') as string).split('\n').filter(Boolean)
    // As ops-action wrote it before upstream blocks.
    const legacyPlaceholder =
      '# story is not deployed yet: nginx answers 503 for its route. A deploy of story replaces this file.\nmap "" $app_story {\n    default 127.0.0.1:8503;\n}\n'
    // Hand-written, in no format of ops-action's: left alone.
    const handWritten = 'map "" $app_backend {\n    default 10.0.0.5:8080;\n}\n'
    const [vars, locations] = customServiceFiles('my-svc', '/things/', true)
    const legacyVars = vars.content.replace('default app_my_svc;', 'default $app_my_svc;')
    const upstreams = new Map([
      ['app_story.conf', legacyPlaceholder],
      ['app_backend.conf', handWritten],
      ['app_my-svc_vars.conf', legacyVars],
      ['app_my-svc.locations', locations.content]
    ])
    for (const [name, content] of upstreams) hashes.set(`upstreams/${name}`, sha256(content))
    const plan = planInfra(inputs(), host({ hashes, manifest, envText: first.envText, upstreams }), bundle)
    expect(plan.write.sort()).toEqual(['upstreams/app_my-svc_vars.conf', 'upstreams/app_story.conf'])
    expect(plan.files.get('upstreams/app_story.conf')).toBe(placeholderUpstream('story'))
    expect(plan.files.get('upstreams/app_my-svc_vars.conf')).toBe(vars.content)
    expect(plan.files.has('upstreams/app_my-svc.locations')).toBe(false)
    // A custom service's files are its deploys': never removed by infra.
    expect(plan.remove).toEqual([])
    expect(plan.nginxChanged).toBe(true)
  })

  it('a second run against the first run’s result writes nothing', () => {
    const first = planInfra(inputs(), host({ tls: true, settings: behindyMe }), bundle)
    const hashes = new Map([...first.files].map(([p, c]) => [p, sha256(c)]))
    const manifest = (first.files.get('.ops-manifest') as string).split('\n').filter(Boolean)
    const second = planInfra(inputs(), host({ tls: true, settings: behindyMe, hashes, manifest, envText: first.envText }), bundle)
    expect(second.write).toEqual([])
    expect(second.remove).toEqual([])
    expect(second.envChangedKeys).toEqual([])
    expect(second.envText).toBe(first.envText)
    expect(second.nginxChanged).toBe(false)
    expect(second.frontChanged).toBe(false)
    // Placeholders (each routed service's upstream, the front's nginx.stream) are written only when missing: not counted.
    expect(second.unchanged).toBe(first.files.size - ROUTED_SERVICES.length - 1)
  })

  it('a certificate appearing rewrites only the servers file (and reloads nginx)', () => {
    const first = planInfra(inputs(), host({ tls: false, settings: behindyMe }), bundle)
    const hashes = new Map([...first.files].map(([p, c]) => [p, sha256(c)]))
    const manifest = (first.files.get('.ops-manifest') as string).split('\n').filter(Boolean)
    const second = planInfra(
      inputs(),
      host({ tls: true, certHash: 'c'.repeat(64), settings: behindyMe, hashes, manifest, envText: first.envText }),
      bundle
    )
    expect(second.write).toEqual(['nginx/conf.d/20-servers.conf', '.ops-certificate', '.ops-manifest'])
    expect(second.files.get('.ops-certificate')).toBe(`${'c'.repeat(64)}\n`)
    expect(second.nginxChanged).toBe(true)
  })

  it('a renewed certificate (same domain, new files) changes only .ops-certificate, and nginx reloads', () => {
    const first = planInfra(inputs(), host({ tls: true, certHash: 'a'.repeat(64), settings: behindyMe }), bundle)
    const hashes = new Map([...first.files].map(([p, c]) => [p, sha256(c)]))
    const manifest = (first.files.get('.ops-manifest') as string).split('\n').filter(Boolean)
    const same = planInfra(
      inputs(),
      host({ tls: true, certHash: 'a'.repeat(64), settings: behindyMe, hashes, manifest, envText: first.envText }),
      bundle
    )
    expect(same.write).toEqual([])
    expect(same.nginxChanged).toBe(false)
    const renewed = planInfra(
      inputs(),
      host({ tls: true, certHash: 'b'.repeat(64), settings: behindyMe, hashes, manifest, envText: first.envText }),
      bundle
    )
    expect(renewed.write).toEqual(['.ops-certificate'])
    expect(renewed.nginxChanged).toBe(true)
  })

  it('a file the previous run shipped but this one does not is removed', () => {
    const first = planInfra(inputs(), host(), bundle)
    const hashes = new Map([...first.files].map(([p, c]) => [p, sha256(c)]))
    hashes.set('nginx/conf.d/99-old.conf', sha256('old'))
    const manifest = [...(first.files.get('.ops-manifest') as string).split('\n').filter(Boolean), 'nginx/conf.d/99-old.conf']
    hashes.set('.ops-manifest', sha256(manifest.join('\n') + '\n'))
    const second = planInfra(inputs(), host({ hashes, manifest, envText: first.envText }), bundle)
    expect(second.remove).toEqual(['nginx/conf.d/99-old.conf'])
    expect(second.write).toEqual(['.ops-manifest'])
    expect(second.nginxChanged).toBe(true)
  })

  it('changing http-port only changes .env', () => {
    const first = planInfra(inputs(), host(), bundle)
    const hashes = new Map([...first.files].map(([p, c]) => [p, sha256(c)]))
    const manifest = (first.files.get('.ops-manifest') as string).split('\n').filter(Boolean)
    const second = planInfra(
      inputs(),
      host({ hashes, manifest, envText: first.envText, settings: { domain: '', httpPort: 8080, httpsPort: 443 } }),
      bundle
    )
    expect(second.write).toEqual([])
    expect(second.envChangedKeys).toEqual(['HTTP_PORT'])
    expect(second.envText).toContain('HTTP_PORT=8080\n')
    expect(second.nginxChanged).toBe(false)
  })

  it('is pure: it prints nothing, and says what it found in notes and warnings', () => {
    const plan = planInfra(inputs(), host(), bundle)
    expect(stdout.text()).toBe('')
    expect(plan.notes[0]).toBe(`${plan.write.length} file(s) to write, 0 to remove, 0 unchanged.`)
    expect(plan.notes).toContain('  create compose/docker-compose.yml')
    expect(plan.notes.at(-1)).toBe('  .env: set DB_USER, DB_PASS, DB_NAME, REDIS_PASSWORD, HTTP_PORT, HTTPS_PORT, DOMAIN, OPS_NETWORK')
    expect(plan.warnings).toEqual([])
  })

  it('changed database credentials with db running: a warning that postgres keeps its old ones', () => {
    const first = planInfra(inputs(), host(), bundle)
    const changed = inputs({ infraEnv: [...fullEnv.filter(([k]) => k !== 'DB_PASS'), ['DB_PASS', 'n3w-pass']] })
    const running = host({ envText: first.envText, containers: [stackInfo('db'), stackInfo('nginx')] })
    const plan = planInfra(changed, running, bundle)
    expect(plan.envChangedKeys).toEqual(['DB_PASS'])
    expect(plan.warnings).toHaveLength(1)
    expect(plan.warnings[0]).toMatch(/^DB_PASS changed, but postgres applies POSTGRES_USER\/PASSWORD\/DB only when it initialises/)
    // Without a db container (a first run), nothing to warn about.
    expect(planInfra(changed, host({ envText: first.envText }), bundle).warnings).toEqual([])
  })

  it('a renewed certificate is a note; touched() is what a failed validation puts back (with .env when it changes)', () => {
    const first = planInfra(inputs(), host({ tls: true, certHash: 'a'.repeat(64), settings: behindyMe }), bundle)
    const hashes = new Map([...first.files].map(([p, c]) => [p, sha256(c)]))
    const manifest = (first.files.get('.ops-manifest') as string).split('\n').filter(Boolean)
    const renewed = planInfra(
      inputs(),
      host({ tls: true, certHash: 'b'.repeat(64), settings: behindyMe, hashes, manifest, envText: first.envText }),
      bundle
    )
    expect(renewed.notes[0]).toBe('The certificate of behindy.me changed on the host (renewed?): nginx will reload it.')
    expect(touched(renewed)).toEqual(['.ops-certificate'])
    expect(touched(first)).toEqual([...first.write, '.env'])
  })

  describe('the front', () => {
    /** A host as the first run left it: every file of the plan, its manifest and .env. */
    function settled(over: { drop?: string[]; change?: string[] } = {}) {
      const first = planInfra(inputs(), host(), bundle)
      const hashes = new Map([...first.files].map(([p, c]) => [p, sha256(c)]))
      for (const p of over.drop ?? []) hashes.delete(p)
      for (const p of over.change ?? []) hashes.set(p, sha256('a hand edit'))
      const manifest = (first.files.get('.ops-manifest') as string).split('\n').filter(Boolean)
      return { hashes, manifest, envText: first.envText }
    }

    it('first run: upstreams/nginx.stream names the service nginx (a placeholder, outside the manifest); front and nginx change', () => {
      const plan = planInfra(inputs(), host(), bundle)
      expect(plan.write).toContain('upstreams/nginx.stream')
      expect(plan.files.get('upstreams/nginx.stream')).toBe(frontUpstream('nginx'))
      expect(frontTarget(plan.files.get('upstreams/nginx.stream'))).toBe('nginx')
      expect(plan.write).toContain('nginx/front/nginx.conf')
      expect(plan.files.get('.ops-manifest')).toContain('nginx/front/nginx.conf\n')
      expect(plan.files.get('.ops-manifest')).not.toContain('nginx.stream')
      expect(plan.frontChanged).toBe(true)
      expect(plan.nginxChanged).toBe(true)
    })

    it('never overwrites the nginx.stream a handover wrote', () => {
      const h = settled()
      h.hashes.set('upstreams/nginx.stream', sha256(frontUpstream('behindy-nginx-2')))
      const upstreams = new Map([['nginx.stream', `${frontUpstream('behindy-nginx-2')}\n`]])
      const plan = planInfra(inputs(), host({ ...h, upstreams }), bundle)
      expect(plan.write).toEqual([])
      expect(plan.remove).toEqual([])
      expect(plan.files.has('upstreams/nginx.stream')).toBe(false)
      expect(plan.frontChanged).toBe(false)
      expect(plan.nginxChanged).toBe(false)
    })

    it('a settled host without nginx.stream (before the front) gets the placeholder: the front changes', () => {
      const plan = planInfra(inputs(), host(settled({ drop: ['upstreams/nginx.stream'] })), bundle)
      expect(plan.write).toEqual(['upstreams/nginx.stream'])
      expect(plan.files.get('upstreams/nginx.stream')).toBe(frontUpstream('nginx'))
      expect(plan.frontChanged).toBe(true)
      expect(plan.nginxChanged).toBe(false)
    })

    it.each<[string, string[], boolean, boolean]>([
      // The front's files are the front's alone: nginx neither tests nor reloads for them.
      ["the front's nginx.conf", ['nginx/front/nginx.conf'], true, false],
      ["nginx's nginx.conf", ['nginx/nginx.conf'], false, true],
      ['a route of nginx', ['nginx/routes/backend.conf'], false, true],
      ['the compose file', ['compose/docker-compose.yml'], false, false],
      ["the compose file and the front's nginx.conf", ['compose/docker-compose.yml', 'nginx/front/nginx.conf'], true, false],
      ["nginx's nginx.conf and the front's", ['nginx/nginx.conf', 'nginx/front/nginx.conf'], true, true]
    ])('%s changed on the host: frontChanged %s, nginxChanged %s', (_what, changed, front, nginx) => {
      const plan = planInfra(inputs(), host(settled({ change: changed })), bundle)
      expect(plan.write.sort()).toEqual([...changed].sort())
      expect(plan.frontChanged).toBe(front)
      expect(plan.nginxChanged).toBe(nginx)
    })

    it('a stray file under nginx/front/ is removed: the front changes', () => {
      const h = settled()
      h.hashes.set('nginx/front/zz-stray.conf', sha256('stray'))
      const plan = planInfra(inputs(), host(h), bundle)
      expect(plan.remove).toEqual(['nginx/front/zz-stray.conf'])
      expect(plan.frontChanged).toBe(true)
      expect(plan.nginxChanged).toBe(false)
    })
  })
})
