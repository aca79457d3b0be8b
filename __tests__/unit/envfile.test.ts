import { describe, expect, it } from 'vitest'
import { envLine, mergeEnvFile, parseEnvInput, readEnvFile } from '../../src/envfile'

describe('parseEnvInput', () => {
  it('reads KEY=VALUE lines, skipping blanks and comments, keeping = in values', () => {
    expect(parseEnvInput('# c\nA=1\n\nexport B = x=y \nC="quoted value"\nD=', 'infra-env')).toEqual([
      ['A', '1'],
      ['B', ' x=y'],
      ['C', 'quoted value'],
      ['D', '']
    ])
  })
  it.each([
    ['NOEQUALS', /line 1 has no '='/],
    ['1A=x', /'1A' is not a valid variable name/],
    ['A-B=x', /'A-B' is not a valid/],
    ['A=1\nA=2', /A is already set on line 1/]
  ])('rejects %j naming the input', (text, re) => {
    expect(() => parseEnvInput(text, 'infra-env')).toThrow(/^Input 'infra-env': /)
    expect(() => parseEnvInput(text, 'infra-env')).toThrow(re)
  })
})

describe('envLine round trip through the dotenv reader', () => {
  it.each(['plain', 'with space', 'p@ss#word$HOME', 'a"b', '$(x)`y`;|&', 'x=y', ''])('%j reads back unchanged', v => {
    expect(readEnvFile(envLine('K', v, 'infra-env') + '\n').get('K')).toBe(v)
  })
  it('refuses values it cannot write faithfully', () => {
    expect(() => envLine('K', "it's $x", 'infra-env')).toThrow(/single quote/)
    expect(() => envLine('K', 'a\nb', 'infra-env')).toThrow(/line break/)
    // python-dotenv (compose v1) expands ${…} even inside single quotes; found by the e2e inert-payload suite.
    expect(() => envLine('K', 'pw${PATH}', 'infra-env')).toThrow(/contains '\$\{', which compose v1 expands/)
  })
})

describe('mergeEnvFile', () => {
  it('replaces in place, appends new keys, keeps comments, reports changed keys only', () => {
    const host = '# secrets\nDB_USER=app\nDB_PASS=old\nOTHER=keep\n'
    const r = mergeEnvFile(
      host,
      [
        ['DB_PASS', 'new pass'],
        ['DB_USER', 'app'],
        ['REDIS_PASSWORD', 'r3d1s']
      ],
      'infra-env'
    )
    expect(r.text).toBe("# secrets\nDB_USER=app\nDB_PASS='new pass'\nOTHER=keep\nREDIS_PASSWORD=r3d1s\n")
    expect(r.changed).toEqual(['DB_PASS', 'REDIS_PASSWORD'])
  })
  it('is a no-op when nothing differs', () => {
    const host = "A=1\nB='x y'\n"
    expect(
      mergeEnvFile(
        host,
        [
          ['A', '1'],
          ['B', 'x y']
        ],
        'infra-env'
      )
    ).toEqual({ text: host, changed: [] })
  })
  it('starts an empty file', () => {
    expect(mergeEnvFile('', [['A', '1']], 'infra-env').text).toBe('A=1\n')
  })
})
