import * as core from '@actions/core'
import { CATALOGUE, deployedSpec, publicPath, STACK_SERVICES } from './catalogue'
import { allAppContainers, projectInspect } from './commands/containers'
import { upstreamFiles } from './commands/files'
import { httpStatus } from './commands/http'
import { parseInspect, type ContainerInfo } from './containers'
import { historyTail, parseHistory, type HistoryRecord } from './history'
import type { InfraInputs } from './inputs'
import { PROJECT } from './labels'
import { concurrently, section, splitSections } from './shell'
import type { Remote } from './ssh'
import { inMaintenance, listMaintenance, parseMaintenance, SITE_WIDE } from './maintenance'
import { PREVIEW_PORT } from './release'
import { parseUpstreamFiles, PREVIEW_HEADER, upstreamName, type Live } from './upstream'

export interface StackRow {
  service: string
  container: string
  image: string
  state: string
  health: string
  since: string
}

export interface AppRow {
  service: string
  deployed: boolean
  container: string
  image: string
  /** The registry digest it runs (`repo@sha256:…`); '' unknown (deployed by an earlier release) or none. */
  digest: string
  state: string
  since: string
  /** HTTP status of the health path on the container itself, and through nginx as clients see it (in maintenance: through its upstream, on the preview port). */
  direct: string
  nginx: string
  /** Clients get the maintenance page (mode maintenance). */
  maintenance: boolean
  lastDeploy?: Pick<HistoryRecord, 'time' | 'mode' | 'image' | 'digest' | 'result' | 'actor' | 'sha' | 'repository' | 'runUrl'>
}

export interface Status {
  stack: StackRow[]
  services: AppRow[]
  /** What mode maintenance put in maintenance: services, or `all` (every route). */
  maintenance: string[]
}

/** `mode: status`: what runs on the host now, read-only (no lock, nothing written). */
export async function runStatus(remote: Remote, inputs: InfraInputs): Promise<Status> {
  const s = splitSections(
    (
      await remote.run(
        concurrently(
          section('stack', projectInspect(PROJECT)),
          section('apps', allAppContainers()),
          section('upstreams', upstreamFiles(inputs.opsDir)),
          section('history', historyTail(inputs.opsDir, 1000)),
          section('maintenance', listMaintenance(inputs.opsDir))
        )
      )
    ).stdout
  )
  const stackContainers = parseInspect(s.get('stack')?.out ?? '')
  const apps = parseInspect(s.get('apps')?.out ?? '')
  const live = parseUpstreamFiles(s.get('upstreams')?.out ?? '')
  const history = parseHistory(s.get('history')?.out ?? '')
  const maintenance = parseMaintenance(s.get('maintenance')?.out ?? '')
  const nginx = stackContainers.find(c => c.service === 'nginx' && c.status === 'running')

  const stack: StackRow[] = STACK_SERVICES.map(service => {
    const c = stackContainers.find(x => x.service === service)
    return c
      ? { service, container: c.name, image: c.image, state: c.status, health: c.health, since: c.startedAt }
      : { service, container: '', image: '', state: 'missing', health: '', since: '' }
  })

  const names = [...new Set([...Object.keys(CATALOGUE), ...live.keys(), ...apps.map(a => a.service)])].filter(Boolean)
  const rows: AppRow[] = names.map(service => ({
    ...appRow(service, live.get(service), apps, history),
    maintenance: inMaintenance(maintenance, service)
  }))

  // Health of every deployed service, directly and through nginx, in one round trip from inside nginx's container.
  if (nginx) {
    const probes = rows.flatMap((r, i) => {
      const c = apps.find(a => a.name === r.container)
      if (!c || c.status !== 'running') return []
      const spec = deployedSpec(r.service, c.labels)?.spec
      if (!spec) return []
      return [
        section(`direct-${i}`, httpStatus(nginx.id, `http://${c.name}:${spec.port}${spec.healthPath}`, 3)),
        section(
          `nginx-${i}`,
          r.maintenance
            ? httpStatus(
                nginx.id,
                `http://127.0.0.1:${PREVIEW_PORT}${publicPath(spec, spec.healthPath)}`,
                3,
                `${PREVIEW_HEADER}: ${upstreamName(r.service)}`
              )
            : httpStatus(nginx.id, `http://127.0.0.1:80${publicPath(spec, spec.healthPath)}`, 3)
        )
      ]
    })
    if (probes.length) {
      const p = splitSections((await remote.run(concurrently(...probes))).stdout)
      rows.forEach((r, i) => {
        r.direct = p.get(`direct-${i}`)?.out.trim() || r.direct
        r.nginx = p.get(`nginx-${i}`)?.out.trim() || r.nginx
      })
    }
  }
  const status = { stack, services: rows, maintenance }
  for (const line of statusLines(status)) core.info(line)
  return status
}

function appRow(service: string, live: Live | undefined, apps: ContainerInfo[], history: HistoryRecord[]): Omit<AppRow, 'maintenance'> {
  const last = [...history].reverse().find(h => h.service === service)
  const lastDeploy = last && {
    time: last.time,
    mode: last.mode,
    image: last.image,
    digest: last.digest,
    result: last.result,
    actor: last.actor,
    sha: last.sha,
    repository: last.repository,
    runUrl: last.runUrl
  }
  const c = live && apps.find(a => a.name === live.container)
  if (!live)
    return {
      service,
      deployed: false,
      container: '',
      image: '',
      digest: '',
      state: 'not deployed',
      since: '',
      direct: '',
      nginx: '',
      lastDeploy
    }
  return {
    service,
    deployed: true,
    container: live.container,
    image: live.image,
    digest: live.digest ?? '',
    state: c ? c.status : 'missing',
    since: c?.startedAt ?? '',
    direct: c ? '' : 'no container',
    nginx: '',
    lastDeploy
  }
}

const cell = (v: string | undefined) => (v ? v.replace(/\|/g, '\\|') : '—')
const since = (t: string) => (t && !t.startsWith('0001') ? t.replace(/\.\d+Z$/, 'Z') : '')

/** The status as log lines and markdown tables (the job summary). */
export function statusLines(st: Status): string[] {
  const m = st.maintenance
  return [
    ...(m.length ? [`In maintenance: ${m.map(t => (t === SITE_WIDE ? 'every route (site-wide)' : t)).join(', ')}.`, ''] : []),
    '| Stack | Container | Image | State | Health | Up since |',
    '| --- | --- | --- | --- | --- | --- |',
    ...st.stack.map(
      r => `| ${r.service} | ${cell(r.container)} | ${cell(r.image)} | ${r.state} | ${cell(r.health)} | ${cell(since(r.since))} |`
    ),
    '',
    '| Service | Container | Image | Digest | State | Up since | Health (direct) | Health (nginx) | Last deploy |',
    '| --- | --- | --- | --- | --- | --- | --- | --- | --- |',
    ...st.services.map(r => {
      const d = r.lastDeploy
      const last = d ? `${d.time} ${d.mode} ${d.result}${d.actor ? ` by ${d.actor}` : ''}${d.sha ? ` (${d.sha.slice(0, 7)})` : ''}` : ''
      return `| ${r.service} | ${cell(r.container)} | ${cell(r.image)} | ${cell(r.digest.slice(r.digest.lastIndexOf('@') + 1))} | ${r.state}${r.maintenance ? ', in maintenance' : ''} | ${cell(since(r.since))} | ${cell(r.direct)} | ${cell(r.nginx)} | ${cell(last)} |`
    })
  ]
}
