import * as core from '@actions/core'

export interface PhaseRecord {
  name: string
  startMs: number
  ms: number
  ok: boolean
}

/** Runs each step of a sequence in its own log group and records how long it took. */
export class Phases {
  readonly records: PhaseRecord[] = []
  private readonly t0 = Date.now()
  /** Checked before each phase starts (the deploy lock sets it: a run that lost the lock stops there). */
  guard: () => void = () => undefined

  async run<T>(name: string, fn: () => T | Promise<T>): Promise<T> {
    this.guard()
    const start = Date.now()
    const record: PhaseRecord = { name, startMs: start - this.t0, ms: 0, ok: false }
    this.records.push(record)
    return core.group(name, async () => {
      try {
        const result = await fn()
        record.ok = true
        return result
      } finally {
        record.ms = Date.now() - start
        core.info(doneLine(record))
      }
    })
  }

  /**
   * A step that runs beside the sequence (it must change nothing the sequence's steps meanwhile read or change): its
   * log lines are held back and shown, in its own group with its time, where the sequence first asks for its result,
   * so that groups never interleave.
   */
  aside<T>(name: string, fn: (log: Log) => Promise<T>): Aside<T> {
    const start = Date.now()
    const record: PhaseRecord = { name, startMs: start - this.t0, ms: 0, ok: false }
    this.records.push(record)
    const lines: { warning: boolean; text: string }[] = []
    const log: Log = {
      info: text => void lines.push({ warning: false, text }),
      warning: text => void lines.push({ warning: true, text })
    }
    const done = Promise.resolve()
      .then(() => fn(log))
      .then(value => {
        record.ok = true
        return value
      })
      .finally(() => (record.ms = Date.now() - start))
    done.catch(() => undefined) // awaited by result(); until then a failure is not unhandled
    let shown: Promise<T> | undefined
    const show = () =>
      core.group(name, async () => {
        try {
          return await done
        } finally {
          for (const line of lines) (line.warning ? core.warning : core.info)(line.text)
          core.info(doneLine(record))
        }
      })
    return { result: () => (shown ??= show()), settled: () => done }
  }

  totalMs(): number {
    return Date.now() - this.t0
  }

  /** Markdown table of the phases for the job summary. */
  table(): string {
    const rows = this.records.map(r => `| ${r.name} | ${seconds(r.ms)} | ${r.ok ? '✅' : '❌'} |`)
    return ['| Phase | Duration | |', '| --- | ---: | --- |', ...rows].join('\n')
  }
}

/** A step running beside the sequence (Phases.aside). */
export interface Aside<T> {
  /** Its value (or its error), its log shown the first time this is called. */
  result(): Promise<T>
  /** Its value (or its error), its log still held back (for another step beside the sequence). */
  settled(): Promise<T>
}

/** Where a step that may run beside the sequence logs (core itself in the sequence). */
export interface Log {
  info(line: string): void
  warning(line: string): void
}

/** A step's last line in its group: ✓ or ✗, its name, its time. */
function doneLine(r: PhaseRecord): string {
  return `${r.ok ? '✓' : '✗'} ${r.name} (${seconds(r.ms)})`
}

export function seconds(ms: number): string {
  return `${(ms / 1000).toFixed(2)} s`
}
