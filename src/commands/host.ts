import { cmd, noStderr, or, quiet, script, type Sh } from '../shell'

// Read-only probes of the host and small file operations. Each returns a command; nothing here runs anything.

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

/** Prints `exists` / `creatable` / `denied <path>` for ops-dir. */
export const dirWritable = (dir: string): Sh =>
  script(
    'if [ -d "$1" ]; then [ -w "$1" ] && echo exists || echo "denied $1"; exit 0; fi; ' +
      'd=$1; while [ ! -d "$d" ]; do d=$(dirname "$d"); done; [ -w "$d" ] && echo creatable || echo "denied $d"',
    dir
  )

/** Lists `sha256  path` of every file under the given subdirectories of dir (missing ones are skipped). */
export const hashFiles = (dir: string, subdirs: string[]): Sh =>
  script(
    'cd "$1" 2>/dev/null || exit 0; shift; for s; do [ -e "$s" ] && find "$s" -type f ! -name "*.ops-new" ! -name "*.ops-prev" -exec sha256sum {} +; done; exit 0',
    dir,
    ...subdirs
  )

/** Prints a file, or nothing when it does not exist. */
export const readFileIfExists = (path: string): Sh => script('[ -f "$1" ] && cat "$1"; exit 0', path)

/**
 * Unpacks a tar archive from stdin into `<dir>/.ops-stage`, then moves each listed file into place. The old version
 * is kept as `<path>.ops-prev` (a hard link, so the live name never disappears) and each move is a rename within
 * one filesystem, so readers see the old file or the new one, never a partial one. One round trip for everything.
 */
export const unpackAndCommit = (dir: string, paths: string[]): Sh =>
  script(
    'd=$1; shift; rm -rf "$d/.ops-stage" && mkdir -p "$d/.ops-stage" && tar -xf - -C "$d/.ops-stage" || exit 1; ' +
      'for f; do mkdir -p "$(dirname "$d/$f")" || exit 1; if [ -e "$d/$f" ]; then ln -f "$d/$f" "$d/$f.ops-prev" || exit 1; fi; ' +
      'mv -f "$d/.ops-stage/$f" "$d/$f" || exit 1; done; rm -rf "$d/.ops-stage"',
    dir,
    ...paths
  )

/** Puts back what unpackAndCommit replaced (files that did not exist before are removed). */
export const restoreFiles = (paths: string[]): Sh =>
  script('for f; do if [ -e "$f.ops-prev" ]; then mv -f "$f.ops-prev" "$f"; else rm -f "$f"; fi; done', ...paths)

/** Drops the `.ops-prev` copies once the new files are known good. */
export const forgetPrevious = (paths: string[]): Sh => script('for f; do rm -f "$f.ops-prev"; done', ...paths)

export const removeFiles = (paths: string[]): Sh => cmd('rm', '-f', '--', ...paths)

export const networkExists = (name: string): Sh => quiet(cmd('docker', 'network', 'inspect', name))
export const createNetwork = (name: string): Sh => cmd('docker', 'network', 'create', '--driver', 'bridge', name)
export const ensureNetwork = (name: string): Sh => or(networkExists(name), createNetwork(name))

/** `id<TAB>service<TAB>status` for each container of a compose project (v1 and v2 both set these labels). */
export const projectContainers = (project: string): Sh =>
  cmd(
    'docker',
    'ps',
    '-a',
    '--no-trunc',
    '--filter',
    `label=com.docker.compose.project=${project}`,
    '--format',
    '{{.ID}}\t{{.Label "com.docker.compose.service"}}\t{{.Status}}'
  )

/**
 * One JSON-per-field line for each container. JSON keeps the output the same whether the docker client formats typed
 * structs or raw maps (a missing .State.Health is an error in the latter with a plain template).
 */
export const INSPECT_FORMAT =
  '{{json .Name}}\t{{json .Id}}\t{{json .State}}\t{{json .RestartCount}}\t{{json .NetworkSettings.Networks}}\t{{json .Config.Labels}}\t{{json .Config.Image}}'

export const inspectContainers = (ids: string[]): Sh => noStderr(cmd('docker', 'inspect', '--format', INSPECT_FORMAT, ...ids))

export const containerLogs = (id: string, lines: number): Sh => cmd('docker', 'logs', '--tail', String(lines), '--timestamps', id)

/** Last health-check outputs of a container. */
export const healthLog = (id: string): Sh =>
  cmd('docker', 'inspect', '--format', '{{if .State.Health}}{{range .State.Health.Log}}{{.ExitCode}}: {{.Output}}{{end}}{{end}}', id)

export const execIn = (id: string, ...argv: string[]): Sh => cmd('docker', 'exec', id, ...argv)

/** nginx -t in the stack's running nginx container, found by its compose labels (before its id is known). */
export const stackNginxTest = (project: string, conf: string): Sh =>
  script(
    'n=$(docker ps -q --filter "label=com.docker.compose.project=$1" --filter label=com.docker.compose.service=nginx) && [ -n "$n" ] || ' +
      '{ echo "no running nginx container"; exit 1; }; exec docker exec "$n" nginx -t -c "$2"',
    project,
    conf
  )

