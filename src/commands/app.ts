import { cmd, noStderr, privately, script, type Sh } from '../shell'
import { INSPECT_FORMAT } from './host'

// Commands for an app container and its images. Pure: each returns a command; nothing here runs anything.

/** Label that marks containers ops-action manages, valued with the service name. */
export const SERVICE_LABEL = 'ops-action.service'
export const IMAGE_LABEL = 'ops-action.image'
/** The service's route, health path, aliases and memory limit as deployed (JSON), for mode status and re-swaps. */
export const SPEC_LABEL = 'ops-action.spec'

export interface DeployedSpec {
  route: string
  healthPath: string
  stripPrefix: boolean
  aliases?: string[]
  memory?: string
}

/** Prints the image id when the image is on the host (exit 1 otherwise). */
export const imageId = (image: string): Sh => noStderr(cmd('docker', 'image', 'inspect', '--format', '{{.Id}}', image))

/**
 * Pulls an image, logging in first when a registry is given: the password comes on stdin, the credentials live in a
 * docker config directory of this run only, which is removed afterwards (concurrent runs never share or keep them).
 */
export const pull = (image: string, registry?: { server: string; username: string }): Sh =>
  registry
    ? privately(
        script(
          'd=$(mktemp -d) || exit 1; trap \'rm -rf "$d"\' EXIT; ' +
            'docker --config "$d" login --username "$2" --password-stdin "$1" >/dev/null || exit 3; ' +
            'docker --config "$d" pull --quiet "$3"; rc=$?; docker --config "$d" logout "$1" >/dev/null 2>&1; exit $rc',
          registry.server,
          registry.username,
          image
        )
      )
    : cmd('docker', 'pull', '--quiet', image)

export interface RunSpec {
  name: string
  service: string
  image: string
  network: string
  aliases: string[]
  port: number
  stopTimeoutS: number
  memory?: string
  /** An env file already on the host, passed before the inline env. */
  envFile?: string
  /** What a later re-swap needs to start the same container again, recorded as a label. */
  spec?: DeployedSpec
  /** A container whose own env (what it was started with, minus its image's defaults) the new one inherits. */
  inheritEnvFrom?: string
}

/**
 * Starts the container. The inline env arrives on stdin into a 0600 temp file that is removed as soon as docker has
 * read it, so no secret is ever in a process's argv on the host. An inherited env goes the same way, host-side.
 */
export const runContainer = (s: RunSpec): Sh => {
  const argv = [
    'docker',
    'run',
    '--detach',
    '--name',
    s.name,
    '--network',
    s.network,
    ...s.aliases.flatMap(a => ['--network-alias', a]),
    '--restart',
    'unless-stopped',
    '--stop-timeout',
    String(s.stopTimeoutS),
    '--label',
    `${SERVICE_LABEL}=${s.service}`,
    '--label',
    `${IMAGE_LABEL}=${s.image}`,
    '--label',
    `ops-action.port=${s.port}`,
    ...(s.spec ? ['--label', `${SPEC_LABEL}=${JSON.stringify(s.spec)}`] : []),
    '--log-opt',
    'max-size=10m',
    '--log-opt',
    'max-file=3',
    ...(s.memory ? ['--memory', s.memory] : []),
    ...(s.envFile ? ['--env-file', s.envFile] : [])
  ]
  const envOf = "--format '{{range .Config.Env}}{{println .}}{{end}}'"
  return privately(
    script(
      'd=$(mktemp -d) || exit 1; trap \'rm -rf "$d"\' EXIT; cat > "$d/env"; : > "$d/inherited"; i=$1; from=$2; shift 2; ' +
        `if [ -n "$from" ]; then docker inspect ${envOf} "$from" > "$d/all" && ` +
        `docker image inspect ${envOf} "$(docker inspect --format '{{.Image}}' "$from")" > "$d/image" && ` +
        '{ grep -vxF -f "$d/image" "$d/all" | grep -v "^$" > "$d/inherited"; true; } || exit 1; fi; ' +
        '"$@" --env-file "$d/inherited" --env-file "$d/env" "$i"',
      s.image,
      s.inheritEnvFrom ?? '',
      ...argv
    )
  )
}

