import * as core from '@actions/core'
import { getInputs } from './context'
import { runInfra } from './infra'
import { Phases, seconds } from './phases'
import { connect, type Remote } from './ssh'

/** The action: read and check every input, connect, run the mode, report. One setFailed, here. */
export async function run(): Promise<void> {
  const phases = new Phases()
  let remote: Remote | undefined
  try {
    const inputs = getInputs()
    const c = inputs.connection
    remote = await phases.run(`Connect to ${c.username}@${c.host}:${c.port}`, () => connect(c))
    const result = await runInfra(remote, inputs.infra, phases)
    core.setOutput('changed', String(result.changed))
    await summarize(phases, `ops-action infra: ${result.changed ? `${result.changes.length} change(s)` : 'no changes'}`, result.changes)
  } catch (e) {
    const message = e instanceof Error ? e.message : String(e)
    core.setFailed(message)
    await summarize(phases, 'ops-action infra: failed', [message]).catch(() => undefined)
  } finally {
    remote?.close()
    core.setOutput('duration-seconds', (phases.totalMs() / 1000).toFixed(1))
  }
}

async function summarize(phases: Phases, title: string, lines: string[]): Promise<void> {
  core.info(`Total ${seconds(phases.totalMs())}`)
  if (!process.env.GITHUB_STEP_SUMMARY) return
  await core.summary
    .addHeading(title, 3)
    .addRaw(phases.table(), true)
    .addRaw('\n', true)
    .addList(lines.length ? lines : ['nothing changed'])
    .write()
}
