import * as core from '@actions/core'
import { InputError } from '../errors'

/** Every input's default, as declared in action.yml (a unit test keeps the two equal). */
export const DEFAULTS: Record<string, string> = {
  mode: 'deploy',
  host: '',
  port: '22',
  username: 'ubuntu',
  'ssh-key': '',
  'ssh-passphrase': '',
  'known-hosts': '',
  'host-fingerprint': '',
  'insecure-skip-host-key-check': 'false',
  'connect-timeout': '20',
  'connect-retries': '3',
  'ops-dir': '/opt/behindy-ops',
  network: 'internal',
  domain: '',
  'http-port': '',
  'https-port': '',
  'infra-env': '',
  'infra-timeout': '120',
  'keep-backups': '7',
  'backup-before-infra': 'true',
  'restart-services': 'false',
  'dry-run': 'false',
  service: '',
  image: '',
  'app-port': '',
  route: '',
  'health-path': '',
  aliases: '',
  env: '',
  'env-file': '',
  registry: '',
  'registry-username': '',
  'registry-password': '',
  'health-timeout': '180',
  'drain-timeout': '30',
  'stop-timeout': '30',
  'lock-timeout': '600',
  'keep-images': '3',
  memory: '',
  'release-command': '',
  'release-timeout': '300',
  'canary-percent': '',
  'canary-seconds': '60',
  'canary-min-requests': '20',
  'canary-error-margin': '1',
  'canary-latency-factor': '2',
  'maintenance-page': ''
}

export type InputReader = (name: string) => string

/** Reads an input as the runner passes it (INPUT_<NAME>), falling back to the action.yml default when empty. */
export const actionInput: InputReader = name => {
  const value = core.getInput(name, { trimWhitespace: false })
  return value.trim() === '' ? (DEFAULTS[name] ?? '') : value
}

/** A host name label: letters, digits and '-', not starting or ending with '-' (so never an option to a program). */
export const LABEL = String.raw`[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?`
/** A host name: labels joined by dots (the one grammar for host, domain, registry and image references). */
export const HOST_NAME = String.raw`${LABEL}(?:\.${LABEL})*`
const HOST_PATH_RE = /^(\/[A-Za-z0-9._-]+)+$/

/** Reads inputs and collects every problem, so all of them are reported together. */
export class Collector {
  readonly errors: InputError[] = []
  readonly warnings: string[] = []
  constructor(private readonly read: InputReader) {}

  raw(name: string): string {
    return this.read(name)
  }

  text(name: string): string {
    return this.read(name).trim()
  }

  check<T>(name: string, parse: (v: string) => T, fallback: T): T {
    try {
      return parse(this.read(name))
    } catch (e) {
      if (e instanceof InputError) {
        this.errors.push(e)
        return fallback
      }
      throw e
    }
  }

  fail(name: string, message: string): void {
    this.errors.push(new InputError(name, message))
  }

  warn(message: string): void {
    this.warnings.push(message)
  }
}

export function parseInteger(name: string, min: number, max: number, unit = ''): (v: string) => number {
  return v => {
    const s = v.trim()
    if (!/^\d+$/.test(s)) throw new InputError(name, `'${s}' is not a whole number${unit ? ` of ${unit}` : ''}`)
    const n = Number(s)
    if (n < min || n > max) throw new InputError(name, `${n} is out of range (${min}–${max}${unit ? ` ${unit}` : ''})`)
    return n
  }
}

/** An input whose empty value means "not given" (undefined). */
export function optional<T>(parse: (v: string) => T): (v: string) => T | undefined {
  return v => (v.trim() === '' ? undefined : parse(v))
}

export function parseBoolean(name: string): (v: string) => boolean {
  return v => {
    const s = v.trim()
    if (['true', 'True', 'TRUE'].includes(s)) return true
    if (['false', 'False', 'FALSE'].includes(s)) return false
    throw new InputError(name, `'${s}' is not a boolean (use true or false)`)
  }
}

export function parseHostPath(name: string, v: string): string {
  const s = v.trim()
  if (!HOST_PATH_RE.test(s) || s.split('/').some(seg => seg === '.' || seg === '..')) {
    throw new InputError(name, `'${s}' must be an absolute path of letters, digits, '.', '_', '-' and '/', without '..'`)
  }
  return s
}
