import * as core from '@actions/core'
import { dumpDatabase } from './commands/backup'
import { projectInspect } from './commands/containers'
import { parseInspect } from './containers'
import { HostError } from './errors'
import { PROJECT } from './labels'
import type { Phases } from './phases'
import type { Remote } from './ssh'

export interface Backup {
  path: string
  bytes: number
}

/** Takes a backup of the running db container (`db` is its id or name), keeping the newest `keep`. */
export async function backupDatabase(remote: Remote, opsDir: string, db: string, keep: number): Promise<Backup> {
  const started = Date.now()
  const stamp = new Date()
    .toISOString()
    .replace(/[-:]/g, '')
    .replace(/\.\d+Z$/, 'Z')
  const out = await remote.must(dumpDatabase(opsDir, db, stamp, keep), 'pg_dump of the database', {
    fix: 'check that db is running and healthy (mode status), and the free disk space'
  })
  const [path, bytes] = out.trim().split('\n').at(-1)?.split(' ') ?? []
  if (!path || !Number(bytes)) throw new HostError(`pg_dump gave no backup file (output: ${out.trim()})`)
  core.info(
    `Backup: ${path} (${(Number(bytes) / 1024 / 1024).toFixed(2)} MiB, ${((Date.now() - started) / 1000).toFixed(1)} s); keeping the newest ${keep}.`
  )
  return { path, bytes: Number(bytes) }
}

/** `mode: backup`: finds the stack's db container and dumps it (under the lock, which the caller holds). */
export async function runBackup(remote: Remote, opsDir: string, keep: number, phases: Phases): Promise<Backup> {
  const stack = parseInspect(
    await phases.run('Find the database', () => remote.must(projectInspect(PROJECT), 'listing the stack containers'))
  )
  const db = stack.find(c => c.service === 'db')
  if (!db || db.status !== 'running')
    throw new HostError(`The stack's db container is ${db?.status ?? 'missing'}: nothing to back up.`, 'run mode infra first')
  return phases.run('pg_dump', () => backupDatabase(remote, opsDir, db.name, keep))
}
