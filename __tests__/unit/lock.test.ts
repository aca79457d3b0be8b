import { spawn } from 'node:child_process'
import { mkdtempSync, readFileSync, statSync, utimesSync } from 'node:fs'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { lockScript, STALE_S } from '../../src/commands/lock'
import { HostError } from '../../src/errors'
import { acquireLock, withLock } from '../../src/lock'
import { Phases } from '../../src/phases'
import { captureStdout, FakeRemote, useTempDir } from './helpers'

const stdout = captureStdout()
const tmp = useTempDir('lock-test')

/**
 * The lock script run locally (flock, stat, kill: no docker). Nothing here depends on how fast the machine is: each
 * test waits for the script's own output or exit, never for a wall-clock bound, and staleness is driven by the
 * holder file's mtime (which the script reads with `stat -c %Y`), not by waiting for it to age.
 */
describe('lockScript (flock, run locally)', { timeout: 30_000 }, () => {
  /** What happened, in order, across the processes of a test: `<label>: <output line>` and `<label>: exit <code>`. */
  let events: string[] = []

  interface Proc {
    label: string
    write(text: string): void
    end(): void
    out(): string
    /** Resolves when a line of its output matches; rejects when it exits without one. */
    line(re: RegExp): Promise<void>
    /** Exit code, or the signal that ended it. */
    exit: Promise<number | NodeJS.Signals>
    alive(): boolean
  }

  const procs: Proc[] = []
  afterAll(() => {
    for (const pr of procs) if (pr.alive()) pr.end()
  })

  function startLock(label: string, files: { lock: string; holder: string }, timeoutS: number, holder: string, staleS?: number): Proc {
    const p = spawn('sh', ['-c', lockScript(files.lock, files.holder, timeoutS, holder, staleS).sh], { stdio: ['pipe', 'pipe', 'pipe'] })
    let out = ''
    let ended = false
    const waiters: Array<{ re: RegExp; resolve: () => void; reject: (e: Error) => void }> = []
    const check = () => {
      for (const w of [...waiters]) {
        if (w.re.test(out)) {
          waiters.splice(waiters.indexOf(w), 1)
          w.resolve()
        }
      }
    }
    p.stdout.on('data', (d: Buffer) => {
      const text = d.toString('utf8')
      out += text
      for (const l of text.split('\n').filter(Boolean)) events.push(`${label}: ${l}`)
      check()
    })
    p.stderr.on('data', (d: Buffer) => (out += d.toString('utf8')))
    const exit = new Promise<number | NodeJS.Signals>(resolve =>
      p.on('close', (code, signal) => {
        ended = true
        events.push(`${label}: exit ${code ?? signal}`)
        check()
        for (const w of waiters.splice(0)) w.reject(new Error(`${label} exited without ${w.re}: ${JSON.stringify(out)}`))
        resolve(code ?? (signal as NodeJS.Signals))
      })
    )
    p.stdin.on('error', () => undefined) // written after it exited (EPIPE): the test's own expectations tell
    const proc: Proc = {
      label,
      write: text => void p.stdin.write(text),
      end: () => void p.stdin.end(),
      out: () => out,
      line: re =>
        new Promise((resolve, reject) => {
          waiters.push({ re, resolve, reject })
          check()
          if (ended) check()
        }),
      exit,
      alive: () => !ended
    }
    procs.push(proc)
    return proc
  }

  function lockFiles(nested = false): { lock: string; holder: string } {
    const dir = mkdtempSync(join(tmp(), 'lock-'))
    const base = nested ? join(dir, 'ops') : dir
    return { lock: join(base, '.deploy.lock'), holder: join(base, '.deploy.lock.holder') }
  }

  /** Asserts that the events happened in this order (others may come between them). */
  function inOrder(...expected: Array<string | RegExp>): void {
    let at = 0
    for (const e of expected) {
      const i = events.findIndex((ev, k) => k >= at && (typeof e === 'string' ? ev === e : e.test(ev)))
      expect(i, `${String(e)} after event ${at} of ${JSON.stringify(events)}`).toBeGreaterThanOrEqual(0)
      at = i + 1
    }
  }

  it('the first holds the lock while its stdin is open; a second times out with BUSY <holder>; then it is free again', async () => {
    events = []
    const files = lockFiles(true)
    const first = startLock('first', files, 5, 'deploy of backend by behindy/behindy-back')
    await first.line(/^LOCKED$/m)
    expect(readFileSync(files.holder, 'utf8')).toBe('deploy of backend by behindy/behindy-back\n')

    const second = startLock('second', files, 1, 'mode infra')
    expect(await second.exit).toBe(75)
    expect(second.out()).toBe('BUSY deploy of backend by behindy/behindy-back\nTIMEOUT\n')
    // The holder file still names the first run, which still holds the lock.
    expect(readFileSync(files.holder, 'utf8')).toBe('deploy of backend by behindy/behindy-back\n')
    expect(first.alive()).toBe(true)

    first.end()
    expect(await first.exit).toBe(0)

    // lock-timeout 0: a run that found the lock taken would print BUSY and time out at once. This one takes it at
    // the first try, so it was free the moment the first let go.
    const third = startLock('third', files, 0, 'rollback of backend')
    await third.line(/^LOCKED$/m)
    expect(third.out()).toBe('LOCKED\n')
    expect(readFileSync(files.holder, 'utf8')).toBe('rollback of backend\n')
    third.end()
    expect(await third.exit).toBe(0)
    inOrder('first: LOCKED', 'second: BUSY deploy of backend by behindy/behindy-back', 'second: exit 75', 'first: exit 0', 'third: LOCKED')
  })

  it('a waiter gets the lock once the holder lets go, before its own timeout', async () => {
    events = []
    const files = lockFiles()
    const first = startLock('first', files, 5, 'first')
    await first.line(/^LOCKED$/m)
    const second = startLock('second', files, 600, 'second')
    await second.line(/^BUSY first$/m)
    expect(second.out()).not.toMatch(/LOCKED/)
    first.end()
    await second.line(/^LOCKED$/m)
    expect(second.out()).toBe('BUSY first\nLOCKED\n')
    expect(readFileSync(files.holder, 'utf8')).toBe('second\n')
    second.end()
    expect(await second.exit).toBe(0)
    expect(await first.exit).toBe(0)
    // The first's exit is not ordered against the second's LOCKED: the kernel frees the lock as the first exits,
    // and the second may print LOCKED before this process hears of that exit. Before first.end(), no LOCKED (above).
    inOrder('first: LOCKED', 'second: BUSY first', 'second: LOCKED', 'second: exit 0')
  })

  it('a holder without heartbeats is stale: a waiter ends it and takes the lock, long before its own timeout', async () => {
    events = []
    const files = lockFiles()
    const hung = startLock('hung', files, 5, 'hung run')
    await hung.line(/^LOCKED$/m)
    // The lock file names the holding shell (the one with fd 9), whose command line names the lock file.
    const pid = readFileSync(files.lock, 'utf8').trim()
    expect(pid).toMatch(/^\d+$/)
    expect(readFileSync(`/proc/${pid}/cmdline`, 'utf8')).toContain(files.lock)
    // Its last sign of life was 100 s ago (no heartbeat since): the holder file's mtime says so.
    const past = Math.floor(Date.now() / 1000) - 100
    utimesSync(files.holder, past, past)

    const waiter = startLock('waiter', files, 600, 'waiter')
    await waiter.line(/^LOCKED$/m)
    const stale = /^STALE (\d+)$/m.exec(waiter.out())
    expect(stale, waiter.out()).not.toBeNull()
    // The age it saw is the mtime's (≥ 100 s), far over the STALE_S it allows.
    expect(Number(stale?.[1])).toBeGreaterThanOrEqual(100)
    expect(Number(stale?.[1])).toBeGreaterThan(STALE_S)
    expect(waiter.out()).toMatch(/^BUSY hung run\n(STALE \d+\n)+LOCKED\n$/)
    // The hung holder was killed by SIGTERM (143 from the sh around it) before the waiter got the lock; no TIMEOUT.
    expect([143, 'SIGTERM']).toContain(await hung.exit)
    inOrder('hung: LOCKED', 'waiter: BUSY hung run', /^waiter: STALE \d+$/, /^hung: exit (143|SIGTERM)$/, 'waiter: LOCKED')
    expect(readFileSync(files.holder, 'utf8')).toBe('waiter\n')
    waiter.end()
    expect(await waiter.exit).toBe(0)
  })

  it('a heartbeat touches the holder file, and a holder whose file is fresh keeps the lock', async () => {
    events = []
    const files = lockFiles()
    const alive = startLock('alive', files, 5, 'long run')
    await alive.line(/^LOCKED$/m)
    const past = Math.floor(Date.now() / 1000) - 100
    utimesSync(files.holder, past, past)
    // One heartbeat line: the holder touches its file (wait for the mtime to move, however long that takes).
    alive.write('\n')
    while (statSync(files.holder).mtimeMs / 1000 < past + 50) await new Promise(r => setTimeout(r, 10))

    // A waiter (taking over holders silent for more than STALE_S) finds this one fresh, not 100 s old: it times out.
    const waiter = startLock('waiter', files, 1, 'waiter')
    expect(await waiter.exit).toBe(75)
    expect(waiter.out()).toBe('BUSY long run\nTIMEOUT\n')
    expect(alive.alive()).toBe(true)
    expect(readFileSync(files.holder, 'utf8')).toBe('long run\n')
    alive.end()
    expect(await alive.exit).toBe(0)
  })
})

