// Constant HTTP load through nginx, counting every failure: used by the end-to-end tests and the benchmark.
// Two kinds of clients, as browsers and scripts behave:
//  - keepalive clients reuse connections and, like browsers, retry an idempotent GET once when a REUSED connection
//    is reset or closed before any response byte, on a new connection (a reload closes idle keep-alive
//    connections); raw resets counted;
//  - non-keepalive clients open a new connection per request and never retry.
import http from 'node:http'

// Options for the benchmark: `slowUrl` with `slowClients` more clients (half keep-alive) on it, and `onResult`,
// called with { t (performance.now() at the end), ms, slow, kind ('ok' or the failure kind), status, version }.
export function startLoad({
  url,
  keepaliveClients = 8,
  plainClients = 8,
  timeoutMs = 5000,
  pauseMs = 0,
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
    errors: [],
    latenciesMs: []
  }
  let running = true
  const keepAgent = new http.Agent({ keepAlive: true, maxSockets: keepaliveClients + Math.ceil(slowClients / 2) })

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

  const record = (r, how, slow) => {
    stats.total++
    const kind = r.error ? classify(r.error) : r.status >= 500 ? 'http5xx' : 'ok'
    const version = kind === 'ok' ? versionOf(r.body) : undefined
    onResult?.({ t: performance.now(), ms: r.ms, slow, kind, status: r.status, version })
    if (kind !== 'ok') {
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

  const loop = async (keepalive, slow = false) => {
    const target = slow ? slowUrl : url
    while (running) {
      let r = await once(keepalive ? keepAgent : false, target)
      let how = keepalive ? 'keep-alive client' : 'new-connection client'
      if (r.error && keepalive && r.reused && !r.gotResponse && classify(r.error) === 'reset') {
        stats.rawResets++
        stats.retried++
        r = await once(false, target) // like a browser: the retry goes on a new connection
        how = 'keep-alive client, retry'
      }
      record(r, how, slow)
      if (pauseMs) await new Promise(res => setTimeout(res, pauseMs))
    }
  }

  const slowKeepalive = Math.ceil(slowClients / 2)
  const clients = [
    ...[...Array(keepaliveClients)].map(() => loop(true)),
    ...[...Array(plainClients)].map(() => loop(false)),
    ...[...Array(slowClients)].map((_, i) => loop(i < slowKeepalive, true))
  ]
  return {
    stats,
    async stop() {
      running = false
      await Promise.all(clients)
      keepAgent.destroy()
      return stats
    }
  }
}

export function summarize(stats) {
  const f = stats.failures
  return `${stats.failed} failed / ${stats.total} requests (refused ${f.refused}, 5xx ${f.http5xx}, reset ${f.reset}, timeout ${f.timeout}, other ${f.other}); raw resets on reused keep-alive connections retried: ${stats.rawResets}; versions seen: ${JSON.stringify(stats.versions)}`
}
