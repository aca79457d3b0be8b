import { describe, expect, it } from 'vitest'
import { CATALOGUE, deployedSpec, publicPath, routeReaches, serviceFromRepository, STACK_SERVICES } from '../../src/catalogue'
import { PORT_LABEL, SPEC_LABEL } from '../../src/labels'

describe('catalogue', () => {
  it.each([
    ['behindy/behindy-front', 'frontend'],
    ['behindy/behindy-frontend', 'frontend'],
    ['behindy/behindy-back', 'backend'],
    ['behindy/behindy-backend', 'backend'],
    ['behindy/behindy-story', 'story'],
    ['behindy/behindy-llmserver', 'story'],
    ['Other/Behindy-Back', 'backend']
  ])('serviceFromRepository(%j) = %s', (repo, service) => {
    expect(serviceFromRepository(repo)).toBe(service)
  })

  it.each([undefined, '', 'behindy/website', 'behindy/behindy-back-old', 'behindy-back/other'])(
    'serviceFromRepository(%j) is undefined',
    repo => {
      expect(serviceFromRepository(repo)).toBeUndefined()
    }
  )

  it('publicPath: story is reached under /llm, backend and frontend as they are', () => {
    expect(publicPath(CATALOGUE.story, '/health')).toBe('/llm/health')
    expect(publicPath(CATALOGUE.story, '/')).toBe('/llm/')
    expect(publicPath(CATALOGUE.backend, '/api/ai-stories/health')).toBe('/api/ai-stories/health')
    expect(publicPath(CATALOGUE.frontend, '/')).toBe('/')
  })

  it('routeReaches: a prefix route reaches only paths under it; a stripped one reaches every path', () => {
    expect(routeReaches(CATALOGUE.backend, '/api/ai-stories/health')).toBe(true)
    expect(routeReaches(CATALOGUE.backend, '/api')).toBe(true)
    expect(routeReaches(CATALOGUE.backend, '/actuator/health')).toBe(false)
    expect(routeReaches(CATALOGUE.backend, '/apix')).toBe(false)
    expect(routeReaches(CATALOGUE.story, '/health')).toBe(true)
    expect(routeReaches(CATALOGUE.story, '/anything/at/all')).toBe(true)
    expect(routeReaches(CATALOGUE.frontend, '/')).toBe(true)
    expect(routeReaches(CATALOGUE.frontend, '/healthz')).toBe(true)
  })

  it('every catalogue health path is reachable through its route', () => {
    for (const [name, spec] of Object.entries(CATALOGUE)) expect(routeReaches(spec, spec.healthPath), name).toBe(true)
  })

  it('the stack services are db, redis, nginx and the front, none of them an app', () => {
    expect([...STACK_SERVICES]).toEqual(['db', 'redis', 'nginx', 'front'])
    for (const s of STACK_SERVICES) expect(CATALOGUE[s]).toBeUndefined()
  })
})

describe('deployedSpec', () => {
  const spec = { route: '/things/', healthPath: '/things/health', stripPrefix: false, aliases: ['things-api'] }

  it('reads port and spec from the labels; the memory limit is bytes', () => {
    const labels = { [PORT_LABEL]: '9000', [SPEC_LABEL]: JSON.stringify({ ...spec, memory: 256 * 1024 ** 2 }) }
    expect(deployedSpec('things', labels)).toEqual({ spec: { port: 9000, ...spec }, memory: 256 * 1024 ** 2 })
  })

  it("an older release's memory text (768m) is read as bytes", () => {
    const labels = { [PORT_LABEL]: '9000', [SPEC_LABEL]: JSON.stringify({ ...spec, memory: '768m' }) }
    expect(deployedSpec('things', labels)?.memory).toBe(768 * 1024 ** 2)
  })

  it('without labels (an older release), the catalogue defaults; no memory limit', () => {
    expect(deployedSpec('story', {})).toEqual({
      spec: { port: 8000, route: '/llm/', healthPath: '/health', stripPrefix: true, aliases: ['llmserver'] },
      memory: undefined
    })
    expect(deployedSpec('backend', { [SPEC_LABEL]: '{not json' })?.spec).toEqual(CATALOGUE.backend)
  })

  it('labels win over the catalogue', () => {
    const labels = { [PORT_LABEL]: '9090', [SPEC_LABEL]: JSON.stringify({ route: '/api/', healthPath: '/api/ping', stripPrefix: false }) }
    expect(deployedSpec('backend', labels)?.spec).toEqual({
      port: 9090,
      route: '/api/',
      healthPath: '/api/ping',
      stripPrefix: false,
      aliases: []
    })
  })

  it('undefined for a service outside the catalogue without labels', () => {
    expect(deployedSpec('things', {})).toBeUndefined()
    expect(deployedSpec('things', { [SPEC_LABEL]: JSON.stringify(spec) })).toBeUndefined()
  })
})
