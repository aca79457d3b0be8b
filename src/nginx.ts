import { tarball } from './archive'
import { forgetPrevious, restoreFiles, stashFiles, unpackAndCommit } from './commands/files'
import { nginxTest, reloadNginxAndWait } from './commands/nginx'
import { HostError } from './errors'
import { hostPaths } from './paths'
import { and, section, seq, splitSections } from './shell'
import type { Remote } from './ssh'

// nginx's side of a deploy: write its files and test them, reload and wait for the new workers, wait for the
// requests in flight to an old container.

export interface NginxFile {
  /** Relative to ops-dir. */
  path: string
  content: string
}

/**
 * nginx.conf's keepalive_min_timeout: how long a reload's old workers keep serving reused client connections (with
 * the old config, so to the old container). A unit test keeps the two equal.
 */
export const KEEPALIVE_MIN_TIMEOUT_S = 10

/** The oldest nginx the shipped config runs on: keepalive_min_timeout came in 1.27.4, upstream `server … resolve` in 1.27.3. */
export const MIN_NGINX = '1.27.4'

/** What `nginx -t` says when the nginx is older than the shipped config needs; undefined for any other failure. */
export function nginxTooOld(output: string, variable: 'NGINX_IMAGE' | 'FRONT_IMAGE' = 'NGINX_IMAGE'): HostError | undefined {
  if (
    !/unknown directive "keepalive_min_timeout"|invalid parameter "resolve"|unknown directive "keepalive_timeout" in .*upstreams/.test(
      output
    )
  )
    return undefined
  return new HostError(
    `The host's nginx is older than ${MIN_NGINX}, which the shipped config needs (keepalive_min_timeout, upstream servers with resolve):\n${output.trim()}`,
    `set ${variable} in infra-env to nginx:1.30.6-alpine or newer (or remove it to get the compose default), then run mode infra`
  )
}

/** A failing `nginx -t` as an error that says what it means for the run and how to fix it. */
export function nginxTestFailed(output: string, consequence: string): HostError {
  return (
    nginxTooOld(output) ??
    new HostError(
      `nginx -t fails on the host's nginx config, so ${consequence}:\n${output.trim()}`,
      'fix or remove the file nginx names above (a hand edit or a stray file in nginx/ or upstreams/ of ops-dir), or run mode infra to restore the shipped config'
    )
  )
}

/**
 * Writes nginx files atomically and moves `remove` aside (the old ones kept as `.ops-prev`), then runs `nginx -t`, in one round trip. When the
 * test fails the old files are put back and nothing was changed; when it passes the new files are in place and
 * still unloaded (reloadAndWait applies them).
 */
export async function writeAndTest(
  remote: Remote,
  opsDir: string,
  nginxId: string,
  files: NginxFile[],
  remove: string[] = []
): Promise<void> {
  const entries = files.map(f => ({ ...f, mode: 0o644 }))
  const paths = [...entries.map(e => e.path), ...remove]
  const commit = remove.length
    ? and(
        unpackAndCommit(
          opsDir,
          entries.map(e => e.path)
        ),
        stashFiles(hostPaths(opsDir, remove))
      )
    : unpackAndCommit(opsDir, paths)
  // The test runs on the old files if the write failed; its result is not used then.
  const out = await remote.run(seq(section('write', commit), section('test', nginxTest({ container: nginxId }, opsDir))), {
    stdin: await tarball(entries)
  })
  const s = splitSections(out.stdout)
  const write = s.get('write')
  if (write?.rc !== 0)
    throw new HostError(`writing nginx upstream files failed (exit ${write?.rc ?? out.code}): ${write?.out.trim() ?? out.stderr}`)
  const test = s.get('test')
  if (test?.rc !== 0) {
    await remote.must(restoreFiles(hostPaths(opsDir, paths)), 'restoring the nginx files')
    throw nginxTestFailed(test?.out ?? 'no answer from nginx -t', 'nginx was not changed')
  }
}

/** Writes (and removes), tests and applies nginx files: writeAndTest, then reloadAndWait. */
export async function writeAndReload(
  remote: Remote,
  opsDir: string,
  nginxId: string,
  files: NginxFile[],
  remove: string[] = []
): Promise<void> {
  await writeAndTest(remote, opsDir, nginxId, files, remove)
  await reloadAndWait(remote, nginxId)
}

/** Puts back the files writeAndTest replaced, before nginx loaded them (no reload). */
export async function restoreUnloaded(remote: Remote, opsDir: string, paths: string[]): Promise<void> {
  await remote.must(restoreFiles(hostPaths(opsDir, paths)), 'restoring the previous nginx files')
}

/** Puts back the files writeAndTest replaced and reloads nginx with them. */
export async function revertFiles(remote: Remote, opsDir: string, nginxId: string, paths: string[]): Promise<void> {
  await restoreUnloaded(remote, opsDir, paths)
  await reloadAndWait(remote, nginxId)
}

/** Drops the `.ops-prev` copies of files once the new ones are known good (or were put back). */
export async function forgetFiles(remote: Remote, opsDir: string, paths: string[]): Promise<void> {
  await remote.run(forgetPrevious(hostPaths(opsDir, paths)))
}

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
  const timeoutS = Math.ceil(timeoutMs / 1000)
  const r = await remote.run(reloadNginxAndWait(id, timeoutS))
  if (r.code === 0) return parseWorkers(r.stdout)
  throw reloadFailed(r.code, r.stderr || r.stdout, timeoutS)
}

/** A reload (commands/nginx.ts RELOAD) that exited with `code`, as an error that says which step failed. */
export function reloadFailed(code: number, output: string, timeoutS: number): HostError {
  if (code === 4)
    return new HostError(
      `nginx did not apply the new configuration within ${timeoutS} s (its old workers are still serving)`,
      'check `docker logs` of the nginx container'
    )
  const what = code === 3 ? "signalling nginx's master" : 'reaching the nginx container'
  return new HostError(`${what} failed (exit ${code}): ${output.trim()}`)
}
