import { describe, expect, it } from 'vitest'
import {
  addLog,
  canaryFiles,
  canaryPaths,
  canaryUpstream,
  emptyCount,
  judge,
  percentile,
  sideFigures,
  warmLatencies,
  watchCanary,
  type CanaryCount,
  type CanaryInputs,
  type Side
} from '../../src/canary'
import { canaryLogPath, readCanaryLog } from '../../src/commands/canary'
import { fallbackSocket, liveOf, upstreamName, upstreamVar } from '../../src/upstream'
import { captureStdout, FakeRemote } from './helpers'

// The automatic canary's pure parts (its nginx files, the log it reads, the verdict) and its watch loop against a
// fake host.

captureStdout()

/** nginx config without comments. */
const code = (text: string): string =>
  text
    .split('\n')
    .map(l => l.replace(/(^|\s)#.*$/, ''))
    .join('\n')

const LIVE = { container: 'backend-1a2b3c4d', image: 'ghcr.io/behindy/back:v2', digest: `ghcr.io/behindy/back@sha256:${'2'.repeat(64)}` }

describe('canaryFiles', () => {
  const files = canaryFiles('backend', 8080, LIVE, 10)
  const byPath = new Map(files.map(f => [f.path, f.content]))

  it('the three paths of canaryPaths: the split and upstream, the map line, the cookie', () => {
    expect(files.map(f => f.path)).toEqual(['upstreams/canary_backend.conf', 'upstreams/backend.canary.map', 'upstreams/canary.cookie'])
    expect(files.map(f => f.path)).toEqual(canaryPaths('backend'))
    // The map line's file is the one the service's map includes (stateIncludes: `<svc>.canary.ma[p]`).
    expect(canaryPaths('my-svc')).toEqual(['upstreams/canary_my-svc.conf', 'upstreams/my-svc.canary.map', 'upstreams/canary.cookie'])
  })

  it('split_clients on the client id: percent % to the canary upstream, `*` to the live one', () => {
    const conf = code(byPath.get('upstreams/canary_backend.conf') as string)
    const split = /split_clients "\$\{ops_client\}backend" (\$[a-z_]+) \{([^}]*)\}/.exec(conf)
    expect(split).not.toBeNull()
    const [, variable, body] = split as RegExpExecArray
    expect(variable).toBe('$ops_canary_backend')
    expect(
      body
        .split('\n')
        .map(l => l.trim())
        .filter(Boolean)
    ).toEqual(['10% app_backend_canary;', '* app_backend;'])
    expect(canaryUpstream('backend')).toBe('app_backend_canary')
    // The map line sends every port but the preview port's exact match to the split (a regex, after 8504's exact one).
    expect(byPath.get('upstreams/backend.canary.map')).toBe('~. $ops_canary_backend;\n')
  })

  it('the percent is the input; a service with - gets _ in its variable and upstream names', () => {
    const [conf, map] = canaryFiles('my-svc', 9000, LIVE, 50)
    expect(conf.content).toContain('split_clients "${ops_client}my-svc" $ops_canary_my_svc {')
    expect(conf.content).toMatch(/^\s*50% app_my_svc_canary;$/m)
    expect(conf.content).toMatch(/^\s*\* app_my_svc;$/m)
    expect(map.content).toBe('~. $ops_canary_my_svc;\n')
    expect(upstreamVar('my-svc')).toBe('$up_my_svc')
  })

  it("logs both sides to canaryLogPath in the ops_canary format, from the http context (every server's requests)", () => {
    const conf = code(byPath.get('upstreams/canary_backend.conf') as string)
    expect(canaryLogPath('backend')).toBe('/tmp/ops-canary-backend.log')
    expect(conf).toMatch(/^access_log \/tmp\/ops-canary-backend\.log ops_canary;$/m)
  })

  it('the canary upstream block names the new container with resolve (its fallback as backup), as a deployed upstream', () => {
    const conf = byPath.get('upstreams/canary_backend.conf') as string
    const name = canaryUpstream('backend')
    const block = new RegExp(`^upstream ${name} \\{([^}]*)\\}`, 'm').exec(code(conf))
    expect(block).not.toBeNull()
    const servers = [...(block as RegExpExecArray)[1].matchAll(/^\s*server\s+([^;]+);/gm)].map(m => m[1])
    expect(servers).toEqual([`${LIVE.container}:8080 resolve`, `unix:${fallbackSocket(name)} backup`])
    // Never the live upstream's block (that one stays the old container's until the promotion).
    expect(code(conf)).not.toMatch(new RegExp(`^upstream ${upstreamName('backend')} \\{`, 'm'))
    expect(liveOf(conf)).toEqual(LIVE)
  })

  it('the cookie line: a client without ops_client gets one with its request id, for a day, HttpOnly', () => {
    expect(byPath.get('upstreams/canary.cookie')).toBe('"" "ops_client=$request_id; Path=/; Max-Age=86400; HttpOnly; SameSite=Lax";\n')
  })
})

/** $msec of the lines line() makes unless told. */
const AT = 1767225600.123
/** A canary log line as nginx writes it (`$msec $server_port $proxy_host $status $upstream_response_time`). */
const line = (port: number, host: string, status: number, time: string, at = AT): string => `${at} ${port} ${host} ${status} ${time}\n`

describe('addLog', () => {
  it('counts requests of the old and the canary upstream by $proxy_host; 5xx are errors, 4xx are not', () => {
    const count = emptyCount()
    const text = [
      line(80, 'app_backend', 200, '0.010'),
      line(80, 'app_backend', 502, '0.020'),
      line(8443, 'app_backend_canary', 200, '0.030'),
      line(8080, 'app_backend_canary', 404, '0.040'),
      line(80, 'app_backend_canary', 503, '0.050')
    ].join('')
    expect(addLog(count, 'backend', text)).toBe(Buffer.byteLength(text))
    expect(count).toEqual({
      old: { requests: 2, errors: 1, latencies: [0.01, 0.02], ends: [AT, AT] },
      canary: { requests: 3, errors: 1, latencies: [0.03, 0.04, 0.05], ends: [AT, AT, AT] }
    })
  })

  it("skips the preview port's requests (the run's own probes), other services' upstreams and lines without the fields", () => {
    const count = emptyCount()
    const text = [
      line(8504, 'app_backend_canary', 500, '0.010'),
      line(8504, 'app_backend', 500, '0.010'),
      line(80, 'app_frontend', 500, '0.010'),
      line(80, 'app_backend_canary_x', 500, '0.010'),
      line(80, 'ops_maintenance', 503, '0.001'),
      '\n',
      'garbage\n',
      line(80, 'app_backend', 200, '0.005')
    ].join('')
    expect(addLog(count, 'backend', text)).toBe(Buffer.byteLength(text))
    expect(count.canary).toEqual({ requests: 0, errors: 0, latencies: [], ends: [] })
    expect(count.old).toEqual({ requests: 1, errors: 0, latencies: [0.005], ends: [AT] })
  })

  it("each answer's end is its line's $msec (the canary's warm-up is timed by them)", () => {
    const count = emptyCount()
    addLog(
      count,
      'backend',
      line(80, 'app_backend_canary', 200, '0.010', 1767225601.5) + line(80, 'app_backend', 200, '0.010', 1767225602.25)
    )
    expect(count.canary.ends).toEqual([1767225601.5])
    expect(count.old.ends).toEqual([1767225602.25])
  })

  it('a service with - in its name: its upstreams are spelled with _', () => {
    const count = emptyCount()
    addLog(count, 'my-svc', line(80, 'app_my_svc', 200, '0.001') + line(80, 'app_my_svc_canary', 200, '0.002'))
    expect([count.old.requests, count.canary.requests]).toEqual([1, 1])
  })

  it('`-` (nginx answered itself) is 0 s, and the request still counts', () => {
    const count = emptyCount()
    addLog(count, 'backend', line(80, 'app_backend_canary', 504, '-'))
    expect(count.canary).toEqual({ requests: 1, errors: 1, latencies: [0], ends: [AT] })
  })

  // nginx separates the times of several servers tried for one request with ", " (and " : " across an internal
  // redirect), as in $upstream_addr: e.g. the container's address failed right after a reload and its backup (the
  // fallback socket) answered. The time is the sum, not the first.
  it('two upstream servers tried ("0.012, 0.004", "0.010 : 0.020"): their times are summed', () => {
    const count = emptyCount()
    addLog(count, 'backend', line(80, 'app_backend_canary', 200, '0.012, 0.004') + line(80, 'app_backend_canary', 200, '0.010 : 0.020'))
    expect(count.canary.requests).toBe(2)
    expect(count.canary.latencies[0]).toBeCloseTo(0.016, 9)
    expect(count.canary.latencies[1]).toBeCloseTo(0.03, 9)
  })

  it('a WebSocket (101) counts as a request without a latency (it lasts as long as its client stays)', () => {
    const count = emptyCount()
    addLog(count, 'backend', line(80, 'app_backend_canary', 101, '300.123') + line(80, 'app_backend_canary', 200, '0.010'))
    expect(count.canary).toEqual({ requests: 2, errors: 0, latencies: [0.01], ends: [AT] })
  })

  it('a last line without its newline is not consumed: the bytes returned end at the last newline', () => {
    const count = emptyCount()
    const whole = line(80, 'app_backend_canary', 200, '0.010')
    const partial = '1767225600.456 80 app_backend_canary 50'
    expect(addLog(count, 'backend', whole + partial)).toBe(whole.length)
    expect(count.canary.requests).toBe(1)
    // Nothing complete: nothing used.
    expect(addLog(emptyCount(), 'backend', partial)).toBe(0)
    expect(addLog(emptyCount(), 'backend', '')).toBe(0)
  })

  it('the bytes returned are UTF-8 bytes (the offset of `tail -c`), not UTF-16 characters', () => {
    const count = emptyCount()
    const text = `${line(80, 'app_backend', 200, '0.010')}1767225600.1 80 héllo-ümlaut 200 0.1\n`
    const used = addLog(count, 'backend', `${text}1767225600.2 80 app_bä`)
    expect(used).toBe(Buffer.byteLength(text, 'utf8'))
    expect(used).toBeGreaterThan(text.length)
    expect(count.old.requests).toBe(1)
  })

  it('two reads continue at the offset: a line split across them is counted once, whole', () => {
    const log = [
      line(80, 'app_backend', 200, '0.010'),
      line(80, 'app_backend_canary', 500, '0.020'),
      line(80, 'app_backend_canary', 200, '0.030')
    ].join('')
    const bytes = Buffer.from(log)
    const count = emptyCount()
    // The first read ends in the middle of the second line (as `tail -c +N` might while nginx writes it).
    const cut = bytes.indexOf('\n') + 10
    let offset = addLog(count, 'backend', bytes.subarray(0, cut).toString())
    expect(offset).toBe(bytes.indexOf('\n') + 1)
    offset += addLog(count, 'backend', bytes.subarray(offset).toString())
    expect(offset).toBe(bytes.length)
    expect(count.old).toEqual({ requests: 1, errors: 0, latencies: [0.01], ends: [AT] })
    expect(count.canary).toEqual({ requests: 2, errors: 1, latencies: [0.02, 0.03], ends: [AT, AT] })
  })
})

describe('percentile', () => {
  it('no values: 0', () => {
    expect(percentile([], 50)).toBe(0)
    expect(percentile([], 99)).toBe(0)
  })

  it('nearest rank: the smallest value with at least p % of the values at or below it', () => {
    const v = [5, 1, 4, 2, 3, 10, 9, 8, 7, 6]
    expect(percentile(v, 50)).toBe(5)
    expect(percentile(v, 90)).toBe(9)
    expect(percentile(v, 91)).toBe(10)
    expect(percentile(v, 99)).toBe(10)
    expect(percentile(v, 100)).toBe(10)
    expect(percentile(v, 10)).toBe(1)
    expect(percentile(v, 0)).toBe(1)
    expect(percentile([0.2], 99)).toBe(0.2)
    // 100 values: p99 is the 99th, so one outlier does not make the p99.
    const hundred = [...Array.from({ length: 99 }, () => 0.01), 5]
    expect(percentile(hundred, 99)).toBe(0.01)
    expect(percentile([...hundred, 5], 99)).toBe(5)
  })

  it('does not reorder its input', () => {
    const v = [3, 1, 2]
    percentile(v, 50)
    expect(v).toEqual([3, 1, 2])
  })
})

describe('judge', () => {
  const c: CanaryInputs = { percent: 10, seconds: 60, minRequests: 20, errorMargin: 1, latencyFactor: 2 }
  /**
   * A side of `requests` answers, `errors` of them 5xx, each taking `latency` s (or the given latencies), one every
   * `every` s (0.01: 100 in the first fifth of c's 60 s).
   */
  const side = (requests: number, errors = 0, latency: number | number[] = 0.01, every = 0.01): Side => {
    const latencies = Array.isArray(latency) ? latency : Array.from({ length: requests }, () => latency)
    return { requests, errors, latencies, ends: latencies.map((_, i) => AT + i * every) }
  }
  const count = (old: Side, canary: Side): CanaryCount => ({ old, canary })

  it('waits before the end while the canary has fewer than minRequests, whatever its errors', () => {
    expect(judge(count(side(100), side(19, 19)), c, false)).toEqual({ kind: 'wait' })
    expect(judge(count(side(100), side(0)), c, false)).toEqual({ kind: 'wait' })
    // Slow but not failing: latency is judged only at the end.
    expect(judge(count(side(100), side(30, 0, 9)), c, false)).toEqual({ kind: 'wait' })
  })

  it('fails early once it has minRequests and its 5xx rate is above the old one plus errorMargin', () => {
    const v = judge(count(side(100, 1), side(20, 1)), c, false)
    // 5 % against 1 % + 1 point.
    expect(v.kind).toBe('fail')
    expect(v.kind === 'fail' && v.reason).toBe(
      'the canary answered 5.0 % 5xx (1 of 20), the old release 1.0 % (1 of 100); canary-error-margin allows 1 point(s) more'
    )
    // At the margin exactly: not above it.
    expect(judge(count(side(100, 1), side(50, 1)), c, false)).toEqual({ kind: 'wait' })
    expect(judge(count(side(100, 4), side(20, 1)), c, false)).toEqual({ kind: 'wait' })
    // An old release without requests has a 0 % rate.
    expect(judge(count(side(0), side(20, 1)), { ...c, errorMargin: 4 }, false).kind).toBe('fail')
    expect(judge(count(side(0), side(20, 1)), { ...c, errorMargin: 5 }, false)).toEqual({ kind: 'wait' })
  })

  it('at the end: too few requests fails, naming the count and canary-min-requests', () => {
    const v = judge(count(side(500), side(19)), c, true)
    expect(v).toEqual({
      kind: 'fail',
      reason: 'only 19 request(s) reached the canary in 60 s (canary-min-requests 20): too few to judge it'
    })
  })

  it('at the end: a p99 above max(old p99 × latencyFactor, old p99 + 100 ms) fails; at the bound it is promoted', () => {
    // Old p99 0.2 s: the bound is 0.4 s (× 2 is more than + 100 ms).
    expect(judge(count(side(100, 0, 0.2), side(20, 0, 0.4)), c, true)).toEqual({ kind: 'promote' })
    const v = judge(count(side(100, 0, 0.2), side(20, 0, 0.41)), c, true)
    expect(v).toEqual({
      kind: 'fail',
      reason:
        "the canary's p99 (after its first 10 requests, its warm-up) is 410 ms, the old release's 200 ms; canary-latency-factor 2 allows 400 ms"
    })
    // Old p99 10 ms: × 2 would be 20 ms, the slack makes it 110 ms.
    expect(judge(count(side(100, 0, 0.01), side(20, 0, 0.109)), c, true)).toEqual({ kind: 'promote' })
    const slack = judge(count(side(100, 0, 0.01), side(20, 0, 0.111)), c, true)
    expect(slack.kind === 'fail' && slack.reason).toContain('allows 110 ms')
    // The p99, not the mean: one slow request in 180 (after the warm-up of 20) does not fail it.
    expect(judge(count(side(100, 0, 0.01), side(200, 0, [...Array.from({ length: 199 }, () => 0.01), 3], 1)), c, true)).toEqual({
      kind: 'promote'
    })
  })

  it("the canary's warm-up (its first minRequests requests, at most half) does not count for its p99", () => {
    // 20 slow first answers of a fresh container, then 80 as fast as the old release's.
    const warming = [...Array.from({ length: 20 }, () => 2), ...Array.from({ length: 80 }, () => 0.01)]
    expect(judge(count(side(100, 0, 0.01), side(100, 0, warming)), c, true)).toEqual({ kind: 'promote' })
    expect(warmLatencies(side(100, 0, warming, 1), c)).toHaveLength(80)
    // With fewer requests, at most half are warm-up.
    expect(warmLatencies(side(30, 0, 0.01, 1), c)).toHaveLength(15)
    // Slow after the warm-up too: it fails.
    const v = judge(count(side(100, 0, 0.01), side(100, 0, 2, 1)), c, true)
    expect(v.kind === 'fail' && v.reason).toMatch(/^the canary's p99 \(after its first 20 requests, its warm-up\) is 2000 ms/)
  })

  it("the canary's warm-up also spans the first fifth of canary-seconds, from its first answer (at most half of its answers)", () => {
    // A cold JIT: slow for its first 12 s of 60 (more than minRequests answers at 5 a second), then as fast as the old one.
    const at = (i: number) => i * 0.2
    const warming = Array.from({ length: 250 }, (_, i) => (at(i) < 11.9 ? 0.5 : 0.01))
    expect(judge(count(side(500, 0, 0.01), side(250, 0, warming, 0.2)), c, true)).toEqual({ kind: 'promote' })
    // Answers from 12 s on count: 250 - 60.
    expect(warmLatencies(side(250, 0, warming, 0.2), c)).toHaveLength(190)
    // Slow past the first fifth: it fails, and the reason says how many answers were its warm-up.
    const slower = Array.from({ length: 250 }, (_, i) => (at(i) < 20 ? 0.5 : 0.01))
    const v = judge(count(side(500, 0, 0.01), side(250, 0, slower, 0.2)), c, true)
    expect(v.kind === 'fail' && v.reason).toBe(
      "the canary's p99 (after its first 60 requests, its warm-up) is 500 ms, the old release's 10 ms; canary-latency-factor 2 allows 110 ms"
    )
    // Its clock starts at its first answer, not at the epoch: a canary whose first answer came late is warmed the same.
    const late = side(250, 0, warming, 0.2)
    late.ends = late.ends.map(t => t + 30)
    expect(warmLatencies(late, c)).toHaveLength(190)
    // Never more than half of its answers: 40 answers over 8 s are all in the first fifth, 20 count.
    expect(warmLatencies(side(40, 0, 0.01, 0.2), c)).toHaveLength(20)
  })

  it('at the end: an old release that had no request does not fail the canary on latency', () => {
    expect(judge(count(side(0), side(20, 0, 30)), c, true)).toEqual({ kind: 'promote' })
  })

  it('at the end: the error check still comes first', () => {
    const v = judge(count(side(100, 0, 0.01), side(20, 10, 9)), c, true)
    expect(v.kind === 'fail' && v.reason).toMatch(/^the canary answered 50\.0 % 5xx/)
  })

  it('promotes a canary that answers as well as the old release', () => {
    expect(judge(count(side(200, 2, 0.05), side(25, 0, 0.06)), c, true)).toEqual({ kind: 'promote' })
  })
})

describe('sideFigures', () => {
  it('requests, 5xx with their rate, p50 and p99 in ms', () => {
    expect(sideFigures({ requests: 4, errors: 1, latencies: [0.01, 0.02, 0.03, 0.5], ends: [] })).toBe(
      '4 requests, 1 5xx (25.0 %), p50 20 ms, p99 500 ms'
    )
    expect(sideFigures(emptyCount().old)).toBe('0 requests, 0 5xx (0.0 %), p50 0 ms, p99 0 ms')
  })
})

describe('watchCanary (against a fake host)', () => {
  const NGINX = 'nginx-0123'
  const c: CanaryInputs = { percent: 10, seconds: 0, minRequests: 2, errorMargin: 1, latencyFactor: 2 }
  const READ = /tail -c \+/
  /** The offsets the run read the log at. */
  const offsets = (remote: FakeRemote): number[] => remote.matching(READ).map(call => Number(/ (\d+)$/.exec(call.sh)?.[1]))

  it('reads the log from where the last read ended, then judges it at the end', async () => {
    const first = line(80, 'app_backend', 200, '0.010') + line(80, 'app_backend_canary', 200, '0.010')
    const log = `${first}${line(80, 'app_backend_canary', 200, '0.010')}${line(80, 'app_backend', 200, '0.020')}`
    // What the log holds at each read: at the first, nginx is in the middle of writing the third line.
    const states = [log.slice(0, first.length + 25), log]
    let n = 0
    const remote = new FakeRemote([
      [
        READ,
        call => {
          const offset = Number(/ (\d+)$/.exec(call.sh)?.[1])
          return {
            stdout: Buffer.from(states[Math.min(n++, states.length - 1)])
              .subarray(offset)
              .toString()
          }
        }
      ]
    ])
    const r = await watchCanary(remote, NGINX, 'backend', { ...c, seconds: 0.3 })
    expect(remote.unmatched).toEqual([])
    expect(remote.matching(READ)[0].sh).toBe(readCanaryLog(NGINX, canaryLogPath('backend'), 0).sh)
    // The second read starts at the partial line, which it then gets whole.
    expect(offsets(remote).slice(0, 2)).toEqual([0, Buffer.byteLength(first)])
    expect(r.verdict).toEqual({ kind: 'promote' })
    expect(r.count.canary.requests).toBe(2)
    expect(r.count.old.requests).toBe(2)
    expect(r.figures).toEqual([
      'canary (10 %): 2 requests, 0 5xx (0.0 %), p50 10 ms, p99 10 ms',
      'old release: 2 requests, 0 5xx (0.0 %), p50 10 ms, p99 20 ms'
    ])
    expect(r.seconds).toBeGreaterThanOrEqual(0.29)
  })

  it('a failing canary ends the watch at once, long before its seconds', async () => {
    const remote = new FakeRemote([
      [READ, { stdout: line(80, 'app_backend_canary', 502, '0.010') + line(80, 'app_backend_canary', 502, '0.010') }]
    ])
    const t = Date.now()
    const r = await watchCanary(remote, NGINX, 'backend', { ...c, seconds: 60 })
    expect(Date.now() - t).toBeLessThan(5000)
    expect(remote.matching(READ)).toHaveLength(1)
    expect(r.verdict.kind).toBe('fail')
  })

  it('a failing read is an error naming the exit code', async () => {
    const remote = new FakeRemote([[READ, { code: 1, stderr: 'Error response from daemon: No such container: nginx-0123' }]])
    await expect(watchCanary(remote, NGINX, 'backend', c)).rejects.toThrow(
      'reading the canary log failed (exit 1): Error response from daemon: No such container: nginx-0123'
    )
  })
})
