import * as core from '@actions/core'
import { HostError } from './errors'
import { script, type Sh } from './shell'
import type { Remote } from './ssh'

export const BACKUP_DIR = 'backups'

/**
 * pg_dump (custom format) of the stack's database into `<ops-dir>/backups/<db>-<UTC time>.dump`, mode 0600, written
 * to a temp name and renamed when complete; then keeps the newest `keep` dumps. pg_dump runs inside the db
 * container as the database's own user over its local socket, with DB_USER/DB_NAME from the container's env: no
 * credential on any command line. Prints `<path> <bytes>`.
 */
export const dumpDatabase = (opsDir: string, db: string, stamp: string, keep: number): Sh =>
  script(
    'set -e; umask 077; mkdir -p "$1/backups"; name=$(docker exec "$2" sh -c \'printf %s "$POSTGRES_DB"\' | tr -c "A-Za-z0-9_.-" _); ' +
      'f="$1/backups/${name:-db}-$3.dump"; ' +
      'docker exec "$2" sh -c \'exec pg_dump -U "$POSTGRES_USER" -d "$POSTGRES_DB" -Fc\' > "$f.partial" || { rm -f "$f.partial"; exit 1; }; ' +
      '[ -s "$f.partial" ] || { rm -f "$f.partial"; echo "pg_dump wrote nothing" >&2; exit 1; }; mv "$f.partial" "$f"; ' +
      'ls -1t "$1/backups/"*.dump | tail -n +$(($4 + 1)) | while read -r old; do rm -f "$old"; done; ' +
      'printf "%s %s\\n" "$f" "$(wc -c < "$f")"',
    opsDir,
    db,
    stamp,
    String(keep)
  )

export interface Backup {
  path: string
  bytes: number
}

/** Takes a backup of the running db container (`db` is its id or name). */
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
  core.setOutput('backup', path)
  return { path, bytes: Number(bytes) }
}
