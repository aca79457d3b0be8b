import { describe, expect, it, vi } from 'vitest'
import { swap } from '../../src/deploy'
import { HostError } from '../../src/errors'
import type { InfraInputs } from '../../src/inputs'
import { PORT_LABEL, SPEC_LABEL } from '../../src/labels'
import type { Lock } from '../../src/lock'
import { Phases } from '../../src/phases'
import { appInputsOf, restartOrder, restartServices } from '../../src/restart'
import { upstreamConf } from '../../src/upstream'
import { appContainer, captureStdout, FakeRemote, sectionsOut } from './helpers'

// The swap itself is deploy.test's; here only what restartServices hands it.
vi.mock('../../src/deploy', () => ({
  swap: vi.fn(async (_remote: unknown, ctx: { release: { image: string; digest: string } }) => ({
    container: 'new-0000aaaa',
    image: ctx.release.image,
    digest: ctx.release.digest,
    previousImage: ctx.release.image
  }))
}))

captureStdout()

describe('ordered re-swap', () => {
  it('story, backend, frontend first, in that order; other services after, by name', () => {
    expect(restartOrder(['frontend', 'zeta', 'backend', 'alpha', 'story'])).toEqual(['story', 'backend', 'frontend', 'alpha', 'zeta'])
    expect(restartOrder(['frontend'])).toEqual(['frontend'])
    expect(restartOrder([])).toEqual([])
  })

  it('starts the same container again: route, health path, aliases and memory from its label, else the catalogue', () => {
    const spec = { route: '/things/', healthPath: '/things/health', stripPrefix: false, aliases: ['things-api'], memory: 256 * 1024 ** 2 }
    const d = appInputsOf('things', { [PORT_LABEL]: '9000', [SPEC_LABEL]: JSON.stringify(spec) })
    expect(d.spec).toEqual({ port: 9000, route: '/things/', healthPath: '/things/health', stripPrefix: false, aliases: ['things-api'] })
    expect(d.memory).toBe(256 * 1024 ** 2)
    expect(d.env).toEqual([])
    // A container of an older release recorded the memory input's text.
    expect(appInputsOf('things', { [PORT_LABEL]: '9000', [SPEC_LABEL]: JSON.stringify({ ...spec, memory: '256m' }) }).memory).toBe(
      256 * 1024 ** 2
    )
    const story = appInputsOf('story', {})
    expect(story.spec).toMatchObject({ port: 8000, route: '/llm/', stripPrefix: true, aliases: ['llmserver'] })
    expect(story).toMatchObject({ healthTimeoutS: 180, drainTimeoutS: 30, stopTimeoutS: 30, keepImages: 3, memory: undefined })
    expect(() => appInputsOf('things', {})).toThrow(/carries no route or port/)
  })
})

describe('restartServices (against a fake host)', () => {
  const infra: InfraInputs = {
    opsDir: '/opt/ops',
    network: 'internal',
    settings: {},
    infraEnv: [],
    infraTimeoutS: 120,
    backups: { keep: 7, beforeInfra: true }
  }
  const lock: Lock = { lost: () => undefined, check: () => undefined, release: async () => undefined }
  const hostWith = (upstreams: string, apps: string[]) =>
    new FakeRemote([[/@@ops upstreams/, { stdout: sectionsOut({ upstreams, apps: apps.join('\n') }) }]])

  it('nothing deployed: nothing to re-swap', async () => {
    const remote = hostWith('', [])
    expect(await restartServices(remote, infra, 'nginx-id', lock, new Phases())).toEqual(['restart-services: no app is deployed yet'])
    expect(remote.calls).toHaveLength(1)
  })

  it('a service routed to a container that is not running stops the sequence before anything changes', async () => {
    const upstreams = ['@@file app_story.conf', upstreamConf('app_story', 8000, { container: 'story-0a0b0c0d', image: 'st:1' })].join('\n')
    const remote = hostWith(upstreams, [appContainer('story', { name: 'story-0a0b0c0d', status: 'exited' })])
    const e = (await restartServices(remote, infra, 'nginx-id', lock, new Phases()).catch((x: unknown) => x)) as HostError
    expect(e).toBeInstanceOf(HostError)
    expect(e.message).toBe('story is routed to story-0a0b0c0d, which is not running; re-swapped so far: none')
    expect(e.fix).toBe('deploy story again')
    expect(remote.calls).toHaveLength(1)
  })

  it("re-swaps each service to what its upstream file says serves: the same image, by the same digest ('' in an earlier release's file)", async () => {
    const digest = `ghcr.io/behindy/story@sha256:${'5'.repeat(64)}`
    const spec = JSON.stringify({ route: '/llm/', healthPath: '/health', stripPrefix: true, aliases: ['llmserver'] })
    const upstreams = [
      '@@file app_story.conf',
      upstreamConf('app_story', 8000, { container: 'story-0a0b0c0d', image: 'ghcr.io/behindy/story:main', digest }),
      '@@file app_backend.conf',
      upstreamConf('app_backend', 8080, { container: 'backend-0a0b0c0d', image: 'ghcr.io/behindy/back:v1' })
    ].join('\n')
    const remote = hostWith(upstreams, [
      appContainer('story', { name: 'story-0a0b0c0d', port: 8000, labels: { [SPEC_LABEL]: spec } }),
      appContainer('backend', { name: 'backend-0a0b0c0d', port: 8080 })
    ])
    vi.mocked(swap).mockClear()
    expect(await restartServices(remote, infra, 'nginx-id', lock, new Phases())).toEqual(['re-swapped story → backend'])
    expect(
      vi.mocked(swap).mock.calls.map(([, ctx]) => [ctx.label, ctx.release.image, ctx.release.digest, ctx.release.mode, ctx.release.inherit])
    ).toEqual([
      ['story: ', 'ghcr.io/behindy/story:main', digest, 'restart', true],
      ['backend: ', 'ghcr.io/behindy/back:v1', '', 'restart', true]
    ])
  })
})
