import { describe, expect, it } from 'vitest'
import { HostError } from '../../src/errors'
import { imageRepository, imageTag, isImageReference, pruneImages, pullImage } from '../../src/images'
import { captureStdout, FakeRemote } from './helpers'

captureStdout()

describe('imageRepository / imageTag', () => {
  it.each([
    ['127.0.0.1:5000/behindy/sample-app:v1', '127.0.0.1:5000/behindy/sample-app', 'v1'],
    ['127.0.0.1:5000/behindy/sample-app', '127.0.0.1:5000/behindy/sample-app', 'latest'],
    [`ghcr.io/b/back@sha256:${'a'.repeat(64)}`, 'ghcr.io/b/back', ''],
    [`ghcr.io/b/back:v2@sha256:${'a'.repeat(64)}`, 'ghcr.io/b/back', 'v2']
  ])('%s -> %s, tag %j', (image, repository, tag) => {
    expect(imageRepository(image)).toBe(repository)
    expect(imageTag(image)).toBe(tag)
  })

  it('isImageReference: names, registries with ports, tags and digests; nothing a shell or docker would read as more', () => {
    for (const ok of ['nginx', 'ghcr.io/behindy/back:abc', 'localhost:5000/app:1.2.3', `name@sha256:${'a'.repeat(64)}`])
      expect(isImageReference(ok), ok).toBe(true)
    for (const bad of ['', 'Back:abc', '-name:1', 'a b', 'x:$(id)', 'name@sha256:abc', `${'a'.repeat(251)}:tag1`])
      expect(isImageReference(bad), bad).toBe(false)
  })
})

describe('pullImage / pruneImages (against a fake host)', () => {
  const registry = { server: 'ghcr.io', username: 'bot', password: 'tok3n' }

  it('an immutable tag already on the host is not pulled; latest always is', async () => {
    const remote = new FakeRemote([
      [/docker image inspect/, { stdout: 'sha256:abc\n' }],
      [/docker pull --quiet/, { stdout: 'sha256:abc\n' }]
    ])
    await pullImage(remote, 'ghcr.io/behindy/back:v1', undefined)
    expect(remote.matching(/docker pull/)).toHaveLength(0)
    await pullImage(remote, 'ghcr.io/behindy/back:latest', undefined)
    expect(remote.matching(/docker pull --quiet ghcr\.io\/behindy\/back:latest/)).toHaveLength(1)
    expect(remote.unmatched).toEqual([])
  })

  it('with a registry, the password goes on stdin only', async () => {
    const remote = new FakeRemote([
      [/docker image inspect/, { code: 1 }],
      [/--password-stdin/, {}]
    ])
    await pullImage(remote, 'ghcr.io/behindy/back:v1', registry)
    const [call] = remote.matching(/--password-stdin/)
    expect(call.stdin).toBe('tok3n\n')
    expect(call.sh).not.toContain('tok3n')
  })

  it.each([
    [3, 'unauthorized: bad credentials', /^Login to ghcr\.io as bot failed/, /registry-username and registry-password/],
    [3, 'dial tcp: lookup ghcr.io: no such host', /^Login to ghcr\.io as bot failed/, /can reach the registry ghcr\.io/],
    [1, 'manifest unknown', /^Pulling ghcr\.io\/behindy\/back:v1 failed: manifest unknown/, /check the image name and tag/],
    [1, 'write /var/lib/docker: no space left on device', /^Pulling/, /free disk space/],
    [1, 'pull access denied', /^Pulling/, /set registry, registry-username and registry-password/]
  ])('exit %d with %j: a HostError with the fix for it', async (code, stderr, message, fix) => {
    const remote = new FakeRemote([
      [/docker image inspect/, { code: 1 }],
      [/pull/, { code, stderr }]
    ])
    const e = (await pullImage(remote, 'ghcr.io/behindy/back:v1', registry).catch((x: unknown) => x)) as HostError
    expect(e).toBeInstanceOf(HostError)
    expect(e.message).toMatch(message)
    expect(e.message).not.toContain('Fix:')
    expect(e.fix).toMatch(fix)
  })

  it('pruneImages keeps the newest keep-images, the serving image and the rollback target', async () => {
    const rows = ['app:v6', 'app:v5', 'app:v4', 'app:v3', 'app:<none>', 'app:v2', 'app:v1'].map((r, i) => `${r} id${i} 2026-01-0${i + 1}`)
    const remote = new FakeRemote([
      [/docker images --format .* app$/, { stdout: rows.join('\n') + '\n' }],
      [/docker rmi/, { stdout: 'kept app:v2 (in use)\n' }]
    ])
    await pruneImages(remote, 2, 'app:v6', 'app:v1')
    const [rm] = remote.matching(/docker rmi/)
    expect(rm.sh.split("' sh ")[1].split(' ')).toEqual(['app:v4', 'app:v3', 'app:v2'])
  })
})
