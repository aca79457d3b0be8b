import { describe, expect, it, vi } from 'vitest'
import { HostError } from '../../src/errors'
import { appendHistory, parseHistory, phaseSeconds, previousImage, rollbackTarget, type HistoryRecord } from '../../src/history'
import { placeholderUpstream, upstreamConf } from '../../src/upstream'
import { captureStdout, FakeRemote } from './helpers'

captureStdout()

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

describe('previousImage', () => {
  const img = (t: string) => `ghcr.io/behindy/back:${t}`

  it('is the newest successful release other than the one serving', () => {
    const h = [rec({ image: img('v1') }), rec({ image: img('v2') }), rec({ image: img('v3') })]
    expect(previousImage(h, 'backend', img('v3'))).toBe(img('v2'))
    expect(previousImage(h, 'backend', img('v2'))).toBe(img('v3'))
  })

  it('skips failed and rolled-back releases', () => {
    const h = [
      rec({ image: img('v1') }),
      rec({ image: img('v2'), result: 'rolled-back' }),
      rec({ image: img('v3'), result: 'failed' }),
      rec({ image: img('v4') })
    ]
    expect(previousImage(h, 'backend', img('v4'))).toBe(img('v1'))
  })

  it('skips other services', () => {
    const h = [rec({ image: img('v1') }), rec({ service: 'story', image: 'ghcr.io/behindy/story:s9' }), rec({ image: img('v2') })]
    expect(previousImage(h, 'backend', img('v2'))).toBe(img('v1'))
    expect(previousImage(h, 'story', 'ghcr.io/behindy/story:s9')).toBeUndefined()
  })

  it('skips repeated deploys of the serving image', () => {
    const h = [rec({ image: img('v1') }), rec({ image: img('v2') }), rec({ image: img('v2') })]
    expect(previousImage(h, 'backend', img('v2'))).toBe(img('v1'))
  })

  it('without a live upstream, takes the newest release as serving', () => {
    const h = [rec({ image: img('v1') }), rec({ image: img('v2') })]
    expect(previousImage(h, 'backend', undefined)).toBe(img('v1'))
  })

  it('undefined when there is nothing to go back to', () => {
    expect(previousImage([], 'backend', img('v1'))).toBeUndefined()
    expect(previousImage([rec({ image: img('v1') })], 'backend', img('v1'))).toBeUndefined()
    expect(previousImage([rec({ image: img('v1') })], 'backend', undefined)).toBeUndefined()
    expect(previousImage([rec({ image: img('v0'), result: 'failed' }), rec({ image: img('v1') })], 'backend', img('v1'))).toBeUndefined()
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
      previousImage: 'ghcr.io/behindy/back:v1',
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

  it('rollbackTarget: the newest other successful image than the one the upstream names', async () => {
    const history = [rec({ image: 'b:1' }), rec({ image: 'b:2' }), rec({ image: 'b:3' })].map(r => JSON.stringify(r)).join('\n')
    const remote = (upstream: string) =>
      new FakeRemote([
        [/tail -n "\$2" "\$1"; exit 0' sh \/opt\/ops\/history\.jsonl 500$/, { stdout: history }],
        [/cat "\$1"; exit 0' sh \/opt\/ops\/upstreams\/app_backend\.conf$/, { stdout: upstream }]
      ])
    // The upstream, not the history's last line, says what serves (a rollback to b:2 serves b:2).
    expect(
      await rollbackTarget(remote(upstreamConf('app_backend', 8080, { container: 'backend-1', image: 'b:2' })), '/opt/ops', 'backend')
    ).toBe('b:3')
    expect(await rollbackTarget(remote(placeholderUpstream('backend')), '/opt/ops', 'backend')).toBe('b:2')
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
