import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { Phases } from '../../src/phases'

// What Phases prints, in order: each core.info / core.warning line, and where each core.group starts and ends.
const out = vi.hoisted(() => ({ events: [] as string[] }))
vi.mock('@actions/core', () => ({
  info: (line: string) => void out.events.push(`info ${line}`),
  warning: (line: string) => void out.events.push(`warning ${line}`),
  group: async <T>(name: string, fn: () => Promise<T>): Promise<T> => {
    out.events.push(`group ${name}`)
    try {
      return await fn()
    } finally {
      out.events.push(`endgroup ${name}`)
    }
  }
}))

/** A promise the test settles itself. */
function deferred<T>(): { promise: Promise<T>; resolve: (v: T) => void; reject: (e: unknown) => void } {
  let resolve: (v: T) => void = () => undefined
  let reject: (e: unknown) => void = () => undefined
  const promise = new Promise<T>((res, rej) => {
    resolve = res
    reject = rej
  })
  return { promise, resolve, reject }
}

/** Lets every pending promise callback (and anything queued behind it) run. */
const flush = () => new Promise(r => setTimeout(r, 10))

describe('Phases.aside', () => {
  const T0 = new Date('2026-01-01T00:00:00Z').getTime()
  const unhandled: unknown[] = []
  const onUnhandled = (reason: unknown) => void unhandled.push(reason)

  beforeEach(() => {
    out.events = []
    unhandled.length = 0
    // Only Date is faked: promises and timers run as usual, Date.now() moves when the test says.
    vi.useFakeTimers({ toFake: ['Date'] })
    vi.setSystemTime(T0)
    process.on('unhandledRejection', onUnhandled)
  })
  afterEach(() => {
    process.off('unhandledRejection', onUnhandled)
    vi.useRealTimers()
  })

  it('its record is pushed when it starts (ok false, no time yet); once it succeeds, ok and its time', async () => {
    const phases = new Phases()
    vi.setSystemTime(T0 + 250)
    const gate = deferred<string>()
    const step = phases.aside('Pull image', () => gate.promise)
    expect(phases.records).toEqual([{ name: 'Pull image', startMs: 250, ms: 0, ok: false }])
    vi.setSystemTime(T0 + 250 + 1234)
    gate.resolve('pulled')
    await expect(step.settled()).resolves.toBe('pulled')
    expect(phases.records).toEqual([{ name: 'Pull image', startMs: 250, ms: 1234, ok: true }])
  })

  it('beside a sequence: both records, in the order they started; the table shows both', async () => {
    const phases = new Phases()
    const gate = deferred<number>()
    const step = phases.aside('Pull image', () => gate.promise)
    await phases.run('Take deploy lock', async () => {
      vi.setSystemTime(T0 + 500)
    })
    vi.setSystemTime(T0 + 2000)
    gate.resolve(1)
    await step.result()
    expect(phases.records.map(r => [r.name, r.ms, r.ok])).toEqual([
      ['Pull image', 2000, true],
      ['Take deploy lock', 500, true]
    ])
    expect(phases.table().split('\n').slice(2)).toEqual(['| Pull image | 2.00 s | ✅ |', '| Take deploy lock | 0.50 s | ✅ |'])
  })

  it('its log lines are held back until result() is first called, then printed once in a group named after it, ended by ✓ and its time', async () => {
    const phases = new Phases()
    const gate = deferred<void>()
    const step = phases.aside('Pull image', async log => {
      log.info('Pulling ghcr.io/behindy/back:v2…')
      log.warning('the registry is slow today')
      await gate.promise
      log.info('ghcr.io/behindy/back:v2 → sha256:2222')
      return { digest: 'sha256:2222' }
    })
    await flush()
    // Running, lines logged: nothing printed.
    expect(out.events).toEqual([])
    vi.setSystemTime(T0 + 3456)
    gate.resolve()
    await step.settled()
    await flush()
    // Done: still nothing printed until the sequence asks for it.
    expect(out.events).toEqual([])
    await expect(step.result()).resolves.toEqual({ digest: 'sha256:2222' })
    expect(out.events).toEqual([
      'group Pull image',
      'info Pulling ghcr.io/behindy/back:v2…',
      'warning the registry is slow today',
      'info ghcr.io/behindy/back:v2 → sha256:2222',
      'info ✓ Pull image (3.46 s)',
      'endgroup Pull image'
    ])
  })

  it('result() asked while it still runs: the group waits for it, and lines logged meanwhile are printed inside it', async () => {
    const phases = new Phases()
    const gate = deferred<void>()
    const step = phases.aside('Preflight and start container', async log => {
      log.info('first')
      await gate.promise
      log.info('second')
      return 'backend-1a2b3c4d'
    })
    const result = step.result()
    await flush()
    // The group is open (the sequence waits in it), its lines not printed yet.
    expect(out.events).toEqual(['group Preflight and start container'])
    vi.setSystemTime(T0 + 10)
    gate.resolve()
    await expect(result).resolves.toBe('backend-1a2b3c4d')
    expect(out.events).toEqual([
      'group Preflight and start container',
      'info first',
      'info second',
      'info ✓ Preflight and start container (0.01 s)',
      'endgroup Preflight and start container'
    ])
  })

  it('result() called twice prints once and gives the same value (the same promise)', async () => {
    const phases = new Phases()
    const value = { digest: 'sha256:abcd' }
    const step = phases.aside('Pull image', async log => {
      log.info('Pulling x…')
      return value
    })
    const first = step.result()
    const second = step.result()
    expect(second).toBe(first)
    expect(await first).toBe(value)
    expect(await step.result()).toBe(value)
    expect(out.events.filter(e => e === 'group Pull image')).toHaveLength(1)
    expect(out.events.filter(e => e === 'info Pulling x…')).toHaveLength(1)
    expect(out.events.filter(e => e.startsWith('info ✓ Pull image'))).toHaveLength(1)
  })

  it('settled() gives its value or its error and prints nothing; a result() after it still prints, once', async () => {
    const phases = new Phases()
    const ok = phases.aside('Pull image', async log => {
      log.info('pulled')
      return 42
    })
    const boom = new Error('manifest unknown')
    const bad = phases.aside('Preflight and start container', async log => {
      log.warning('about to fail')
      throw boom
    })
    expect(await ok.settled()).toBe(42)
    expect(await ok.settled()).toBe(42)
    expect(await bad.settled().catch((e: unknown) => e)).toBe(boom)
    await flush()
    expect(out.events).toEqual([])
    expect(phases.records.map(r => [r.name, r.ok])).toEqual([
      ['Pull image', true],
      ['Preflight and start container', false]
    ])

    expect(await ok.result()).toBe(42)
    expect(out.events).toEqual(['group Pull image', 'info pulled', 'info ✓ Pull image (0.00 s)', 'endgroup Pull image'])
  })

  it('a failure: result() rejects with its error after printing its lines and ✗ with its time, in its group', async () => {
    const phases = new Phases()
    const boom = new Error('Pulling x failed: manifest unknown')
    const step = phases.aside('Pull image', async log => {
      log.info('Pulling x…')
      vi.setSystemTime(T0 + 780)
      log.warning('retrying once')
      throw boom
    })
    const e = await step.result().catch((x: unknown) => x)
    expect(e).toBe(boom)
    expect(out.events).toEqual([
      'group Pull image',
      'info Pulling x…',
      'warning retrying once',
      'info ✗ Pull image (0.78 s)',
      'endgroup Pull image'
    ])
    expect(phases.records).toEqual([{ name: 'Pull image', startMs: 0, ms: 780, ok: false }])
    // Asked again: the same error, nothing printed again.
    expect(await step.result().catch((x: unknown) => x)).toBe(boom)
    expect(out.events).toHaveLength(5)
  })

  it('a failure nobody asks about is not an unhandled rejection; asked for later, result() still rejects with it', async () => {
    const phases = new Phases()
    const boom = new Error('the state of backend could not be read')
    const step = phases.aside('Preflight and start container', async log => {
      log.info('reading the state')
      throw boom
    })
    // A synchronous throw too becomes the step's error, not aside()'s.
    const sync = new Error('thrown before any await')
    const thrower = phases.aside('Thrower', (() => {
      throw sync
    }) as () => Promise<never>)
    await flush()
    await flush()
    expect(unhandled).toEqual([])
    expect(out.events).toEqual([])
    expect(phases.records.map(r => r.ok)).toEqual([false, false])

    expect(await step.result().catch((x: unknown) => x)).toBe(boom)
    expect(out.events).toEqual([
      'group Preflight and start container',
      'info reading the state',
      'info ✗ Preflight and start container (0.00 s)',
      'endgroup Preflight and start container'
    ])
    expect(await thrower.settled().catch((x: unknown) => x)).toBe(sync)
    await flush()
    expect(unhandled).toEqual([])
  })

  it('the guard (a lost lock) does not stop a step beside the sequence; it stops the next phase of the sequence', async () => {
    const phases = new Phases()
    const lost = new Error('the deploy lock was lost')
    phases.guard = () => {
      throw lost
    }
    const step = phases.aside('Pull image', async () => 'ok')
    expect(await step.result()).toBe('ok')
    await expect(phases.run('Start container', async () => 'never')).rejects.toBe(lost)
    expect(phases.records.map(r => r.name)).toEqual(['Pull image'])
  })
})
