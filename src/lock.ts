import * as core from '@actions/core'
import { script, type Sh } from './shell'
import type { Remote, Running } from './ssh'
import { HostError } from './errors'
import { runInfo } from './runinfo'

/**
 * The host-wide deploy lock: one run at a time changes the host, whatever repository or mode started it.
 *
 * It is a kernel lock (flock) held by a process of this run's own SSH session, which keeps it while its stdin stays
 * open. When the run ends, is killed or loses its connection, sshd ends the session, the process exits and the
 * kernel releases the lock: a dead holder never blocks anyone, and a live one is never robbed.
 */
export const lockScript = (lockFile: string, holderFile: string, timeoutS: number, holder: string): Sh =>
  script(
    'mkdir -p "$(dirname "$1")" || exit 1; exec 9>>"$1" || exit 1; ' +
      'if ! flock -n 9; then echo "BUSY $(cat "$2" 2>/dev/null)"; flock -w "$3" 9 || { echo TIMEOUT; exit 75; }; fi; ' +
      'printf "%s\\n" "$4" > "$2"; echo LOCKED; exec cat >/dev/null',
    lockFile,
    holderFile,
    String(timeoutS),
    holder
  )

export interface Lock {
  release(): Promise<void>
}

/** Who is deploying: shown to runs that wait for the lock. */
export function holderDescription(what: string): string {
  const run = runInfo()
  return `${what} by ${run.repository ?? 'unknown repository'} (${run.runUrl ?? 'a local run'}) since ${new Date().toISOString()}`
}

export async function acquireLock(remote: Remote, opsDir: string, timeoutS: number, what: string): Promise<Lock> {
  let held: Running | undefined
  let out = ''
  let reported = false
  const locked = new Promise<void>((resolve, reject) => {
    held = remote.start(lockScript(`${opsDir}/.deploy.lock`, `${opsDir}/.deploy.lock.holder`, timeoutS, holderDescription(what)), text => {
      out += text
      const busy = /^BUSY (.*)$/m.exec(out)
      if (busy && !reported) {
        reported = true
        core.info(`The host is busy: ${busy[1] || 'another run holds the deploy lock'}. Waiting up to ${timeoutS} s…`)
      }
      if (/^LOCKED$/m.test(out)) resolve()
    })
    held.done.then(r => {
      if (r.code === 75) reject(new HostError(`Timed out after ${timeoutS} s waiting for the deploy lock (${/^BUSY (.*)$/m.exec(out)?.[1] ?? 'held by another run'}).`, 'wait for that run to finish, or raise lock-timeout'))
      else reject(new HostError(`Could not take the deploy lock (exit ${r.code}): ${r.stderr.trim() || r.stdout.trim()}`))
    }, reject)
  })
  await locked
  core.info(`Deploy lock taken (${opsDir}/.deploy.lock).`)
  const running = held as Running
  return {
    async release() {
      running.end()
      await running.done.catch(() => undefined)
    }
  }
}
