import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { parse as parseYaml } from 'yaml'
import { DEFAULTS } from '../../src/inputs'

interface ActionInput {
  description?: unknown
  required?: unknown
  default?: unknown
}

interface ActionYml {
  name?: unknown
  description?: unknown
  inputs: Record<string, ActionInput>
  outputs: Record<string, { description?: unknown }>
  runs: { using?: unknown; main?: unknown }
}

const action = parseYaml(readFileSync(join(__dirname, '..', '..', 'action.yml'), 'utf8')) as ActionYml
const names = Object.keys(action.inputs)

describe('action.yml', () => {
  it('runs dist/index.js on node24', () => {
    expect(action.runs.using).toBe('node24')
    expect(action.runs.main).toBe('dist/index.js')
  })

  it('has a name and a description', () => {
    expect(typeof action.name === 'string' && action.name.length > 0).toBe(true)
    expect(typeof action.description === 'string' && action.description.length > 0).toBe(true)
  })

  it.each(names)('input %s has a description', name => {
    const d = action.inputs[name].description
    expect(typeof d).toBe('string')
    expect((d as string).trim().length).toBeGreaterThan(10)
  })

  it('declares exactly the inputs of DEFAULTS', () => {
    expect([...names].sort()).toEqual(Object.keys(DEFAULTS).sort())
  })

  it.each(names)('default of %s equals DEFAULTS', name => {
    const d = action.inputs[name].default
    // A default must be a string in action.yml (YAML 80 or true would still reach the runner as text,
    // but keeping them quoted keeps the comparison exact).
    if (d !== undefined) expect(typeof d).toBe('string')
    expect(d ?? '').toBe(DEFAULTS[name])
  })

  it('only host and ssh-key are required', () => {
    const required = names.filter(n => action.inputs[n].required === true)
    expect(required.sort()).toEqual(['host', 'ssh-key'])
    for (const n of names) expect(typeof action.inputs[n].required, n).toBe('boolean')
  })

  it('required inputs have no default', () => {
    for (const n of ['host', 'ssh-key']) expect(action.inputs[n].default).toBeUndefined()
  })

  it('every output has a description', () => {
    expect(Object.keys(action.outputs)).toContain('changed')
    for (const [n, o] of Object.entries(action.outputs)) expect(typeof o.description, n).toBe('string')
  })
})

describe('README', () => {
  it('has the inputs and outputs tables generated from action.yml (node scripts/docs.mjs)', async () => {
    // @ts-expect-error plain ESM script
    const { render } = await import('../../scripts/docs.mjs')
    const readme = readFileSync(join(__dirname, '..', '..', 'README.md'), 'utf8')
    expect(render(readme)).toBe(readme)
  })
})
