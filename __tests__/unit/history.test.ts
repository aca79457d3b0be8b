import { describe, expect, it, vi } from 'vitest'
import { HostError } from '../../src/errors'
import { appendHistory, parseHistory, phaseSeconds, previousRelease, rollbackTarget, type HistoryRecord } from '../../src/history'
import { placeholderUpstream, upstreamConf, type Live } from '../../src/upstream'
import { captureStdout, FakeRemote } from './helpers'

const stdout = captureStdout()

function rec(over: Partial<HistoryRecord>): HistoryRecord {
  return {
    time: '2026-01-01T00:00:00Z',
    mode: 'deploy',
    service: 'backend',
    image: 'ghcr.io/behindy/back:v1',
    previousImage: '',
    container: 'backend-00000000',
    result: 'success',
    phases: {},
    ...over
  }
}

describe('previousRelease', () => {
  const img = (t: string) => `ghcr.io/behindy/back:${t}`
  /** A content digest of the repository: 64 times the one hex character. */
  const dig = (c: string) => `ghcr.io/behindy/back@sha256:${c.repeat(64)}`
  /** What the upstream file says serves. */
  const live = (image: string, digest?: string): Live => ({
    container: 'backend-1a2b3c4d',
    image,
    ...(digest === undefined ? {} : { digest })
  })
  /** The image a rollback returns to, for the records without digests (earlier releases). */
  const previous = (h: HistoryRecord[], service: string, current: Live | undefined) => previousRelease(h, service, current)?.image

  describe('records without digests (earlier releases): told apart by their image references', () => {
    it('is the newest successful release other than the one serving, with no digest', () => {
      const h = [rec({ image: img('v1') }), rec({ image: img('v2') }), rec({ image: img('v3') })]
      expect(previousRelease(h, 'backend', live(img('v3')))).toEqual({ image: img('v2'), digest: '' })
      expect(previousRelease(h, 'backend', live(img('v2')))).toEqual({ image: img('v3'), digest: '' })
    })

    it('skips failed and rolled-back releases', () => {
      const h = [
        rec({ image: img('v1') }),
        rec({ image: img('v2'), result: 'rolled-back' }),
        rec({ image: img('v3'), result: 'failed' }),
        rec({ image: img('v4') })
      ]
      expect(previous(h, 'backend', live(img('v4')))).toBe(img('v1'))
    })

    it('skips other services', () => {
      const h = [rec({ image: img('v1') }), rec({ service: 'story', image: 'ghcr.io/behindy/story:s9' }), rec({ image: img('v2') })]
      expect(previous(h, 'backend', live(img('v2')))).toBe(img('v1'))
      expect(previous(h, 'story', live('ghcr.io/behindy/story:s9'))).toBeUndefined()
    })

    it('skips repeated deploys of the serving image', () => {
      const h = [rec({ image: img('v1') }), rec({ image: img('v2') }), rec({ image: img('v2') })]
      expect(previous(h, 'backend', live(img('v2')))).toBe(img('v1'))
    })

    it('without a live upstream, takes the newest release as serving', () => {
      const h = [rec({ image: img('v1') }), rec({ image: img('v2') })]
      expect(previous(h, 'backend', undefined)).toBe(img('v1'))
    })

    it('undefined when there is nothing to go back to', () => {
      expect(previousRelease([], 'backend', live(img('v1')))).toBeUndefined()
      expect(previousRelease([rec({ image: img('v1') })], 'backend', live(img('v1')))).toBeUndefined()
      expect(previousRelease([rec({ image: img('v1') })], 'backend', undefined)).toBeUndefined()
      expect(
        previousRelease([rec({ image: img('v0'), result: 'failed' }), rec({ image: img('v1') })], 'backend', live(img('v1')))
      ).toBeUndefined()
    })
  })

  describe('records with digests: told apart by content', () => {
    it('the same tag deployed twice with different content: the rollback returns to the older digest', () => {
      const h = [rec({ image: img('main'), digest: dig('1') }), rec({ image: img('main'), digest: dig('2') })]
      expect(previousRelease(h, 'backend', live(img('main'), dig('2')))).toEqual({ image: img('main'), digest: dig('1') })
      // Without a live upstream the newest release is the one serving.
      expect(previousRelease(h, 'backend', undefined)).toEqual({ image: img('main'), digest: dig('1') })
    })

    it('the same content deployed again (under its tag or another): skipped like a repeated deploy', () => {
      const h = [
        rec({ image: img('v1'), digest: dig('1') }),
        rec({ image: img('v2'), digest: dig('2') }),
        rec({ image: img('v2'), digest: dig('2') }),
        rec({ image: img('stable'), digest: dig('2') })
      ]
      expect(previousRelease(h, 'backend', live(img('stable'), dig('2')))).toEqual({ image: img('v1'), digest: dig('1') })
    })

    it('the tag moved since: the serving release is identified by its digest, not by the tag it shares with the others', () => {
      // main named 1, then 2; a rollback put 1 back (its record names main too).
      const h = [
        rec({ image: img('main'), digest: dig('1') }),
        rec({ image: img('main'), digest: dig('2') }),
        rec({ mode: 'rollback', image: img('main'), digest: dig('1') })
      ]
      expect(previousRelease(h, 'backend', live(img('main'), dig('1')))).toEqual({ image: img('main'), digest: dig('2') })
      // The upstream, not the history's last line, says what serves.
      expect(previousRelease(h, 'backend', live(img('main'), dig('2')))).toEqual({ image: img('main'), digest: dig('1') })
    })

    it('records of earlier releases (no digest) before the ones with digests: returned as they were recorded', () => {
      const h = [rec({ image: img('v1') }), rec({ image: img('v2'), digest: dig('2') })]
      expect(previousRelease(h, 'backend', live(img('v2'), dig('2')))).toEqual({ image: img('v1'), digest: '' })
    })
  })
})

