import * as core from '@actions/core'
import { HEARTBEAT_S, lockScript } from './commands/lock'
import { HostError } from './errors'
import { hostPath, OPS } from './paths'
import type { Aside, Phases } from './phases'
import { runInfo } from './runinfo'
import type { Remote, Running } from './ssh'

/**
 * The host-wide deploy lock: one run at a time changes the host, whatever repository or mode started it.
 *
 * It is a kernel lock (flock) held by a process of this run's own SSH session (commands/lock.ts), which keeps it
 * while its stdin stays open. When the run ends, is killed or loses its connection, sshd ends the session, the
 * process exits and the kernel releases the lock: a dead holder never blocks anyone, and a live one is never robbed.
 * A holder that hangs stops sending its heartbeat, and a waiter takes the lock over after STALE_S.
 */
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

/** The wait for the lock ended because a step beside it failed (LockRequest.beside). */
export class GaveUp extends Error {}

/** Takes the lock, waiting up to timeoutS; when `giveUp` rejects before it is taken, the wait ends with GaveUp. */
export async function acquireLock(
  remote: Remote,
  opsDir: string,
  timeoutS: number,
  what: string,
  giveUp?: Promise<unknown>
): Promise<Lock> {
  let held: Running | undefined
  let taken = false
  let out = ''
  let reported = false
  let staleReported = false
  const locked = new Promise<void>((resolve, reject) => {
    const script = lockScript(hostPath(opsDir, OPS.lock), hostPath(opsDir, OPS.lockHolder), timeoutS, holderDescription(what))
    held = remote.start(script, text => {
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
      if (/^LOCKED$/m.test(out)) {
        taken = true
        resolve()
      }
    })
    // Its stdin closed, the lock script exits as soon as it holds the lock (if ever): it is released at once.
    giveUp?.catch(() => {
      if (taken) return
      held?.end()
      core.info('Stopped waiting for the deploy lock: a step beside the wait failed.')
      reject(new GaveUp('stopped waiting for the deploy lock'))
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
  core.info(`Deploy lock taken (${hostPath(opsDir, OPS.lock)}).`)
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

export interface LockRequest {
  opsDir: string
  timeoutS: number
  /** What the run does, shown to runs that wait (e.g. "deploy of frontend (image)"). */
  what: string
  /** A step running beside the wait (a deploy's pull): when it fails first, the run stops waiting and fails with its error. */
  beside?: Aside<unknown>
}

/**
 * Runs `fn` under the host-wide lock: taken as its own phase, checked before every later phase (a run that lost it
 * stops there), released when `fn` ends, however it ends. Every mode that changes the host goes through here.
 */
export async function withLock<T>(remote: Remote, phases: Phases, req: LockRequest, fn: (lock: Lock) => Promise<T>): Promise<T> {
  const lock = await phases
    .run('Take deploy lock', () => acquireLock(remote, req.opsDir, req.timeoutS, req.what, req.beside?.settled()))
    .catch(async (e: unknown) => {
      if (e instanceof GaveUp) await req.beside?.result()
      throw e
    })
  phases.guard = () => lock.check()
  try {
    return await fn(lock)
  } finally {
    phases.guard = () => undefined
    await lock.release()
  }
}
