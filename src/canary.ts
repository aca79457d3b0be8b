import * as core from '@actions/core'
import { canaryLogPath, readCanaryLog } from './commands/canary'
import type { NginxFile } from './nginx'
import { sleep } from './shell'
import type { Remote } from './ssh'
import { upstreamConf, upstreamName, type Live } from './upstream'

// The automatic canary: after the preview gate nginx sends a share of clients to the new container (sticky per
// client by the ops_client cookie), logs what each side answers, and the run compares the two before it promotes the
// new release or rolls it back.

export interface CanaryInputs {
  /** Share of clients sent to the new release, 1–50. */
  percent: number
  /** How long the canary runs before it is promoted. */
  seconds: number
  /** Canary requests needed before it is judged (fewer by the end: it fails). */
  minRequests: number
  /** Percentage points of 5xx the canary may have above the old release's rate. */
  errorMargin: number
  /** The canary's p99 (after its warm-up: see warmLatencies) may be this many times the old release's (and always 100 ms more). */
  latencyFactor: number
}

/** The upstream block of a service's canary. */
export const canaryUpstream = (service: string): string => `${upstreamName(service)}_canary`
/** Every file a canary of the service writes (in ops-dir): the split and upstream, the map line, the cookie. */
export const canaryPaths = (service: string): string[] => [
  `upstreams/canary_${service}.conf`,
  `upstreams/${service}.canary.map`,
  'upstreams/canary.cookie'
]
/** How long a client keeps its ops_client cookie (it only picks a side while a canary runs). */
const COOKIE_MAX_AGE_S = 86_400
/** How often the run reads the canary log (a failing canary is rolled back within about this much), and says where it stands. */
const POLL_MS = 500
const PROGRESS_MS = 5000
/** The canary's p99 may always be this much above the old release's (timer and scheduling noise at small latencies). */
const LATENCY_SLACK_S = 0.1

/**
 * nginx files that start a canary: `split_clients` on the client's id (cookie, else the request's id) picking the
 * canary's upstream for `percent` % of clients, the canary's upstream block (the new container, as upstreamConf),
 * the log of both sides, the map line that puts the split in front of the live upstream, and the cookie.
 */
export function canaryFiles(service: string, port: number, live: Live, percent: number): NginxFile[] {
  const [conf, map, cookie] = canaryPaths(service)
  const split = `$ops_canary_${service.replace(/-/g, '_')}`
  return [
    {
      path: conf,
      content: [
        `# ops-action canary of ${service}: ${percent} % of clients to ${live.container} (${live.image}); removed when it is promoted or rolled back.`,
        `split_clients "\${ops_client}${service}" ${split} {`,
        `    ${percent}% ${canaryUpstream(service)};`,
        `    * ${upstreamName(service)};`,
        '}',
        `access_log ${canaryLogPath(service)} ops_canary;`,
        upstreamConf(canaryUpstream(service), port, live)
      ].join('\n')
    },
    { path: map, content: `~. ${split};\n` },
    { path: cookie, content: `"" "ops_client=$request_id; Path=/; Max-Age=${COOKIE_MAX_AGE_S}; HttpOnly; SameSite=Lax";\n` }
  ]
}

/** What one side of the canary answered clients. */
export interface Side {
  requests: number
  /** 5xx answers. */
  errors: number
  /** Seconds nginx waited for the app (`$upstream_response_time`), one per request. */
  latencies: number[]
  /** When each of those requests ended (`$msec`, seconds since the epoch). */
  ends: number[]
}

export interface CanaryCount {
  old: Side
  canary: Side
}

export const emptyCount = (): CanaryCount => ({
  old: { requests: 0, errors: 0, latencies: [], ends: [] },
  canary: { requests: 0, errors: 0, latencies: [], ends: [] }
})

/**
 * Adds the complete lines of a piece of the canary log (`$msec $server_port $proxy_host $status
 * $upstream_response_time`) to `count`; the preview port's requests (the run's own probes) are not clients'.
 * Returns the bytes used: a last line without its newline is read again next time.
 */
export function addLog(count: CanaryCount, service: string, text: string): number {
  const end = text.lastIndexOf('\n') + 1
  for (const line of text.slice(0, end).split('\n')) {
    const [at, port, host, status, ...rest] = line.split(' ')
    const times = rest.join(' ')
    if (!times || port === '8504') continue
    const side = host === upstreamName(service) ? count.old : host === canaryUpstream(service) ? count.canary : undefined
    if (!side) continue
    side.requests++
    if (/^5\d\d$/.test(status)) side.errors++
    // A WebSocket (101) lasts as long as its client stays: no latency. "0.012, 0.004" when nginx tried twice, "-"
    // when it answered itself.
    if (status === '101') continue
    side.latencies.push(times.split(/[,:]\s*/).reduce((s, t) => s + (Number(t) || 0), 0))
    side.ends.push(Number(at) || 0)
  }
  return Buffer.byteLength(text.slice(0, end))
}

/** The p-th percentile (0–100) of the values, nearest rank; 0 without any. */
export function percentile(values: number[], p: number): number {
  if (!values.length) return 0
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]
}

