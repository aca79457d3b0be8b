#!/usr/bin/env node
// Connections from nginx to an app: kept alive (as deployed) and one per request (the ops-dir's proxy snippet sending
// `Connection: close` to the app, nginx reloaded: what proxy_pass to a variable did before upstream blocks; nginx
// 1.30 reuses upstream connections even without `keepalive`), each for DURATION seconds of autocannon with
// C keep-alive clients on the frontend's route `/`. Prints req/s, p50/p99, errors and non-2xx, requests per
// connection nginx opened to the app (from the sample app's /stats) and the most sockets in TIME_WAIT in nginx's
// network namespace (28k ephemeral ports: new connections above ~470/s to one app exhaust them in a minute).
// Needs the sandbox (root: nsenter). DURATION (s, default 30), C (default 32), SERVICE (frontend: the Next.js sample
// app on `/`, default; story: FastAPI on uvicorn on `/llm/`; backend's `/api/` is rate-limited per client).
import autocannon from 'autocannon'
import { execFileSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { ROOT, runAction, sandboxInputs } from '../scripts/run-action.mjs'
import { INFRA_ENV } from './common.mjs'

const duration = Number(process.env.DURATION || 30)
const connections = Number(process.env.C || 32)
const port = process.env.HTTP_PORT || '18080'
const conn = JSON.parse(readFileSync(join(ROOT, '.sandbox', 'connection.json'), 'utf8'))
const sh = (cmd, args) => execFileSync(cmd, args, { encoding: 'utf8' })
const service = process.env.SERVICE || 'frontend'
const { appPort, route } = { frontend: { appPort: 3000, route: '/' }, story: { appPort: 8000, route: '/llm/' } }[service]

const deploy = await runAction(
  sandboxInputs({
    mode: 'deploy',
    service,
    image: `${conn.images.apps[service]}:v1`,
    env: 'VERSION=bench-keepalive',
    registry: '127.0.0.1:5000',
    'registry-username': 'ci',
    'registry-password': conn.registryPassword,
    'http-port': port,
    'https-port': String(Number(port) + 363),
    'infra-env': INFRA_ENV
  })
)
if (deploy.code !== 0) throw new Error(`deploy failed:\n${deploy.output}`)
const app = deploy.outputs.container
const nginx = sh('docker', ['ps', '-q', '--filter', 'label=com.docker.compose.service=nginx']).trim()
const nginxPid = sh('docker', ['inspect', '--format', '{{.State.Pid}}', nginx]).trim()
const snippet = join(conn.opsDir, 'nginx', 'snippets', 'proxy.conf')
const stats = () => JSON.parse(sh('docker', ['exec', nginx, 'wget', '-q', '-O', '-', `http://${app}:${appPort}/stats`]))
const timeWait = () => Number(sh('nsenter', ['-t', nginxPid, '-n', 'sh', '-c', 'ss -tan state time-wait | tail -n +2 | wc -l']).trim())
const reload = () => sh('docker', ['kill', '--signal', 'HUP', nginx])
const settle = () => new Promise(r => setTimeout(r, 3000))

async function measure(label) {
  await settle()
  const before = stats()
  let maxTimeWait = timeWait()
  const sampler = setInterval(() => (maxTimeWait = Math.max(maxTimeWait, timeWait())), 1000)
  const r = await autocannon({ url: `http://127.0.0.1:${port}${route}`, connections, duration })
  clearInterval(sampler)
  const after = stats()
  const opened = after.connections - before.connections - 1 // the /stats request's own
  const served = after.requests - before.requests - 1
  return {
    label,
    rps: Math.round(r.requests.average),
    p50: r.latency.p50,
    p99: r.latency.p99,
    errors: r.errors + r.timeouts,
    non2xx: r.non2xx,
    perConnection: (served / Math.max(1, opened)).toFixed(1),
    opened,
    maxTimeWait
  }
}

const original = readFileSync(snippet, 'utf8')
if (!original.includes('proxy_set_header Connection "";')) throw new Error(`${snippet} does not clear Connection`)
const rows = [await measure('kept alive (as deployed)')]
try {
  // In place (cat >), so the file keeps its owner and inode.
  execFileSync('sh', ['-c', 'cat > "$1"', 'sh', snippet], {
    input: original.replace('proxy_set_header Connection "";', 'proxy_set_header Connection close;')
  })
  reload()
  rows.push(await measure('a new connection per request (Connection: close)'))
} finally {
  execFileSync('sh', ['-c', 'cat > "$1"', 'sh', snippet], { input: original })
  reload()
}

console.log(
  `autocannon, ${connections} keep-alive clients for ${duration} s on ${route} (${service}: ${conn.images.apps[service]}), sandbox host:\n`
)
console.log(
  '| nginx → app | req/s | p50 ms | p99 ms | errors | non-2xx | requests per app connection | connections opened | TIME_WAIT max |'
)
console.log('| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |')
for (const r of rows)
  console.log(
    `| ${r.label} | ${r.rps} | ${r.p50} | ${r.p99} | ${r.errors} | ${r.non2xx} | ${r.perConnection} | ${r.opened} | ${r.maxTimeWait} |`
  )
