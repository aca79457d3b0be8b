import * as core from '@actions/core'
import { script, type Sh } from './shell'
import type { Remote, Running } from './ssh'
import { HostError } from './errors'
import { runInfo } from './runinfo'

/** How often a holder proves it is alive, and after how long without a sign a waiter takes the lock over. */
export const HEARTBEAT_S = 5
export const STALE_S = 30

/**
 * The host-wide deploy lock: one run at a time changes the host, whatever repository or mode started it.
 *
 * It is a kernel lock (flock) held by a process of this run's own SSH session, which keeps it while its stdin stays
 * open. When the run ends, is killed or loses its connection, sshd ends the session, the process exits and the
 * kernel releases the lock: a dead holder never blocks anyone, and a live one is never robbed.
 *
 * A holder that hangs, or whose connection died without sshd noticing (a runner VM that vanished leaves a half-open
 * TCP connection sshd may keep for hours), stops sending its heartbeat line every HEARTBEAT_S; each line touches the
 * holder file. A waiter that sees no heartbeat for STALE_S ends the holder's process (its pid is in the lock file),
 * which releases the lock, and takes it: a stale holder costs STALE_S, never lock-timeout.
 */
export const lockScript = (lockFile: string, holderFile: string, timeoutS: number, holder: string, staleS = STALE_S): Sh =>
  script(
    'mkdir -p "$(dirname "$1")" || exit 1; exec 9>>"$1" || exit 1; ' +
      'if ! flock -n 9; then echo "BUSY $(cat "$2" 2>/dev/null)"; end=$(( $(date +%s) + $3 )); ' +
      'until flock -n 9; do ' +
      'age=$(( $(date +%s) - $(stat -c %Y "$2" 2>/dev/null || echo 0) )); pid=$(cat "$1" 2>/dev/null); ' +
      'if [ "$age" -gt "$5" ] && [ -n "$pid" ] && grep -qF -- "$1" "/proc/$pid/cmdline" 2>/dev/null && kill "$pid" 2>/dev/null; then echo "STALE $age"; fi; ' +
      '[ "$(date +%s)" -lt "$end" ] || { echo TIMEOUT; exit 75; }; sleep 1; done; fi; ' +
      'printf "%s\\n" "$$" > "$1"; printf "%s\\n" "$4" > "$2"; echo LOCKED; ' +
      'while read -r _; do touch "$2"; done',
    lockFile,
    holderFile,
    String(timeoutS),
    holder,
    String(staleS)
  )

export interface Lock {
  /** Why the lock was lost, if it was (its session ended, or a waiter found this run stale). */
  lost(): string | undefined
  /** Throws when the lock was lost (its session ended, or a waiter found this run stale): the run must stop changing the host. */
  check(): void
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
  let staleReported = false
  const locked = new Promise<void>((resolve, reject) => {
    held = remote.start(lockScript(`${opsDir}/.deploy.lock`, `${opsDir}/.deploy.lock.holder`, timeoutS, holderDescription(what)), text => {
      out += text
      const busy = /^BUSY (.*)$/m.exec(out)
      if (busy && !reported) {
        reported = true
        core.info(`The host is busy: ${busy[1] || 'another run holds the deploy lock'}. Waiting up to ${timeoutS} s…`)
      }
      const stale = /^STALE (\d+)$/m.exec(out)
      if (stale && !staleReported) {
        staleReported = true
        core.warning(`The run holding the deploy lock sent no heartbeat for ${stale[1]} s: it is hung or gone. Took the lock over.`)
      }
      if (/^LOCKED$/m.test(out)) resolve()
    })
    held.done.then(r => {
      if (r.code === 75)
        reject(
          new HostError(
            `Timed out after ${timeoutS} s waiting for the deploy lock (${/^BUSY (.*)$/m.exec(out)?.[1] ?? 'held by another run'}).`,
            'wait for that run to finish, or raise lock-timeout'
          )
        )
      else reject(new HostError(`Could not take the deploy lock (exit ${r.code}): ${r.stderr.trim() || r.stdout.trim()}`))
    }, reject)
  })
  await locked
  core.info(`Deploy lock taken (${opsDir}/.deploy.lock).`)
  const running = held as Running
  let released = false
  let lost: string | undefined
  const heartbeat = setInterval(() => running.write('\n'), HEARTBEAT_S * 1000)
  heartbeat.unref()
  void running.done
    .then(
      r => (lost = `its holder process ended (exit ${r.code})`),
      (e: Error) => (lost = e.message)
    )
    .then(() => {
      clearInterval(heartbeat)
      if (!released) core.warning(`Lost the deploy lock: ${lost}.`)
    })
  const lostReason = () => (released ? undefined : lost)
  return {
    lost: lostReason,
    check() {
      const why = lostReason()
      if (why) throw new HostError(`This run lost the deploy lock (${why}); it stopped before changing more on the host.`, 'run it again')
    },
    async release() {
      released = true
      clearInterval(heartbeat)
      running.end()
      await running.done.catch(() => undefined)
    }
  }
}
