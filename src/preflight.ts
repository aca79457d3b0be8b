import * as core from '@actions/core'
import { deployedSpec } from './catalogue'
import { removeContainers, serviceContainers } from './commands/containers'
import { readFileIfExists } from './commands/files'
import { nginxTest, type NginxAt } from './commands/nginx'
import { memInfo } from './commands/probes'
import { parseInspect, type ContainerInfo } from './containers'
import { nginxTestFailed } from './nginx'
import { inMaintenance, listMaintenance, parseMaintenance, type Maintenance } from './maintenance'
import { hostPath } from './paths'
import type { Log } from './phases'
import { concurrently, section, splitSections } from './shell'
import type { Remote } from './ssh'
import { mib } from './units'
import { liveOf, upstreamPath, type Live } from './upstream'

/** What the host says about a service before a swap: read in one round trip, parsed, nothing changed. */
export interface ServiceState {
  containers: ContainerInfo[]
  /** The container nginx routes the service to, per its upstream file. */
  live?: Live
  memAvailableBytes?: number
  nginxTest: { rc: number; out: string }
  /** What mode maintenance put in maintenance (services, or `all`). */
  maintenance: Maintenance
}

/** Reads the service's containers, its upstream file, the free memory and `nginx -t` (at the given nginx). */
export async function probeService(remote: Remote, service: string, opsDir: string, nginx: NginxAt): Promise<ServiceState> {
  const out = await remote.run(
    concurrently(
      section('containers', serviceContainers(service)),
      section('upstream', readFileIfExists(hostPath(opsDir, upstreamPath(service)))),
      section('memory', memInfo()),
      section('nginx-test', nginxTest(nginx, opsDir)),
      section('maintenance', listMaintenance(opsDir))
    )
  )
  const s = splitSections(out.stdout)
  const available = /^MemAvailable:\s+(\d+) kB/m.exec(s.get('memory')?.out ?? '')
  return {
    containers: parseInspect(s.get('containers')?.out ?? ''),
    live: liveOf(s.get('upstream')?.out ?? ''),
    memAvailableBytes: available ? Number(available[1]) * 1024 : undefined,
    nginxTest: s.get('nginx-test') ?? { rc: 255, out: 'no answer from nginx -t' },
    maintenance: parseMaintenance(s.get('maintenance')?.out ?? '')
  }
}

/** What a swap starts from. */
export interface Before {
  /** The container nginx routes the service to now (per its upstream file), if any. */
  live?: Live
  /** Running containers of the service (the one behind `live`, leftovers of interrupted runs): stopped once the new one serves. */
  retire: ContainerInfo[]
  /** The new container's memory limit in bytes: the input's, or (inheriting) the serving container's. */
  memory?: number
  /** Clients get the maintenance page for the service's route (mode maintenance): the deploy keeps it so. */
  maintenance: boolean
}

/**
 * Step 4 of a deploy: fails when nginx's config does not pass `nginx -t` (the switch could never be applied), removes
 * stopped leftovers of interrupted runs, says what serves now, and warns when memory is short for the overlap.
 */
export async function preflight(
  remote: Remote,
  state: ServiceState,
  service: string,
  memory: number | undefined,
  inherit: boolean,
  log: Log = core
): Promise<Before> {
  if (state.nginxTest.rc !== 0) throw nginxTestFailed(state.nginxTest.out, 'nginx was not changed and nothing was started')
  const { containers, live } = state
  // Containers of interrupted runs. A stopped one goes now. A running one may still get requests (a run cut between
  // writing the upstream file and reloading nginx leaves nginx on the container the file no longer names), so it is
  // stopped like the old release: after the switch, once nginx's old workers are done with it.
  // A leftover docker is already removing (the previous run's retirement in the background) is left to docker.
  const leftovers = containers.filter(c => c.name !== live?.container && c.status !== 'removing')
  const [running, stopped] = [leftovers.filter(c => c.status === 'running'), leftovers.filter(c => c.status !== 'running')]
  if (stopped.length) {
    log.info(`Removing stopped leftovers of interrupted runs: ${stopped.map(c => c.name).join(', ')}`)
    await remote.must(removeContainers(stopped.map(c => c.name)), 'removing leftover containers')
  }
  if (running.length) log.info(`Leftovers of interrupted runs, stopped after the switch: ${running.map(c => c.name).join(', ')}`)
  const serving = containers.find(c => c.name === live?.container)
  if (live)
    log.info(`${service} is served by ${live.container} (${live.image})${serving ? `, ${serving.status}` : ', which no longer exists'}.`)
  else log.info(`${service} has not been deployed yet.`)

  const limit = memory ?? (inherit && serving ? deployedSpec(service, serving.labels)?.memory : undefined)
  if (state.memAvailableBytes !== undefined) {
    const need = limit ?? 256 * 1024 ** 2
    if (state.memAvailableBytes < need)
      log.warning(
        `Only ${mib(state.memAvailableBytes)} of memory available for the overlap of old and new ${service} containers (want ≥ ${mib(need)}); the host may swap or the OOM killer may step in.`
      )
    else log.info(`${mib(state.memAvailableBytes)} of memory available.`)
  }
  const maintenance = inMaintenance(state.maintenance, service)
  if (maintenance)
    log.info(`${service} is in maintenance: clients keep the maintenance page; the new release is verified on nginx's preview port.`)
  return { live, retire: [...(serving ? [serving] : []), ...running], memory: limit, maintenance }
}
