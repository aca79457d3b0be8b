import * as core from '@actions/core'
import type { Failure } from './errors'
import { seconds, type Phases } from './phases'
import { runInfo } from './runinfo'

/** What a mode reports: lines for the log and the summary's list, and markdown below them. */
export interface Report {
  lines: string[]
  markdown?: string
}

/**
 * The failure in the job summary: the error with its fix as GitHub alerts, and what the rollback did (the previous
 * release kept or restored) so nobody has to read the log to know what serves now.
 */
export function failureMarkdown(f: Failure): string {
  const quoted = (text: string) => text.split('\n').map(l => `> ${l}`)
  const blocks = [['> [!CAUTION]', ...quoted(f.message)].join('\n')]
  if (f.fix) blocks.push(['> [!TIP]', `> **Fix:** ${f.fix}`].join('\n'))
  if (f.notes) blocks.push(['> [!WARNING]', '> **Rolled back**: the previous release serves.', ...f.notes.map(n => `> - ${n}`)].join('\n'))
  return blocks.join('\n\n')
}

/** Mermaid gantt of the phases (the job summary renders it). */
export function gantt(phases: Phases): string {
  const rows = phases.records.map(
    (r, i) => `    ${r.name.replace(/[:#;]/g, ' ')} :${r.ok ? '' : 'crit, '}p${i}, ${r.startMs}, ${r.startMs + Math.max(r.ms, 1)}`
  )
  return ['```mermaid', 'gantt', '    dateFormat x', '    axisFormat %S.%L s', ...rows, '```'].join('\n')
}

/** The total time in the log; the job summary (title, lines, markdown, phase table, gantt, links) when there is one. */
export async function summarize(phases: Phases, title: string, report: Report): Promise<void> {
  core.info(`Total ${seconds(phases.totalMs())}`)
  if (!process.env.GITHUB_STEP_SUMMARY) return
  const run = runInfo()
  const links = [run.runUrl && `[run](${run.runUrl})`, run.commitUrl && `[commit](${run.commitUrl})`].filter(Boolean).join(' · ')
  const summary = core.summary.addHeading(title, 3)
  if (report.lines.length) summary.addList(report.lines)
  const markdown = report.markdown ? `\n${report.markdown}\n` : ''
  await summary.addRaw(`${markdown}\n${phases.table()}\n\n${gantt(phases)}\n\n${links}\n`, true).write()
}
