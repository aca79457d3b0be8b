import { describe, expect, it } from 'vitest'
import { HostError } from '../../src/errors'
import { DIGESTS_MARK } from '../../src/commands/images'
import { digestOf, imageRepository, imageTag, isDigestReference, isImageReference, pruneImages, pullImage } from '../../src/images'
import { captureStdout, FakeRemote } from './helpers'

const stdout = captureStdout()

/** A sha256 digest of 64 times the one hex character. */
const sha = (c: string) => `sha256:${c.repeat(64)}`

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

describe('isDigestReference / digestOf', () => {
  it('isDigestReference: only a reference pinned by a full sha256 digest', () => {
    for (const ok of [`ghcr.io/b/back@${sha('a')}`, `ghcr.io/b/back:v2@${sha('0')}`, `nginx@${sha('f')}`])
      expect(isDigestReference(ok), ok).toBe(true)
    for (const bad of [
      'ghcr.io/b/back:v1',
      'ghcr.io/b/back',
      'ghcr.io/b/back@sha256:abc',
      `ghcr.io/b/back@sha256:${'A'.repeat(64)}`,
      sha('a')
    ])
      expect(isDigestReference(bad), bad).toBe(false)
  })

  it.each([
    // The reference's own registry and repository, not a mirror's or a look-alike's.
    [
      '127.0.0.1:5000/behindy/app:v1',
      [`127.0.0.1:5001/behindy/app@${sha('1')}`, `127.0.0.1:5000/behindy/app-old@${sha('2')}`, `127.0.0.1:5000/behindy/app@${sha('3')}`],
      `127.0.0.1:5000/behindy/app@${sha('3')}`
    ],
    ['ghcr.io/behindy/back', [`ghcr.io/behindy/back@${sha('4')}`], `ghcr.io/behindy/back@${sha('4')}`],
    // docker records Docker Hub images by their familiar name, however the reference spells it.
    ['nginx:1.27', [`nginx@${sha('5')}`], `nginx@${sha('5')}`],
    ['docker.io/library/nginx:1.27', [`nginx@${sha('5')}`], `nginx@${sha('5')}`],
    ['library/nginx:1.27', [`nginx@${sha('5')}`], `nginx@${sha('5')}`],
    ['docker.io/behindy/app:v1', [`nginx@${sha('5')}`, `behindy/app@${sha('6')}`], `behindy/app@${sha('6')}`],
    // A familiar name is not a registry's namesake.
    ['nginx:1.27', [`ghcr.io/library/nginx@${sha('7')}`, `mirror.example.com/nginx@${sha('7')}`], ''],
    // None of the reference's repository (an image built on the host has no RepoDigests at all).
    ['ghcr.io/behindy/back:v1', [`ghcr.io/behindy/front@${sha('8')}`], ''],
    ['ghcr.io/behindy/back:v1', [], '']
  ])('%s among %j -> %j', (image, repoDigests, digest) => {
    expect(digestOf(image, repoDigests)).toBe(digest)
  })

  it('a digest reference is its own digest, whatever the RepoDigests', () => {
    const ref = `ghcr.io/behindy/back@${sha('9')}`
    expect(digestOf(ref, [])).toBe(ref)
    expect(digestOf(ref, [`ghcr.io/behindy/back@${sha('1')}`])).toBe(ref)
  })
})

