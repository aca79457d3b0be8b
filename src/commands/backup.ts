import { script, type Sh } from '../shell'

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
