import { mergeEnvFile, readEnvFile, redisPasswordProblem, type EnvEntries } from './envfile'
import { InputError, InputErrors } from './errors'
import type { HostState } from './hoststate'
import type { InfraInputs } from './inputs'
import { frontUpstream } from './front'
import { OPS } from './paths'
import { planFiles, renderStack, ROUTED_SERVICES, type FileSet } from './stackfiles'
import { migrateUpstreamFile, placeholderUpstream, upstreamPath } from './upstream'

/** Variables the stack cannot start without. */
export const REQUIRED_ENV = ['DB_USER', 'DB_PASS', 'DB_NAME', 'REDIS_PASSWORD'] as const

/** What an infra run will write and remove, computed locally from the host's state: no I/O, nothing printed. */
export interface InfraPlan {
  files: FileSet
  write: string[]
  remove: string[]
  unchanged: number
  envText: string
  envChangedKeys: string[]
  nginxChanged: boolean
  /** The front's files (nginx/front/, upstreams/nginx.stream) change. */
  frontChanged: boolean
  /** What the plan says (for the log). */
  notes: string[]
  warnings: string[]
}

/** Everything the run will write, computed locally; input errors surface here, before any change. */
export function planInfra(inputs: InfraInputs, host: HostState, bundle: FileSet): InfraPlan {
  const files = renderStack(bundle, { domain: host.settings.domain, tls: host.tls })
  // The certificate nginx loaded, as a file of the run: when certbot renews it, this file changes and nginx reloads.
  if (host.tls) files.set(OPS.certificate, `${host.certHash}\n`)
  files.set(OPS.manifest, [...files.keys()].join('\n') + '\n')
  // A service's upstream belongs to its deploys; infra only puts the 503 placeholder where none exists yet, and
  // rewrites files of an older ops-action in today's format (same container).
  for (const service of ROUTED_SERVICES) {
    const path = upstreamPath(service)
    if (!host.hashes.has(path)) files.set(path, placeholderUpstream(service))
  }
  if (!host.hashes.has(OPS.frontUpstream)) files.set(OPS.frontUpstream, frontUpstream('nginx'))
  for (const [name, content] of host.upstreams) {
    const migrated = migrateUpstreamFile(name, content)
    if (migrated !== undefined) files.set(`${OPS.upstreams}/${name}`, migrated)
  }
  const updates: EnvEntries = [
    ...inputs.infraEnv,
    ['HTTP_PORT', String(host.settings.httpPort)],
    ['HTTPS_PORT', String(host.settings.httpsPort)],
    ['DOMAIN', host.settings.domain],
    ['OPS_NETWORK', inputs.network]
  ]
  const merged = mergeEnvFile(host.envText, updates, 'infra-env')
  checkStackEnv(readEnvFile(merged.text))

  const plan = planFiles(files, host.hashes, host.manifest)
  const frontFile = (p: string) => p.startsWith('nginx/front/') || p === OPS.frontUpstream
  const nginxChanged = [...plan.write, ...plan.remove].some(
    p => !frontFile(p) && (p.startsWith('nginx/') || p.startsWith('upstreams/') || p === OPS.certificate)
  )
  const frontChanged = [...plan.write, ...plan.remove].some(frontFile)
  const notes: string[] = []
  if (plan.write.includes(OPS.certificate) && host.hashes.has(OPS.certificate))
    notes.push(`The certificate of ${host.settings.domain} changed on the host (renewed?): nginx will reload it.`)
  notes.push(`${plan.write.length} file(s) to write, ${plan.remove.length} to remove, ${plan.unchanged} unchanged.`)
  for (const p of plan.write) notes.push(`  ${host.hashes.has(p) ? 'update' : 'create'} ${p}`)
  for (const p of plan.remove) notes.push(`  remove ${p}`)
  if (merged.changed.length) notes.push(`  .env: set ${merged.changed.join(', ')}`)
  const warnings: string[] = []
  const dbKeys = merged.changed.filter(k => ['DB_USER', 'DB_PASS', 'DB_NAME'].includes(k))
  if (dbKeys.length && host.containers.some(c => c.service === 'db')) {
    warnings.push(
      `${dbKeys.join(', ')} changed, but postgres applies POSTGRES_USER/PASSWORD/DB only when it initialises an empty data volume: the existing database keeps its old user and password. Change them in postgres too (ALTER USER … PASSWORD …).`
    )
  }
  return {
    notes,
    warnings,
    files,
    write: plan.write,
    remove: plan.remove,
    unchanged: plan.unchanged,
    envText: merged.text,
    envChangedKeys: merged.changed,
    nginxChanged,
    frontChanged
  }
}

/** All problems with the stack's variables at once, naming where to set them. */
export function checkStackEnv(env: Map<string, string>): void {
  const errors: InputError[] = []
  const missing = REQUIRED_ENV.filter(k => !env.get(k))
  if (missing.length) {
    errors.push(
      new InputError(
        'infra-env',
        `missing required variable${missing.length > 1 ? 's' : ''} ${missing.join(', ')} (set them in infra-env or in <ops-dir>/.env on the host); nothing was changed`
      )
    )
  }
  const redis = redisPasswordProblem(env.get('REDIS_PASSWORD') ?? '')
  if (redis) errors.push(new InputError('infra-env', redis))
  if (errors.length) throw new InputErrors(errors)
}

/** The files a run writes (and .env when it changes), relative to ops-dir: what a failed validation puts back. */
export function touched(plan: InfraPlan): string[] {
  return plan.envChangedKeys.length ? [...plan.write, OPS.env] : plan.write
}
