#!/usr/bin/env node
// Generates the README's inputs and outputs tables from action.yml (node scripts/docs.mjs [--check]).
import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { actionYml, ROOT } from './run-action.mjs'

const cell = s =>
  String(s ?? '')
    .replace(/\|/g, '\\|')
    .replace(/\n/g, ' ')
    .trim()

export function tables() {
  const { inputs, outputs } = actionYml()
  const rows = Object.entries(inputs).map(
    ([name, spec]) =>
      `| \`${name}\` | ${spec.required ? 'yes' : ''} | ${spec.default ? `\`${cell(spec.default)}\`` : ''} | ${cell(spec.description)} |`
  )
  const outRows = Object.entries(outputs).map(([name, spec]) => `| \`${name}\` | ${cell(spec.description)} |`)
  return [
    '<!-- inputs:start (generated from action.yml by `node scripts/docs.mjs`; do not edit) -->',
    '| Input | Required | Default | Description |',
    '| --- | --- | --- | --- |',
    ...rows,
    '',
    '| Output | Description |',
    '| --- | --- |',
    ...outRows,
    '<!-- inputs:end -->'
  ].join('\n')
}

export function render(readme) {
  const re = /<!-- inputs:start[\s\S]*?<!-- inputs:end -->/
  if (!re.test(readme)) throw new Error('README.md lacks the <!-- inputs:start --> … <!-- inputs:end --> markers')
  return readme.replace(re, tables())
}

if (process.argv[1] && process.argv[1].endsWith('docs.mjs')) {
  const file = join(ROOT, 'README.md')
  const current = readFileSync(file, 'utf8')
  const next = render(current)
  if (process.argv.includes('--check')) {
    if (next !== current) {
      console.error('README.md tables differ from action.yml: run node scripts/docs.mjs')
      process.exit(1)
    }
  } else writeFileSync(file, next)
}
