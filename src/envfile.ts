import { parse as parseDotenv } from 'dotenv'
import { InputError } from './errors'

export const ENV_KEY_RE = /^[A-Za-z_][A-Za-z0-9_]*$/

export type EnvEntries = Array<[key: string, value: string]>

/**
 * Parses a multiline `KEY=VALUE` action input (from workflow secrets). The value is everything after the first `=`;
 * one pair of matching surrounding quotes is removed. Blank lines and `#` comments are skipped.
 */
export function parseEnvInput(text: string, input: string): EnvEntries {
  const seen = new Map<string, number>()
  const entries: EnvEntries = []
  text.split(/\r?\n/).forEach((raw, i) => {
    const line = raw.trim()
    if (line === '' || line.startsWith('#')) return
    const body = line.startsWith('export ') ? line.slice('export '.length).trimStart() : line
    const eq = body.indexOf('=')
    if (eq < 0) throw new InputError(input, `line ${i + 1} has no '=' (expected KEY=VALUE)`)
    const key = body.slice(0, eq).trim()
    if (!ENV_KEY_RE.test(key)) {
      throw new InputError(input, `line ${i + 1}: '${key}' is not a valid variable name (letters, digits, _; not starting with a digit)`)
    }
    let value = body.slice(eq + 1)
    if (value.length >= 2 && (value[0] === '"' || value[0] === "'") && value.endsWith(value[0])) value = value.slice(1, -1)
    if (value.includes('\0')) throw new InputError(input, `line ${i + 1}: value of ${key} contains a NUL byte`)
    // Lines are split at LF and CRLF; a CR left inside a value is a line break no env file can hold.
    if (value.includes('\r'))
      throw new InputError(input, `line ${i + 1}: value of ${key} contains a carriage return (a line break), which an env file cannot hold`)
    const previous = seen.get(key)
    if (previous !== undefined) throw new InputError(input, `line ${i + 1}: ${key} is already set on line ${previous}`)
    seen.set(key, i + 1)
    entries.push([key, value])
  })
  return entries
}

/** Reads a dotenv file as docker compose does (quotes removed, comments skipped). */
export function readEnvFile(text: string): Map<string, string> {
  return new Map(Object.entries(parseDotenv(text)))
}

const PLAIN = /^[A-Za-z0-9_@%+=:,./-]*$/

/**
 * One `KEY=VALUE` line that compose v1 (python-dotenv) and v2 read back as exactly `value`, without interpolation:
 * plain when it has no special characters, else single-quoted (literal in v2; python-dotenv still expands `${…}`
 * inside single quotes, so compose v1 would change such a value: refused).
 */
export function envLine(key: string, value: string, input: string): string {
  if (!ENV_KEY_RE.test(key)) throw new InputError(input, `'${key}' is not a valid variable name`)
  if (/[\r\n]/.test(value)) throw new InputError(input, `value of ${key} contains a line break, which an env file cannot hold`)
  if (PLAIN.test(value)) return `${key}=${value}`
  if (value.includes('${')) {
    throw new InputError(
      input,
      `value of ${key} contains '\${', which compose v1 expands as a variable even in quotes (the stack would get another value than you set) — avoid '\${' in it`
    )
  }
  if (value.includes("'")) {
    throw new InputError(
      input,
      `value of ${key} contains both a single quote and other special characters; compose v1 and v2 read such a value differently from .env — drop the single quote`
    )
  }
  return `${key}='${value}'`
}

/**
 * Merges updates into an env file's text, keeping its comments and order: a key already present has its line
 * replaced in place, new keys are appended. Returns the new text and the keys whose value changed.
 */
export function mergeEnvFile(current: string, updates: EnvEntries, input: string): { text: string; changed: string[] } {
  const existing = readEnvFile(current)
  const pending = new Map(updates)
  const changed = updates.filter(([k, v]) => existing.get(k) !== v).map(([k]) => k)
  const lines = current === '' ? [] : current.replace(/\n$/, '').split('\n')
  const out = lines.map(line => {
    const m = /^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=/.exec(line)
    if (!m || !pending.has(m[1])) return line
    const value = pending.get(m[1]) as string
    pending.delete(m[1])
    return existing.get(m[1]) === value ? line : envLine(m[1], value, input)
  })
  for (const [k, v] of pending) out.push(envLine(k, v, input))
  return { text: out.length ? `${out.join('\n')}\n` : '', changed }
}

/** redis reads its password from a config line: whitespace, quotes and backslashes would change it. */
export function redisPasswordProblem(value: string): string | undefined {
  return /[\s"'\\]/.test(value)
    ? 'REDIS_PASSWORD must not contain whitespace, quotes or backslashes (redis reads it from a config line)'
    : undefined
}
