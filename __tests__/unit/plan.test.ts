import { describe, expect, it } from 'vitest'
import type { HostState } from '../../src/hoststate'
import type { InfraPlan } from '../../src/infraplan'
import { composeActions } from '../../src/plan'
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
      '    image: nginx:1.27'
    ].join('\n')
  const host = (services: string[]): HostState => ({ containers: services.map(s => stackInfo(s)) }) as unknown as HostState
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
