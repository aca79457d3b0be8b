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
        core.info(`${record.ok ? '✓' : '✗'} ${name} (${seconds(record.ms)})`)
      }
    })
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

export function seconds(ms: number): string {
  return `${(ms / 1000).toFixed(2)} s`
}