/** inspectContainers() lines of every container (running or not) matching a `docker ps --filter label=…` value. */
const inspectLabelled = (label: string): Sh =>
  script('ids=$(docker ps -aq --filter "label=$1"); [ -z "$ids" ] && exit 0; exec docker inspect --format "$2" $ids', label, INSPECT_FORMAT)

/** Every app container ops-action started, any service. */
export const allAppContainers = (): Sh => inspectLabelled(SERVICE_LABEL)

/** Every container of the compose project (the stack). */
export const projectInspect = (project: string): Sh => inspectLabelled(`com.docker.compose.project=${project}`)

/** Every container of the service. */
export const serviceContainers = (service: string): Sh => inspectLabelled(`${SERVICE_LABEL}=${service}`)

/**
 * `probe URL`: one HTTP GET with wget (busybox or GNU, which both print the status line with -S), timeout $T, header
 * $H; prints the status code, or 000 when nothing answered.
 */
const PROBE =
  'probe() { out=$(wget -S -q -O /dev/null -T "$T" -t 1 --header "${H:-X-Ops-Probe: 1}" "$1" 2>&1); rc=$?; ' +
  'code=$(printf "%s\\n" "$out" | sed -n "s/^ *HTTP\\/[0-9.]* \\([0-9][0-9][0-9]\\).*/\\1/p" | tail -n 1); ' +
  '[ -n "$code" ] || { [ $rc -eq 0 ] && code=200 || code=000; }; echo "$code"; }; '

/** An HTTP GET from inside another container (nginx's, on the same network): prints the status code, or 000. */
export const httpStatus = (via: string, url: string, timeoutS = 3, header = ''): Sh =>
  cmd('docker', 'exec', via, 'sh', '-c', `${PROBE}T=$2; H=$3; probe "$1"`, 'sh', url, String(timeoutS), header)

/**
 * GETs a health URL and a route URL (at the same time) from inside another container, round after round, until
 * `need` rounds in a row answer well (health 2xx, route 1xx-4xx) or `max` rounds are done: one round trip for the
 * whole check. Prints `<health code> <route code>` per round, then `ok` if it got there.
 */
export const httpRounds = (via: string, healthUrl: string, routeUrl: string, need: number, max: number, timeoutS = 3, header = ''): Sh =>
  cmd(
    'docker',
    'exec',
    via,
    'sh',
    '-c',
    `${PROBE}T=$5; H=$6; ok=0; i=0; ` +
      'while [ $i -lt "$4" ] && [ $ok -lt "$3" ]; do ' +
      'hr=$( { probe "$1" | sed "s/^/h /" & probe "$2" | sed "s/^/r /"; wait; } ); ' +
      'h=$(printf "%s\\n" "$hr" | sed -n "s/^h //p"); r=$(printf "%s\\n" "$hr" | sed -n "s/^r //p"); echo "$h $r"; ' +
      'case "$h:$r" in 2??:[1-4]??) ok=$((ok + 1)) ;; *) ok=0 ;; esac; i=$((i + 1)); done; ' +
      '[ $ok -lt "$3" ] || echo ok',
    'sh',
    healthUrl,
    routeUrl,
    String(need),
    String(max),
    String(timeoutS),
    header
  )

export const stopContainers = (names: string[], timeoutS: number): Sh => cmd('docker', 'stop', '--time', String(timeoutS), ...names)
export const removeContainers = (names: string[]): Sh => cmd('docker', 'rm', '--force', '--volumes', ...names)

/** `repository:tag id created` of the images of one repository, newest first. */
export const repositoryImages = (repository: string): Sh =>
  cmd('docker', 'images', '--format', '{{.Repository}}:{{.Tag}} {{.ID}} {{.CreatedAt}}', repository)

/** Removes images; ones still used by a container are skipped with a message, never forced. */
export const removeImages = (refs: string[]): Sh =>
  script('for i; do docker rmi "$i" >/dev/null 2>&1 || echo "kept $i (in use)"; done; exit 0', ...refs)

/** Appends one line (stdin) to the deploy history; O_APPEND keeps concurrent writers' lines whole. */
export const appendLine = (path: string): Sh => script('cat >> "$1"', path)

/** The last n lines of a file (nothing when it does not exist). */
export const tail = (path: string, n: number): Sh => script('[ -f "$1" ] && tail -n "$2" "$1"; exit 0', path, String(n))