describe('parseHistory', () => {
  it('reads one record per line, skipping blank and damaged lines (a write cut halfway)', () => {
    const a = rec({ image: 'a:1' })
    const b = rec({ image: 'b:2', result: 'rolled-back', error: 'unhealthy' })
    const text = [JSON.stringify(a), '', '{"time":"2026-01-0', JSON.stringify(b), ''].join('\n')
    expect(parseHistory(text)).toEqual([a, b])
    expect(parseHistory('')).toEqual([])
  })
})

describe('phaseSeconds', () => {
  const records = [
    { name: 'Pull image', startMs: 0, ms: 1234, ok: true },
    { name: 'story: Start container', startMs: 1300, ms: 20, ok: true },
    { name: 'story: Health gate (direct)', startMs: 1320, ms: 4567.4, ok: false }
  ]
  it('seconds (ms precision) by phase name; with a label only the phases of that service', () => {
    expect(phaseSeconds(records)).toEqual({ 'Pull image': 1.234, 'story: Start container': 0.02, 'story: Health gate (direct)': 4.567 })
    expect(phaseSeconds(records, 'story: ')).toEqual({ 'story: Start container': 0.02, 'story: Health gate (direct)': 4.567 })
  })
})

describe('appendHistory / rollbackTarget (against a fake host)', () => {
  it('appends one JSON line, stamped with the time and who ran it, to <ops-dir>/history.jsonl', async () => {
    vi.stubEnv('GITHUB_REPOSITORY', 'behindy/behindy-back')
    vi.stubEnv('GITHUB_SHA', 'abc123')
    vi.stubEnv('GITHUB_ACTOR', 'octocat')
    const remote = new FakeRemote([[/cat >> "\$1"' sh \/opt\/ops\/history\.jsonl$/, {}]])
    const r: Omit<HistoryRecord, 'time'> = {
      mode: 'deploy',
      service: 'backend',
      image: 'ghcr.io/behindy/back:v2',
      digest: `ghcr.io/behindy/back@sha256:${'2'.repeat(64)}`,
      previousImage: 'ghcr.io/behindy/back:v1',
      previousDigest: `ghcr.io/behindy/back@sha256:${'1'.repeat(64)}`,
      container: 'backend-0a1b2c3d',
      result: 'success',
      phases: { 'Pull image': 1.2 }
    }
    await appendHistory(remote, '/opt/ops', r)
    expect(remote.unmatched).toEqual([])
    expect(remote.calls).toHaveLength(1)
    const line = String(remote.calls[0].stdin)
    expect(line.endsWith('\n')).toBe(true)
    expect(line.trim()).not.toContain('\n')
    const written = JSON.parse(line) as HistoryRecord
    expect(written).toMatchObject({ ...r, repository: 'behindy/behindy-back', sha: 'abc123', actor: 'octocat' })
    expect(Date.parse(written.time)).not.toBeNaN()
  })

  /** A host with this history and this upstream file of backend. */
  const hostWith = (records: HistoryRecord[], upstream: string) =>
    new FakeRemote([
      [/tail -n "\$2" "\$1"; exit 0' sh \/opt\/ops\/history\.jsonl 500$/, { stdout: records.map(r => JSON.stringify(r)).join('\n') }],
      [/cat "\$1"; exit 0' sh \/opt\/ops\/upstreams\/app_backend\.conf$/, { stdout: upstream }]
    ])

  it('rollbackTarget: the newest other successful image than the one the upstream names', async () => {
    const history = [rec({ image: 'b:1' }), rec({ image: 'b:2' }), rec({ image: 'b:3' })]
    // The upstream, not the history's last line, says what serves (a rollback to b:2 serves b:2).
    expect(
      await rollbackTarget(
        hostWith(history, upstreamConf('app_backend', 8080, { container: 'backend-1', image: 'b:2' })),
        '/opt/ops',
        'backend'
      )
    ).toEqual({ image: 'b:3', digest: '' })
    expect(await rollbackTarget(hostWith(history, placeholderUpstream('backend')), '/opt/ops', 'backend')).toEqual({
      image: 'b:2',
      digest: ''
    })
  })

  it('rollbackTarget: the digest that served before, by the digest the upstream names (the tag moved in between)', async () => {
    const d1 = `b@sha256:${'1'.repeat(64)}`
    const d2 = `b@sha256:${'2'.repeat(64)}`
    const history = [
      rec({ image: 'b:main', digest: d1 }),
      rec({ image: 'b:main', digest: d2, previousImage: 'b:main', previousDigest: d1 })
    ]
    const upstream = upstreamConf('app_backend', 8080, { container: 'backend-2', image: 'b:main', digest: d2 })
    expect(await rollbackTarget(hostWith(history, upstream), '/opt/ops', 'backend')).toEqual({ image: 'b:main', digest: d1 })
    expect(stdout.text()).toContain(`backend serves b:main (${d2}); rolling back to b:main (${d1}).`)
  })

  it('rollbackTarget: nothing to go back to is a HostError that says to deploy instead', async () => {
    const remote = new FakeRemote([
      [/history\.jsonl/, { stdout: JSON.stringify(rec({ image: 'b:1' })) }],
      [/app_backend\.conf$/, {}]
    ])
    const e = await rollbackTarget(remote, '/opt/ops', 'backend').catch((x: unknown) => x)
    expect(e).toBeInstanceOf(HostError)
    expect((e as HostError).message).toContain('No previous image of backend in the deploy history (/opt/ops/history.jsonl)')
    expect((e as HostError).fix).toBe('deploy the wanted image with mode deploy')
  })
})
