#!/usr/bin/env node
// Times mode deploy on the sandbox host: N swaps of the frontend (sample app, alternating v1/v2) under constant load
// through nginx (8 keep-alive + 8 new-connection clients). Prints failed requests / total, the median of each
// phase, and the action's overhead = total - pull - app boot-to-healthy (the direct health gate). Needs the sandbox.
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { ROOT, runAction, sandboxInputs } from '../scripts/run-action.mjs'
import { startLoad, summarize } from '../scripts/load.mjs'
import { INFRA_ENV, median, phasesOf } from './common.mjs'

const n = Number(process.env.N || 5)
const port = process.env.HTTP_PORT || '18080'
const password = JSON.parse(readFileSync(join(ROOT, '.sandbox', 'connection.json'), 'utf8')).registryPassword
const inputs = tag =>
  sandboxInputs({
    mode: 'deploy',
    service: 'frontend',
    image: `127.0.0.1:5000/behindy/sample-app:${tag}`,
    env: `VERSION=bench-${tag}`,
    registry: '127.0.0.1:5000',
    'registry-username': 'ci',
    'registry-password': password,
    'http-port': port,
    'https-port': String(Number(port) + 363),
    'infra-env': INFRA_ENV
  })

const warm = await runAction(inputs('v1'))
if (warm.code !== 0) throw new Error(`warm-up deploy failed:\n${warm.output}`)
const load = startLoad({ url: `http://127.0.0.1:${port}/`, keepaliveClients: 8, plainClients: 8 })
const runs = []
for (let i = 0; i < n; i++) {
  const r = await runAction(inputs(i % 2 ? 'v1' : 'v2'))
  if (r.code !== 0) throw new Error(`deploy ${i + 1} failed:\n${r.output}`)
  const phases = phasesOf(r.output)
  const total = r.ms / 1000
  runs.push({ total, phases, overhead: total - (phases['Pull image'] ?? 0) - (phases['Health gate (direct)'] ?? 0) })
  process.stderr.write(`deploy ${i + 1}/${n}: ${total.toFixed(2)} s\n`)
}
const stats = await load.stop()
console.log(`Load during ${n} deploys: ${summarize(stats)}\n`)
console.log(`| phase (median of ${n}) | seconds |`)
console.log('| --- | ---: |')
for (const name of Object.keys(runs[0].phases)) console.log(`| ${name} | ${median(runs.map(r => r.phases[name] ?? 0)).toFixed(2)} |`)
console.log(`| **total** | ${median(runs.map(r => r.total)).toFixed(2)} |`)
console.log(`| **overhead** (total - pull - boot-to-healthy) | ${median(runs.map(r => r.overhead)).toFixed(2)} |`)
