import { describe, expect, it } from 'vitest'
import { failureOf, HostError, RolledBack } from '../../src/errors'
import { Phases } from '../../src/phases'
import { failureMarkdown, gantt } from '../../src/summary'
import { captureStdout } from './helpers'

// Phases logs through @actions/core (stdout).
captureStdout()

describe('gantt', () => {
  it('one mermaid row per phase, failed ones marked crit', async () => {
    const phases = new Phases()
    expect(await phases.run('Connect to ubuntu@example.com:22', async () => 1)).toBe(1)
    await expect(
      phases.run('Health gate (direct)', async () => {
        throw new Error('unhealthy')
      })
    ).rejects.toThrow('unhealthy')
    await phases.run('Roll back; #1', async () => 'x')
    const text = gantt(phases)
    const lines = text.split('\n')
    expect(lines[0]).toBe('```mermaid')
    expect(lines[lines.length - 1]).toBe('```')
    expect(lines).toContain('gantt')
    expect(lines.map(l => l.trim())).toContain('dateFormat x')
    const rows = lines.filter(l => /:\s*(crit, )?p\d+, \d+, \d+$/.test(l))
    expect(rows).toHaveLength(3)
    expect(rows[0]).toMatch(/^\s+Connect to ubuntu@example\.com 22 :p0, \d+, \d+$/)
    expect(rows[1]).toMatch(/^\s+Health gate \(direct\) :crit, p1, \d+, \d+$/)
    expect(rows[2]).not.toContain('crit')
    // The task names hold no mermaid syntax characters.
    for (const r of rows) expect(r.slice(0, r.lastIndexOf(' :'))).not.toMatch(/[:#;]/)
    // Start and end are milliseconds from the first phase, end after start.
    for (const r of rows) {
      const [, start, end] = /(\d+), (\d+)$/.exec(r) as RegExpExecArray
      expect(Number(end)).toBeGreaterThan(Number(start))
    }
  })

  it('no phases: just the header', () => {
    const text = gantt(new Phases())
    expect(text).toContain('gantt')
    expect(text.split('\n').filter(l => /p\d+,/.test(l))).toEqual([])
  })
})

describe('failureMarkdown (job summary of a failed run)', () => {
  it('the error as a caution alert, its fix as a tip, the rollback as a warning with what it did', () => {
    const md = failureMarkdown({
      message: 'frontend-1a2b3c4d exited before becoming healthy\n(last probe: none)',
      fix: 'check the logs above',
      notes: ['removed the new container frontend-1a2b3c4d', 'frontend-9e8d7c6b kept serving']
    })
    const blocks = md.split('\n\n')
    expect(blocks).toEqual([
      '> [!CAUTION]\n> frontend-1a2b3c4d exited before becoming healthy\n> (last probe: none)',
      '> [!TIP]\n> **Fix:** check the logs above',
      '> [!WARNING]\n> **Rolled back**: the previous release serves.\n> - removed the new container frontend-1a2b3c4d\n> - frontend-9e8d7c6b kept serving'
    ])
  })

  it('of a rolled-back HostError, through failureOf: the same three blocks', () => {
    const e = new RolledBack(new HostError('frontend-1a2b3c4d exited before becoming healthy', 'check the logs above'), [
      'removed the new container frontend-1a2b3c4d'
    ])
    expect(failureMarkdown(failureOf(e)).split('\n\n')).toEqual([
      '> [!CAUTION]\n> frontend-1a2b3c4d exited before becoming healthy',
      '> [!TIP]\n> **Fix:** check the logs above',
      '> [!WARNING]\n> **Rolled back**: the previous release serves.\n> - removed the new container frontend-1a2b3c4d'
    ])
  })

  it('no fix and no rollback: only the error', () => {
    expect(failureMarkdown({ message: "Input 'image': is required" })).toBe("> [!CAUTION]\n> Input 'image': is required")
    expect(failureMarkdown(failureOf(new Error("Input 'image': is required")))).toBe("> [!CAUTION]\n> Input 'image': is required")
  })
})
