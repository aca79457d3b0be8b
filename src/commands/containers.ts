import {
  COMPOSE_PROJECT_LABEL,
  DIGEST_LABEL,
  IMAGE_LABEL,
  PORT_LABEL,
  RELEASE_LABEL,
  SERVICE_LABEL,
  SPEC_LABEL,
  type DeployedSpec
} from '../labels'
import { cmd, noStderr, privately, script, type Sh } from '../shell'

// Commands for containers: start, inspect, logs, stop and remove. Pure: each returns a command; nothing here runs anything.

export interface RunSpec {
  name: string
  service: string
  /** As given: recorded as a label. */
  image: string
  /** `repo@sha256:…` the container runs, recorded as a label ('' : it runs `image`). */
  digest: string
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
    ...(s.digest ? ['--label', `${DIGEST_LABEL}=${s.digest}`] : []),
    '--label',
    `${PORT_LABEL}=${s.port}`,
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
      s.digest || s.image,
      s.inheritEnvFrom ?? '',
      ...argv
    )
  )
}

/** A release command's one-off container. */
export interface OneOffSpec {
  name: string
  service: string
  /** What it runs (`repo@sha256:…`, or the image as given). */
  image: string
  network: string
  memory?: string
  envFile?: string
  /** Run as `sh -c <command>` (the image's entrypoint is not used). */
  command: string
  timeoutS: number
}

/**
 * Runs the command once in a new container of the image, with the env on stdin (as runContainer: a 0600 temp file,
 * never an argv), on the network without aliases, and waits for it for up to timeoutS (then kills it). A stopped
 * one-off container an interrupted run left (by its label) goes first; a running one is left alone (a migration
 * still at work) and nothing starts: `@@ops-release running <names>`. Prints the output (stdout and stderr, the last
 * 2000 lines), removes the container, and ends with `@@ops-release <exit code | timeout | error>` (error: docker
 * wait failed); exit 125 without that line: docker could not create or start it.
 */
export const runOneOff = (s: OneOffSpec): Sh => {
  const label = `${RELEASE_LABEL}=${s.service}`
  const argv = [
    '--name',
    s.name,
    '--network',
    s.network,
    '--label',
    label,
    '--log-opt',
    'max-size=10m',
    ...(s.memory ? ['--memory', s.memory] : []),
    ...(s.envFile ? ['--env-file', s.envFile] : [])
  ]
  return privately(
    script(
      'd=$(mktemp -d) || exit 1; trap \'rm -rf "$d"\' EXIT; cat > "$d/env"; n=$1 t=$2 c=$3 i=$4 l=$5; shift 5; ' +
        'r=$(docker ps -q --filter "label=$l"); [ -z "$r" ] || { echo "@@ops-release running $(docker inspect --format "{{.Name}}" $r | tr -d / | tr "\\n" " ")"; exit 0; }; ' +
        'old=$(docker ps -aq --filter "label=$l"); [ -z "$old" ] || docker rm -f $old >/dev/null 2>&1; ' +
        'docker create "$@" --env-file "$d/env" --entrypoint sh "$i" -c "$c" >/dev/null || exit 125; rm -f "$d/env"; ' +
        'docker start "$n" >/dev/null || { docker rm -f "$n" >/dev/null 2>&1; exit 125; }; ' +
        'rc=$(timeout "$t" docker wait "$n"); case $? in 0) ;; 124) docker kill "$n" >/dev/null 2>&1; rc=timeout ;; *) rc=error ;; esac; ' +
        'docker logs "$n" 2>&1 | tail -n 2000; docker rm -f "$n" >/dev/null 2>&1; echo "@@ops-release $rc"',
      s.name,
      String(s.timeoutS),
      s.command,
      s.image,
      label,
      ...argv
    )
  )
}

/**
 * One JSON-per-field line for each container. JSON keeps the output the same whether the docker client formats typed
 * structs or raw maps (a missing .State.Health is an error in the latter with a plain template).
 */
export const INSPECT_FORMAT =
  '{{json .Name}}\t{{json .Id}}\t{{json .State}}\t{{json .RestartCount}}\t{{json .NetworkSettings.Networks}}\t{{json .Config.Labels}}\t{{json .Config.Image}}'

export const inspectContainers = (ids: string[]): Sh => noStderr(cmd('docker', 'inspect', '--format', INSPECT_FORMAT, ...ids))

/** inspectContainers() lines of every container (running or not) matching a `docker ps --filter label=…` value. */
const inspectLabelled = (label: string): Sh =>
  script('ids=$(docker ps -aq --filter "label=$1"); [ -z "$ids" ] && exit 0; exec docker inspect --format "$2" $ids', label, INSPECT_FORMAT)

/** Every app container ops-action started, any service. */
export const allAppContainers = (): Sh => inspectLabelled(SERVICE_LABEL)

/** Every container of the compose project (the stack). */
export const projectInspect = (project: string): Sh => inspectLabelled(`${COMPOSE_PROJECT_LABEL}=${project}`)

/** Every container of the service. */
export const serviceContainers = (service: string): Sh => inspectLabelled(`${SERVICE_LABEL}=${service}`)

export const containerLogs = (id: string, lines: number): Sh => cmd('docker', 'logs', '--tail', String(lines), '--timestamps', id)

/** Last health-check outputs of a container. */
export const healthLog = (id: string): Sh =>
  cmd('docker', 'inspect', '--format', '{{if .State.Health}}{{range .State.Health.Log}}{{.ExitCode}}: {{.Output}}{{end}}{{end}}', id)

export const execIn = (id: string, ...argv: string[]): Sh => cmd('docker', 'exec', id, ...argv)

/**
 * Each container gets SIGTERM and up to timeoutS to exit. One already gone is no error: a retirement in the
 * background (retireContainers) and the next run may both reach for the same leftover.
 */
export const stopContainers = (names: string[], timeoutS: number): Sh =>
  script(
    't=$1; shift; rc=0; for c; do e=$(docker stop --time "$t" "$c" 2>&1 >/dev/null) || case "$e" in *"No such container"*) ;; *) echo "$e" >&2; rc=1 ;; esac; done; exit $rc',
    String(timeoutS),
    ...names
  )

/**
 * Removes the containers (with their anonymous volumes); one already gone, or whose removal is already in progress (a
 * retirement in the background got there first), is no error (see stopContainers).
 */
export const removeContainers = (names: string[]): Sh =>
  script(
    'rc=0; for c; do e=$(docker rm --force --volumes "$c" 2>&1 >/dev/null) || case "$e" in *"No such container"*|*"is already in progress"*) ;; *) echo "$e" >&2; rc=1 ;; esac; done; exit $rc',
    ...names
  )

/**
 * What docker recorded for the project's containers since `since` (host seconds, as `date +%s.%N` prints them):
 * `<unix ns> <service> <action> <container id>` lines, oldest first (kill, die, start, health_status: healthy, …).
 */
export const projectEvents = (project: string, since: string): Sh =>
  script(
    'exec docker events --since "$2" --until "$(date +%s.%N)" --filter "label=$1" --filter type=container ' +
      '--format \'{{.TimeNano}} {{index .Actor.Attributes "com.docker.compose.service"}} {{.Action}} {{.Actor.ID}}\'',
    `${COMPOSE_PROJECT_LABEL}=${project}`,
    since
  )

/** The host's clock in seconds with nanoseconds (for projectEvents' since). */
export const hostNow = (): Sh => cmd('date', '+%s.%N')
