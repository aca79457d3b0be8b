import * as core from '@actions/core'
import { reloadNginxAndWait, waitConnectionsDrained, waitNginxDrained } from './commands/host'
import { HostError } from './errors'
import type { Remote } from './ssh'

export interface NginxWorkers {
  /** Workers serving with the current configuration. */
  active: string[]
  /** Workers of an older configuration finishing their requests. */
  draining: string[]
}

/** Parses the `PID ARGS` listing of the nginx container's processes (a header line first, as docker top prints). */
export function parseWorkers(out: string): NginxWorkers {
  const active: string[] = []
  const draining: string[] = []
  for (const line of out.split('\n').slice(1)) {
    const m = /^\s*(\d+)\s+nginx: worker process(.*)$/.exec(line)
    if (!m) continue
    if (/shutting down/.test(m[2])) draining.push(m[1])
    else active.push(m[1])
  }
  return { active, draining }
}

/**
 * SIGHUP to nginx, then waits until the new configuration is live: every worker that served before is gone or
 * shutting down and new workers have started. A reload that nginx refused (it keeps the old workers) fails here.
 */
export async function reloadAndWait(remote: Remote, id: string, timeoutMs = 10_000): Promise<NginxWorkers> {
  const r = await remote.run(reloadNginxAndWait(id, Math.ceil(timeoutMs / 1000)))
  if (r.code === 0) return parseWorkers(r.stdout)
  if (r.code === 4)
    throw new HostError(
      `nginx did not apply the new configuration within ${timeoutMs / 1000} s (its old workers are still serving)`,
      'check `docker logs` of the nginx container'
    )
  const what = r.code === 3 ? 'reloading nginx' : 'listing nginx processes'
  throw new HostError(`${what} failed (exit ${r.code}): ${(r.stderr || r.stdout).trim()}`)
}

/** Waits until the workers of older configurations have finished their requests, up to timeoutMs. */
export async function waitDrained(remote: Remote, id: string, timeoutMs: number): Promise<boolean> {
  const r = await remote.run(waitNginxDrained(id, Math.ceil(timeoutMs / 1000)))
  if (r.code === 0) return true
  if (r.code === 4) {
    core.warning(`${r.stdout.trim()} old nginx worker(s) still finishing requests after ${timeoutMs / 1000} s; going on.`)
    return false
  }
  throw new HostError(`listing nginx processes failed (exit ${r.code}): ${(r.stderr || r.stdout).trim()}`)
}

/**
 * Waits until nginx has no request in flight to the old containers (their established connections from nginx on
 * the app port), up to timeoutMs; where the host hides other users' /proc entries, until the old workers are gone.
 */
export async function waitRequestsDrained(
  remote: Remote,
  id: string,
  port: number,
  containers: string[],
  timeoutMs: number
): Promise<boolean> {
  const r = await remote.run(waitConnectionsDrained(id, port, containers, Math.ceil(timeoutMs / 1000)))
  if (r.code === 0) return true
  if (r.code === 4) {
    core.warning(`${r.stdout.trim()} request(s) from nginx still in flight to the old container after ${timeoutMs / 1000} s; going on.`)
    return false
  }
  core.info(`Cannot see the old container's connections (exit ${r.code}): waiting for the old nginx workers instead.`)
  return waitDrained(remote, id, timeoutMs)
}
