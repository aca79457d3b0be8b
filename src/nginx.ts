import * as core from '@actions/core'
import { nginxProcesses, reloadNginxAndWait } from './commands/host'
import { HostError } from './errors'
import { sleep } from './shell'
import type { Remote } from './ssh'

export interface NginxWorkers {
  /** Workers serving with the current configuration. */
  active: string[]
  /** Workers of an older configuration finishing their requests. */
  draining: string[]
}

/** Parses `docker top ID -eo pid,args` of the nginx container. */
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

export async function workers(remote: Remote, id: string): Promise<NginxWorkers> {
  return parseWorkers(await remote.must(nginxProcesses(id), 'listing nginx processes'))
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
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const now = await workers(remote, id)
    if (now.draining.length === 0) return true
    if (Date.now() > deadline) {
      core.warning(`${now.draining.length} old nginx worker(s) still finishing requests after ${timeoutMs / 1000} s; going on.`)
      return false
    }
    await sleep(100)
  }
}
