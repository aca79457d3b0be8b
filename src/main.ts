import * as core from '@actions/core'
import { runBackup } from './backup'
import { runDeploy } from './deploy'
import { failureOf, failureText, InputErrors } from './errors'
import { describeChange, runInfra } from './infra'
import { getInputs, type Inputs } from './inputs'
import { maskSecrets } from './inputs/mask'
import { withLock } from './lock'
import { Phases } from './phases'
import { runMaintenance } from './maintenance'
import { runPlan } from './plan'
import { restartServices } from './restart'
import { connect, type Remote } from './ssh'
import { runStatus, statusLines } from './status'
import { failureMarkdown, summarize, type Report } from './summary'

/** The action: read and check every input, connect, run the mode, report. Outputs are set here only; one setFailed. */
export async function run(): Promise<void> {
  const phases = new Phases()
  let remote: Remote | undefined
  let title = 'ops-action'
  try {
    const inputs = getInputs()
    maskSecrets(inputs)
    for (const w of inputs.warnings) core.warning(w)
    const what = inputs.mode === 'deploy' || inputs.mode === 'rollback' ? `${inputs.mode} of ${inputs.app.service}` : inputs.mode
    title = `ops-action ${what}${inputs.dryRun ? ' (dry run)' : ''}`
    const c = inputs.connection
    remote = await phases.run(`Connect to ${c.username}@${c.host}:${c.port}`, () => connect(c))
    const report = await (inputs.dryRun ? plan(remote, inputs, phases) : runMode(remote, inputs, phases))
    await summarize(phases, `✅ ${title}`, report)
  } catch (e) {
    if (e instanceof InputErrors) for (const w of e.warnings) core.warning(w)
    const failure = failureOf(e)
    if (failure.notes) core.setOutput('rolled-back', 'true')
    core.setFailed(failureText(failure))
    await summarize(phases, `❌ ${title} failed`, { lines: [], markdown: failureMarkdown(failure) }).catch(() => undefined)
  } finally {
    remote?.close()
    core.setOutput('duration-seconds', (phases.totalMs() / 1000).toFixed(1))
  }
}

/** Each mode, and the outputs it sets. */
async function runMode(remote: Remote, inputs: Inputs, phases: Phases): Promise<Report> {
  const { opsDir } = inputs.infra
  const lock = { opsDir, timeoutS: inputs.lockTimeoutS, what: `mode ${inputs.mode}` }
  switch (inputs.mode) {
    case 'infra':
      return withLock(remote, phases, lock, async held => {
        const r = await runInfra(remote, inputs.infra, phases)
        core.setOutput('changed', String(r.changed))
        const backup = r.changes.find(c => c.kind === 'backup')
        if (backup) core.setOutput('backup', backup.path)
        const lines = r.changed ? r.changes.map(describeChange) : ['no changes']
        if (inputs.restartServices) lines.push(...(await restartServices(remote, inputs.infra, r.nginxId, held, phases)))
        return { lines }
      })
    case 'backup':
      return withLock(remote, phases, lock, async () => {
        const b = await runBackup(remote, opsDir, inputs.infra.backups.keep, phases)
        core.setOutput('backup', b.path)
        return {
          lines: [`backup: ${b.path} (${(b.bytes / 1024 / 1024).toFixed(2)} MiB)`, `keeping the newest ${inputs.infra.backups.keep}`]
        }
      })
    case 'status': {
      const st = await phases.run('Read the host', () => runStatus(remote, inputs.infra))
      core.setOutput('status', JSON.stringify(st))
      const down = [
        ...st.stack.filter(r => r.state !== 'running' || !['healthy', 'none'].includes(r.health)).map(r => r.service),
        ...st.services.filter(r => r.deployed && (r.state !== 'running' || !/^2/.test(r.nginx))).map(r => r.service)
      ]
      const health = down.length ? `not healthy: ${down.join(', ')}` : 'everything deployed is running and healthy'
      const verdict = st.maintenance.length ? `${health}; in maintenance: ${st.maintenance.join(', ')}` : health
      core.info(verdict)
      return { lines: [verdict], markdown: statusLines(st).join('\n') }
    }
    case 'plan':
      return plan(remote, inputs, phases)
    case 'maintenance':
    case 'live':
      return { lines: await runMaintenance(remote, inputs.infra, inputs, phases, inputs.lockTimeoutS) }
    case 'deploy':
    case 'rollback': {
      const r = await runDeploy(remote, inputs, phases)
      core.setOutput('container', r.container)
      core.setOutput('image', r.image)
      core.setOutput('digest', r.digest)
      core.setOutput('previous-image', r.previousImage)
      core.setOutput('url', r.url)
      core.setOutput('rolled-back', 'false')
      core.info(
        `${inputs.app.service} now serves ${r.image}${r.digest && r.digest !== r.image ? ` (${r.digest})` : ''} from ${r.container} at ${r.url}`
      )
      return {
        lines: [
          `serving ${r.image}${r.digest && r.digest !== r.image ? ` → ${r.digest}` : ''} from ${r.container}`,
          `previous image: ${r.previousImage || 'none (first deploy)'}`,
          ...(r.release
            ? [`release command: exit ${r.release.exit} after ${r.release.seconds.toFixed(1)} s (\`${r.release.command}\`)`]
            : []),
          ...(r.canary ? [`canary promoted after ${r.canary.seconds.toFixed(0)} s`, ...r.canary.figures] : []),
          `url: ${r.url}`
        ]
      }
    }
  }
}

/** mode plan, or dry-run of any mode: what would happen, with the diff; nothing changes. */
async function plan(remote: Remote, inputs: Inputs, phases: Phases): Promise<Report> {
  const p = await runPlan(remote, inputs, phases)
  core.setOutput('changes', String(p.changes.length))
  const diff = p.diff ? `\n<details><summary>diff</summary>\n\n\`\`\`diff\n${p.diff}\`\`\`\n</details>\n` : ''
  return {
    lines: p.changes.length ? p.changes : ['nothing to do'],
    markdown: `${p.changes.length} change(s); nothing was changed on the host.\n${diff}`
  }
}
