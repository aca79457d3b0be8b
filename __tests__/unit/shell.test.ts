import { execFileSync } from 'node:child_process'
import { mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { and, cmd, concurrently, or, quote, section, seq, splitSections } from '../../src/shell'

/** Runs a command line in a real POSIX sh and returns what it printed. */
const sh = (line: string) => execFileSync('sh', ['-c', line], { encoding: 'utf8' })

describe('quote', () => {
  const nasty = ["it's", '$(touch /tmp/pwned)', '`id`', 'a b\tc\nd', '"q"', '\\', '*', '~', ';rm -rf /', '', "''", '-n', '$HOME', '!x', '#']
  it.each(nasty)('passes %j through sh unchanged', s => {
    expect(sh(`printf '%s' ${quote(s)}`)).toBe(s)
  })
  it('leaves safe words bare', () => {
    expect(quote('docker')).toBe('docker')
    expect(quote('/opt/behindy-ops/.env')).toBe('/opt/behindy-ops/.env')
  })
  it('refuses NUL', () => {
    expect(() => quote('a\0b')).toThrow(/NUL/)
  })
})

describe('composition', () => {
  it('and stops at the first failure, or runs the fallback', () => {
    expect(sh(and(cmd('echo', 'a'), cmd('false'), cmd('echo', 'b')).sh + '; true')).toBe('a\n')
    expect(sh(or(cmd('false'), cmd('echo', 'fallback')).sh)).toBe('fallback\n')
  })
  it('sections split several probes of one round trip with their exit codes', () => {
    const out = sh(seq(section('one', cmd('echo', 'x y')), section('two', cmd('sh', '-c', 'echo err >&2; exit 3'))).sh)
    const parts = splitSections(out)
    expect(parts.get('one')).toEqual({ rc: 0, out: 'x y' })
    expect(parts.get('two')).toEqual({ rc: 3, out: 'err' })
  })
})

describe('concurrently', () => {
  it('runs probes at the same time and prints their sections in order', () => {
    // The first probe waits for a file only the second one creates: run one after the other, it would give up.
    const flag = join(mkdtempSync(join(tmpdir(), 'ops-conc-')), 'flag')
    const waiter = cmd(
      'sh',
      '-c',
      'i=0; while [ ! -e "$1" ]; do i=$((i+1)); [ $i -gt 200 ] && exit 9; sleep 0.05; done; echo saw it',
      'sh',
      flag
    )
    const out = sh(concurrently(section('waiter', waiter), section('maker', cmd('touch', flag))).sh)
    expect(splitSections(out).get('waiter')).toEqual({ rc: 0, out: 'saw it' })
    expect(splitSections(out).get('maker')).toEqual({ rc: 0, out: '' })
    expect(out.indexOf('@@ops waiter')).toBeLessThan(out.indexOf('@@ops maker'))
  })
})
