'use strict'
// Preloaded into the Next.js standalone server (node --require ops-hooks.cjs server.js) for what
// Next cannot do itself:
//  - /stats counters: TCP connections accepted and requests received, counted at the http.Server level
//    (every connection nginx opens counts, so the tests can see keep-alive reuse). Kept on globalThis,
//    where the catch-all route handler (app/[[...path]]/route.js) reads them.
//  - DRAIN_SECONDS: 0 = exit at once on SIGTERM (no drain); N > 0 = cap Next's own graceful shutdown at
//    N s; unset = Next's own SIGTERM behaviour, untouched.
//  - the start line (version, port, health path, fail mode) once the server listens; LOG_REQUESTS=1 logs
//    each request.
// FAIL_MODE=exit, STARTUP_DELAY and wrong-port are done by entrypoint.sh before node starts.
const http = require('node:http')

const VERSION = process.env.VERSION || 'dev'
const HEALTH_PATH = process.env.HEALTH_PATH || '/health'
const FAIL_MODE = (process.env.FAIL_MODE || '').trim()
const LOG_REQUESTS = process.env.LOG_REQUESTS === '1'

function log(msg) {
  process.stdout.write(`${new Date().toISOString()} sample-frontend[${VERSION}] ${msg}\n`)
}

const stats = { connections: 0, requests: 0 }
globalThis[Symbol.for('ops-sandbox.stats')] = stats

const origEmit = http.Server.prototype.emit
let announced = false
http.Server.prototype.emit = function emit(event, ...args) {
  if (event === 'connection') {
    stats.connections++
  } else if (event === 'request' || event === 'checkContinue' || event === 'checkExpectation') {
    stats.requests++
    if (LOG_REQUESTS) {
      const req = args[0]
      log(`${req.socket?.remoteAddress} ${req.method} ${req.url}`)
    }
  } else if (event === 'listening' && !announced) {
    announced = true
    const addr = this.address()
    const where = addr && typeof addr === 'object' ? `${addr.address}:${addr.port}` : String(addr)
    log(`listening on ${where} (port ${addr?.port}, health ${HEALTH_PATH}, fail mode ${FAIL_MODE || 'none'}, node ${process.version})`)
  }
  return origEmit.call(this, event, ...args)
}

// Before Next has added its own handler (it does once the server listens), a signal would otherwise
// just be logged here and swallowed: exit at once then, as during STARTUP_DELAY.
function exitIfNextNotReady(signal) {
  if (process.listenerCount(signal) > 1) return false
  log(`received ${signal} before the server was ready: exiting`)
  process.exit(0)
}

const drainRaw = process.env.DRAIN_SECONDS
if (drainRaw !== undefined && drainRaw.trim() !== '') {
  const drain = Number(drainRaw)
  if (!Number.isFinite(drain) || drain < 0) {
    log(`DRAIN_SECONDS=${drainRaw} is not a number of seconds >= 0: exiting with status 1`)
    process.exit(1)
  }
  let stopping = false
  // Registered before Next's own SIGTERM/SIGINT handlers (added in startServer), so it runs first.
  const onSignal = signal => {
    if (stopping) return
    stopping = true
    exitIfNextNotReady(signal)
    if (drain === 0) {
      log(`received ${signal}, DRAIN_SECONDS=0: exiting at once (requests in flight are cut)`)
      process.exit(0)
    }
    log(`received ${signal}, draining (at most ${drain}s)`)
    setTimeout(() => {
      log(`drain timeout (${drain}s): exiting with requests or connections still open`)
      process.exit(143)
    }, drain * 1000).unref()
  }
  process.on('SIGTERM', onSignal)
  process.on('SIGINT', onSignal)
} else {
  // Only log; Next's handler does the shutdown.
  let logged = false
  const onSignal = signal => {
    exitIfNextNotReady(signal)
    if (!logged) log(`received ${signal}: Next's own graceful shutdown (no cap)`)
    logged = true
  }
  process.on('SIGTERM', onSignal)
  process.on('SIGINT', onSignal)
}
process.on('exit', code => log(`exit ${code}`))
