/** An input problem found before anything touches the host. The message names the input. */
export class InputError extends Error {
  constructor(
    readonly input: string,
    message: string
  ) {
    super(`Input '${input}': ${message}`)
    this.name = 'InputError'
  }
}

/** Several input problems reported together, so a user fixes them in one go. */
export class InputErrors extends Error {
  constructor(
    readonly errors: InputError[],
    /** What was said about the inputs that were valid (the caller prints them with the errors). */
    readonly warnings: string[] = []
  ) {
    super(
      errors.length === 1 ? errors[0].message : `${errors.length} inputs are invalid:\n${errors.map(e => `  - ${e.message}`).join('\n')}`
    )
    this.name = 'InputErrors'
  }
}

/** A failure on the host, with what to do about it (rendered by the caller: the log line, the summary's tip). */
export class HostError extends Error {
  constructor(
    message: string,
    readonly fix?: string,
    options?: { cause?: unknown }
  ) {
    super(message, options)
    this.name = 'HostError'
  }
}

/** A release that failed and was undone: the cause, plus what the rollback did. */
export class RolledBack extends Error {
  constructor(
    readonly cause: Error,
    readonly notes: string[]
  ) {
    super(cause.message, { cause })
    this.name = 'RolledBack'
  }
}

/** What the run reports about an error: its message, the first fix and rollback notes along its cause chain. */
export interface Failure {
  message: string
  fix?: string
  notes?: string[]
}

export function failureOf(e: unknown): Failure {
  const message = e instanceof Error ? e.message : String(e)
  let fix: string | undefined
  let notes: string[] | undefined
  for (let c: unknown = e; c instanceof Error; c = c.cause) {
    fix ??= c instanceof HostError ? c.fix : undefined
    notes ??= c instanceof RolledBack ? c.notes : undefined
  }
  return { message, fix, notes }
}

/** The failure as one text: the message, then `Fix: …` on its own line. */
export const failureText = (f: Failure): string => (f.fix ? `${f.message}\nFix: ${f.fix}` : f.message)
