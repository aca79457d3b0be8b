import { cmd, script, type Sh } from '../shell'

// Read-only probes of the host. Pure: each returns a command; nothing here runs anything.

export const dockerServerVersion = (): Sh => cmd('docker', 'version', '--format', '{{.Server.Version}}')
/**
 * `$@`'s output, cached in the SSH user's cache dir under `name`, keyed by the files that make it (path, inode, size,
 * mtime of each that exists): compose v1 is a Python program that needs ~0.6 s just to print its version, the v2
 * plugin ~0.2 s, `docker info` ~0.1 s, on every run. No key file: exit 127. A failure is never cached.
 */
const cached = (name: string, keyFiles: string, argv: string[]): Sh =>
  script(
    `n=$1; shift; k=$(for f in ${keyFiles}; do [ -e "$f" ] && stat -L -c "%n %i %s %Y" "$f"; done | tr "\\n" " "); ` +
      '[ -n "$k" ] || { echo "$1: not found"; exit 127; }; ' +
      'c=${XDG_CACHE_HOME:-$HOME/.cache}/ops-action/$n; ' +
      'if [ -f "$c" ] && [ "$(head -n 1 "$c")" = "$k" ]; then tail -n 1 "$c"; exit 0; fi; ' +
      'v=$("$@") || exit $?; ' +
      '{ mkdir -p "${c%/*}" && printf "%s\\n%s\\n" "$k" "$v" >"$c"; } 2>/dev/null; echo "$v"',
    name,
    ...argv
  )

/** Where the docker CLI looks for the compose v2 plugin (and the CLI itself, which runs it). */
const COMPOSE_PLUGIN_FILES =
  '"${DOCKER_CONFIG:-$HOME/.docker}/cli-plugins/docker-compose" /usr/local/lib/docker/cli-plugins/docker-compose ' +
  '/usr/local/libexec/docker/cli-plugins/docker-compose /usr/lib/docker/cli-plugins/docker-compose ' +
  '/usr/libexec/docker/cli-plugins/docker-compose "$(command -v docker)"'

/** `docker compose version --short` (cached, see cached); fails without the v2 plugin. */
export const composeV2Version = (): Sh =>
  cached('docker-compose-v2-version', COMPOSE_PLUGIN_FILES, ['docker', 'compose', 'version', '--short'])
/** `docker-compose version --short` (compose v1, cached). */
export const composeV1Version = (): Sh =>
  cached('docker-compose-version', '"$(command -v docker-compose)"', ['docker-compose', 'version', '--short'])

/**
 * dockerd's root dir (`docker info`), cached while its socket and /etc/docker/daemon.json stay the same files: moving
 * the root dir takes an edit of daemon.json and a restart, which makes a new socket (unless systemd holds it).
 */
const DOCKER_ROOT = cached(
  'docker-root-dir',
  '"$(s=${DOCKER_HOST:-unix:///var/run/docker.sock}; echo "${s#unix://}")" /etc/docker/daemon.json',
  ['docker', 'info', '--format', '{{.DockerRootDir}}']
)

/** Free kilobytes on the filesystems of the docker root dir and of ops-dir (or its nearest existing parent). */
export const diskFree = (opsDir: string): Sh =>
  script(
    'd=$1; while [ ! -d "$d" ]; do d=$(dirname "$d"); done; ' +
      `r=$( { ${DOCKER_ROOT.sh}; } 2>/dev/null || docker info --format "{{.DockerRootDir}}" 2>/dev/null || echo /var/lib/docker); ` +
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