describe('pullImage (against a fake host)', () => {
  const registry = { server: 'ghcr.io', username: 'bot', password: 'tok3n' }
  const IMAGE_ID = /^\{ docker image inspect --format '\{\{\.Id\}\}' /
  const PULL = /pull --quiet /
  /** What pullResolved prints: the pull's own output, the mark, then the image's RepoDigests (one a line). */
  const resolvedOut = (pulled: string, repoDigests: string[]) => ({
    stdout: `${pulled}\n${DIGESTS_MARK}\n${repoDigests.map(d => `${d}\n`).join('')}`
  })

  it.each(['ghcr.io/behindy/back:v1', 'ghcr.io/behindy/back:latest'])(
    'a tag is pulled even when it is on the host (%s): the registry says what it names now, the digest after the mark',
    async image => {
      const now = `ghcr.io/behindy/back@${sha('2')}`
      const remote = new FakeRemote([
        [IMAGE_ID, { stdout: `${sha('0')}\n` }],
        // docker pull's own output (before the mark) is not read for digests.
        [PULL, resolvedOut(`ghcr.io/behindy/back@${sha('1')}`, [`mirror.example.com/behindy/back@${sha('3')}`, now])]
      ])
      expect(await pullImage(remote, image, undefined)).toEqual({ image, digest: now })
      expect(remote.unmatched).toEqual([])
      // One round trip: no look-up first, the pull and the RepoDigests of what it pulled in one command.
      expect(remote.calls.map(c => c.sh)).toEqual([
        `{ docker pull --quiet ${image}; } && { echo '${DIGESTS_MARK}'; } && { docker image inspect --format '{{range .RepoDigests}}{{println .}}{{end}}' ${image}; }`
      ])
      expect(stdout.text()).toContain(`${image} → ${now}`)
    }
  )

  it('a digest reference already on the host is not pulled: it is its own digest', async () => {
    const ref = `ghcr.io/behindy/back@${sha('4')}`
    const remote = new FakeRemote([
      [IMAGE_ID, { stdout: `${sha('0')}\n` }],
      [PULL, resolvedOut(ref, [ref])]
    ])
    expect(await pullImage(remote, ref, registry)).toEqual({ image: ref, digest: ref })
    expect(remote.calls.map(c => c.sh)).toEqual([`{ docker image inspect --format '{{.Id}}' ${ref}; } 2>/dev/null`])
    expect(stdout.text()).toContain(`${ref} is pinned by digest and on the host: no pull.`)
  })

  it('a digest reference not on the host is pulled', async () => {
    const ref = `ghcr.io/behindy/back@${sha('5')}`
    const remote = new FakeRemote([
      [IMAGE_ID, { code: 1 }],
      [PULL, resolvedOut(ref, [ref])]
    ])
    expect(await pullImage(remote, ref, undefined)).toEqual({ image: ref, digest: ref })
    expect(remote.unmatched).toEqual([])
    expect(remote.calls.map(c => c.sh)).toEqual([
      `{ docker image inspect --format '{{.Id}}' ${ref}; } 2>/dev/null`,
      expect.stringMatching(/^\{ docker pull --quiet ghcr\.io\/behindy\/back@sha256:5{64}; \} && /)
    ])
  })

  it("an image without a RepoDigest of its repository: digest '', it runs by its name", async () => {
    const remote = new FakeRemote([[PULL, resolvedOut('ghcr.io/behindy/back:v1', [])]])
    expect(await pullImage(remote, 'ghcr.io/behindy/back:v1', undefined)).toEqual({ image: 'ghcr.io/behindy/back:v1', digest: '' })
    expect(stdout.text()).toContain('ghcr.io/behindy/back:v1: the registry gave no digest, so it runs by its name.')
  })

  it('with a registry, the password goes on stdin only; the digests are read in the same round trip', async () => {
    const digest = `ghcr.io/behindy/back@${sha('6')}`
    const remote = new FakeRemote([[/--password-stdin/, resolvedOut('ghcr.io/behindy/back:v1', [digest])]])
    expect(await pullImage(remote, 'ghcr.io/behindy/back:v1', registry)).toEqual({ image: 'ghcr.io/behindy/back:v1', digest })
    expect(remote.calls).toHaveLength(1)
    const [call] = remote.calls
    expect(call.stdin).toBe('tok3n\n')
    expect(call.sh).not.toContain('tok3n')
    expect(call.sh).toContain(`&& { echo '${DIGESTS_MARK}'; } && { docker image inspect --format`)
  })

  it.each([
    [3, 'unauthorized: bad credentials', /^Login to ghcr\.io as bot failed/, /registry-username and registry-password/],
    [3, 'dial tcp: lookup ghcr.io: no such host', /^Login to ghcr\.io as bot failed/, /can reach the registry ghcr\.io/],
    [1, 'manifest unknown', /^Pulling ghcr\.io\/behindy\/back:v1 failed: manifest unknown/, /check the image name and tag/],
    [1, 'write /var/lib/docker: no space left on device', /^Pulling/, /free disk space/],
    [1, 'pull access denied', /^Pulling/, /set registry, registry-username and registry-password/],
    [
      1,
      'Get "https://ghcr.io/v2/": net/http: TLS handshake timeout',
      /^Pulling ghcr\.io\/behindy\/back:v1 failed: Get "https:\/\/ghcr\.io\/v2\/": net\/http: TLS handshake timeout$/,
      /can reach the registry .*only when given by digest: name@sha256:/
    ]
  ])('exit %d with %j: a HostError with the fix for it', async (code, stderr, message, fix) => {
    const remote = new FakeRemote([
      [IMAGE_ID, { stdout: `${sha('0')}\n` }],
      [PULL, { code, stderr }]
    ])
    const e = (await pullImage(remote, 'ghcr.io/behindy/back:v1', registry).catch((x: unknown) => x)) as HostError
    expect(e).toBeInstanceOf(HostError)
    expect(e.message).toMatch(message)
    expect(e.message).not.toContain('Fix:')
    expect(e.fix).toMatch(fix)
    // A tag already on the host is no way around a registry that fails: it is never looked up.
    expect(remote.matching(IMAGE_ID)).toEqual([])
  })

  describe('with a log of its own (a pull beside the sequence)', () => {
    /** A log that records its lines ('info …' / 'warning …'), in order. */
    const recorder = () => {
      const lines: string[] = []
      return { lines, log: { info: (l: string) => void lines.push(`info ${l}`), warning: (l: string) => void lines.push(`warning ${l}`) } }
    }

    it('a tag pulled: its lines go to that log, in order, and none to stdout', async () => {
      const image = 'ghcr.io/behindy/back:v1'
      const digest = `ghcr.io/behindy/back@${sha('7')}`
      const remote = new FakeRemote([[/--password-stdin/, resolvedOut(image, [digest])]])
      const { lines, log } = recorder()
      expect(await pullImage(remote, image, registry, log)).toEqual({ image, digest })
      expect(lines).toEqual([`info Pulling ${image} (logged in to ghcr.io for this run only)…`, `info ${image} → ${digest}`])
      expect(stdout.text()).toBe('')
    })

    it('a digest reference on the host, and an image without a digest: those lines too go to that log only', async () => {
      const ref = `ghcr.io/behindy/back@${sha('8')}`
      const pinned = recorder()
      await pullImage(new FakeRemote([[IMAGE_ID, { stdout: `${sha('0')}\n` }]]), ref, undefined, pinned.log)
      expect(pinned.lines).toEqual([`info ${ref} is pinned by digest and on the host: no pull.`])

      const bare = recorder()
      const image = 'ghcr.io/behindy/back:v1'
      await pullImage(new FakeRemote([[PULL, resolvedOut(image, [])]]), image, undefined, bare.log)
      expect(bare.lines).toEqual([`info Pulling ${image}…`, `info ${image}: the registry gave no digest, so it runs by its name.`])
      expect(stdout.text()).toBe('')
    })

    it('a pull that fails: its one line in that log, the error thrown, nothing on stdout', async () => {
      const remote = new FakeRemote([[PULL, { code: 1, stderr: 'manifest unknown' }]])
      const { lines, log } = recorder()
      const e = (await pullImage(remote, 'ghcr.io/behindy/back:v9', undefined, log).catch((x: unknown) => x)) as HostError
      expect(e).toBeInstanceOf(HostError)
      expect(e.message).toMatch(/^Pulling ghcr\.io\/behindy\/back:v9 failed: manifest unknown/)
      expect(lines).toEqual(['info Pulling ghcr.io/behindy/back:v9…'])
      expect(stdout.text()).toBe('')
    })
  })
})

describe('pruneImages (against a fake host)', () => {
  /** `docker images --digests` rows of the repository, newest first: `repository:tag digest id`. */
  const hostWith = (repository: string, rows: string[]) =>
    new FakeRemote([
      [
        new RegExp(
          `^docker images --digests --format '\\{\\{\\.Repository\\}\\}:\\{\\{\\.Tag\\}\\} \\{\\{\\.Digest\\}\\} \\{\\{\\.ID\\}\\}' ${repository.replace(/[.]/g, '\\.')}$`
        ),
        { stdout: rows.map(r => `${r}\n`).join('') }
      ],
      [/docker rmi/, { stdout: '' }]
    ])
  /** The references given to docker rmi (none when it was not run). */
  const removed = (remote: FakeRemote): string[] => {
    const rm = remote.matching(/docker rmi/)
    expect(rm.length).toBeLessThanOrEqual(1)
    return rm.length ? rm[0].sh.split("' sh ")[1].split(' ') : []
  }

  it('keeps the newest keep-images by image ID (several tags of one image count once) and every ID a kept reference names', async () => {
    const remote = hostWith('app', [
      `app:v6 ${sha('6')} id6`,
      `app:main ${sha('6')} id6`,
      `app:v5 ${sha('5')} id5`,
      `app:v4 ${sha('4')} id4`,
      `app:v3 ${sha('3')} id3`,
      `app:v2 ${sha('2')} id2`,
      `app:old-name ${sha('1')} id1`,
      `app:v1 ${sha('1')} id1`
    ])
    // Serving v6, rolling back to v1 (named by its tag only: a record of an earlier release).
    await pruneImages(remote, 2, 'app', ['app:v6', `app@${sha('6')}`, 'app:v1', ''])
    expect(remote.unmatched).toEqual([])
    // id6 and id5 are the newest two; id1 is the rollback target, so its other tag stays too.
    expect(removed(remote)).toEqual(['app:v4', 'app:v3', 'app:v2'])
  })

  it('a tag that moved on: the content it named before stays while a kept digest names it; older untagged content goes by repo@digest', async () => {
    const repo = '127.0.0.1:5000/behindy/app'
    const remote = hostWith(repo, [
      `${repo}:stable ${sha('c')} idC`,
      `${repo}:<none> ${sha('b')} idB`,
      `${repo}:<none> ${sha('a')} idA`,
      // Built on the host, never pushed: no reference to remove it by.
      `${repo}:<none> <none> idZ`
    ])
    // `stable` named b when it served; it names c now.
    await pruneImages(remote, 1, repo, [`${repo}:stable`, `${repo}@${sha('c')}`, `${repo}:stable`, `${repo}@${sha('b')}`])
    expect(remote.unmatched).toEqual([])
    expect(removed(remote)).toEqual([`${repo}@${sha('a')}`])
  })

  it('never removes the serving digest or the rollback target, however old', async () => {
    const remote = hostWith('app', [
      `app:v3 ${sha('3')} id3`,
      `app:v2 ${sha('2')} id2`,
      `app:<none> ${sha('1')} id1`,
      `app:v0 ${sha('0')} id0`
    ])
    // A rollback to v1's digest (its tag gone since) while v0 served before it: both kept, only by digest.
    await pruneImages(remote, 1, 'app', ['app:v1', `app@${sha('1')}`, 'app:v0-moved', `app@${sha('0')}`])
    expect(removed(remote)).toEqual(['app:v2'])
  })

  it('nothing to prune: no docker rmi', async () => {
    const remote = hostWith('app', [`app:v2 ${sha('2')} id2`, `app:<none> ${sha('1')} id1`])
    await pruneImages(remote, 3, 'app', ['app:v2', `app@${sha('2')}`, '', ''])
    expect(remote.unmatched).toEqual([])
    expect(remote.calls).toHaveLength(1)
    expect(stdout.text()).toContain('2 image(s) of app on the host; nothing to prune.')
  })
})
