import { describe, expect, it } from 'vitest'
import { SPEC_LABEL } from '../../src/commands/app'
import type { HostState, InfraPlan } from '../../src/infra'
import { composeActions } from '../../src/plan'
import { deployInputsOf, restartOrder } from '../../src/restart'
import { parseUpstreamFiles, statusLines, type Status } from '../../src/status'
import { placeholderUpstream, upstreamConf } from '../../src/upstream'

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
  })

  it('an empty upstreams dir: nothing deployed', () => {
    expect(parseUpstreamFiles('').size).toBe(0)
  })
})

describe('statusLines', () => {
  it('one markdown row per stack service and app, never deployed shown as such, pipes escaped', () => {
    const st: Status = {
      stack: [
        {
          service: 'db',
          container: 'behindy_db_1',
          image: 'postgres:15.10-bookworm',
          state: 'running',
          health: 'healthy',
          since: '2026-11-28T04:00:00.123Z'
        }
      ],
      services: [
        { service: 'frontend', deployed: false, container: '', image: '', state: 'not deployed', since: '', direct: '', nginx: '' },
        {
          service: 'backend',
          deployed: true,
          container: 'backend-1a2b3c4d',
          image: 'a|b',
          state: 'running',
          since: '2026-11-28T04:01:00Z',
          direct: '200',
          nginx: '200',
          lastDeploy: {
            time: '2026-11-28T04:01:02Z',
            mode: 'deploy',
            image: 'a|b',
            result: 'success',
            actor: 'octocat',
            sha: 'abcdef1234567'
          }
        }
      ]
    }
    const lines = statusLines(st)
    expect(lines).toContain('| db | behindy_db_1 | postgres:15.10-bookworm | running | healthy | 2026-11-28T04:00:00Z |')
    expect(lines).toContain('| frontend | — | — | not deployed | — | — | — | — |')
    expect(lines).toContain(
      '| backend | backend-1a2b3c4d | a\\|b | running | 2026-11-28T04:01:00Z | 200 | 200 | 2026-11-28T04:01:02Z deploy success by octocat (abcdef1) |'
    )
  })
})

describe('ordered re-swap', () => {
  it('story, backend, frontend first, in that order; other services after, by name', () => {
    expect(restartOrder(['frontend', 'zeta', 'backend', 'alpha', 'story'])).toEqual(['story', 'backend', 'frontend', 'alpha', 'zeta'])
    expect(restartOrder(['frontend'])).toEqual(['frontend'])
    expect(restartOrder([])).toEqual([])
  })

  it('starts the same container again: route, health path, aliases and memory from its label, else the catalogue', () => {
    const spec = { route: '/things/', healthPath: '/things/health', stripPrefix: false, aliases: ['things-api'], memory: '256m' }
    const d = deployInputsOf('things', { 'ops-action.port': '9000', [SPEC_LABEL]: JSON.stringify(spec) })
    expect(d.spec).toEqual({ port: 9000, route: '/things/', healthPath: '/things/health', stripPrefix: false, aliases: ['things-api'] })
    expect(d.memory).toBe('256m')
    expect(d.env).toEqual([])
    const story = deployInputsOf('story', {})
    expect(story.spec).toMatchObject({ port: 8000, route: '/llm/', stripPrefix: true, aliases: ['llmserver'] })
    expect(story.healthTimeoutS).toBe(180)
    expect(() => deployInputsOf('things', {})).toThrow(/carries no route or port/)
  })
})

describe('composeActions (what compose up would do, for mode plan)', () => {
  const compose = (redisMem: string) =>
    [
      'services:',
      '  db:',
      '    image: postgres:15',
      '    environment:',
      '      POSTGRES_PASSWORD: ${DB_PASS:?DB_PASS must be set}',
      '  redis:',
      '    image: redis:7',
      `    environment: { REDIS_MAXMEMORY: "${redisMem}" }`,
      '  nginx:',
      '    image: nginx:1.27'
    ].join('\n')
  const host = (services: string[]): HostState =>
    ({ containers: services.map((service, i) => ({ id: `id${i}`, service, status: 'Up 1 minute (healthy)' })) }) as unknown as HostState
  const plan = (text: string, write: string[], env: string[] = []): InfraPlan =>
    ({ files: new Map([['compose/docker-compose.yml', text]]), write, envChangedKeys: env }) as unknown as InfraPlan

  it('creates what is missing, recreates what changed in the file or reads a changed .env key, leaves the rest', () => {
    const now = compose('${REDIS_MAXMEMORY:-256mb}')
    expect(composeActions(host(['db', 'redis', 'nginx']), plan(now, []), now)).toEqual([])
    expect(composeActions(host(['db', 'nginx']), plan(now, []), now)).toEqual([['redis', 'create']])
    expect(composeActions(host(['db', 'redis', 'nginx']), plan(compose('512mb'), ['compose/docker-compose.yml']), now)).toEqual([
      ['redis', 'recreate (its definition changed)']
    ])
    expect(composeActions(host(['db', 'redis', 'nginx']), plan(now, [], ['DB_PASS']), now)).toEqual([
      ['db', 'recreate (.env DB_PASS changed)']
    ])
    expect(composeActions(host(['db', 'redis', 'nginx']), plan(now, [], ['UNUSED']), now)).toEqual([])
  })
})