const rate = (s: Side): number => (s.requests ? (100 * s.errors) / s.requests : 0)

export type Verdict = { kind: 'wait' } | { kind: 'promote' } | { kind: 'fail'; reason: string }

/** The share of the canary's time whose answers are its warm-up (with its first minRequests). */
const WARMUP_SHARE = 0.2

/**
 * The canary's latencies that count for its p99: without its warm-up — a fresh container (JIT, first compiles, cold
 * caches) against one that has served for long: its first minRequests answers and every answer of its first
 * WARMUP_SHARE of canary-seconds (from its first answer), at most half of them. They count for its 5xx rate.
 */
export const warmLatencies = (canary: Side, c: Pick<CanaryInputs, 'minRequests' | 'seconds'>): number[] =>
  canary.latencies.slice(warmup(canary, c))

/** How many of the canary's first answers are its warm-up. */
function warmup(canary: Side, c: Pick<CanaryInputs, 'minRequests' | 'seconds'>): number {
  const first = canary.ends[0] ?? 0
  const cold = canary.ends.findIndex(t => t >= first + WARMUP_SHARE * c.seconds)
  return Math.min(Math.max(c.minRequests, cold < 0 ? canary.ends.length : cold), Math.floor(canary.latencies.length / 2))
}

/**
 * The canary against the old release. Once it has minRequests, a 5xx rate above the old one's plus errorMargin fails
 * it at once; at the end (`final`), too few requests or a p99 (after its warm-up) above latencyFactor × the old one's
 * (and LATENCY_SLACK_S more) fail it, else it is promoted.
 */
export function judge(count: CanaryCount, c: CanaryInputs, final: boolean): Verdict {
  const { old, canary } = count
  if (canary.requests >= c.minRequests && rate(canary) > rate(old) + c.errorMargin)
    return {
      kind: 'fail',
      reason: `the canary answered ${pct(rate(canary))} 5xx (${canary.errors} of ${canary.requests}), the old release ${pct(rate(old))} (${old.errors} of ${old.requests}); canary-error-margin allows ${c.errorMargin} point(s) more`
    }
  if (!final) return { kind: 'wait' }
  if (canary.requests < c.minRequests)
    return {
      kind: 'fail',
      reason: `only ${canary.requests} request(s) reached the canary in ${c.seconds} s (canary-min-requests ${c.minRequests}): too few to judge it`
    }
  const warm = warmLatencies(canary, c)
  const [p99Old, p99New] = [percentile(old.latencies, 99), percentile(warm, 99)]
  const bound = Math.max(p99Old * c.latencyFactor, p99Old + LATENCY_SLACK_S)
  if (old.requests && p99New > bound)
    return {
      kind: 'fail',
      reason: `the canary's p99 (after its first ${canary.latencies.length - warm.length} requests, its warm-up) is ${ms(p99New)}, the old release's ${ms(p99Old)}; canary-latency-factor ${c.latencyFactor} allows ${ms(bound)}`
    }
  return { kind: 'promote' }
}

const pct = (v: number): string => `${v.toFixed(1)} %`
const ms = (s: number): string => `${Math.round(s * 1000)} ms`

/** One side as the log and the summary show it. */
export function sideFigures(s: Side): string {
  return `${s.requests} requests, ${s.errors} 5xx (${pct(rate(s))}), p50 ${ms(percentile(s.latencies, 50))}, p99 ${ms(percentile(s.latencies, 99))}`
}

export interface CanaryResult {
  verdict: Exclude<Verdict, { kind: 'wait' }>
  count: CanaryCount
  seconds: number
  /** Both sides, one line each. */
  figures: string[]
}

/**
 * Reads the canary log every POLL_MS for c.seconds (nginx already splits clients) and judges it after each read:
 * returns at the first failure, or at the end with the final verdict.
 */
export async function watchCanary(remote: Remote, nginxId: string, service: string, c: CanaryInputs): Promise<CanaryResult> {
  const count = emptyCount()
  const start = Date.now()
  let offset = 0
  let verdict: Verdict = { kind: 'wait' }
  let said = 0
  for (;;) {
    const elapsed = Date.now() - start
    const final = elapsed >= c.seconds * 1000
    const r = await remote.run(readCanaryLog(nginxId, canaryLogPath(service), offset))
    if (r.code !== 0) throw new Error(`reading the canary log failed (exit ${r.code}): ${(r.stderr || r.stdout).trim()}`)
    offset += addLog(count, service, r.stdout)
    verdict = judge(count, c, final)
    if (verdict.kind !== 'wait') break
    if (elapsed >= said) {
      core.info(`${(elapsed / 1000).toFixed(0)} s: canary ${sideFigures(count.canary)}; old ${sideFigures(count.old)}`)
      said += PROGRESS_MS
    }
    await sleep(Math.min(POLL_MS, Math.max(0, c.seconds * 1000 - (Date.now() - start))))
  }
  const figures = [`canary (${c.percent} %): ${sideFigures(count.canary)}`, `old release: ${sideFigures(count.old)}`]
  for (const f of figures) core.info(f)
  return { verdict, count, seconds: (Date.now() - start) / 1000, figures }
}
