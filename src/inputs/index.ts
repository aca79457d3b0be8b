import { InputError, InputErrors } from '../errors'
import type { ConnectionInputs } from '../ssh'
import type { CanaryInputs } from '../canary'
import type { ReleaseCommand } from '../release'
import { appInputs, maintenanceService, type AppInputs } from './app'
import { actionInput, Collector, DEFAULTS, parseBoolean, parseInteger, type InputReader } from './collector'
import { connectionInputs } from './connection'
import { infraInputs, type InfraInputs } from './infra'
import { canaryInputs, maintenancePage, releaseInputs } from './release'

export type Mode = 'deploy' | 'infra' | 'rollback' | 'status' | 'backup' | 'plan' | 'maintenance' | 'live'
export const MODES: readonly Mode[] = ['deploy', 'infra', 'rollback', 'status', 'backup', 'plan', 'maintenance', 'live']
/** Modes about the host as a whole: no service, no image. */
export const HOST_MODES: readonly Mode[] = ['infra', 'status', 'backup', 'plan', 'maintenance', 'live']

/** What every run has. */
interface RunInputs {
  connection: ConnectionInputs
  infra: InfraInputs
  lockTimeoutS: number
  /** Only print what the run would do (as mode plan, for infra, deploy or rollback). */
  dryRun: boolean
  /** Said about the inputs (the caller prints them). */
  warnings: string[]
}

/** The inputs of one run, by mode: a deploy has an image, a rollback finds its own, host modes have no app. */
export type Inputs =
  | (RunInputs & {
      mode: 'deploy'
      app: AppInputs
      image: string
      /** Run once in a one-off container of the new image before it starts (migrations). */
      releaseCommand?: ReleaseCommand
      canary?: CanaryInputs
    })
  | (RunInputs & { mode: 'rollback'; app: AppInputs })
  | (RunInputs & {
      mode: 'infra'
      /** Re-swap every deployed app afterwards (story → backend → frontend). */
      restartServices: boolean
    })
  | (RunInputs & { mode: 'status' | 'backup' | 'plan' })
  | (RunInputs & {
      mode: 'maintenance' | 'live'
      /** The route of this service only; undefined: every route but /healthz. */
      service?: string
      /** mode maintenance: the calling repository's page (else the action's). */
      page?: string
    })

export type AppRun = Extract<Inputs, { mode: 'deploy' | 'rollback' }>

/** Inputs that only mode deploy / rollback use (a warning names them when given to mode infra). */
export const DEPLOY_ONLY: readonly string[] = [
  'service',
  'image',
  'app-port',
  'route',
  'health-path',
  'aliases',
  'env',
  'env-file',
  'registry',
  'registry-username',
  'registry-password',
  'health-timeout',
  'drain-timeout',
  'stop-timeout',
  'keep-images',
  'memory',
  'release-command',
  'release-timeout',
  'canary-percent',
  'canary-seconds',
  'canary-min-requests',
  'canary-error-margin',
  'canary-latency-factor'
]

/**
 * Reads and checks every input; all problems are thrown together as InputErrors, before anything touches the host.
 * `repository` (owner/name) tells the service when the input does not.
 */
export function getInputs(read: InputReader = actionInput, repository = process.env.GITHUB_REPOSITORY): Inputs {
  const c = new Collector(read)
  const mode = c.check(
    'mode',
    v => {
      const s = v.trim() as Mode
      if (!MODES.includes(s)) throw new InputError('mode', `'${s}' is not one of ${MODES.join(', ')}`)
      return s
    },
    'infra'
  )
  if (HOST_MODES.includes(mode)) {
    const own = mode === 'maintenance' || mode === 'live' ? ['service'] : []
    const given = DEPLOY_ONLY.filter(name => c.text(name) !== DEFAULTS[name] && !own.includes(name))
    if (given.length) c.warn(`Ignored in mode ${mode} (they belong to mode deploy/rollback): ${given.join(', ')}`)
  }
  const connection = connectionInputs(c)
  const infra = infraInputs(c)
  const lockTimeoutS = c.check('lock-timeout', parseInteger('lock-timeout', 0, 7200, 'seconds'), 600)
  const restartServices = c.check('restart-services', parseBoolean('restart-services'), false)
  if (restartServices && mode !== 'infra') c.fail('restart-services', `is for mode infra (this run is mode ${mode})`)
  const dryRun = c.check('dry-run', parseBoolean('dry-run'), false)
  const base: RunInputs = { connection, infra, lockTimeoutS, dryRun, warnings: c.warnings }
  // Mode deploy's (rollback refuses them); the host modes ignore them (DEPLOY_ONLY).
  const app = mode === 'deploy' || mode === 'rollback'
  const releaseCommand = app ? releaseInputs(c, mode) : undefined
  const canary = app ? canaryInputs(c, mode) : undefined
  const page = maintenancePage(c, mode)
  const run = (): Inputs => {
    if (mode === 'deploy') return { ...base, mode, ...appInputs(c, mode, read, repository), releaseCommand, canary }
    if (mode === 'rollback') return { ...base, mode, app: appInputs(c, mode, read, repository).app }
    if (mode === 'infra') return { ...base, mode, restartServices }
    if (mode === 'maintenance' || mode === 'live') return { ...base, mode, service: maintenanceService(c), page }
    return { ...base, mode }
  }
  const inputs = run()
  if (c.errors.length) throw new InputErrors(c.errors, c.warnings)
  return inputs
}

export { DEFAULTS, type InputReader } from './collector'
export type { AppInputs, RegistryLogin } from './app'
export type { InfraInputs, SettingInputs } from './infra'