describe('acquireLock / withLock (against a fake host)', () => {
  const tick = () => new Promise(r => setImmediate(r))

  it('runs the lock script on ops-dir in a held command, and releases it by closing its stdin', async () => {
    const remote = new FakeRemote([])
    const lock = await acquireLock(remote, '/opt/ops', 30, 'deploy of backend')
    expect(remote.calls).toHaveLength(1)
    expect(remote.calls[0].held).toBe(true)
    expect(remote.calls[0].sh).toContain("sh /opt/ops/.deploy.lock /opt/ops/.deploy.lock.holder 30 'deploy of backend by ")
    expect(lock.lost()).toBeUndefined()
    expect(() => lock.check()).not.toThrow()
    await lock.release()
    expect(remote.endedHeld).toBe(1)
    // Released by this run: not "lost".
    expect(lock.lost()).toBeUndefined()
  })

  it('a busy host is reported while waiting; exit 75 is a timeout naming the holder', async () => {
    const remote = new FakeRemote([])
    remote.heldOutput = 'BUSY deploy of story by behindy/behindy-story since 2026-01-01T00:00:00Z\nTIMEOUT\n'
    const taking = acquireLock(remote, '/opt/ops', 5, 'mode infra')
    setImmediate(() => remote.endHeld(75))
    const e = (await taking.catch((x: unknown) => x)) as HostError
    expect(e).toBeInstanceOf(HostError)
    expect(e.message).toBe(
      'Timed out after 5 s waiting for the deploy lock (deploy of story by behindy/behindy-story since 2026-01-01T00:00:00Z).'
    )
    expect(e.fix).toBe('wait for that run to finish, or raise lock-timeout')
    expect(stdout.text()).toContain(
      'The host is busy: deploy of story by behindy/behindy-story since 2026-01-01T00:00:00Z. Waiting up to 5 s'
    )
  })

  it('a stale holder taken over is a warning', async () => {
    const remote = new FakeRemote([])
    remote.heldOutput = 'BUSY hung run\nSTALE 45\nLOCKED\n'
    const lock = await acquireLock(remote, '/opt/ops', 600, 'deploy of backend')
    expect(stdout.commands('warning').join('\n')).toContain('sent no heartbeat for 45 s: it is hung or gone. Took the lock over.')
    await lock.release()
  })

  it('a holder process that ends is a lost lock: lost() says why and check() throws', async () => {
    const remote = new FakeRemote([])
    const lock = await acquireLock(remote, '/opt/ops', 30, 'deploy of backend')
    remote.endHeld(137)
    await tick()
    expect(lock.lost()).toBe('its holder process ended (exit 137)')
    expect(() => lock.check()).toThrow(/^This run lost the deploy lock \(its holder process ended \(exit 137\)\)/)
    expect(stdout.commands('warning').join('\n')).toContain('Lost the deploy lock: its holder process ended (exit 137).')
    await lock.release()
  })

  it('withLock: a phase of its own, every later phase guarded, released however fn ends', async () => {
    const remote = new FakeRemote([])
    const phases = new Phases()
    const failed = withLock(remote, phases, { opsDir: '/opt/ops', timeoutS: 30, what: 'mode infra' }, async () => {
      await phases.run('Work', async () => undefined)
      remote.endHeld(137)
      await tick()
      await phases.run('After the lock was lost', async () => undefined)
    })
    await expect(failed).rejects.toThrow(/lost the deploy lock/)
    expect(phases.records.map(r => r.name)).toEqual(['Take deploy lock', 'Work'])
    expect(remote.endedHeld).toBe(1)
    // The guard is gone with the lock.
    await phases.run('Later', async () => undefined)
    expect(phases.records.map(r => r.name)).toContain('Later')
  })

  it('a step beside the wait that fails ends it: the lock command is ended, and withLock fails with its error, its log shown', async () => {
    const remote = new FakeRemote([])
    remote.heldOutput = 'BUSY deploy of story by behindy/behindy-story since 2026-01-01T00:00:00Z\n'
    const phases = new Phases()
    const pull = phases.aside('Pull image', async log => {
      await tick()
      log.info('Pulling x…')
      throw new HostError('Pulling x failed: manifest unknown', 'check the image name and tag')
    })
    let ran = false
    const e = (await withLock(remote, phases, { opsDir: '/opt/ops', timeoutS: 600, what: 'deploy', beside: pull }, async () => {
      ran = true
    }).catch((x: unknown) => x)) as HostError
    expect(e).toBeInstanceOf(HostError)
    expect(e.message).toBe('Pulling x failed: manifest unknown')
    expect(ran).toBe(false)
    expect(remote.endedHeld).toBe(1)
    const out = stdout.text()
    expect(out).toContain('Stopped waiting for the deploy lock: a step beside the wait failed.')
    expect(out.indexOf('::group::Pull image')).toBeGreaterThan(out.indexOf('✗ Take deploy lock'))
    expect(out).toMatch(/Pulling x…\n✗ Pull image \([0-9.]+ s\)/)
  })

  it('a step beside that fails once the lock is taken leaves the lock alone (the run reads the failure where it needs the result)', async () => {
    const remote = new FakeRemote([])
    const phases = new Phases()
    const pull = phases.aside('Pull image', async () => {
      await tick()
      await tick()
      throw new HostError('Pulling x failed')
    })
    const e = (await withLock(remote, phases, { opsDir: '/opt/ops', timeoutS: 600, what: 'deploy', beside: pull }, async () => {
      await pull.settled().catch(() => undefined)
      await pull.result()
    }).catch((x: unknown) => x)) as Error
    expect(e.message).toBe('Pulling x failed')
    expect(stdout.text()).not.toContain('Stopped waiting for the deploy lock')
    expect(phases.records.find(r => r.name === 'Take deploy lock')?.ok).toBe(true)
    expect(remote.endedHeld).toBe(1)
  })
})
