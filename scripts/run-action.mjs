#!/usr/bin/env node
// Runs the built action (dist/index.js) exactly as a GitHub runner does: every input as INPUT_<NAME> with
// action.yml's defaults filled in, GITHUB_OUTPUT and GITHUB_STEP_SUMMARY files, and the output parsed back.
//   node scripts/run-action.mjs mode=infra http-port=8080 ...   (connection inputs come from the sandbox)
import { spawn } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync } from 'node:fs'
import { setPriority, tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parse } from 'yaml'

export const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..')
export const CONNECTION_FILE = join(ROOT, '.sandbox', 'connection.json')

export function actionYml() {
  return parse(readFileSync(join(ROOT, 'action.yml'), 'utf8'))
}

/** The environment a runner gives the action: every declared input, defaults filled in. */
export function runnerEnv(inputs) {
  const declared = actionYml().inputs
  for (const name of Object.keys(inputs)) if (!(name in declared)) throw new Error(`unknown input ${name}`)
  const env = {}
  for (const [name, spec] of Object.entries(declared)) env[`INPUT_${name.toUpperCase()}`] = inputs[name] ?? spec.default ?? ''
  return env
}

export function sandbox() {
  if (!existsSync(CONNECTION_FILE)) throw new Error(`no sandbox host: run 'bash scripts/sandbox.sh up' first (${CONNECTION_FILE} missing)`)
  return JSON.parse(readFileSync(CONNECTION_FILE, 'utf8'))
}

/** Connection inputs for the sandbox host. */
export function sandboxInputs(extra = {}) {
  const c = sandbox()
  return {
    host: c.host,
    port: String(c.port),
    username: c.username,
    'ssh-key': readFileSync(c.keyPath, 'utf8'),
    'known-hosts': c.knownHostsLine,
    ...extra
  }
}

/**
 * Runs dist/index.js; resolves with exit code, combined output and the outputs it set. `signal` injects a fault: once
 * the output matches `signal.when`, the process gets `signal.signal` (default SIGKILL) after `signal.afterMs`;
 * `signal.onSent(child)` is called then (e.g. to SIGKILL a process that was only stopped). `nice` runs it at that niceness
 * (a benchmark's model of a runner on another machine: its CPU does not come out of the host's).
 */
export function runAction(inputs, { env = {}, onOutput, signal, nice } = {}) {
  const dir = mkdtempSync(join(tmpdir(), 'ops-action-run-'))
  const outputFile = join(dir, 'output')
  const summaryFile = join(dir, 'summary')
  writeFileSync(outputFile, '')
  writeFileSync(summaryFile, '')
  const childEnv = {
    PATH: process.env.PATH,
    HOME: process.env.HOME,
    GITHUB_OUTPUT: outputFile,
    GITHUB_STEP_SUMMARY: summaryFile,
    GITHUB_REPOSITORY: 'behindy/behindy-ops',
    GITHUB_ACTIONS: 'true',
    RUNNER_TEMP: dir,
    ...runnerEnv(inputs),
    ...env
  }
  const started = Date.now()
  return new Promise((resolve, reject) => {
    // An OPS_ACTION_ROOT with a dist/ of its own is another release of the action: run that one.
    const other = env.OPS_ACTION_ROOT && join(env.OPS_ACTION_ROOT, 'dist', 'index.js')
    const entry = other && existsSync(other) ? other : join(ROOT, 'dist', 'index.js')
    const child = spawn(process.execPath, [entry], { env: childEnv, stdio: ['ignore', 'pipe', 'pipe'] })
    if (nice !== undefined && child.pid) setPriority(child.pid, nice)
    let output = ''
    let armed = Boolean(signal)
    const take = chunk => {
      output += chunk
      onOutput?.(String(chunk))
      if (armed && signal.when.test(output)) {
        armed = false
        setTimeout(() => {
          child.kill(signal.signal ?? 'SIGKILL')
          signal.onSent?.(child)
        }, signal.afterMs ?? 0)
      }
    }
    child.stdout.on('data', take)
    child.stderr.on('data', take)
    child.on('error', reject)
    child.on('close', (code, sig) => {
      const ms = Date.now() - started
      const outputs = parseOutputs(readFileSync(outputFile, 'utf8'))
      const summary = readFileSync(summaryFile, 'utf8')
      // The run's RUNNER_TEMP goes with it, as a runner's does (a CI run makes ~1,500 of them).
      rmSync(dir, { recursive: true, force: true })
      resolve({ code: code ?? (sig ? 128 : 1), signal: sig, output, outputs, summary, ms })
    })
  })
}

/** Parses the GITHUB_OUTPUT file format (name<<delimiter ... delimiter, or name=value). */
export function parseOutputs(text) {
  const out = {}
  const lines = text.split('\n')
  for (let i = 0; i < lines.length; i++) {
    const heredoc = /^([^=<]+)<<(.+)$/.exec(lines[i])
    if (heredoc) {
      const value = []
      while (++i < lines.length && lines[i] !== heredoc[2]) value.push(lines[i])
      out[heredoc[1]] = value.join('\n')
    } else if (lines[i].includes('=')) {
      out[lines[i].slice(0, lines[i].indexOf('='))] = lines[i].slice(lines[i].indexOf('=') + 1)
    }
  }
  return out
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const inputs = Object.fromEntries(
    process.argv.slice(2).map(a => {
      const eq = a.indexOf('=')
      if (eq < 0) throw new Error(`argument ${a} is not name=value`)
      return [a.slice(0, eq), a.slice(eq + 1).replace(/\\n/g, '\n')]
    })
  )
  const r = await runAction(sandboxInputs(inputs), { onOutput: s => process.stdout.write(s) })
  console.log(`\nexit ${r.code} after ${(r.ms / 1000).toFixed(2)} s; outputs: ${JSON.stringify(r.outputs)}`)
  process.exitCode = r.code ?? 1
}
