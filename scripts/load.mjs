// Constant HTTP load through nginx, counting every failure: used by the end-to-end tests and the benchmark.
// Kinds of clients, as browsers, HTTP libraries and scripts behave:
//  - keepalive clients ('retrying') reuse connections and, like browsers, retry an idempotent GET once when a REUSED
//    connection is reset or closed before any response byte, on a new connection; raw resets counted;
//  - naive clients ('never-retrying') reuse connections and never retry, as Python requests, Java's HttpClient or a
//    monitoring probe: a reset reused connection is a failure;
//  - plain clients ('new-connection') open a new connection per request and never retry (plainPauseMs between
//    requests keeps their rate, and the sandbox's TIME_WAIT ports, in bounds);
//  - slow clients ask slowUrl (half of them keep-alive, never retrying).
import http from 'node:http'

/** The client kinds, in the order reports list them. */
export const CLIENT_KINDS = ['new-connection', 'retrying', 'never-retrying', 'slow']

// `onResult` is called with { t (performance.now() at the end), ms, slow, client (a CLIENT_KINDS entry), kind ('ok'
// or the failure kind), status, version, retried (a reset reused connection was retried) }.
export function startLoad({
  url,
  keepaliveClients = 8,
  plainClients = 8,
  naiveClients = 0,
  timeoutMs = 5000,
  pauseMs = 0,
  plainPauseMs = pauseMs,
  slowUrl,
  slowClients = 0,
  onResult = undefined
}) {
  const stats = {
    total: 0,
    ok: 0,
    failed: 0,
    failures: { refused: 0, http5xx: 0, reset: 0, timeout: 0, other: 0 },
    rawResets: 0,
    retried: 0,
    versions: {},
    /** client kind -> { total, failed } */
    byClient: Object.fromEntries(CLIENT_KINDS.map(k => [k, { total: 0, failed: 0 }])),
    errors: [],
    latenciesMs: []
  }
  let running = true
  const keepAgent = new http.Agent({ keepAlive: true, maxSockets: keepaliveClients })
  const naiveAgent = new http.Agent({ keepAlive: true, maxSockets: naiveClients + Math.ceil(slowClients / 2) })

  // Whether the request went out on a connection that already carried one. Node's req.reusedSocket misses a socket
  // handed to a request that waited in the agent's queue (reported as new), so count uses per socket instead.
  const USES = Symbol('uses')
  const once = (agent, target) =>
    new Promise(resolve => {
      const started = performance.now()
      let reused = false
      const req = http.get(target, { agent, timeout: timeoutMs }, res => {
        let body = ''
        res.setEncoding('utf8')
        res.on('data', c => (body += c))
        res.on('end', () => resolve({ status: res.statusCode, body, ms: performance.now() - started, reused }))
        res.on('error', err => resolve({ error: err, reused, gotResponse: true }))
      })
      req.on('socket', socket => {
        socket[USES] = (socket[USES] ?? 0) + 1
        reused = socket[USES] > 1
      })
      req.on('timeout', () => req.destroy(Object.assign(new Error('timeout'), { code: 'ETIMEDOUT' })))
      req.on('error', err => resolve({ error: err, reused }))
    })

  const classify = err => {
    const code = err.code ?? ''
    if (code === 'ECONNREFUSED') return 'refused'
    if (code === 'ETIMEDOUT') return 'timeout'
    if (code === 'ECONNRESET' || /socket hang up/.test(err.message)) return 'reset'
    return 'other'
  }

  const versionOf = body => {
    try {
      return JSON.parse(body).version
    } catch {
      return undefined // not the sample app
    }
  }

  const record = (r, how, slow, client, retried) => {
    stats.total++
    const kind = r.error ? classify(r.error) : r.status >= 500 ? 'http5xx' : 'ok'
    const version = kind === 'ok' ? versionOf(r.body) : undefined
    onResult?.({ t: performance.now(), ms: r.ms, slow, client, kind, status: r.status, version, retried })
    stats.byClient[client].total++
    if (kind !== 'ok') {
      stats.byClient[client].failed++
      stats.failed++
      stats.failures[kind]++
      const where = `${how}, ${r.reused ? 'reused' : 'new'} connection${r.gotResponse ? ', after the response began' : ''}`
      const what = r.error ? `${kind}: ${r.error.code ?? ''} ${r.error.message} (${where})` : `${r.status}: ${r.body.slice(0, 120)}`
      if (stats.errors.length < 20) stats.errors.push(`${what} at ${new Date().toISOString()}`)
      return
    }
    stats.ok++
    stats.latenciesMs.push(r.ms)
    if (version) stats.versions[version] = (stats.versions[version] ?? 0) + 1
  }

  // agent: keepAgent (retries), naiveAgent (never retries) or false (a new connection per request).
  const loop = async (agent, slow = false) => {
    const target = slow ? slowUrl : url
    const client = slow ? 'slow' : agent === keepAgent ? 'retrying' : agent ? 'never-retrying' : 'new-connection'
    const pause = agent ? pauseMs : plainPauseMs
    while (running) {
      let r = await once(agent, target)
      let how = agent === keepAgent ? 'keep-alive client' : agent ? 'never-retrying keep-alive client' : 'new-connection client'
      let retried = false
      if (r.error && agent && r.reused && !r.gotResponse && classify(r.error) === 'reset') {
        stats.rawResets++
        if (agent === keepAgent) {
          stats.retried++
          retried = true
          r = await once(false, target) // like a browser: the retry goes on a new connection
          how = 'keep-alive client, retry'
        }
      }
      record(r, how, slow, client, retried)
      if (pause) await new Promise(res => setTimeout(res, pause))
    }
  }

  const slowKeepalive = Math.ceil(slowClients / 2)
  const clients = [
    ...[...Array(keepaliveClients)].map(() => loop(keepAgent)),
    ...[...Array(naiveClients)].map(() => loop(naiveAgent)),
    ...[...Array(plainClients)].map(() => loop(false)),
    ...[...Array(slowClients)].map((_, i) => loop(i < slowKeepalive ? naiveAgent : false, true))
  ]
  return {
    stats,
    async stop() {
      running = false
      await Promise.all(clients)
      keepAgent.destroy()
      naiveAgent.destroy()
      return stats
    }
  }
}

export function summarize(stats) {
  const f = stats.failures
  return `${stats.failed} failed / ${stats.total} requests (refused ${f.refused}, 5xx ${f.http5xx}, reset ${f.reset}, timeout ${f.timeout}, other ${f.other}); raw resets on reused keep-alive connections: ${stats.rawResets} (${stats.retried} retried); by client: ${CLIENT_KINDS.filter(
    k => stats.byClient[k].total
  )
    .map(k => `${k} ${stats.byClient[k].failed}/${stats.byClient[k].total}`)
    .join(', ')}; versions seen: ${JSON.stringify(stats.versions)}`
}
