import * as core from '@actions/core'
import { appendLine, readFileIfExists, tail } from './commands/files'
import { HostError } from './errors'
import { hostPath, OPS } from './paths'
import type { PhaseRecord } from './phases'
import { runInfo } from './runinfo'
import type { Remote } from './ssh'
import type { Resolved } from './images'
import { liveOf, upstreamPath, type Live } from './upstream'

/** One line of `<ops-dir>/history.jsonl`. */
export interface HistoryRecord {
  time: string
  mode: 'deploy' | 'rollback' | 'restart'
  service: string
  image: string
  /** `repo@sha256:…` the release ran (records of earlier releases have none). */
  digest?: string
  previousImage: string
  previousDigest?: string
  container: string
  result: 'success' | 'rolled-back' | 'failed'
  repository?: string
  sha?: string
  actor?: string
  runUrl?: string
  phases: Record<string, number>
  /** The release command, when one ran (its exit code and seconds). */
  release?: { command: string; exit: number | 'timeout'; seconds: number }
  /** The canary, when one ran: what each side answered (p99 in seconds) and what became of it. */
  canary?: { percent: number; seconds: number; verdict: 'promote' | 'fail'; canary: CanarySide; old: CanarySide }
  error?: string
}

interface CanarySide {
  requests: number
  errors: number
  p99: number
}

/** Appends a record, stamped with the time and who ran it (O_APPEND keeps concurrent writers' lines whole). */
export async function appendHistory(remote: Remote, opsDir: string, r: Omit<HistoryRecord, 'time'>): Promise<void> {
  const { repository, sha, actor, runUrl } = runInfo()
  const full: HistoryRecord = { time: new Date().toISOString(), ...r, repository, sha, actor, runUrl }
  await remote.must(appendLine(hostPath(opsDir, OPS.history)), 'recording the deploy', { stdin: `${JSON.stringify(full)}\n` })
}

/** The history's last `lines` records (the host keeps every line; reading the tail is enough for every use). */
export const historyTail = (opsDir: string, lines = 500) => tail(hostPath(opsDir, OPS.history), lines)

export async function readHistory(remote: Remote, opsDir: string, lines = 500): Promise<HistoryRecord[]> {
  return parseHistory(await remote.must(historyTail(opsDir, lines), 'reading the deploy history'))
}

/** history.jsonl lines; a damaged line is skipped. */
export function parseHistory(text: string): HistoryRecord[] {
  return text
    .split('\n')
    .filter(Boolean)
    .flatMap(l => {
      try {
        return [JSON.parse(l) as HistoryRecord]
      } catch {
        return []
      }
    })
}

/** Whether two releases ran the same content: by digest when both have one, else (earlier releases) by reference. */
const same = (a: { image: string; digest?: string }, b: { image: string; digest?: string }): boolean =>
  a.digest && b.digest ? a.digest === b.digest : a.image === b.image

/**
 * The release mode rollback returns to: the newest successful one of the service that ran other content than the one
 * serving (`current`, else the newest success), by digest where recorded, so a tag that moved (or was deleted from
 * the registry) since still returns to what served.
 */
export function previousRelease(history: HistoryRecord[], service: string, current: Live | undefined): Resolved | undefined {
  const releases = history.filter(h => h.service === service && h.result === 'success')
  const serving = current ?? releases.at(-1)
  const r = [...releases].reverse().find(h => !serving || !same(h, serving))
  return r && { image: r.image, digest: r.digest ?? '' }
}

/** Reads the history and the serving upstream, and names the release mode rollback returns to. */
export async function rollbackTarget(remote: Remote, opsDir: string, service: string): Promise<Resolved> {
  const history = await readHistory(remote, opsDir)
  const live = liveOf(await remote.must(readFileIfExists(hostPath(opsDir, upstreamPath(service))), 'reading the upstream'))
  const target = previousRelease(history, service, live)
  if (!target)
    throw new HostError(
      `No previous image of ${service} in the deploy history (${hostPath(opsDir, OPS.history)}) to roll back to.`,
      'deploy the wanted image with mode deploy'
    )
  const shown = (r: Resolved | Live) => (r.digest ? `${r.image} (${r.digest})` : r.image)
  core.info(`${service} serves ${live ? shown(live) : 'nothing'}; rolling back to ${shown(target)}.`)
  return target
}

/** Seconds per phase for the history; with a label, only that service's phases of a multi-service run. */
export function phaseSeconds(records: PhaseRecord[], label = ''): Record<string, number> {
  return Object.fromEntries(records.filter(r => r.name.startsWith(label)).map(r => [r.name, Math.round(r.ms) / 1000]))
}
