import { cmd, script, type Sh } from '../shell'

// Read-only probes of the host. Pure: each returns a command; nothing here runs anything.

export const dockerServerVersion = (): Sh => cmd('docker', 'version', '--format', '{{.Server.Version}}')
export const composeV2Version = (): Sh => cmd('docker', 'compose', 'version', '--short')
/**
 * `docker-compose version --short`, cached per binary (path, inode, size, mtime) in the SSH user's cache dir: v1 is
 * a Python program that needs ~0.6 s just to print its version, on every run.
 */
export const composeV1Version = (): Sh =>
  script(
    'b=$(command -v docker-compose) || { echo "docker-compose: not found"; exit 127; }; k=$(stat -L -c "%n %i %s %Y" "$b") || exit 1; ' +
      'c=${XDG_CACHE_HOME:-$HOME/.cache}/ops-action/docker-compose-version; ' +
      'if [ -f "$c" ] && [ "$(head -n 1 "$c")" = "$k" ]; then tail -n 1 "$c"; exit 0; fi; ' +
      'v=$(docker-compose version --short) || exit $?; ' +
      '{ mkdir -p "${c%/*}" && printf "%s\\n%s\\n" "$k" "$v" >"$c"; } 2>/dev/null; echo "$v"'
  )

/** Free kilobytes on the filesystems of the docker root dir and of ops-dir (or its nearest existing parent). */
export const diskFree = (opsDir: string): Sh =>
  script(
    'd=$1; while [ ! -d "$d" ]; do d=$(dirname "$d"); done; ' +
      'r=$(docker info --format "{{.DockerRootDir}}" 2>/dev/null || echo /var/lib/docker); ' +
      'for p in "$r" "$d"; do printf "%s %s\\n" "$p" "$(df -Pk "$p" | awk "NR==2 {print \\$4}")"; done',
    opsDir
  )

/** The kernel's memory figures (MemAvailable). */
export const memInfo = (): Sh => cmd('cat', '/proc/meminfo')

/**
 * Prints `present <sha256 of fullchain.pem and privkey.pem>` or `absent` for the Let's Encrypt certificate of a
 * domain (the hash tells a renewal apart). live/ is usually 0700 root, so when the SSH user cannot look, the check
 * runs as root in a throwaway container of the (local) nginx image.
 */
export const certificateExists = (domain: string, image: string): Sh =>
  script(
    'f=/etc/letsencrypt/live/$1; ' +
      'if [ -s "$f/fullchain.pem" ] && [ -s "$f/privkey.pem" ]; then echo "present $(cat "$f/fullchain.pem" "$f/privkey.pem" | sha256sum | cut -c1-64)"; ' +
      'elif [ ! -e /etc/letsencrypt/live ] || [ -x /etc/letsencrypt/live ]; then echo absent; ' +
      'else docker run --rm --pull never --network none --entrypoint sh -v /etc/letsencrypt:/etc/letsencrypt:ro "$2" ' +
      '-c \'[ -s "$0/fullchain.pem" ] && [ -s "$0/privkey.pem" ] && echo "present $(cat "$0/fullchain.pem" "$0/privkey.pem" | sha256sum | cut -c1-64)" || echo absent\' "$f"; fi',
    domain,
    image
  )
