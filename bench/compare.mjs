#!/usr/bin/env node
// `npm run bench`: ops-action against the alternatives, side by side in one run on the sandbox host.
//
// The frontend service (the Next.js sample app, which boots in BOOT_S seconds, 2, and handles SIGTERM as Next does) is
// redeployed N times (N=20) by each strategy, alternating two versions, under constant load through nginx from 32
// clients (at the front's container address, not through docker's userland proxy) of four kinds (scripts/load.mjs):
// 10 keep-alive that retry a reset reused connection once, as browsers do; 8 keep-alive that never retry, as HTTP
// libraries and probes; 10 that open a connection per request; 4 on /slow (~1 s a request, half keep-alive). The
// clients pause between requests so that the whole load stays under the sandbox's ephemeral-port budget (a strategy
// without upstream keep-alive makes nginx open a connection to the app per request). Strategies:
//  - ops-action: dist/index.js run as a runner runs it (mode deploy);
//  - naive: docker stop + rm + run with the same name, then nginx reload (most ssh-action scripts);
//  - behindy-today: start <svc>-green, fixed sleep (BEHINDY_SLEEP_S, 15 as the frontend's today), a probe loop
//    that never fails, rename old -> -blue and green -> <svc>, reload, stop and remove the old one at once.
// nginx resolves the app for naive and behindy-today when it (re)loads, as their `upstream { server frontend:3000; }`
// does. Then one broken release (health path fine, the route answers 500) per strategy: the share of requests that
// fail in the 10 s after. Also: an infra no-op run (N times), autocannon's steady-state figures for the route,
// requests per nginx -> app connection (the app's /stats). Prints a markdown table, writes it to bench/results.md and
// between the bench markers of README.md, and draws bench/swap.svg: requests per 100 ms by outcome across one swap
// per strategy.
import autocannon from 'autocannon'
import { spawn } from 'node:child_process'
import { existsSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { ROOT, runAction, sandbox, sandboxInputs } from '../scripts/run-action.mjs'
import { CLIENT_KINDS, startLoad } from '../scripts/load.mjs'
import { bucketize, swapChart } from './svg.mjs'
import { bootToHealthy, docker, INFRA_ENV, median, oneContainer, pct, phasesOf } from './common.mjs'

const N = Number(process.env.N || 20)
const BOOT_S = Number(process.env.BOOT_S || 2)
const BEHINDY_SLEEP_S = Number(process.env.BEHINDY_SLEEP_S || 15)
const PORT = Number(process.env.HTTP_PORT || 18080)
const SETTLE_MS = 2000
// A steady window after each swap: long enough that the steady p99 is not one stall more or less (at ~300 req/s,
// 2.5 s windows give ~16,000 steady requests a strategy).
const QUIET_MS = 2500
const BROKEN_WINDOW_MS = 10_000
const c = sandbox()
const REPO = `${c.images.apps.frontend}`
const SERVICE = 'frontend'
const log = m => process.stderr.write(`[bench] ${m}\n`)

// ---- the host, over the same SSH a runner would use ----
// Runs a script on the host as the SSH user (the script on stdin, its arguments quoted).
const host = (scriptText, ...args) =>
  new Promise((resolve, reject) => {
    const q = a => `'${String(a).replace(/'/g, `'\\''`)}'`
    const p = spawn(
      'ssh',
      [
        '-i',
        c.keyPath,
        '-p',
        String(c.port),
        '-o',
        `UserKnownHostsFile=${join(ROOT, '.sandbox', 'known_hosts')}`,
        '-o',
        'BatchMode=yes',
        `${c.username}@${c.host}`,
        `sh -s -- ${args.map(q).join(' ')}`
      ],
      { stdio: ['pipe', 'pipe', 'pipe'] }
    )
    let out = ''
    p.stdout.on('data', d => (out += d))
    p.stderr.on('data', d => (out += d))
    p.on('error', reject)
    p.on('close', code => (code === 0 ? resolve(out) : reject(new Error(`host script failed (exit ${code}):\n${out}`))))
    p.stdin.on('error', () => undefined) // its exit code tells
    p.stdin.end(scriptText)
  })

// Shell shared by the two scripted strategies: how they reach nginx and point it at the container named $SVC, the
// way nginx resolves `upstream { server frontend:3000; }` when it loads (a static address until the next reload).
// Written in place, so the file keeps its owner (ops-action's deploy user hard-links it on its next write).
const PRELUDE = `set -e
SVC=${SERVICE}; PORT=3000; NET=internal; OPS=${c.opsDir}
NGINX=$(docker ps -q --filter label=com.docker.compose.service=nginx)
reload() {
  ip=$(docker inspect --format '{{with index .NetworkSettings.Networks "internal"}}{{.IPAddress}}{{end}}' "$SVC" 2>/dev/null || true)
  printf 'upstream app_%s {\\n    server %s:%s;\\n}\\n' "$SVC" "\${ip:-127.0.0.1}" "$PORT" > "$OPS/upstreams/app_$SVC.conf"
  docker kill --signal HUP "$NGINX" >/dev/null
}
`
// $1 image, $2 VERSION, $3 FAIL_MODE
const NAIVE = `${PRELUDE}
docker pull -q "$1" >/dev/null 2>&1 || true
docker stop "$SVC" >/dev/null 2>&1 || true
docker rm "$SVC" >/dev/null 2>&1 || true
docker run -d --name "$SVC" --network "$NET" -e VERSION="$2" -e STARTUP_DELAY=${BOOT_S} -e FAIL_MODE="$3" "$1" >/dev/null
reload
`
const BEHINDY = `${PRELUDE}
docker pull -q "$1" >/dev/null 2>&1 || true
docker rm -f "$SVC-green" >/dev/null 2>&1 || true
docker run -d --name "$SVC-green" --network "$NET" --restart always -e VERSION="$2" -e STARTUP_DELAY=${BOOT_S} -e FAIL_MODE="$3" "$1" >/dev/null
sleep ${BEHINDY_SLEEP_S}
for i in $(seq 15); do
  if docker exec "$NGINX" wget -q -O /dev/null -T 3 "http://$SVC-green:$PORT/" 2>/dev/null; then break; fi
  sleep 3
done
docker rm -f "$SVC-blue" >/dev/null 2>&1 || true
docker rename "$SVC" "$SVC-blue"
docker rename "$SVC-green" "$SVC"
reload
code=$(docker exec "$NGINX" wget -S -q -O /dev/null -T 3 http://127.0.0.1/ 2>&1 | sed -n 's/^ *HTTP[^ ]* \\([0-9]*\\).*/\\1/p' | tail -n 1)
[ -n "$code" ] || echo "no answer"
docker stop "$SVC-blue" >/dev/null && docker rm "$SVC-blue" >/dev/null
`
// Hands the frontend route to a scripted strategy (or sets it right after a broken release): a fresh container named
// $SVC serves, everything else of the service is removed. $1 image, $2 VERSION.
const TAKEOVER = `${PRELUDE}
docker rm -f "$SVC" "$SVC-green" "$SVC-blue" >/dev/null 2>&1 || true
docker run -d --name "$SVC" --network "$NET" -e VERSION="$2" "$1" >/dev/null
until docker exec "$NGINX" wget -q -O /dev/null -T 1 "http://$SVC:$PORT/" 2>/dev/null; do sleep 0.2; done
reload
until docker exec "$NGINX" wget -q -O - -T 1 http://127.0.0.1/ 2>/dev/null | grep -q "\\"$2\\""; do sleep 0.1; done
ids=$(docker ps -aq --filter label=ops-action.service=$SVC)
[ -z "$ids" ] || docker rm -f $ids >/dev/null 2>&1 || true
`
// Back to ops-action: the scripted containers go once ops-action's first deploy serves.
const HANDBACK = `docker rm -f ${SERVICE} ${SERVICE}-green ${SERVICE}-blue >/dev/null 2>&1 || true`

const image = tag => `${REPO}:${tag}`
const opsInputs = (tag, version, failMode = '') =>
  sandboxInputs({
    mode: 'deploy',
    service: SERVICE,
    'health-path': '/health',
    image: image(tag),
    env: `VERSION=${version}\nSTARTUP_DELAY=${BOOT_S}${failMode ? `\nFAIL_MODE=${failMode}` : ''}`,
    registry: c.registry,
    'registry-username': c.registryUsername,
    'registry-password': c.registryPassword,
    'http-port': String(PORT),
    'https-port': String(PORT + 363),
    'infra-env': INFRA_ENV
  })

const strategies = {
  'ops-action': async (tag, version, failMode) => {
    // A runner is another machine in production: niced here, its CPU comes out of what the host's apps leave idle.
    const r = await runAction(opsInputs(tag, version, failMode), { nice: 19 })
    if (r.code !== 0 && !failMode) throw new Error(`ops-action deploy failed:\n${r.output}`)
    return { ms: r.ms, phases: phasesOf(r.output), container: r.outputs.container }
  },
  naive: (tag, version, failMode) => scripted(NAIVE, tag, version, failMode),
  'behindy-today': (tag, version, failMode) => scripted(BEHINDY, tag, version, failMode)
}
/**
 * The app's own boot in its container: from dockerd's StartedAt to the app's `listening` log line (docker's own
 * timestamps, ns), STARTUP_DELAY included. What remains of the deploy's wall time beyond pull and this is ops-action's.
 * Read after the swap window, asynchronously (common.mjs docker).
 */
async function appBootS(container) {
  const started = Date.parse((await docker('inspect', '--format', '{{.State.StartedAt}}', container)).trim())
  const line = (await docker('logs', '--timestamps', container)).split('\n').find(l => / listening on /.test(l))
  if (!line) throw new Error(`${container}: no 'listening' line in its log`)
  return (Date.parse(line.split(' ')[0]) - started) / 1000
}
/** A scripted strategy's deploy; with a broken release its script may fail (today's rename of a crash-looping container does). */
async function scripted(text, tag, version, failMode = '') {
  const t = performance.now()
  try {
    await host(text, image(tag), version, failMode)
  } catch (e) {
    if (!failMode) throw e
    log(`broken release: the script failed: ${e.message.split('\n').slice(1).join(' ').trim()}`)
  }
  return { ms: performance.now() - t }
}
/** After the broken release: ops-action deploys again; the scripted strategies are set right by hand. */
const restore = (name, version) => (name === 'ops-action' ? strategies[name]('v1', version) : host(TAKEOVER, image('v1'), version))

// ---- measurement ----
let base = `http://127.0.0.1:${PORT}` // the front's address once known (frontUrl)
/** `http://<ip>:80` of the stack's front container, on its first network. */
async function frontUrl() {
  const id = (await docker('ps', '-q', '--filter', 'label=com.docker.compose.service=front')).trim()
  if (!id) throw new Error('no front container: the warm-up deploy should have started the stack')
  const ip = (await docker('inspect', '--format', '{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}', id)).trim().split(' ')[0]
  return `http://${ip}:80`
}
const results = [] // every response of the current load: { t, ms, slow, kind, version }
const firstSeen = new Map() // version -> when the route first answered with it
const load = () => {
  results.length = 0
  firstSeen.clear()
  return startLoad({
    url: `${base}/`,
    slowUrl: `${base}/slow`,
    keepaliveClients: 10,
    naiveClients: 8,
    plainClients: 10,
    slowClients: 4,
    pauseMs: 100,
    plainPauseMs: 100,
    onResult: r => {
      results.push(r)
      if (r.version && !firstSeen.has(r.version)) firstSeen.set(r.version, r.t)
    }
  })
}
const sleep = ms => new Promise(res => setTimeout(res, ms))
const inWindow = (r, [a, b]) => r.t >= a && r.t < b
/** Waits until the route has answered with `version`, then SETTLE_MS more; returns when it first did (or undefined). */
async function settle(version, capMs = 60_000) {
  const deadline = performance.now() + capMs
  while (performance.now() < deadline) {
    const first = firstSeen.get(version)
    if (first !== undefined) {
      await sleep(SETTLE_MS)
      return first
    }
    await sleep(100)
  }
  return undefined
}
/** Longest time between two successful fast-path responses inside a window. */
function longestGap(window) {
  let last = window[0]
  let gap = 0
  for (const r of results) {
    if (r.t < window[0] || r.slow || r.kind !== 'ok') continue
    if (r.t >= window[1]) break
    gap = Math.max(gap, r.t - last)
    last = r.t
  }
  return Math.max(gap, window[1] - last)
}

/** connections and requests the frontend's app has counted (its /stats, asked from inside nginx's container). */
async function appStats() {
  const out = await host(
    'n=$(docker ps -q --filter label=com.docker.compose.service=nginx); docker exec "$n" wget -q -O - -T 3 "http://$1:3000/stats"',
    SERVICE
  )
  return JSON.parse(out.trim().split('\n').at(-1))
}

async function measure(name) {
  const deploy = strategies[name]
  await oneContainer(SERVICE)
  const l = load()
  await sleep(1000)
  const s0 = await appStats()
  await sleep(3000)
  const s1 = await appStats()
  // Steady: this window and, after each swap, a second once the service is down to one container again (the old
  // one retired), so that the steady figures come from across the whole run, not from one moment of it.
  const quiet = [[performance.now() - 3000, performance.now()]]
  const perConnection = (s1.requests - s0.requests - 1) / Math.max(1, s1.connections - s0.connections)
  // The app's own boot-to-healthy under the same load, apart from any deployer (ops-action's overhead is measured against it).
  const healthyS =
    name === 'ops-action'
      ? await bootToHealthy({ image: image('v1'), env: { VERSION: 'boot', STARTUP_DELAY: String(BOOT_S) }, port: 3000, path: '/health' })
      : undefined
  const runs = []
  for (let i = 0; i < N; i++) {
    const version = `${name}-${i + 1}`
    const t0 = performance.now()
    const r = await deploy(i % 2 ? 'v1' : 'v2', version)
    const t1 = performance.now()
    const first = await settle(version)
    if (first === undefined) throw new Error(`${name}: version ${version} never served`)
    await oneContainer(SERVICE)
    const q0 = performance.now()
    await sleep(QUIET_MS)
    quiet.push([q0, performance.now()])
    const bootS = r.container ? await appBootS(r.container) : undefined
    runs.push({ ...r, bootS, t0, t1, first, swap: [t0, Math.max(t1, first) + 1000], window: [t0, performance.now()] })
    const phases = r.phases
      ? ` (${Object.entries(r.phases)
          .map(([k, v]) => `${k} ${v}`)
          .join(', ')})`
      : ''
    log(`${name} ${i + 1}/${N}: ${(r.ms / 1000).toFixed(2)} s${phases}`)
  }
  // The chart: the middle swap, from 1 s before the deploy started to 3 s after it returned or the new version served.
  const shown = runs[Math.floor(N / 2)]
  const from = shown.t0 - 1000
  const span = Math.max(shown.t1, shown.first) + 3000 - from
  const chart = {
    title: `${name}: swap ${Math.floor(N / 2) + 1} of ${N}`,
    bucketMs: 100,
    buckets: bucketize(results, from, span),
    markers: [
      { at: shown.t0 - from, label: 'deploy starts' },
      { at: shown.first - from, label: 'new version serves' },
      { at: shown.t1 - from, label: 'deploy returns' }
    ]
  }
  // A release whose health path answers but whose route answers 500; then the share of failed requests in the 10 s after the deploy returned.
  const broken = await deploy(N % 2 ? 'v1' : 'v2', `${name}-broken`, 'route-5xx')
  const after = [performance.now(), performance.now() + BROKEN_WINDOW_MS]
  await sleep(BROKEN_WINDOW_MS)
  await restore(name, `${name}-restored`)
  await settle(`${name}-restored`, 120_000)
  await l.stop()

  const during = results.filter(r => runs.some(x => inWindow(r, x.window)))
  const failures = { refused: 0, http5xx: 0, reset: 0, timeout: 0, other: 0 }
  for (const r of during) if (r.kind !== 'ok') failures[r.kind]++
  const byClient = Object.fromEntries(CLIENT_KINDS.map(k => [k, { total: 0, failed: 0, retried: 0 }]))
  for (const r of during) {
    byClient[r.client].total++
    if (r.kind !== 'ok') byClient[r.client].failed++
    if (r.retried) byClient[r.client].retried++
  }
  const fast = r => !r.slow && r.kind === 'ok'
  const brokenAll = results.filter(r => inWindow(r, after))
  return {
    name,
    total: during.length,
    failed: Object.values(failures).reduce((a, b) => a + b, 0),
    failures,
    byClient,
    perConnection,
    chart,
    gapMs: Math.max(...runs.map(x => longestGap(x.swap))),
    steady: results.filter(r => fast(r) && quiet.some(w => inWindow(r, w))).map(r => r.ms),
    swap: results.filter(r => fast(r) && runs.some(x => inWindow(r, x.swap))).map(r => r.ms),
    wall: runs.map(x => x.ms / 1000),
    phases: runs.map(x => x.phases).filter(Boolean),
    bootS: runs.map(x => x.bootS),
    healthyS,
    brokenWall: broken.ms / 1000,
    brokenFailed: brokenAll.filter(r => r.kind !== 'ok').length,
    brokenTotal: brokenAll.length
  }
}

// ---- run ----
if (!existsSync(join(ROOT, 'dist', 'index.js'))) throw new Error('dist/index.js missing: npm run bundle')
log(`N=${N}, app boot ${BOOT_S} s, behindy-today fixed sleep ${BEHINDY_SLEEP_S} s, load through nginx on :${PORT}`)
const warm = await runAction(opsInputs('v1', 'warm-up'))
if (warm.code !== 0) throw new Error(`warm-up deploy failed:\n${warm.output}`)
await sleep(BOOT_S * 1000 + 1000)
// The clients reach the front (the stack's published nginx) at its address on the docker network, as production's
// reach it through the host's NAT: not through docker's userland proxy, which only this machine's loopback clients
// take and which costs the sandbox's two cores as much CPU as nginx itself.
base = await frontUrl()
log(`clients reach the front at ${base}`)

const cannon = await autocannon({ url: `${base}/`, connections: 32, duration: 5 })
log(`autocannon steady state: ${cannon.requests.average} req/s, p50 ${cannon.latency.p50} ms, p99 ${cannon.latency.p99} ms`)

const infraRuns = []
for (let i = 0; i < N; i++) {
  const r = await runAction(
    sandboxInputs({
      mode: 'infra',
      'http-port': String(PORT),
      'https-port': String(PORT + 363),
      'infra-env': INFRA_ENV
    })
  )
  if (r.code !== 0 || r.outputs.changed !== 'false') throw new Error(`infra no-op run failed or changed something:\n${r.output}`)
  infraRuns.push(r.ms / 1000)
}
log(`infra no-op: median ${median(infraRuns).toFixed(2)} s`)

const rows = [await measure('ops-action')]
await host(TAKEOVER, image('v1'), 'takeover')
rows.push(await measure('naive'))
rows.push(await measure('behindy-today'))
await host(HANDBACK)
const back = await runAction(opsInputs('v1', 'handback'))
if (back.code !== 0) throw new Error(`hand-back deploy failed:\n${back.output}`)

// ---- report ----
const f1 = x => (Number.isFinite(x) ? x.toFixed(1) : '–')
const f2 = x => (Number.isFinite(x) ? x.toFixed(2) : '–')
const ops = rows[0]
const phaseNames = Object.keys(ops.phases[0] ?? {})
const phaseMedian = name => median(ops.phases.map(p => p[name] ?? 0))
// ops-action's own time: wall − the app's own boot-to-healthy (measured apart; the pull, a manifest check here, stays in).
const overheads = ops.wall.map(w => w - ops.healthyS)
// The issue's measure: wall − the pull − the app's boot-to-healthy (each run's own Pull image phase).
const overheadsNoPull = ops.wall.map((w, i) => w - (ops.phases[i]?.['Pull image'] ?? 0) - ops.healthyS)
// By the app's `listening` log line (container start to it) instead: Next.js answers its first request only ~0.2 s after.
const overheadsListening = ops.wall.map((w, i) => w - ops.bootS[i])
const kind = (r, k) => {
  const b = r.byClient[k]
  return `**${b.failed}** / ${b.total}${b.retried ? ` (${b.retried} retried)` : ''}`
}
const lines = [
  `Sandbox host (${new Date().toISOString().slice(0, 10)}; nginx 1.30, compose v2): ${N} consecutive deploys per strategy of the Next.js sample app (boots in ${BOOT_S} s) under constant load through nginx from 32 clients (at the front's address on the docker network, as production's clients arrive through the host's NAT: not through docker's userland proxy): 10 keep-alive retrying a reset reused connection once (browsers), 8 keep-alive never retrying (HTTP libraries), 10 opening a connection per request, 4 on a ~1 s endpoint. Failed / requests while the deploys ran:`,
  '',
  `| strategy | ${CLIENT_KINDS.join(' | ')} | longest gap | p50 / p99 steady | p50 / p99 during swap | deploy wall time (median) | broken release: failed after | requests per nginx → app connection |`,
  `| --- | ${CLIENT_KINDS.map(() => '---').join(' | ')} | ---: | ---: | ---: | ---: | ---: | ---: |`,
  ...rows.map(
    r =>
      `| ${r.name} | ${CLIENT_KINDS.map(k => kind(r, k)).join(' | ')} | ${f2(r.gapMs / 1000)} s | ${f1(median(r.steady))} / ${f1(pct(r.steady, 99))} ms | ${f1(median(r.swap))} / ${f1(pct(r.swap, 99))} ms | ${f2(median(r.wall))} s | ${r.brokenTotal ? ((100 * r.brokenFailed) / r.brokenTotal).toFixed(0) : '–'} % of ${r.brokenTotal} | ${f1(r.perConnection)} |`
  ),
  '',
  `ops-action overhead (wall time − the app's own boot-to-healthy, ${f2(ops.healthyS)} s: median of 5 containers of the same image and env started apart under the same load, from dockerd's StartedAt to the first 2xx of /health polled every 10 ms; the pull, a manifest check, stays in the wall time): **${f2(median(overheads))} s** median (min ${f2(Math.min(...overheads))}, max ${f2(Math.max(...overheads))}), without the pull (wall − Pull image − boot-to-healthy): **${f2(median(overheadsNoPull))} s**; against the app's \`listening\` line instead (${f2(median(ops.bootS))} s after its start, ${BOOT_S} s of it STARTUP_DELAY): ${f2(median(overheadsListening))} s; infra no-op run: **${f2(median(infraRuns))} s** median; p99 during swap / steady: **${f2(pct(ops.swap, 99) / pct(ops.steady, 99))}×**. autocannon, 32 keep-alive connections for 5 s on the route at rest: ${Math.round(cannon.requests.average)} req/s, p50 ${cannon.latency.p50} ms, p99 ${cannon.latency.p99} ms, ${cannon.errors} errors, ${cannon.non2xx} non-2xx.`,
  '',
  '![Requests per 100 ms by outcome across one swap, per strategy](bench/swap.svg)',
  '',
  '| ops-action phase (median) | s |',
  '| --- | ---: |',
  ...phaseNames.map(n => `| ${n} | ${f2(phaseMedian(n))} |`),
  `| **wall time** (process start to exit) | ${f2(median(ops.wall))} |`
]
const table = lines.join('\n')
console.log(table)
writeFileSync(join(ROOT, 'bench', 'results.md'), `${table.replace('](bench/swap.svg)', '](swap.svg)')}\n`)
writeFileSync(
  join(ROOT, 'bench', 'swap.svg'),
  swapChart(
    rows.map(r => r.chart),
    { title: `Requests per 100 ms through nginx across one swap (${N} swaps per strategy, 32 clients)` }
  )
)
const readme = join(ROOT, 'README.md')
const text = readFileSync(readme, 'utf8')
const marked = /(<!-- bench:start -->\n)[\s\S]*?(<!-- bench:end -->)/
if (marked.test(text)) writeFileSync(readme, text.replace(marked, `$1${table}\n$2`))
log('written to bench/results.md, bench/swap.svg and README.md')
