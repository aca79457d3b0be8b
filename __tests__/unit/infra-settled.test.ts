import { describe, expect, it } from 'vitest'
import { composeV1 } from '../../src/commands/compose'
import { stackSettled, type HostState, type InfraPlan } from '../../src/infra'

const host = (statuses: Record<string, string>): HostState => ({
  compose: composeV1('1.29.2'),
  envText: '',
  hashes: new Map(),
  manifest: [],
  networkExists: true,
  containers: Object.entries(statuses).map(([service, status], i) => ({ id: `id${i}`, service, status })),
  settings: { domain: '', httpPort: 80, httpsPort: 443 },
  tls: false,
  certHash: ''
})
const plan = (over: Partial<InfraPlan> = {}): InfraPlan => ({
  files: new Map(),
  write: [],
  remove: [],
  unchanged: 13,
  envText: '',
  envChangedKeys: [],
  nginxChanged: false,
  ...over
})
const healthy = { db: 'Up 5 minutes (healthy)', redis: 'Up 5 minutes (healthy)', nginx: 'Up 5 minutes (healthy)' }

describe('stackSettled (compose up can be skipped)', () => {
  it('only when nothing changed and db, redis and nginx are all up and healthy', () => {
    expect(stackSettled(host(healthy), plan(), [])).toBe(true)
  })
  it.each([
    ['a file to write', host(healthy), plan({ write: ['compose/docker-compose.yml'] }), []],
    ['a file to remove', host(healthy), plan({ remove: ['nginx/old.conf'] }), []],
    ['a .env change', host(healthy), plan({ envChangedKeys: ['DB_PASS'] }), []],
    ['a network just created', host(healthy), plan(), ['created docker network internal']],
    ['a missing service', host({ db: healthy.db, nginx: healthy.nginx }), plan(), []],
    ['a service still starting', host({ ...healthy, redis: 'Up 2 seconds (health: starting)' }), plan(), []],
    ['an exited service', host({ ...healthy, nginx: 'Exited (1) 3 seconds ago' }), plan(), []],
    ['an unhealthy service', host({ ...healthy, db: 'Up 9 minutes (unhealthy)' }), plan(), []]
  ])('not with %s', (_name, h, p, changes) => {
    expect(stackSettled(h, p, changes)).toBe(false)
  })
})
