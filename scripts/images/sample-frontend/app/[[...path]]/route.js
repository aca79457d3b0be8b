// Every path (any depth, including /) lands here: health, stats, env, slow and the catch-all.
// Served by Next itself, so Next's own HTTP, keep-alive and shutdown behaviour is what is tested.
import os from 'node:os'

export const dynamic = 'force-dynamic'
export const runtime = 'nodejs'

// Filled in by ops-hooks.cjs (the preload, counting at the http.Server level); null without it.
const STATS = Symbol.for('ops-sandbox.stats')

function json(status, body) {
  const version = process.env.VERSION || 'dev'
  return new Response(JSON.stringify(body) + '\n', {
    status,
    headers: {
      'Content-Type': 'application/json',
      'X-App-Version': version,
      'Cache-Control': 'no-store'
    }
  })
}

function slowSeconds(raw) {
  if (raw === null || raw.trim() === '') return 1
  const s = Number(raw)
  if (!Number.isFinite(s)) return 1
  return Math.min(60, Math.max(0, s))
}

async function handle(request) {
  const version = process.env.VERSION || 'dev'
  const healthPath = process.env.HEALTH_PATH || '/health'
  const failMode = (process.env.FAIL_MODE || '').trim()
  const url = new URL(request.url)
  // Next's reserved paths (/404, /500, ...) come rewritten by proxy.js, with their real path aside.
  const path = url.pathname.startsWith('/__ops-reserved/') ? (request.headers.get('x-ops-original-path') ?? url.pathname) : url.pathname
  const last = path.split('/').filter(Boolean).pop() ?? ''

  // Bodies are ignored, but read to the end so the connection can be kept alive.
  if (request.body) {
    try {
      await request.arrayBuffer()
    } catch {
      // client went away: nothing to answer
    }
  }

  if (path === healthPath) {
    if (failMode === 'never-healthy') return json(500, { status: 'unhealthy', version })
    return json(200, { status: 'ok', version })
  }
  if (last === 'stats') {
    const stats = globalThis[STATS]
    return json(200, { version, connections: stats?.connections ?? null, requests: stats?.requests ?? null })
  }
  if (last === 'slow') {
    const s = slowSeconds(url.searchParams.get('s'))
    await new Promise(resolve => setTimeout(resolve, s * 1000))
  }
  if (failMode === 'route-5xx') return json(500, { error: 'route-5xx', version, path })
  if (last === 'env') {
    const name = url.searchParams.get('name')
    return json(200, { name, value: name === null ? null : (process.env[name] ?? null) })
  }
  return json(200, { version, path, hostname: os.hostname() })
}

export const GET = handle
export const HEAD = handle
export const POST = handle
export const PUT = handle
export const DELETE = handle
export const PATCH = handle
export const OPTIONS = handle
