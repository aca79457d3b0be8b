import * as core from '@actions/core'
import { getInputs, type Inputs } from './context'
import { backupDatabase } from './backup'
import { projectInspect } from './commands/app'
import { PROJECT } from './commands/compose'
import { parseInspect } from './containers'
import { HostError, RolledBack } from './errors'
import { runDeploy } from './deploy'
import { runInfra } from './infra'
import { acquireLock } from './lock'
import { Phases, seconds } from './phases'
import { runInfo } from './runinfo'
import { connect, type Remote } from './ssh'
import { runPlan } from './plan'
import { restartServices } from './restart'
import { runStatus, statusLines } from './status'

/** The action: read and check every input, connect, run the mode, report. One setFailed, here. */
export async function run(): Promise<void> {
  const phases = new Phases()
  let remote: Remote | undefined
  let title = 'ops-action'
  try {
    const inputs = getInputs()
    const c = inputs.connection
    title = `${inputs.deploy ? `ops-action ${inputs.mode} of ${inputs.deploy.service}` : `ops-action ${inputs.mode}`}${inputs.dryRun ? ' (dry run)' : ''}`
    remote = await phases.run(`Connect to ${c.username}@${c.host}:${c.port}`, () => connect(c))
    const modes = { infra, status, backup, plan, deploy, rollback: deploy }
    const report = await (inputs.dryRun ? plan : modes[inputs.mode])(remote, inputs, phases)
    const [lines, markdown] = Array.isArray(report) ? [report, ''] : [report.lines, report.markdown]
    await summarize(phases, `✅ ${title}`, lines, markdown)
  } catch (e) {
    const message = e instanceof Error ? e.message : String(e)
    const notes = e instanceof RolledBack ? e.notes : undefined
    if (notes) core.setOutput('rolled-back', 'true')
    core.setFailed(message)
    await summarize(phases, `❌ ${title} failed`, [], failureMarkdown(message, notes)).catch(() => undefined)
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
    const lines = result.changed ? result.changes : ['no changes']
    if (inputs.restartServices) lines.push(...(await restartServices(remote, inputs.infra, result.nginxId, lock, phases)))
    return lines
  } finally {
    phases.guard = () => undefined
    await lock.release()
  }
}

async function plan(remote: Remote, inputs: Inputs, phases: Phases): Promise<{ lines: string[]; markdown: string }> {
  const p = await runPlan(remote, inputs, phases)
  const diff = p.diff ? `\n<details><summary>diff</summary>\n\n\`\`\`diff\n${p.diff}\`\`\`\n</details>\n` : ''
  return {
    lines: p.changes.length ? p.changes : ['nothing to do'],
    markdown: `${p.changes.length} change(s); nothing was changed on the host.\n${diff}`
  }
}

async function backup(remote: Remote, inputs: Inputs, phases: Phases): Promise<string[]> {
  const { opsDir, backups } = inputs.infra
  const lock = await phases.run('Take deploy lock', () => acquireLock(remote, opsDir, inputs.lockTimeoutS, 'mode backup'))
  phases.guard = () => lock.check()
  try {
    const stack = parseInspect(
      await phases.run('Find the database', () => remote.must(projectInspect(PROJECT), 'listing the stack containers'))
    )
    const db = stack.find(c => c.labels['com.docker.compose.service'] === 'db')
    if (!db || db.status !== 'running')
      throw new HostError(`The stack's db container is ${db?.status ?? 'missing'}: nothing to back up.`, 'run mode infra first')
    const b = await phases.run('pg_dump', () => backupDatabase(remote, opsDir, db.name, backups.keep))
    return [`backup: ${b.path} (${(b.bytes / 1024 / 1024).toFixed(2)} MiB)`, `keeping the newest ${backups.keep}`]
  } finally {
    phases.guard = () => undefined
    await lock.release()
  }
}

async function status(remote: Remote, inputs: Inputs, phases: Phases): Promise<{ lines: string[]; markdown: string }> {
  const st = await phases.run('Read the host', () => runStatus(remote, inputs.infra))
  core.setOutput('status', JSON.stringify(st))
  const down = [
    ...st.stack.filter(r => r.state !== 'running' || !['healthy', 'none'].includes(r.health)).map(r => r.service),
    ...st.services.filter(r => r.deployed && (r.state !== 'running' || !/^2/.test(r.nginx))).map(r => r.service)
  ]
  const verdict = down.length ? `not healthy: ${down.join(', ')}` : 'everything deployed is running and healthy'
  core.info(verdict)
  return { lines: [verdict], markdown: statusLines(st).join('\n') }
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

/**
 * The failure in the job summary: the error with its fix as GitHub alerts, and what the rollback did (the previous
 * release kept or restored) so nobody has to read the log to know what serves now.
 */
export function failureMarkdown(message: string, notes?: string[]): string {
  const quoted = (text: string) => text.split('\n').map(l => `> ${l}`)
  const fixAt = message.lastIndexOf('\nFix: ')
  const [error, fix] = fixAt < 0 ? [message, ''] : [message.slice(0, fixAt), message.slice(fixAt + 6)]
  const blocks = [['> [!CAUTION]', ...quoted(error)].join('\n')]
  if (fix) blocks.push(['> [!TIP]', `> **Fix:** ${fix}`].join('\n'))
  if (notes) blocks.push(['> [!WARNING]', '> **Rolled back**: the previous release serves.', ...notes.map(n => `> - ${n}`)].join('\n'))
  return blocks.join('\n\n')
}

/** Mermaid gantt of the phases (the job summary renders it). */
export function gantt(phases: Phases): string {
  const rows = phases.records.map(
    (r, i) => `    ${r.name.replace(/[:#;]/g, ' ')} :${r.ok ? '' : 'crit, '}p${i}, ${r.startMs}, ${r.startMs + Math.max(r.ms, 1)}`
  )
  return ['```mermaid', 'gantt', '    dateFormat x', '    axisFormat %S.%L s', ...rows, '```'].join('\n')
}

async function summarize(phases: Phases, title: string, lines: string[], markdown = ''): Promise<void> {
  core.info(`Total ${seconds(phases.totalMs())}`)
  if (!process.env.GITHUB_STEP_SUMMARY) return
  const run = runInfo()
  const links = [run.runUrl && `[run](${run.runUrl})`, run.commitUrl && `[commit](${run.commitUrl})`].filter(Boolean).join(' · ')
  const summary = core.summary.addHeading(title, 3)
  if (lines.length) summary.addList(lines)
  await summary.addRaw(`${markdown ? `\n${markdown}\n` : ''}\n${phases.table()}\n\n${gantt(phases)}\n\n${links}\n`, true).write()
}
