import { execFileSync, spawnSync } from 'node:child_process'
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { and, cmd, concurrently, detached, or, orOnExit, quote, script, section, seq, splitSections } from '../../src/shell'
import { until, useTempDir } from './helpers'

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
  it('orOnExit runs the fallback only for the exit codes named, and otherwise keeps the first status', () => {
    const exits = (code: number) => cmd('sh', '-c', `exit ${code}`)
    const status = (c: ReturnType<typeof cmd>) => sh(`${c.sh}; echo "rc=$?"`)
    expect(status(orOnExit(exits(6), [5, 6], cmd('echo', 'fallback')))).toBe('fallback\nrc=0\n')
    expect(status(orOnExit(exits(4), [5, 6], cmd('echo', 'fallback')))).toBe('rc=4\n')
    expect(status(orOnExit(exits(0), [5, 6], cmd('echo', 'fallback')))).toBe('rc=0\n')
    expect(() => orOnExit(exits(0), [], cmd('true'))).toThrow(/bad exit codes/)
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

describe('detached', () => {
  const tmp = useTempDir('shell-detached')

  it("returns at once; the job runs on, its stdout and stderr appended to the log, stdin not the caller's", async () => {
    const dir = mkdtempSync(join(tmp(), 'job-'))
    const log = join(dir, "retire log's.txt")
    const go = join(dir, 'go')
    writeFileSync(log, 'earlier line\n')
    // The job waits for a file only the test creates once the command has returned.
    const job = script(
      'i=0; while [ ! -e "$1" ]; do i=$((i+1)); [ $i -gt 250 ] && exit 9; sleep 0.02; done; echo out; echo err >&2; echo "stdin: $(cat)"',
      go
    )
    const started = Date.now()
    // spawnSync returns once the command's stdout and stderr are closed: the job must hold neither (nor read stdin).
    const r = spawnSync('sh', ['-c', detached(job, log).sh], { encoding: 'utf8', input: "the caller's input\n", timeout: 4_000 })
    expect(r.status).toBe(0)
    expect(r.stdout).toBe('')
    expect(Date.now() - started).toBeLessThan(3_000)
    expect(readFileSync(log, 'utf8')).toBe('earlier line\n')
    writeFileSync(go, '')
    expect(await until(() => readFileSync(log, 'utf8').includes('stdin:'))).toBe(true)
    expect(readFileSync(log, 'utf8')).toBe('earlier line\nout\nerr\nstdin: \n')
  })

  it("the job runs in a session of its own (setsid where the host has it), not in the caller's", async () => {
    const dir = mkdtempSync(join(tmp(), 'job-'))
    const log = join(dir, 'log')
    const r = spawnSync('sh', ['-c', `echo "caller $(ps -o sid= -p $$)"; ${detached(script('echo "job $(ps -o sid= -p $$)"'), log).sh}`], {
      encoding: 'utf8'
    })
    expect(r.status).toBe(0)
    expect(await until(() => existsSync(log) && readFileSync(log, 'utf8').includes('job'))).toBe(true)
    const caller = /caller\s+(\d+)/.exec(r.stdout)?.[1]
    const job = /job\s+(\d+)/.exec(readFileSync(log, 'utf8'))?.[1]
    expect(caller).toMatch(/^\d+$/)
    expect(job).toMatch(/^\d+$/)
    expect(job).not.toBe(caller)
  })
})
