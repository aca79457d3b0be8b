import { describe, expect, it } from 'vitest'
import type { HostState } from '../../src/hoststate'
import type { InfraPlan } from '../../src/infraplan'
import { composeActions, stackAction } from '../../src/plan'
import { stackInfo } from './helpers'

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
      '    image: nginx:1.27',
      '  front:',
      '    image: nginx:1.27'
    ].join('\n')
  const host = (services: string[]): HostState => ({ containers: services.map(s => stackInfo(s)) }) as unknown as HostState
  const plan = (text: string, write: string[], env: string[] = []): InfraPlan =>
    ({ files: new Map([['compose/docker-compose.yml', text]]), write, envChangedKeys: env }) as unknown as InfraPlan

  it('creates what is missing, recreates what changed in the file or reads a changed .env key, leaves the rest', () => {
    const now = compose('${REDIS_MAXMEMORY:-256mb}')
    expect(composeActions(host(['db', 'redis', 'nginx', 'front']), plan(now, []), now)).toEqual([])
    expect(composeActions(host(['db', 'nginx', 'front']), plan(now, []), now)).toEqual([['redis', 'create']])
    expect(composeActions(host(['db', 'redis', 'nginx', 'front']), plan(compose('512mb'), ['compose/docker-compose.yml']), now)).toEqual([
      ['redis', 'recreate (its definition changed)']
    ])
    expect(composeActions(host(['db', 'redis', 'nginx', 'front']), plan(now, [], ['DB_PASS']), now)).toEqual([
      ['db', 'recreate (.env DB_PASS changed)']
    ])
    expect(composeActions(host(['db', 'redis', 'nginx', 'front']), plan(now, [], ['UNUSED']), now)).toEqual([])
  })
})

describe('stackAction (a compose action as the run carries it out, for mode plan)', () => {
  const host = (services: string[]): HostState =>
    ({ containers: services.map((s, i) => stackInfo(s, 'running', 'healthy', `${s}-${i}`)) }) as unknown as HostState
  const behindFront = host(['db', 'redis', 'nginx', 'front'])
  const legacy = host(['db', 'redis', 'nginx'])

  it('nginx behind the front with one container: a handover, no gap, with the reason compose would recreate it', () => {
    const line = stackAction(behindFront, 'nginx', 'recreate (its definition changed)')
    expect(line).toMatch(/^hand nginx over to a new container \(its definition changed\): /)
    expect(line).toContain('started beside the old one')
    expect(line).toContain('verified (/healthz, every deployed route)')
    expect(line).toMatch(/; no gap$/)
    expect(line).not.toContain('compose would')
    expect(stackAction(behindFront, 'nginx', 'recreate (.env NGINX_IMAGE changed)')).toMatch(
      /^hand nginx over to a new container \(\.env NGINX_IMAGE changed\): .*; no gap$/
    )
  })

  it('nginx on a host from before the front: recreated without ports, a one-time gap', () => {
    const line = stackAction(legacy, 'nginx', 'recreate (its definition changed)')
    expect(line).toBe(
      'compose would recreate (its definition changed) nginx without published ports and create the front after it: a one-time gap of a few seconds while nginx moves behind the front'
    )
    expect(line).toContain('a one-time gap of a few seconds while nginx moves behind the front')
    expect(line).not.toContain('no gap')
  })

  it('two nginx containers (an interrupted handover): no handover promised', () => {
    const two = host(['db', 'redis', 'nginx', 'nginx', 'front'])
    const line = stackAction(two, 'nginx', 'recreate (its definition changed)')
    expect(line).toBe('compose would recreate (its definition changed) nginx')
    expect(line).not.toContain('no gap')
  })

  it.each<[string, string[]]>([
    ['a stopped nginx', ['nginx']],
    ['a stopped front', ['front']],
    ['a stopped nginx and front', ['nginx', 'front']]
  ])('%s behind the front: no handover promised (compose up of everything recreates nginx)', (_what, stopped) => {
    const h = {
      containers: behindFront.containers.map(c => (stopped.includes(c.service) ? { ...c, status: 'exited' } : c))
    } as unknown as HostState
    const line = stackAction(h, 'nginx', 'recreate (its definition changed)')
    expect(line).toBe('compose would recreate (its definition changed) nginx')
    expect(line).not.toContain('no gap')
    // The same host running: the handover.
    expect(stackAction(behindFront, 'nginx', 'recreate (its definition changed)')).toMatch(/; no gap$/)
  })

  it('a restarting nginx is not running either: no handover promised', () => {
    const h = {
      containers: behindFront.containers.map(c => (c.service === 'nginx' ? { ...c, status: 'restarting' } : c))
    } as unknown as HostState
    expect(stackAction(h, 'nginx', 'recreate (.env NGINX_IMAGE changed)')).toBe('compose would recreate (.env NGINX_IMAGE changed) nginx')
  })

  it('the front recreated: a gap of about a second (it holds the published ports)', () => {
    expect(stackAction(behindFront, 'front', 'recreate (.env HTTP_PORT changed)')).toBe(
      'compose would recreate (.env HTTP_PORT changed) front: a gap of about a second (the front holds the published ports)'
    )
  })

  it('a missing service is created, nginx and the front too; db and redis as compose does it', () => {
    expect(stackAction(legacy, 'front', 'create')).toBe('compose would create front')
    expect(stackAction(host(['db', 'redis', 'front']), 'nginx', 'create')).toBe('compose would create nginx')
    expect(stackAction(host(['db', 'nginx', 'front']), 'redis', 'create')).toBe('compose would create redis')
    expect(stackAction(behindFront, 'db', 'recreate (.env DB_PASS changed)')).toBe('compose would recreate (.env DB_PASS changed) db')
  })
})
