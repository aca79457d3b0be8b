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
  constructor(readonly errors: InputError[]) {
    super(
      errors.length === 1 ? errors[0].message : `${errors.length} inputs are invalid:\n${errors.map(e => `  - ${e.message}`).join('\n')}`
    )
    this.name = 'InputErrors'
  }
}

/** A failure on the host, with what to do about it. */
export class HostError extends Error {
  constructor(
    message: string,
    readonly fix?: string
  ) {
    super(fix ? `${message}\nFix: ${fix}` : message)
    this.name = 'HostError'
  }
}

/** A release that failed and was undone: the cause's message, plus what the rollback did. */
export class RolledBack extends Error {
  constructor(
    cause: Error,
    readonly notes: string[]
  ) {
    super(cause.message)
    this.name = 'RolledBack'
  }
}
