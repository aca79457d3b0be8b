import * as core from '@actions/core'
import { CATALOGUE, publicPath } from './catalogue'
import { readFileIfExists } from './commands/files'
import { httpStatus } from './commands/http'
import { HostError } from './errors'
import { runInfra } from './infra'
import type { InfraInputs } from './inputs'
import { withLock } from './lock'
import { forgetFiles, writeAndReload } from './nginx'
import { hostPath } from './paths'
import type { Phases } from './phases'
import { concurrently, script, section, splitSections, type Sh } from './shell'
import type { Remote } from './ssh'
import { loadBundle } from './stackfiles'
import { varsPath } from './upstream'

// mode maintenance / live: nginx answers a route (or every route but /healthz) with 503, Retry-After and a
// maintenance page. The state is a file per route in upstreams/ (host state: it survives infra runs and restarts).

/** `all` for every route. */
export type MaintenanceTarget = string

export const SITE_WIDE = 'all'
/** The file that puts a service (or with SITE_WIDE every route) in maintenance: its map line (05-upstream-vars.conf). */
export const maintenancePath = (target: MaintenanceTarget): string => `upstreams/${target}.maintenance.map`
/** The page nginx answers with (the 8505 server of conf.d/10-undeployed.conf). */
export const MAINTENANCE_PAGE = 'upstreams/maintenance.html'
/** The page when the run gives none: the action's own. */
export const DEFAULT_PAGE = 'nginx/html/maintenance.html'
const MAP_LINE = '~. ops_maintenance;\n'

/** What is in maintenance: SITE_WIDE and/or services, from listMaintenance(). */
export type Maintenance = string[]

/** The names of upstreams/*.maintenance.map, one per line. */
export const listMaintenance = (opsDir: string): Sh =>
  script(
    'cd "$1/upstreams" 2>/dev/null || exit 0; for f in *.maintenance.map; do [ -f "$f" ] && echo "${f%.maintenance.map}"; done; exit 0',
    opsDir
  )

export const parseMaintenance = (out: string): Maintenance =>
  out
    .split('\n')
    .map(l => l.trim())
    .filter(Boolean)

/** Whether clients of the service get the maintenance page. */
export const inMaintenance = (m: Maintenance, service: string): boolean => m.includes(SITE_WIDE) || m.includes(service)

export interface MaintenanceRun {
  mode: 'maintenance' | 'live'
  /** Undefined: every route. */
  service?: string
  /** The calling repository's page (mode maintenance), else the action's. */
  page?: string
}

/** mode maintenance / live, under the lock, after the stack is ensured (its config has the maintenance maps). */
export async function runMaintenance(
  remote: Remote,
  infra: InfraInputs,
  run: MaintenanceRun,
  phases: Phases,
  lockTimeoutS: number
): Promise<string[]> {
  const target = run.service ?? SITE_WIDE
  const what = `mode ${run.mode}${run.service ? ` of ${run.service}` : ''}`
  return withLock(remote, phases, { opsDir: infra.opsDir, timeoutS: lockTimeoutS, what }, async () => {
    // What is in maintenance, and (a service outside the catalogue) whether it has a route here: read before infra
    // runs, so a run that cannot do what it was asked changes nothing.
    const custom = run.service && !CATALOGUE[run.service] ? run.service : undefined
    const s = splitSections(
      (
        await remote.run(
          concurrently(
            section('list', listMaintenance(infra.opsDir)),
            ...(custom ? [section('vars', readFileIfExists(hostPath(infra.opsDir, varsPath(custom))))] : [])
          )
        )
      ).stdout
    )
    if (custom && !s.get('vars')?.out.trim())
      throw new HostError(
        `${custom} has no route on this host (not frontend, backend or story, and never deployed here); nothing was changed`,
        'deploy it first, or leave service empty for every route'
      )
    const before = parseMaintenance(s.get('list')?.out ?? '')
    const { nginxId } = await runInfra(remote, infra, phases, 'Infra: ')
    return phases.run(run.mode === 'maintenance' ? 'Maintenance on' : 'Maintenance off', async () => {
      let after: Maintenance
      if (run.mode === 'maintenance') {
        const page = run.page ?? loadBundle().get(DEFAULT_PAGE) ?? 'Down for maintenance.\n'
        await writeAndReload(remote, infra.opsDir, nginxId, [
          { path: maintenancePath(target), content: MAP_LINE },
          { path: MAINTENANCE_PAGE, content: page }
        ])
        await forgetFiles(remote, infra.opsDir, [maintenancePath(target), MAINTENANCE_PAGE])
        after = [...new Set([...before, target])]
      } else {
        // Site-wide live ends every maintenance; a service's ends its own (site-wide maintenance, if on, stays).
        const off = run.service ? before.filter(t => t === run.service) : before
        if (off.length) {
          await writeAndReload(remote, infra.opsDir, nginxId, [], off.map(maintenancePath))
          await forgetFiles(remote, infra.opsDir, off.map(maintenancePath))
        }
        if (run.service && before.includes(SITE_WIDE))
          core.warning(
            `Every route is in maintenance (site-wide): ${run.service} keeps the maintenance page until mode live without a service.`
          )
        after = before.filter(t => !off.includes(t))
      }
      const line = await describeNow(remote, nginxId, after, run)
      core.info(line)
      return [line]
    })
  })
}

/** What clients get now: the route (or `/`) and /healthz, as nginx answers them, and what is in maintenance. */
async function describeNow(remote: Remote, nginxId: string, after: Maintenance, run: MaintenanceRun): Promise<string> {
  const spec = run.service ? CATALOGUE[run.service] : undefined
  const path = spec ? publicPath(spec, spec.healthPath) : run.service ? '' : '/'
  const probes = [
    section('healthz', httpStatus(nginxId, 'http://127.0.0.1:80/healthz')),
    ...(path ? [section('route', httpStatus(nginxId, `http://127.0.0.1:80${path}`))] : [])
  ]
  const s = splitSections((await remote.run(concurrently(...probes))).stdout)
  const now = after.length
    ? `in maintenance: ${after.map(t => (t === SITE_WIDE ? 'every route (site-wide)' : t)).join(', ')}`
    : 'no route in maintenance'
  const answers = [
    path && `GET ${path} -> ${s.get('route')?.out.trim() || '?'}`,
    `GET /healthz -> ${s.get('healthz')?.out.trim() || '?'}`
  ].filter(Boolean)
  return `${now} (${answers.join(', ')})`
}
