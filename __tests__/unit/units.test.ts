import { describe, expect, it } from 'vitest'
import { memoryBytes, mib } from '../../src/units'

describe('memoryBytes', () => {
  it.each([
    ['768m', 768],
    ['1g', 1024],
    ['2g', 2048],
    ['512k', 0.5],
    ['1073741824', 1024],
    ['1048576b', 1],
    [' 1G ', 1024]
  ])('%s = %d MiB', (m, mebibytes) => {
    expect(memoryBytes(m)).toBe(mebibytes * 1024 ** 2)
  })

  it.each(['', 'lots', '0', '0m', '1.5g', '-1m', '768mb', '1t', 'm'])('%j is not a memory size', m => {
    expect(memoryBytes(m)).toBeUndefined()
  })
})

describe('mib', () => {
  it('bytes as whole MiB for messages', () => {
    expect(mib(768 * 1024 ** 2)).toBe('768 MiB')
    expect(mib(1024 ** 3)).toBe('1024 MiB')
    expect(mib(1.6 * 1024 ** 2)).toBe('2 MiB')
    expect(mib(0)).toBe('0 MiB')
  })
})
