import { describe, expect, it } from 'vitest'
import { failureOf, failureText, HostError, InputError, InputErrors, RolledBack } from '../../src/errors'

describe('errors', () => {
  it('a HostError keeps its fix apart from its message', () => {
    const e = new HostError('docker is not installed on the host.', 'install Docker Engine')
    expect(e.message).toBe('docker is not installed on the host.')
    expect(e.message).not.toContain('Fix:')
    expect(e.fix).toBe('install Docker Engine')
    expect(e.name).toBe('HostError')
  })

  it('an InputError names its input; InputErrors lists several, or is the one', () => {
    const a = new InputError('port', '0 is out of range (1–65535)')
    const b = new InputError('host', 'is required')
    expect(a.message).toBe("Input 'port': 0 is out of range (1–65535)")
    expect(new InputErrors([a]).message).toBe(a.message)
    expect(new InputErrors([a, b]).message).toBe(`2 inputs are invalid:\n  - ${a.message}\n  - ${b.message}`)
  })

  it('failureOf: the message of the error, the first fix and the rollback notes along its cause chain', () => {
    const root = new HostError('nginx -t failed', 'fix the file nginx names')
    const wrapped = new HostError('Re-swap of story failed: nginx -t failed', undefined, {
      cause: new RolledBack(root, ['story-1 kept serving'])
    })
    expect(failureOf(wrapped)).toEqual({
      message: 'Re-swap of story failed: nginx -t failed',
      fix: 'fix the file nginx names',
      notes: ['story-1 kept serving']
    })
    // The outermost fix wins.
    const outer = new HostError('cannot roll back', 'run the deploy again', { cause: root })
    expect(failureOf(outer)).toEqual({ message: 'cannot roll back', fix: 'run the deploy again', notes: undefined })
    expect(failureOf('a string')).toEqual({ message: 'a string', fix: undefined, notes: undefined })
    expect(failureOf(new Error('plain'))).toEqual({ message: 'plain', fix: undefined, notes: undefined })
  })

  it('failureText: the message, then Fix: on its own line', () => {
    expect(failureText({ message: 'a\nb', fix: 'do c' })).toBe('a\nb\nFix: do c')
    expect(failureText({ message: 'a' })).toBe('a')
  })
})
