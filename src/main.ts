import * as core from '@actions/core'
import { getInputs, type Inputs } from './context'
import { RolledBack } from './errors'
import { runDeploy } from './deploy'
import { runInfra } from './infra'
import { acquireLock } from './lock'
import { Phases, seconds } from './phases'
import { runInfo } from './runinfo'
import { connect, type Remote } from './ssh'

/** The action: read and check every input, connect, run the mode, report. One setFailed, here. */
export async function run(): Promise<void> {
  const phases = new Phases()
  let remote: Remote | undefined
  let title = 'ops-action'
  try {
    const inputs = getInputs()
    const c = inputs.connection
    title = inputs.mode === 'infra' ? 'ops-action infra' : `ops-action ${inputs.mode} of ${inputs.deploy?.service}`
    remote = await phases.run(`Connect to ${c.username}@${c.host}:${c.port}`, () => connect(c))
    const lines = inputs.mode === 'infra' ? await infra(remote, inputs, phases) : await deploy(remote, inputs, phases)
    await summarize(phases, `✅ ${title}`, lines)
  } catch (e) {
    const message = e instanceof Error ? e.message : String(e)
    const notes = e instanceof RolledBack ? e.notes : undefined
    if (notes) core.setOutput('rolled-back', 'true')
    core.setFailed(message)
    await summarize(phases, `❌ ${title} failed`, [message, ...(notes ? ['Rolled back:', ...notes] : [])]).catch(() => undefined)
  } finally {
    remote?.close()
    core.setOutput('duration-seconds', (phases.totalMs() / 1000).toFixed(1))
  }
}

async function infra(remote: Remote, inputs: Inputs, phases: Phases): Promise<string[]> {
  const lock = await phases.run('Take deploy lock', () => acquireLock(remote, inputs.infra.opsDir, inputs.lockTimeoutS, 'mode infra'))
  phases.guard = () => lock.check()
  try {
    const result = await runInfra(remote, inputs.infra, phases)
    core.setOutput('changed', String(result.changed))
    return result.changed ? result.changes : ['no changes']
  } finally {
    phases.guard = () => undefined
    await lock.release()
  }
}

async function deploy(remote: Remote, inputs: Inputs, phases: Phases): Promise<string[]> {
  const r = await runDeploy(remote, inputs, phases)
  core.setOutput('container', r.container)
  core.setOutput('image', r.image)
  core.setOutput('previous-image', r.previousImage)
  core.setOutput('url', r.url)
  core.setOutput('rolled-back', 'false')
  core.info(`${inputs.deploy?.service} now serves ${r.image} from ${r.container} at ${r.url}`)
  return [`serving ${r.image} from ${r.container}`, `previous image: ${r.previousImage || 'none (first deploy)'}`, `url: ${r.url}`]
}

/** Mermaid gantt of the phases (the job summary renders it). */
export function gantt(phases: Phases): string {
  const rows = phases.records.map((r, i) => `    ${r.name.replace(/[:#;]/g, ' ')} :${r.ok ? '' : 'crit, '}p${i}, ${r.startMs}, ${r.startMs + Math.max(r.ms, 1)}`)
  return ['```mermaid', 'gantt', '    dateFormat x', '    axisFormat %S.%L s', ...rows, '```'].join('\n')
}

async function summarize(phases: Phases, title: string, lines: string[]): Promise<void> {
  core.info(`Total ${seconds(phases.totalMs())}`)
  if (!process.env.GITHUB_STEP_SUMMARY) return
  const run = runInfo()
  const links = [run.runUrl && `[run](${run.runUrl})`, run.commitUrl && `[commit](${run.commitUrl})`].filter(Boolean).join(' · ')
  await core.summary
    .addHeading(title, 3)
    .addList(lines)
    .addRaw(`\n${phases.table()}\n\n${gantt(phases)}\n\n${links}\n`, true)
    .write()
}
