#!/usr/bin/env node
// nginx reloads under load: sends N SIGHUPs (one every INTERVAL_MS) to the stack's nginx while 8 keep-alive and 8
// new-connection clients hit a deployed route, then prints failed requests / total. Every deploy reloads nginx twice
// (preview, switch), so this is the swap's floor. Needs the sandbox host with a deployed frontend.
import { execFileSync } from 'node:child_process'
import { startLoad, summarize } from '../scripts/load.mjs'

const n = Number(process.env.N || 100)
const interval = Number(process.env.INTERVAL_MS || 300)
const url = process.env.URL || 'http://127.0.0.1:18080/'
const nginx = execFileSync(
  'docker',
  ['ps', '-q', '--filter', 'label=com.docker.compose.project=behindy', '--filter', 'label=com.docker.compose.service=nginx'],
  { encoding: 'utf8' }
).trim()
if (!nginx) throw new Error('no nginx container of the stack: run mode infra first')

const load = startLoad({ url, keepaliveClients: 8, plainClients: 8 })
await new Promise(r => setTimeout(r, 500))
for (let i = 0; i < n; i++) {
  execFileSync('docker', ['kill', '-s', 'HUP', nginx])
  await new Promise(r => setTimeout(r, interval))
}
await new Promise(r => setTimeout(r, 1000))
const stats = await load.stop()
console.log(`${n} nginx reloads under load: ${summarize(stats)}`)
for (const e of stats.errors.slice(0, 10)) console.log(`  ${e}`)
