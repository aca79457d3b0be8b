/**
 * The only place where strings become shell. Every remote command is built as an argv array by a pure function in
 * src/commands/ and turned into one POSIX-sh command line here; nothing else concatenates shell text.
 */

declare const built: unique symbol
/**
 * A command line for the remote POSIX shell. Only this module can make one: the brand's key is not exported, so an
 * object literal elsewhere does not type-check as Sh.
 */
export type Sh = { readonly sh: string; readonly [built]: true }

const make = (sh: string): Sh => ({ sh }) as Sh

const SAFE = /^[A-Za-z0-9_@%+=:,./-]+$/

/** Quotes one argument for POSIX sh so it reaches the program as the exact same bytes, inert. */
export function quote(arg: string): string {
  if (arg.includes('\0')) throw new Error('a shell argument cannot contain a NUL byte')
  if (arg !== '' && SAFE.test(arg)) return arg
  return `'${arg.replace(/'/g, `'\\''`)}'`
}

/** One simple command from its argv. */
export function cmd(...argv: string[]): Sh {
  if (argv.length === 0) throw new Error('empty command')
  return make(argv.map(quote).join(' '))
}

/** A fixed script run as `sh -c SCRIPT sh ARGS…`, so variable values stay arguments ($1, $2, …) and never become code. */
export function script(text: string, ...args: string[]): Sh {
  return cmd('sh', '-c', text, 'sh', ...args)
}

/** Runs the commands in order, stopping at the first failure. */
export function and(...parts: Sh[]): Sh {
  return make(parts.map(p => `{ ${p.sh}; }`).join(' && '))
}

/** Runs b only when a fails. */
export function or(a: Sh, b: Sh): Sh {
  return make(`{ ${a.sh}; } || { ${b.sh}; }`)
}

/** Runs b only when a exits with one of the given codes; otherwise the whole exits as a did. */
export function orOnExit(a: Sh, codes: number[], b: Sh): Sh {
  if (!codes.length || !codes.every(c => Number.isInteger(c) && c > 0 && c < 256)) throw new Error(`bad exit codes ${codes.join(',')}`)
  return make(`{ ${a.sh}; }; r=$?; case $r in ${codes.join('|')}) { ${b.sh}; } ;; *) ( exit $r ) ;; esac`)
}

/** Runs every command, whatever the previous ones returned (for read-only probes). */
export function seq(...parts: Sh[]): Sh {
  return make(parts.map(p => `{ ${p.sh}; }`).join('; '))
}

/**
 * Runs the commands at the same time, each with its output in its own temp file, and prints the outputs in the
 * given order once all have finished (for independent read-only probes: one round trip, the slowest one's time).
 */
export function concurrently(...parts: Sh[]): Sh {
  const start = parts.map((p, i) => `{ ${p.sh}; } >"$t/${i}" 2>&1 &`).join(' ')
  const files = parts.map((_, i) => `"$t/${i}"`).join(' ')
  return make(`t=$(mktemp -d) && { ${start} wait; cat ${files}; rm -rf "$t"; }`)
}

/** Discards stdout and stderr. */
export function quiet(c: Sh): Sh {
  return make(`{ ${c.sh}; } >/dev/null 2>&1`)
}

/** Discards stderr only. */
export function noStderr(c: Sh): Sh {
  return make(`{ ${c.sh}; } 2>/dev/null`)
}

/** Runs the command with a restrictive umask so files it creates are private (0600 / 0700). */
export function privately(c: Sh): Sh {
  return make(`umask 077 && { ${c.sh}; }`)
}

/** Prints a marker line so several probes can share one round trip and be split apart again. */
export function section(name: string, c: Sh): Sh {
  if (!/^[a-z0-9-]+$/.test(name)) throw new Error(`bad section name ${name}`)
  return make(`echo '@@ops ${name}'; { ${c.sh}; } 2>&1; echo "@@ops-rc $?"`)
}

/**
 * Starts the command as a job of its own on the host that outlives the SSH session (a new session via setsid where
 * the host has it; stdin, stdout and stderr off the channel, so the channel closes at once), its output appended to
 * `log`. Returns at once.
 */
export function detached(c: Sh, log: string): Sh {
  const job = quote(c.sh)
  return make(
    `if command -v setsid >/dev/null 2>&1; then setsid sh -c ${job} >>${quote(log)} 2>&1 </dev/null & else nohup sh -c ${job} >>${quote(log)} 2>&1 </dev/null & fi`
  )
}

/** Splits the output of a script made of section()s into name -> {rc, out}. */
export function splitSections(stdout: string): Map<string, { rc: number; out: string }> {
  const result = new Map<string, { rc: number; out: string }>()
  let name: string | undefined
  let buf: string[] = []
  for (const line of stdout.split('\n')) {
    const start = /^@@ops ([a-z0-9-]+)$/.exec(line)
    const end = /^@@ops-rc (\d+)$/.exec(line)
    if (start) {
      name = start[1]
      buf = []
    } else if (end && name !== undefined) {
      result.set(name, { rc: Number(end[1]), out: buf.join('\n') })
      name = undefined
    } else if (name !== undefined) {
      buf.push(line)
    }
  }
  return result
}

export const sleep = (ms: number): Promise<void> => new Promise(resolve => setTimeout(resolve, ms))
