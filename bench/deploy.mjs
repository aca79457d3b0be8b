#!/usr/bin/env node
// The action's own time per deploy, on the sandbox host: N swaps of the frontend (the Next.js sample app with a 2 s
// STARTUP_DELAY, alternating v1/v2), at rest, or under 16 clients through nginx with LOAD=1 (8 keep-alive + 8
// new-connection). Overhead = wall time − the app's own boot-to-healthy, measured apart (bench/common.mjs
// bootToHealthy: K containers of the same image and env, polled every 10 ms). The pull (a manifest check: the image is
// on the host) stays in the wall time: it runs beside the lock and the stack's check. Prints the median of each phase,
// wall, boot-to-healthy, overhead, and the per-run figures. Needs the sandbox; not with another e2e suite or bench.
import { runAction, sandbox, sandboxInputs } from '../scripts/run-action.mjs'
import { startLoad, summarize } from '../scripts/load.mjs'
import { bootToHealthy, INFRA_ENV, median, oneContainer, phasesOf } from './common.mjs'

const N = Number(process.env.N || 10)
const K = Number(process.env.K || 5)
const BOOT_S = Number(process.env.BOOT_S || 2)
const LOAD = process.env.LOAD === '1'
const port = process.env.HTTP_PORT || '18080'
const c = sandbox()
const image = tag => `${c.images.apps.frontend}:${tag}`
const inputs = (tag, version) =>
  sandboxInputs({
    mode: 'deploy',
    service: 'frontend',
    'health-path': '/health',
    image: image(tag),
    env: `VERSION=${version}\nSTARTUP_DELAY=${BOOT_S}`,
    registry: c.registry,
    'registry-username': c.registryUsername,
    'registry-password': c.registryPassword,
    'http-port': port,
    'https-port': String(Number(port) + 363),
    'infra-env': INFRA_ENV
  })
const sleep = ms => new Promise(r => setTimeout(r, ms))

const warm = await runAction(inputs('v1', 'bench-warm'))
if (warm.code !== 0) throw new Error(`warm-up deploy failed:\n${warm.output}`)
const load = LOAD ? startLoad({ url: `http://127.0.0.1:${port}/`, keepaliveClients: 8, plainClients: 8 }) : undefined
await sleep(1000)
const healthyS = await bootToHealthy({
  image: image('v1'),
  env: { VERSION: 'bench-boot', STARTUP_DELAY: String(BOOT_S) },
  port: 3000,
  path: '/health',
  k: K
})
process.stderr.write(`boot-to-healthy (median of ${K}): ${healthyS.toFixed(2)} s\n`)
const runs = []
for (let i = 0; i < N; i++) {
  // Let the previous release's background retirement end first (it would share the CPU with this deploy).
  await oneContainer('frontend')
  const r = await runAction(inputs(i % 2 ? 'v1' : 'v2', `bench-${i}`))
  if (r.code !== 0) throw new Error(`deploy ${i + 1} failed:\n${r.output}`)
  const wall = r.ms / 1000
  runs.push({ wall, phases: phasesOf(r.output), overhead: wall - healthyS })
  process.stderr.write(`deploy ${i + 1}/${N}: ${wall.toFixed(2)} s\n`)
}
if (load) console.log(`Load during ${N} deploys: ${summarize(await load.stop())}\n`)
console.log(`| phase (median of ${N} deploys ${LOAD ? 'under load' : 'at rest'}) | seconds |`)
console.log('| --- | ---: |')
for (const name of Object.keys(runs[0].phases)) console.log(`| ${name} | ${median(runs.map(r => r.phases[name] ?? 0)).toFixed(2)} |`)
console.log(`| **wall** (process start to exit) | ${median(runs.map(r => r.wall)).toFixed(2)} |`)
console.log(`| app boot-to-healthy (measured apart, median of ${K}) | ${healthyS.toFixed(2)} |`)
console.log(`| **overhead** (wall − boot-to-healthy) | ${median(runs.map(r => r.overhead)).toFixed(2)} |`)
console.log(`\nper run: ${runs.map(r => r.overhead.toFixed(2)).join(' ')}`)
