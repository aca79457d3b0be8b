import { describe, expect, it } from 'vitest'
import { parseInspect } from '../../src/containers'
import { COMPOSE_PROJECT_LABEL, COMPOSE_SERVICE_LABEL, IMAGE_LABEL, PORT_LABEL, SERVICE_LABEL } from '../../src/labels'
import { appContainer, inspectLine, INSPECT_NO_HEALTH, INSPECT_WITH_HEALTH, stackContainer } from './helpers'

describe('parseInspect', () => {
  it('reads a container with a HEALTHCHECK', () => {
    expect(parseInspect(INSPECT_WITH_HEALTH)).toEqual([
      {
        name: 'backend-1a2b3c4d',
        id: 'a'.repeat(64),
        service: 'backend',
        status: 'running',
        restarts: 0,
        health: 'healthy',
        ips: { internal: '172.18.0.5', bridge: '172.17.0.3' },
        labels: {
          [SERVICE_LABEL]: 'backend',
          [IMAGE_LABEL]: 'ghcr.io/behindy/back:abc',
          [PORT_LABEL]: '8080',
          'org.opencontainers.image.title': 'back <app> & co'
        },
        image: 'example/app:v1',
        startedAt: '2026-01-01T00:00:00.123456789Z'
      }
    ])
  })

  it('reads a container without Health, networks or labels', () => {
    expect(parseInspect(INSPECT_NO_HEALTH)).toEqual([
      {
        name: 'backend-5e6f7a8b',
        id: 'b'.repeat(64),
        service: '',
        status: 'exited',
        restarts: 2,
        health: 'none',
        ips: {},
        labels: {},
        image: 'example/app:v1',
        startedAt: '2026-01-01T00:00:00Z'
      }
    ])
  })

  it('Health: null counts as none, and a go-escaped label (\\u003c) is decoded', () => {
    const line = INSPECT_WITH_HEALTH.replace('"Health":{', '"Health":null,"X":{').replace(
      'back <app> & co',
      'back \\u003capp\\u003e \\u0026 co'
    )
    const [c] = parseInspect(line)
    expect(c.health).toBe('none')
    expect(c.labels['org.opencontainers.image.title']).toBe('back <app> & co')
  })

  it('skips blank, error, marker and broken lines, keeping the order of the rest', () => {
    const out = [
      '',
      'Error: No such object: gone',
      INSPECT_WITH_HEALTH,
      '@@ops-rc 0',
      '"/broken"\t{not json',
      '   ',
      INSPECT_NO_HEALTH,
      ''
    ].join('\n')
    expect(parseInspect(out).map(c => c.name)).toEqual(['backend-1a2b3c4d', 'backend-5e6f7a8b'])
    expect(parseInspect('')).toEqual([])
    expect(parseInspect('\n')).toEqual([])
  })

  // The one container record: a stack container is known by compose's service label (infra used to read
  // `id<TAB>service<TAB>status` lines of `docker ps` for them), an app container by ops-action's.
  it("service: ops-action's label for an app, compose's for the stack, '' for neither", () => {
    const out = [
      stackContainer('db', { name: 'behindy-db-1', id: 'abc123', health: 'healthy' }),
      stackContainer('nginx', { name: 'behindy-nginx-1', id: 'def456', status: 'exited', health: 'unhealthy' }),
      appContainer('story', { name: 'story-0a0b0c0d', port: 8000 }),
      inspectLine({ Name: '/other', Id: 'x', State: { Status: 'created' }, RestartCount: 0, Networks: null, Labels: { a: 'b' } })
    ].join('\n')
    expect(parseInspect(out).map(c => [c.id, c.service, c.status, c.health])).toEqual([
      ['abc123', 'db', 'running', 'healthy'],
      ['def456', 'nginx', 'exited', 'unhealthy'],
      ['story-0a0b0c0d-id', 'story', 'running', 'healthy'],
      ['x', '', 'created', 'none']
    ])
    // ops-action's label wins (an app container never carries compose's, but if it did, it is still the app's).
    const both = inspectLine({
      Name: '/x',
      Id: 'y',
      State: { Status: 'running' },
      RestartCount: 0,
      Networks: {},
      Labels: { [COMPOSE_PROJECT_LABEL]: 'behindy', [COMPOSE_SERVICE_LABEL]: 'nginx', [SERVICE_LABEL]: 'frontend' }
    })
    expect(parseInspect(both)[0].service).toBe('frontend')
  })
})