/**
 * Shell functions over the nginx container ($1): `top` prints `PID ARGS` of its processes (header first, as docker
 * top does): the children of its PID 1 from the host's ps, cheap enough to poll, else (ps without --ppid, or /proc
 * hidden) `docker top`; `act TEXT` lists the serving workers' pids, `draining TEXT` counts the shutting-down ones.
 */
const NGINX_PS =
  'pid=$(docker inspect --format "{{.State.Pid}}" "$1") || exit 5; ' +
  'top() { out=$(ps --ppid "$pid" -o pid=,args= 2>/dev/null); [ -n "$out" ] || out=$(docker top "$1" -eo pid,args | tail -n +2) || return 1; printf "PID COMMAND\\n%s\\n" "$out"; }; ' +
  'act() { printf "%s\\n" "$1" | awk \'/nginx: worker process/ && !/shutting down/ { printf " %s", $1 }\'; }; ' +
  'draining() { printf "%s\\n" "$1" | grep -c "nginx: worker process is shutting down"; }; '

/**
 * SIGHUP to nginx's master (it re-reads the config; old workers finish their requests), then waits, polling every
 * 0.05 s for up to timeoutS, until a new worker runs and none that served before still serves; prints those
 * processes. Exit 3: the signal failed; 4: old workers still serve at the timeout (nginx refused the config); 5: the
 * processes could not be listed. One round trip for the whole reload.
 */
export const reloadNginxAndWait = (id: string, timeoutS: number): Sh =>
  script(
    NGINX_PS +
      'ps=$(top "$1") || exit 5; before="$(act "$ps") "; ' +
      'docker kill --signal HUP "$1" >/dev/null || exit 3; end=$(( $(date +%s) + $2 )); ' +
      'while :; do sleep 0.05; ps=$(top "$1") || exit 5; now=$(act "$ps"); new=${now:+yes}; ' +
      'for p in $now; do case "$before" in *" $p "*) new= ;; esac; done; ' +
      '[ -z "$new" ] || { printf "%s\\n" "$ps"; exit 0; }; [ "$(date +%s)" -lt "$end" ] || exit 4; done',
    id,
    String(timeoutS)
  )

/**
 * Waits, polling every 0.1 s for up to timeoutS, until none of the containers has an established connection from
 * nginx ($1) on its port (read from /proc/<pid>/net/tcp of the container: requests the old nginx workers still have
 * in flight there), twice in a row. Unlike waiting for the old workers to exit, a websocket or a slow request to
 * another service does not hold it up. Exit 4 at the timeout, printing how many are left; 6: /proc not readable
 * (hidepid), so the caller falls back to waiting for the workers.
 */
export const waitConnectionsDrained = (nginxId: string, port: number, containers: string[], timeoutS: number): Sh =>
  script(
    'n=$1 port=$2 t=$3; shift 3; ' +
      'ips=$(docker inspect --format "{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}" "$n") || exit 5; ' +
      // /proc/net/tcp shows an IPv4 address as 8 hex digits, least significant byte first, and the port as 4.
      'hex=$(for ip in $ips; do printf "%s\\n" "$ip" | awk -F. \'{ printf "%02X%02X%02X%02X ", $4, $3, $2, $1 }\'; done); ' +
      'ph=$(printf "%04X" "$port"); pids=$(docker inspect --format "{{.State.Pid}}" "$@" 2>/dev/null); ' +
      'end=$(( $(date +%s) + t )); zero=0; while :; do c=0; ' +
      'for p in $pids; do [ "$p" -gt 0 ] || continue; [ -r "/proc/$p/net/tcp" ] || exit 6; ' +
      'c=$(( c + $(awk -v lp=":$ph" -v ips=" $hex" \'$4 == "01" && substr($2, 9) == lp && index(ips, " " substr($3, 1, 8) " ") { k++ } END { print k + 0 }\' "/proc/$p/net/tcp") )); done; ' +
      'if [ "$c" -eq 0 ]; then zero=$((zero + 1)); [ "$zero" -lt 2 ] || exit 0; else zero=0; fi; ' +
      '[ "$(date +%s)" -lt "$end" ] || { echo "$c"; exit 4; }; sleep 0.1; done',
    nginxId,
    String(port),
    String(timeoutS),
    ...containers
  )

/**
 * Waits, polling every 0.1 s for up to timeoutS, until no nginx worker of an older configuration is left (they exit
 * once their requests are done). Exit 4 at the timeout, printing how many still work; 5: processes not listable.
 */
export const waitNginxDrained = (id: string, timeoutS: number): Sh =>
  script(
    NGINX_PS +
      'end=$(( $(date +%s) + $2 )); while :; do ps=$(top "$1") || exit 5; n=$(draining "$ps"); [ "$n" -gt 0 ] || exit 0; ' +
      '[ "$(date +%s)" -lt "$end" ] || { echo "$n"; exit 4; }; sleep 0.1; done',
    id,
    String(timeoutS)
  )

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
