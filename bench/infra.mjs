#!/usr/bin/env node
// Times mode infra on the sandbox host: a first run on a fresh host and a no-op re-run, N times each (default 5),
// driving dist/index.js like a runner. Prints the medians as a markdown table. Needs root (resets the stack).
import { execFileSync } from 'node:child_process'
import { join } from 'node:path'
import { ROOT, runAction, sandboxInputs } from '../scripts/run-action.mjs'
import { INFRA_ENV, median, phasesOf } from './common.mjs'

const n = Number(process.env.N || 5)
const inputs = sandboxInputs({
  mode: 'infra',
  'http-port': '18080',
  'https-port': '18443',
  'infra-env': INFRA_ENV
})

async function timed(label) {
  const r = await runAction(inputs)
  if (r.code !== 0) throw new Error(`${label} failed:\n${r.output}`)
  return { s: r.ms / 1000, phases: phasesOf(r.output), changed: r.outputs.changed }
}

const first = []
const noop = []
for (let i = 0; i < n; i++) {
  execFileSync('bash', [join(ROOT, 'scripts', 'sandbox.sh'), 'reset-stack'])
  first.push(await timed('first run'))
  noop.push(await timed('no-op run'))
  if (noop.at(-1).changed !== 'false') throw new Error('the re-run changed something')
  process.stderr.write(`run ${i + 1}/${n}: first ${first.at(-1).s.toFixed(2)} s, no-op ${noop.at(-1).s.toFixed(2)} s\n`)
}
const phaseNames = Object.keys(first[0].phases)
console.log(`| mode infra (sandbox host, n=${n}) | median wall time | ${phaseNames.join(' | ')} |`)
console.log(`| --- | ---: | ${phaseNames.map(() => '---:').join(' | ')} |`)
for (const [label, runs] of [
  ['first run (fresh host)', first],
  ['no-op re-run', noop]
]) {
  const cells = phaseNames.map(p => `${median(runs.map(r => r.phases[p] ?? 0)).toFixed(2)} s`)
  console.log(`| ${label} | ${median(runs.map(r => r.s)).toFixed(2)} s | ${cells.join(' | ')} |`)
}
