import { existsSync, readFileSync, statSync } from 'node:fs'
import { isAbsolute, resolve } from 'node:path'
import type { CanaryInputs } from '../canary'
import { InputError } from '../errors'
import type { ReleaseCommand } from '../release'
import { optional, parseInteger, type Collector } from './collector'

// Inputs of the release phase and the canary (mode deploy), and of mode maintenance / live.

/** The release command sits on the host's command line (it is not secret: env values never are there). */
const MAX_COMMAND = 4096
/** A maintenance page larger than this is a mistake (an image or an archive). */
const MAX_PAGE_BYTES = 512 * 1024

export function releaseInputs(c: Collector, mode: string): ReleaseCommand | undefined {
  const command = c.check(
    'release-command',
    v => {
      const s = v.trim()
      if (!s) return undefined
      if (mode !== 'deploy')
        throw new InputError('release-command', `is for mode deploy (this run is mode ${mode}: nothing new to release)`)
      if (s.length > MAX_COMMAND)
        throw new InputError(
          'release-command',
          `is ${s.length} characters long (at most ${MAX_COMMAND}); put a script in the image and run that`
        )
      if (s.includes('\0')) throw new InputError('release-command', 'contains a NUL character')
      return s
    },
    undefined
  )
  const timeoutS = c.check('release-timeout', parseInteger('release-timeout', 1, 3600, 'seconds'), 300)
  return command === undefined ? undefined : { command, timeoutS }
}

function parseNumber(name: string, min: number, max: number, unit: string): (v: string) => number {
  return v => {
    const s = v.trim()
    if (!/^\d+(\.\d+)?$/.test(s)) throw new InputError(name, `'${s}' is not a number of ${unit}`)
    const n = Number(s)
    if (n < min || n > max) throw new InputError(name, `${n} is out of range (${min}–${max} ${unit})`)
    return n
  }
}

export function canaryInputs(c: Collector, mode: string): CanaryInputs | undefined {
  const percent = c.check(
    'canary-percent',
    optional(v => {
      if (mode !== 'deploy') throw new InputError('canary-percent', `is for mode deploy (this run is mode ${mode})`)
      return parseInteger('canary-percent', 1, 50, 'percent of clients')(v)
    }),
    undefined
  )
  const seconds = c.check('canary-seconds', parseInteger('canary-seconds', 5, 3600, 'seconds'), 60)
  const minRequests = c.check('canary-min-requests', parseInteger('canary-min-requests', 1, 1_000_000, 'requests'), 20)
  const errorMargin = c.check('canary-error-margin', parseNumber('canary-error-margin', 0, 100, 'percentage points'), 1)
  const latencyFactor = c.check('canary-latency-factor', parseNumber('canary-latency-factor', 1, 100, 'times the old p99'), 2)
  return percent === undefined ? undefined : { percent, seconds, minRequests, errorMargin, latencyFactor }
}

/**
 * `maintenance-page`: an HTML file of the calling repository (relative to its checkout, GITHUB_WORKSPACE), read now
 * so a missing or unfit file fails before the host is touched.
 */
export function maintenancePage(c: Collector, mode: string, workspace = process.env.GITHUB_WORKSPACE ?? process.cwd()): string | undefined {
  return c.check(
    'maintenance-page',
    v => {
      const s = v.trim()
      if (!s) return undefined
      if (mode !== 'maintenance') return void c.warn(`Ignored in mode ${mode} (it belongs to mode maintenance): maintenance-page`)
      const path = isAbsolute(s) ? s : resolve(workspace, s)
      if (!existsSync(path) || !statSync(path).isFile())
        throw new InputError(
          'maintenance-page',
          `'${s}' is not a file of the repository (looked for ${path}; check out the repository first)`
        )
      const size = statSync(path).size
      if (size > MAX_PAGE_BYTES)
        throw new InputError(
          'maintenance-page',
          `'${s}' is ${Math.round(size / 1024)} KiB (at most ${MAX_PAGE_BYTES / 1024} KiB: one HTML file, styles inline)`
        )
      const text = readFileSync(path, 'utf8')
      if (text.includes('\uFFFD')) throw new InputError('maintenance-page', `'${s}' is not UTF-8 text (an HTML file is)`)
      return text
    },
    undefined
  )
}
