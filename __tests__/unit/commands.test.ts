import { execFile, execFileSync, spawn, spawnSync } from 'node:child_process'
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import {
  composeAddContainer,
  composeConfig,
  composeNginxTest,
  composeServiceHash,
  composeUp,
  composeUpServices,
  composeV1,
  composeV2,
  createNetwork
} from '../../src/commands/compose'
import { probeEach, stopAndRemove } from '../../src/commands/front'
import { removeContainers, runContainer, runOneOff, stopContainers, type OneOffSpec, type RunSpec } from '../../src/commands/containers'
import { readFileBase64IfExists, restoreFiles, stashFiles } from '../../src/commands/files'
import { healthGateLoop, httpStatus, PROBE, WAVES, type GateSpec } from '../../src/commands/http'
import { DIGESTS_MARK, pull, pullResolved, repositoryImages } from '../../src/commands/images'
import { composeV1Version, composeV2Version } from '../../src/commands/probes'
import { FRONT_CONF, frontTest, NGINX_CONF, NGINX_PID_FILE, nginxTest, RELOAD } from '../../src/commands/nginx'
import { retireContainers, type Retirement } from '../../src/commands/retire'
import { previewSwitchVerify, SWITCH_STAGES, type SwitchSpec } from '../../src/commands/switch'
import { DIGEST_LABEL, IMAGE_LABEL, RELEASE_LABEL, SERVICE_LABEL, SPEC_LABEL } from '../../src/labels'
import { parseWorkers } from '../../src/nginx'
import { parseGate, stageTimes } from '../../src/release'
import { section, seq, splitSections, type Sh } from '../../src/shell'
import { dockerArgv, dockerArgvs, runWithFakeDocker, shArgv, until, useTempDir } from './helpers'

// The command builders of src/commands/, run by a real sh against fake docker (and wget) programs.

const tmp = useTempDir('commands-test')

/** A file's lines (none when it does not exist yet). */
const lines = (path: string): string[] => (existsSync(path) ? readFileSync(path, 'utf8').split('\n').slice(0, -1) : [])

describe('runContainer', () => {
  const spec: RunSpec = {
    name: 'backend-1a2b3c4d',
    service: 'backend',
    image: 'ghcr.io/behindy/back:abc',
    digest: `ghcr.io/behindy/back@sha256:${'d'.repeat(64)}`,
    network: 'internal',
    aliases: ['backend', 'llmserver'],
    port: 8080,
    stopTimeoutS: 30,
    memory: '805306368',
    envFile: '/opt/app/back.env'
  }
  const env: Array<[string, string]> = [
    ['DB_PASS', 's3cr3t pw'],
    ['JWT_SECRET', "it's-$(id)-`id`"],
    ['URL', 'postgres://u:p@db:5432/x?a=1&b=2']
  ]
  const envText = env.map(([k, v]) => `${k}=${v}\n`).join('')

  it('the command names no env value, has the aliases, restart policy and labels', () => {
    const c = runContainer(spec)
    for (const [, v] of env) expect(c.sh).not.toContain(v)
    for (const a of spec.aliases) expect(c.sh).toContain(`--network-alias ${a}`)
    expect(c.sh).toContain('--restart unless-stopped')
    expect(c.sh).toContain(`--label ${SERVICE_LABEL}=backend`)
    expect(c.sh).toContain('--memory 805306368')
    expect(c.sh).toMatch(/^umask 077 && /)
  })

  it('run against a fake docker: env arrives through a private temp file that is gone afterwards', async () => {
    const fake = [
      'out="$FAKE/call"; : > "$out"; f=""; prev=""',
      'for a; do printf "%s\\n" "$a" >> "$out"; [ "$prev" = "--env-file" ] && f="$a"; prev="$a"; done',
      'cp "$f" "$FAKE/env"; printf "%s\\n" "$f" > "$FAKE/envpath"; stat -c %a "$f" > "$FAKE/mode"; echo cid123'
    ].join('\n')
    const r = await runWithFakeDocker(tmp(), runContainer(spec), fake, envText)
    expect(r.stderr).toBe('')
    expect(r.code).toBe(0)
    expect(r.stdout.trim()).toBe('cid123')
    const argv = readFileSync(join(r.dir, 'call'), 'utf8').split('\n').slice(0, -1)
    expect(argv.slice(0, 2)).toEqual(['run', '--detach'])
    // The image, by the digest the tag resolved to, comes last, after the host env file and, last of all, the inline
    // env file (so the inline values win).
    expect(argv[argv.length - 1]).toBe(spec.digest)
    const envFiles = argv.flatMap((a, i) => (a === '--env-file' ? [argv[i + 1]] : []))
    expect(envFiles[0]).toBe('/opt/app/back.env')
    expect(envFiles.length).toBeGreaterThanOrEqual(2)
    expect(argv[argv.length - 3]).toBe('--env-file')
    expect(readFileSync(join(r.dir, 'env'), 'utf8')).toBe(envText)
    expect(readFileSync(join(r.dir, 'mode'), 'utf8').trim()).toBe('600')
    expect(existsSync(readFileSync(join(r.dir, 'envpath'), 'utf8').trim())).toBe(false)
    for (const [, v] of env) expect(argv.join('\n')).not.toContain(v)
  })

  it("inheriting: the old container's env minus its image's defaults, before the inline env; the spec as a label", async () => {
    const deployed = { route: '/api/', healthPath: '/api/ai-stories/health', stripPrefix: false, aliases: [], memory: 805306368 }
    const fake = [
      'case "$1" in',
      // docker inspect --format '{{.Image}}' OLD, or the container's env
      `  inspect) if [ "$3" = '{{.Image}}' ]; then echo sha256:img; else printf 'PATH=/usr/bin\\nDB_PASS=old secret\\nLANG=C\\n\\n'; fi ;;`,
      `  image) printf 'PATH=/usr/bin\\nLANG=C\\n' ;;`,
      '  run) n=0; prev=""; for a; do if [ "$prev" = --env-file ]; then n=$((n+1)); cp "$a" "$FAKE/env$n"; fi',
      '       [ "$prev" = --label ] && printf "%s\\n" "$a" >> "$FAKE/labels"; prev="$a"; done; echo cid ;;',
      'esac'
    ].join('\n')
    const c = runContainer({ ...spec, envFile: undefined, spec: deployed, inheritEnvFrom: 'backend-00000001' })
    const r = await runWithFakeDocker(tmp(), c, fake, 'JWT_SECRET=new\n')
    expect(r.stderr).toBe('')
    expect(r.code).toBe(0)
    expect(readFileSync(join(r.dir, 'env1'), 'utf8')).toBe('DB_PASS=old secret\n')
    expect(readFileSync(join(r.dir, 'env2'), 'utf8')).toBe('JWT_SECRET=new\n')
    expect(existsSync(join(r.dir, 'env3'))).toBe(false)
    const labels = readFileSync(join(r.dir, 'labels'), 'utf8').split('\n')
    expect(labels).toContain(`${IMAGE_LABEL}=${spec.image}`)
    expect(labels).toContain(`${DIGEST_LABEL}=${spec.digest}`)
    expect(labels).toContain(`${SPEC_LABEL}=${JSON.stringify(deployed)}`)
  })

  it('runs the digest and labels the image as given and the digest; without a digest it runs the image by name, no digest label', () => {
    const [[run]] = dockerArgvs([runContainer({ ...spec, envFile: undefined })])
    expect(run.at(-1)).toBe(spec.digest)
    expect(run).toContain(`${IMAGE_LABEL}=ghcr.io/behindy/back:abc`)
    expect(run.filter((a, i) => run[i - 1] === '--label' && a.startsWith(`${DIGEST_LABEL}=`))).toEqual([`${DIGEST_LABEL}=${spec.digest}`])

    const [[byName]] = dockerArgvs([runContainer({ ...spec, digest: '', envFile: undefined })])
    expect(byName.at(-1)).toBe('ghcr.io/behindy/back:abc')
    expect(byName).toContain(`${IMAGE_LABEL}=ghcr.io/behindy/back:abc`)
    expect(byName.some(a => a.startsWith(`${DIGEST_LABEL}=`))).toBe(false)
  })

  it('inheriting from a container that is gone fails without starting anything', async () => {
    const fake = 'case "$1" in inspect) echo "Error: No such object" >&2; exit 1 ;; run) touch "$FAKE/ran" ;; esac'
    const r = await runWithFakeDocker(tmp(), runContainer({ ...spec, inheritEnvFrom: 'gone' }), fake, '')
    expect(r.code).not.toBe(0)
    expect(existsSync(join(r.dir, 'ran'))).toBe(false)
  })
})

describe('runOneOff (the release command)', () => {
  const spec: OneOffSpec = {
    name: 'backend-release-1a2b3c4d',
    service: 'backend',
    image: `ghcr.io/behindy/back@sha256:${'d'.repeat(64)}`,
    network: 'internal',
    memory: '805306368',
    envFile: '/opt/app/back.env',
    command: 'java -jar /app/app.jar --spring.profiles.active=migrate "$X" && echo \'done\'',
    timeoutS: 30
  }
  const envText = "DB_PASS=s3cr3t pw\nJWT_SECRET=it's-$(id)\n"
  /**
   * A docker that records every call (`$FAKE/calls`: one line each; `$FAKE/argv-<verb>`: the argv, a line per
   * argument), keeps what `create` got as its last --env-file (and that file's mode), and notes at `start` whether
   * that file is still there. `wait` prints `rc` (hangs with rc `hang`, fails with rc `fail`); `create` fails with
   * `createFails`; `ps -aq` finds stopped one-off containers with `leftover`, `ps -q` a running one with `running`.
   */
  const fakeDocker = (o: { rc?: string; createFails?: boolean; leftover?: boolean; running?: boolean } = {}) =>
    [
      'printf "%s\\n" "$*" >> "$FAKE/calls"; : > "$FAKE/argv-$1"; for a; do printf "%s\\n" "$a" >> "$FAKE/argv-$1"; done',
      'case "$1" in',
      `  ps) if [ "$2" = -q ]; then ${o.running ? 'echo run1' : ':'}; else ${o.leftover || o.running ? 'echo old1; echo old2' : ':'}; fi ;;`,
      '  inspect) echo /backend-release-0000beef ;;',
      '  create) f=""; prev=""; for a; do [ "$prev" = --env-file ] && f="$a"; prev="$a"; done',
      '    cp "$f" "$FAKE/env"; printf "%s" "$f" > "$FAKE/envpath"; stat -c %a "$f" > "$FAKE/mode"',
      `    ${o.createFails ? 'echo "Error response from daemon: No such image" >&2; exit 1' : 'echo cid'} ;;`,
      '  start) [ -e "$(cat "$FAKE/envpath")" ] && echo yes > "$FAKE/env-at-start" || echo no > "$FAKE/env-at-start"; echo "$2" ;;',
      `  wait) ${o.rc === 'hang' ? 'exec sleep 10' : o.rc === 'fail' ? 'echo "Error response from daemon: connection reset" >&2; exit 1' : `echo ${o.rc ?? '0'}`} ;;`,
      '  logs) echo "Migrating schema to version 3"; echo "Successfully applied 1 migration" >&2 ;;',
      'esac'
    ].join('\n')
  const calls = (dir: string): string[] => lines(join(dir, 'calls'))
  const argvOf = (dir: string, verb: string): string[] => lines(join(dir, `argv-${verb}`))

  it("the env arrives on stdin into a private --env-file, never in docker's argv; removed before the container starts", async () => {
    const r = await runWithFakeDocker(tmp(), runOneOff(spec), fakeDocker(), envText)
    expect(r.stderr).toBe('')
    expect(r.code).toBe(0)
    expect(readFileSync(join(r.dir, 'env'), 'utf8')).toBe(envText)
    expect(readFileSync(join(r.dir, 'mode'), 'utf8').trim()).toBe('600')
    expect(readFileSync(join(r.dir, 'env-at-start'), 'utf8').trim()).toBe('no')
    expect(existsSync(readFileSync(join(r.dir, 'envpath'), 'utf8'))).toBe(false)
    const create = argvOf(r.dir, 'create')
    // The host's env file first, the inline one last (its values win).
    const envFiles = create.flatMap((a, i) => (create[i - 1] === '--env-file' ? [a] : []))
    expect(envFiles).toEqual(['/opt/app/back.env', readFileSync(join(r.dir, 'envpath'), 'utf8')])
    for (const v of ['s3cr3t pw', "it's-$(id)"]) {
      expect(readFileSync(join(r.dir, 'calls'), 'utf8')).not.toContain(v)
      expect(runOneOff(spec).sh).not.toContain(v)
    }
  })

  it('docker create: name, network (no alias), release label, memory, then --entrypoint sh <image> -c <command>, the command one argument', async () => {
    const r = await runWithFakeDocker(tmp(), runOneOff(spec), fakeDocker(), envText)
    const create = argvOf(r.dir, 'create')
    expect(create.slice(0, 7)).toEqual(['create', '--name', spec.name, '--network', 'internal', '--label', `${RELEASE_LABEL}=backend`])
    expect(create).toContain('805306368')
    expect(create).not.toContain('--network-alias')
    expect(create).not.toContain('--restart')
    expect(create.slice(-5)).toEqual(['--entrypoint', 'sh', spec.image, '-c', spec.command])
    // Found, started, waited for, its logs shown, removed.
    expect(calls(r.dir).map(c => c.split(' ')[0])).toEqual(['ps', 'ps', 'create', 'start', 'wait', 'logs', 'rm'])
    // A running one-off container of the service first, then any (stopped) one.
    expect(calls(r.dir).slice(0, 2)).toEqual([
      `ps -q --filter label=${RELEASE_LABEL}=backend`,
      `ps -aq --filter label=${RELEASE_LABEL}=backend`
    ])
    expect(calls(r.dir).slice(3)).toEqual([`start ${spec.name}`, `wait ${spec.name}`, `logs ${spec.name}`, `rm -f ${spec.name}`])
  })

  it.each(['0', '3'])("docker wait's exit code %s is printed as `@@ops-release <rc>` after the output, the command's exit 0", async rc => {
    const r = await runWithFakeDocker(tmp(), runOneOff(spec), fakeDocker({ rc }), envText)
    expect(r.code).toBe(0)
    expect(r.stdout).toBe(`Migrating schema to version 3\nSuccessfully applied 1 migration\n@@ops-release ${rc}\n`)
  })

  it('a stopped one-off container an interrupted run left (by its release label) is removed first', async () => {
    const r = await runWithFakeDocker(tmp(), runOneOff(spec), fakeDocker({ leftover: true }), envText)
    expect(r.code).toBe(0)
    expect(calls(r.dir).slice(1, 3)).toEqual([`ps -aq --filter label=${RELEASE_LABEL}=backend`, 'rm -f old1 old2'])
    expect(calls(r.dir)[3]).toMatch(/^create /)
    expect(r.stdout.endsWith('@@ops-release 0\n')).toBe(true)
  })

  it('one still running (a migration of an interrupted run at work): left alone, nothing created, `@@ops-release running <names>`', async () => {
    const r = await runWithFakeDocker(tmp(), runOneOff(spec), fakeDocker({ running: true }), envText)
    expect(r.code).toBe(0)
    expect(r.stdout).toBe('@@ops-release running backend-release-0000beef \n')
    expect(calls(r.dir)).toEqual([`ps -q --filter label=${RELEASE_LABEL}=backend`, 'inspect --format {{.Name}} run1'])
  })

  it('docker wait fails (not the timeout): `@@ops-release error`, the container still removed', async () => {
    const r = await runWithFakeDocker(tmp(), runOneOff(spec), fakeDocker({ rc: 'fail' }), envText)
    expect(r.code).toBe(0)
    expect(r.stdout.endsWith('@@ops-release error\n')).toBe(true)
    expect(calls(r.dir)).not.toContain(`kill ${spec.name}`)
    expect(calls(r.dir).at(-1)).toBe(`rm -f ${spec.name}`)
  })

  it('past the timeout: docker kill, its output, removed, `@@ops-release timeout`', async () => {
    const r = await runWithFakeDocker(tmp(), runOneOff({ ...spec, timeoutS: 1 }), fakeDocker({ rc: 'hang' }), envText)
    expect(r.code).toBe(0)
    expect(r.stdout.split('\n').filter(Boolean).at(-1)).toBe('@@ops-release timeout')
    expect(calls(r.dir).slice(-4)).toEqual([`wait ${spec.name}`, `kill ${spec.name}`, `logs ${spec.name}`, `rm -f ${spec.name}`])
  })

  it('docker create fails: exit 125 without the marker; nothing started', async () => {
    const r = await runWithFakeDocker(tmp(), runOneOff(spec), fakeDocker({ createFails: true }), envText)
    expect(r.code).toBe(125)
    expect(r.stdout).not.toContain('@@ops-release')
    expect(r.stderr).toContain('No such image')
    expect(calls(r.dir).map(c => c.split(' ')[0])).toEqual(['ps', 'ps', 'create'])
  })
})

describe('pull', () => {
  const registry = { server: 'ghcr.io', username: 'bot' }
  const password = 'ghp_s3cr3t-T0ken'

  it('without a registry: a plain docker pull', () => {
    expect(dockerArgv(pull('ghcr.io/behindy/back:abc'))).toEqual(['pull', '--quiet', 'ghcr.io/behindy/back:abc'])
  })

  it('with a registry: --password-stdin and a per-run --config dir; the password is never in the command', () => {
    const c = pull('ghcr.io/behindy/back:abc', registry)
    // pull() is not even given the password, but check the text anyway.
    expect(c.sh).not.toContain(password)
    expect(c.sh).toContain('--password-stdin')
    expect(c.sh).toContain('docker --config "$d" login')
    expect(c.sh).toContain('docker --config "$d" pull')
    expect(c.sh).toContain('mktemp -d')
    expect(c.sh).toMatch(/trap 'rm -rf "\$d"' EXIT|trap '\\''rm -rf "\$d"'\\'' EXIT/)
  })

  it('run against a fake docker: login reads the password from stdin, the config dir is removed', async () => {
    const fake = [
      'printf "%s\\n" "$*" >> "$FAKE/calls"',
      'if [ "$1" = --config ]; then printf "%s\\n" "$2" > "$FAKE/config"; shift 2; fi',
      'case "$1" in login) cat > "$FAKE/stdin";; pull) echo "sha256:abc";; esac'
    ].join('\n')
    const r = await runWithFakeDocker(tmp(), pull('ghcr.io/behindy/back:abc', registry), fake, `${password}\n`)
    expect(r.code).toBe(0)
    expect(readFileSync(join(r.dir, 'stdin'), 'utf8')).toBe(`${password}\n`)
    const calls = readFileSync(join(r.dir, 'calls'), 'utf8')
    expect(calls).not.toContain(password)
    expect(calls).toMatch(/login --username bot --password-stdin ghcr\.io/)
    expect(calls).toMatch(/pull --quiet ghcr\.io\/behindy\/back:abc/)
    // No logout: the config dir goes, and the credentials with it.
    expect(calls).not.toMatch(/logout/)
    const config = readFileSync(join(r.dir, 'config'), 'utf8').trim()
    expect(config).not.toBe('')
    expect(existsSync(config)).toBe(false)
  })

  it('a failed login exits 3 without pulling', async () => {
    const fake = ['printf "%s\\n" "$*" >> "$FAKE/calls"', '[ "$3" = login ] && { cat >/dev/null; exit 1; }', 'exit 0'].join('\n')
    const r = await runWithFakeDocker(tmp(), pull('ghcr.io/behindy/back:abc', registry), fake, `${password}\n`)
    expect(r.code).toBe(3)
    expect(readFileSync(join(r.dir, 'calls'), 'utf8')).not.toMatch(/ pull /)
  })

  const image = 'ghcr.io/behindy/back:abc'
  const digests = [`ghcr.io/behindy/back@sha256:${'1'.repeat(64)}`, `mirror.example.com/behindy/back@sha256:${'1'.repeat(64)}`]
  /** A docker that pulls (printing the reference, as --quiet does), then prints the RepoDigests of what it pulled. */
  const resolvingDocker = (pullRc = 0) =>
    [
      'printf "%s\\n" "$*" >> "$FAKE/calls"',
      'if [ "$1" = --config ]; then shift 2; fi',
      'case "$1" in',
      '  login) cat > /dev/null ;;',
      `  pull) [ ${pullRc} = 0 ] || { echo "manifest unknown" >&2; exit ${pullRc}; }; echo "$3" ;;`,
      `  image) [ "$2" = inspect ] && printf '${digests.join('\\n')}\\n' ;;`,
      'esac'
    ].join('\n')

  it.each([
    ['without a registry', undefined],
    ['with a registry', registry]
  ])('pullResolved %s: the pull, the mark, then the RepoDigests of the image, in one command', async (_, reg) => {
    const c = pullResolved(image, reg)
    expect(c.sh).not.toContain(password)
    const r = await runWithFakeDocker(tmp(), c, resolvingDocker(), reg ? `${password}\n` : '')
    expect(r.stderr).toBe('')
    expect(r.code).toBe(0)
    expect(r.stdout).toBe(`${image}\n${DIGESTS_MARK}\n${digests.join('\n')}\n`)
    const calls = readFileSync(join(r.dir, 'calls'), 'utf8').split('\n').filter(Boolean)
    expect(calls.at(-1)).toBe(`image inspect --format {{range .RepoDigests}}{{println .}}{{end}} ${image}`)
    expect(calls.filter(l => / ?pull --quiet /.test(l))).toHaveLength(1)
  })

  it('pullResolved: a failed pull (or login) exits with its own code, without the mark or a look-up', async () => {
    const failed = await runWithFakeDocker(tmp(), pullResolved(image), resolvingDocker(1), '')
    expect(failed.code).toBe(1)
    expect(failed.stdout).not.toContain(DIGESTS_MARK)
    expect(failed.stderr).toContain('manifest unknown')
    expect(readFileSync(join(failed.dir, 'calls'), 'utf8')).not.toMatch(/^image inspect/m)

    const login = ['[ "$3" = login ] && { cat >/dev/null; exit 1; }', 'printf "%s\\n" "$*" >> "$FAKE/calls"'].join('\n')
    const refused = await runWithFakeDocker(tmp(), pullResolved(image, registry), login, `${password}\n`)
    expect(refused.code).toBe(3)
    expect(refused.stdout).not.toContain(DIGESTS_MARK)
  })

  it("repositoryImages: tag, digest and image ID of one repository's images", () => {
    expect(dockerArgv(repositoryImages('127.0.0.1:5000/behindy/app'))).toEqual([
      'images',
      '--digests',
      '--format',
      '{{.Repository}}:{{.Tag}} {{.Digest}} {{.ID}}',
      '127.0.0.1:5000/behindy/app'
    ])
  })
})

const hasWget = (() => {
  try {
    execFileSync('sh', ['-c', 'command -v wget'], { stdio: 'ignore' })
    return true
  } catch {
    return false
  }
})()

describe('httpStatus / WAVES / previewSwitchVerify', () => {
  let server: Server
  let port: number
  let closedPort: number
  /** Every path the server was asked for, in order. */
  const seen: string[] = []
  /** /slow: requests being answered now, and the most at once. */
  let inFlight = 0
  let mostInFlight = 0
  /** /flaky/N/KEY: answered 503 N times (per KEY), then 200. */
  const flaky = new Map<string, number>()

  beforeAll(async () => {
    server = createServer((req, res) => {
      const url = req.url ?? ''
      seen.push(url)
      const flake = /^\/flaky\/(\d+)\/(.+)$/.exec(url)
      if (flake) {
        const n = flaky.get(flake[2]) ?? 0
        flaky.set(flake[2], n + 1)
        res.statusCode = n < Number(flake[1]) ? 503 : 200
        res.end('body')
        return
      }
      if (url === '/slow') {
        inFlight++
        mostInFlight = Math.max(mostInFlight, inFlight)
        setTimeout(() => {
          inFlight--
          res.end('body')
        }, 400)
        return
      }
      const code =
        url === '/missing'
          ? 404
          : url === '/down'
            ? 503
            : url === '/moved'
              ? 301
              : url === '/header'
                ? req.headers['x-ops-upstream'] === 'frontend-1a2b3c4d:3000'
                  ? 204
                  : 400
                : 200
      if (code === 301) res.setHeader('Location', '/health')
      res.statusCode = code
      res.end('body')
    })
    await new Promise<void>(r => server.listen(0, '127.0.0.1', r))
    port = (server.address() as AddressInfo).port
    const probe = createServer()
    await new Promise<void>(r => probe.listen(0, '127.0.0.1', r))
    closedPort = (probe.address() as AddressInfo).port
    await new Promise(r => probe.close(r))
  })
  afterAll(async () => {
    await new Promise(r => server.close(r))
  })

  it('is docker exec VIA sh -c SCRIPT sh URL TIMEOUT HEADER', () => {
    const argv = dockerArgv(httpStatus('nginx-id', 'http://172.18.0.5:8080/api/x?a=1&b=2', 2))
    expect(argv.slice(0, 4)).toEqual(['exec', 'nginx-id', 'sh', '-c'])
    expect(argv.slice(5)).toEqual(['sh', 'http://172.18.0.5:8080/api/x?a=1&b=2', '2', ''])
  })

  /** Runs the inner script of a `docker exec VIA sh -c SCRIPT sh ARGS…` locally, as the nginx container would. */
  function inNginx(argv: string[]): Promise<string> {
    return new Promise((resolve, reject) =>
      execFile('sh', ['-c', argv[4], ...argv.slice(5)], { timeout: 15_000 }, (err, stdout) => (err ? reject(err) : resolve(stdout)))
    )
  }
  const status = (url: string, timeoutS = 2, header = '') => inNginx(dockerArgv(httpStatus('nginx', url, timeoutS, header)))

  it.skipIf(!hasWget)('probeEach: every URL at once, `<code> <url>` per URL in the order given (000: nothing answered)', async () => {
    const urls = [
      `http://127.0.0.1:${port}/slow`,
      `http://127.0.0.1:${port}/missing`,
      `http://127.0.0.1:${closedPort}/health`,
      `http://127.0.0.1:${port}/down`
    ]
    const argv = dockerArgv(probeEach('nginx-2', urls))
    expect(argv.slice(0, 4)).toEqual(['exec', 'nginx-2', 'sh', '-c'])
    // The header first (none here), then the URLs: all arguments, never script.
    expect(argv.slice(5)).toEqual(['sh', '', ...urls])
    expect(await inNginx(argv)).toBe(`200 ${urls[0]}\n404 ${urls[1]}\n000 ${urls[2]}\n503 ${urls[3]}\n`)
  })

  it.skipIf(!hasWget)(
    'probeEach with a header: sent with every URL (a route in maintenance, through its upstream on the preview port)',
    async () => {
      const urls = [`http://127.0.0.1:${port}/header`, `http://127.0.0.1:${port}/missing`]
      const argv = dockerArgv(probeEach('nginx-2', urls, 'X-Ops-Upstream: frontend-1a2b3c4d:3000'))
      expect(argv.slice(5)).toEqual(['sh', 'X-Ops-Upstream: frontend-1a2b3c4d:3000', ...urls])
      expect(await inNginx(argv)).toBe(`204 ${urls[0]}\n404 ${urls[1]}\n`)
      expect(await inNginx(dockerArgv(probeEach('nginx-2', urls.slice(0, 1))))).toBe(`400 ${urls[0]}\n`)
    }
  )

  it.skipIf(!hasWget)('sends the preview header when given (one argument, spaces and all)', async () => {
    expect(await status(`http://127.0.0.1:${port}/header`, 2, 'X-Ops-Upstream: frontend-1a2b3c4d:3000')).toBe('204\n')
    expect(await status(`http://127.0.0.1:${port}/header`)).toBe('400\n')
  })

  it.skipIf(!hasWget)(
    'prints 200 / 404 / 503, the final status after a redirect, and 000 when nothing answers (wget missing: skipped)',
    async () => {
      expect(await status(`http://127.0.0.1:${port}/health`)).toBe('200\n')
      expect(await status(`http://127.0.0.1:${port}/missing`)).toBe('404\n')
      expect(await status(`http://127.0.0.1:${port}/down`)).toBe('503\n')
      expect(await status(`http://127.0.0.1:${port}/moved`)).toBe('200\n')
      expect(await status(`http://127.0.0.1:${closedPort}/health`)).toBe('000\n')
    }
  )

  /** Runs a program here (sh, unshare), bounded in time: its exit code and output. */
  function run(file: string, args: string[], timeoutMs = 15_000): Promise<{ code: number; stdout: string; stderr: string }> {
    return new Promise((resolve, reject) => {
      const p = spawn(file, args, { timeout: timeoutMs, stdio: ['ignore', 'pipe', 'pipe'] })
      let stdout = ''
      let stderr = ''
      p.stdout.on('data', d => (stdout += d))
      p.stderr.on('data', d => (stderr += d))
      p.on('error', reject)
      p.on('close', code => resolve({ code: code ?? -1, stdout, stderr }))
    })
  }

  describe('WAVES', () => {
    // The shell function as the scripts that use it compose it: after PROBE, with PROBE's T and H set.
    const WAVES_SH = `${PROBE}${WAVES}T=2; H=; waves "$1" "$2" "$3" "$4"`
    const waves = (health: string, route: string, need: number, max: number, p = port) =>
      run('sh', ['-c', WAVES_SH, 'sh', `http://127.0.0.1:${p}${health}`, `http://127.0.0.1:${port}${route}`, String(need), String(max)])
    const lines = (out: string) => out.split('\n').slice(0, -1)

    it('is shell functions only: defining them runs nothing', async () => {
      expect(await run('sh', ['-c', `${PROBE}${WAVES}echo defined`])).toEqual({ code: 0, stdout: 'defined\n', stderr: '' })
    })

    it.skipIf(!hasWget)('a good first wave (health 2xx, route 1xx-4xx, NEED pairs of each): its lines, then ok, exit 0', async () => {
      expect(await waves('/health', '/missing', 3, 4)).toEqual({ code: 0, stdout: `${'200 404\n'.repeat(3)}ok\n`, stderr: '' })
      // A redirect is followed: the final status counts.
      expect(await waves('/health', '/moved', 1, 1)).toEqual({ code: 0, stdout: '200 200\nok\n', stderr: '' })
    })

    it.skipIf(!hasWget)('a 5xx route, a non-2xx health path or no answer is never ok: every wave printed, exit 1 after MAX', async () => {
      expect(await waves('/health', '/down', 2, 3)).toEqual({ code: 1, stdout: '200 503\n'.repeat(6), stderr: '' })
      expect(await waves('/missing', '/health', 2, 2)).toEqual({ code: 1, stdout: '404 200\n'.repeat(4), stderr: '' })
      expect(await waves('/health', '/health', 1, 2, closedPort)).toEqual({ code: 1, stdout: '000 200\n'.repeat(2), stderr: '' })
      // No waves at all: not ok either.
      expect(await waves('/health', '/health', 2, 0)).toEqual({ code: 1, stdout: '', stderr: '' })
    })

    it.skipIf(!hasWget)(
      'wave after wave until one answers well throughout: one bad pair spoils its wave; none after the good one',
      async () => {
        // The route's first request answers 503: one of wave 1's two pairs (either one, they run at once).
        const route = await waves('/health', '/flaky/1/route', 2, 5)
        expect(route.code).toBe(0)
        expect(lines(route.stdout).slice(0, 2).sort()).toEqual(['200 200', '200 503'])
        expect(lines(route.stdout).slice(2)).toEqual(['200 200', '200 200', 'ok'])
        expect(flaky.get('route')).toBe(4)
        // The health path's first two requests answer 503: the whole first wave.
        const health = await waves('/flaky/2/health', '/missing', 2, 5)
        expect(health).toEqual({ code: 0, stdout: '503 404\n503 404\n200 404\n200 404\nok\n', stderr: '' })
        expect(flaky.get('health')).toBe(4)
      }
    )

    it.skipIf(!hasWget)('the pairs of a wave, health and route, all go at once', async () => {
      mostInFlight = 0
      const started = Date.now()
      expect(await waves('/slow', '/slow', 3, 1)).toEqual({ code: 0, stdout: `${'200 200\n'.repeat(3)}ok\n`, stderr: '' })
      // Pair after pair, at most 2 requests (a pair's health and route) would be in flight; all at once, 6.
      expect(mostInFlight).toBeGreaterThan(2)
      expect(Date.now() - started).toBeLessThan(6 * 400)
    })
  })

  describe('healthGateLoop', () => {
    const spec: GateSpec = {
      container: 'backend-1a2b3c4d',
      network: 'internal',
      via: 'nginx-0123',
      port: 8080,
      path: '/api/ai-stories/health',
      timeoutS: 5
    }

    it('is sh -c SCRIPT sh CONTAINER NETWORK VIA PORT PATH TIMEOUT PROBE FORMAT: every value an argument, none in the script', () => {
      const odd: GateSpec = {
        container: 'backend-1a2b3c4d',
        network: "net $(id) 'x'",
        via: 'nginx;id',
        port: 8081,
        path: '/h?a=1&b=`id`',
        timeoutS: 7
      }
      const argv = shArgv(healthGateLoop(odd))
      expect(argv[0]).toBe('-c')
      expect(argv[2]).toBe('sh')
      expect(argv.slice(3, 9)).toEqual(['backend-1a2b3c4d', "net $(id) 'x'", 'nginx;id', '8081', '/h?a=1&b=`id`', '7'])
      for (const v of [odd.container, odd.network, odd.via, odd.path, '8081']) expect(argv[1]).not.toContain(v)
      // The probes run inside VIA (a burst of them, until a 2xx) and the inspect format, fixed texts of their own.
      expect(argv[9].startsWith(PROBE)).toBe(true)
      // One wget per probe until it succeeds; the status read once, at the end of the burst.
      expect(argv[9]).toMatch(/T=2; H=; .*fetch "\$1"; \[ \$rc -eq 0 \] && break;.*sleep 0\.05; done; status; echo "\$code"$/)
      expect(argv[10]).toMatch(/^\{\{\.State\.Status\}\} \{\{\.RestartCount\}\} /)
      expect(argv).toHaveLength(11)
    })

    /**
     * Runs the gate against a fake docker: `inspect` answers with states[n] for its nth call (the last one after
     * that), `exec` with probes[n] (status codes, or `fail`); both calls are recorded.
     */
    function gate(states: string[], probes: string[], over: Partial<GateSpec> = {}) {
      const nth = (counter: string, answers: string[]) =>
        `n=$(cat "$FAKE/${counter}" 2>/dev/null || echo 0); n=$((n + 1)); echo $n > "$FAKE/${counter}"; case $n in ` +
        answers.map((a, i) => `${i + 1}) ${a} ;;`).join(' ') +
        ` *) ${answers.at(-1) ?? 'exit 1'} ;; esac`
      const answer = (a: string) => (a === 'gone' ? 'echo "Error: No such object: $4" >&2; exit 1' : `echo '${a}'`)
      const fake = [
        'case "$1" in',
        `  inspect) printf '%s\\n' "$*" >> "$FAKE/inspect"; ${nth('i', states.map(answer))} ;;`,
        `  exec) printf '%s|%s|%s|%s\\n' "$2" "$3" "$4" "$7" >> "$FAKE/exec"; ${nth(
          'e',
          probes.map(p => (p === 'fail' ? 'exit 1' : `echo ${p}`))
        )} ;;`,
        'esac'
      ].join('\n')
      return runWithFakeDocker(tmp(), healthGateLoop({ ...spec, ...over }), fake)
    }
    const IP = '172.18.0.9'
    const url = `http://${IP}:8080/api/ai-stories/health`

    it('polls until the health path answers 2xx (no answer, then 503, then 200): one line, healthy with the address', async () => {
      const r = await gate([`running 0 starting bridge=172.17.0.2 internal=${IP}`], ['fail', '503', '200'])
      expect(r).toMatchObject({ code: 0, stdout: `healthy ${IP} 200\n`, stderr: '' })
      expect(parseGate(r.stdout)).toEqual({ kind: 'healthy', ip: IP, code: '200' })
      // Each probe inside nginx's container, at the address on the gate's network (not the bridge one).
      expect(lines(join(r.dir, 'exec'))).toEqual(Array(3).fill(`nginx-0123|sh|-c|${url}`))
      expect(lines(join(r.dir, 'inspect'))).toHaveLength(3)
      expect(lines(join(r.dir, 'inspect'))[0]).toMatch(/^inspect --format \{\{\.State\.Status\}\} .* backend-1a2b3c4d$/)
    })

    it('no probe before the container runs with an address on the network', async () => {
      const r = await gate(['created 0 none', 'running 0 none bridge=172.17.0.2', `running 0 none internal=${IP}`], ['200'])
      expect(r.stdout).toBe(`healthy ${IP} 200\n`)
      expect(lines(join(r.dir, 'inspect'))).toHaveLength(3)
      expect(lines(join(r.dir, 'exec'))).toHaveLength(1)
    })

    it.each([
      ['it exited', ['exited 0 none internal='], ['200'], 'exited exited 0 none', 0],
      ['it died after a probe', [`running 0 starting internal=${IP}`, 'dead 0 none internal='], ['503'], 'exited dead 0 503', 1],
      [
        'docker restarted it',
        [`running 0 starting internal=${IP}`, `running 1 starting internal=${IP}`],
        ['fail'],
        'exited running 1 000',
        1
      ],
      ['its HEALTHCHECK says unhealthy', [`running 0 unhealthy internal=${IP}`], ['200'], 'unhealthy none', 0],
      ['it disappeared', [`running 0 starting internal=${IP}`, 'gone'], ['503'], 'gone 503', 1]
    ])('%s: stops at once with that line', async (_what, states, probes, line, probed) => {
      const r = await gate(states, probes)
      expect(r).toMatchObject({ code: 0, stdout: `${line}\n` })
      expect(lines(join(r.dir, 'exec'))).toHaveLength(probed)
    })

    it('at the timeout: the last code and the address', async () => {
      const r = await gate([`running 0 starting internal=${IP}`], ['503'], { timeoutS: 1 })
      expect(r).toMatchObject({ code: 0, stdout: `timeout 503 ${IP}\n` })
      expect(parseGate(r.stdout)).toEqual({ kind: 'timeout', code: '503', ip: IP })
      // Never on the network: no probe, no address.
      const never = await gate(['running 0 none bridge=172.17.0.2'], ['200'], { timeoutS: 1 })
      expect(never.stdout).toBe('timeout none \n')
      expect(parseGate(never.stdout)).toEqual({ kind: 'timeout', code: 'none', ip: '' })
    })

    it.skipIf(!hasWget)(
      'its probe (run here as nginx would run it): the status code of a real server, 000 when nothing answers',
      async () => {
        // `docker exec VIA sh -c PROBE sh URL` runs PROBE locally; the container is at 127.0.0.1.
        const fake = 'case "$1" in inspect) echo "running 0 starting internal=127.0.0.1" ;; exec) shift 2; exec "$@" ;; esac'
        const run = (path: string, p: number) => runWithFakeDocker(tmp(), healthGateLoop({ ...spec, port: p, path, timeoutS: 1 }), fake)
        expect((await run('/health', port)).stdout).toBe('healthy 127.0.0.1 200\n')
        expect((await run('/down', port)).stdout).toBe('timeout 503 127.0.0.1\n')
        expect((await run('/health', closedPort)).stdout).toBe('timeout 000 127.0.0.1\n')
      }
    )
  })

  describe('previewSwitchVerify', () => {
    const odd: SwitchSpec = {
      nginxId: 'nginx;id',
      preview: {
        health: 'http://127.0.0.1:8504/h?a=1&b=`id`',
        route: 'http://127.0.0.1:8504/r $(id)/',
        header: "X-Ops-Upstream: it's-$HOME:8080"
      },
      live: { health: 'http://127.0.0.1:80/live?x=$PATH', route: 'http://127.0.0.1:80/r;id/', header: 'X-Odd: "q"' },
      need: 3,
      maxWaves: 5,
      probeTimeoutS: 4,
      reloadTimeoutS: 10
    }

    it('is docker exec NGINX sh -c SCRIPT sh PIDFILE NEED MAX T HEADER HEALTH ROUTE RELOAD-TIMEOUT HEADER HEALTH ROUTE: every value an argument, none in the script', () => {
      const argv = dockerArgv(previewSwitchVerify(odd))
      expect(argv.slice(0, 4)).toEqual(['exec', 'nginx;id', 'sh', '-c'])
      expect(argv.slice(5)).toEqual([
        'sh',
        NGINX_PID_FILE,
        '3',
        '5',
        '4',
        "X-Ops-Upstream: it's-$HOME:8080",
        'http://127.0.0.1:8504/h?a=1&b=`id`',
        'http://127.0.0.1:8504/r $(id)/',
        '10',
        'X-Odd: "q"',
        'http://127.0.0.1:80/live?x=$PATH',
        'http://127.0.0.1:80/r;id/'
      ])
      const text = argv[4]
      for (const v of [
        odd.nginxId,
        odd.preview.health,
        odd.preview.route,
        odd.preview.header,
        odd.live.health,
        odd.live.route,
        odd.live.header
      ])
        expect(text).not.toContain(v)
      expect(text).not.toContain('8504')
      // The probes, the waves and the reload, fixed texts; then the stages in order.
      expect(text.startsWith(`${PROBE}${WAVES}${RELOAD}`)).toBe(true)
      const at = SWITCH_STAGES.map(s => text.indexOf(`echo '@@ops ${s}'`))
      expect(at.every(i => i > 0)).toBe(true)
      expect([...at].sort((x, y) => x - y)).toEqual(at)
      expect(text.indexOf('at end')).toBeGreaterThan(at[2])
    })

    const base = () => `http://127.0.0.1:${port}`
    /** Preview through the header (the route answers 204 only with it), live on paths of its own. */
    const spec = (over: { previewRoute?: string; reloadTimeoutS?: number } = {}): SwitchSpec => ({
      nginxId: 'nginx',
      preview: {
        health: `${base()}/health`,
        route: `${base()}${over.previewRoute ?? '/header'}`,
        header: 'X-Ops-Upstream: frontend-1a2b3c4d:3000'
      },
      live: { health: `${base()}/live/health`, route: `${base()}/live/route`, header: '' },
      need: 2,
      maxWaves: 2,
      probeTimeoutS: 2,
      reloadTimeoutS: over.reloadTimeoutS ?? 1
    })
    /** The inner script's `sh -c SCRIPT sh ARGS…`, its pid file at `pidFile` instead of nginx's. */
    function inner(s: SwitchSpec, pidFile: string): string[] {
      const argv = dockerArgv(previewSwitchVerify(s))
      expect(argv[6]).toBe(NGINX_PID_FILE)
      return ['-c', argv[4], argv[5], pidFile, ...argv.slice(7)]
    }
    /** The `@@ops…` lines outside the sections: the marks, with their times replaced by T. */
    const marks = (out: string) =>
      out
        .split('\n')
        .filter(l => l.startsWith('@@ops-at '))
        .map(l => l.replace(/ [0-9]+(\.[0-9]+)?$/, ' T'))
    const livePaths = (from: number) => seen.slice(from).filter(u => u.startsWith('/live/'))

    it.skipIf(!hasWget)(
      "a failing preview stops there: no switch (nginx's master gets no signal), no verify; the marks around it",
      { timeout: 20_000 },
      async () => {
        const master = spawn('sleep', ['30'], { stdio: 'ignore' })
        try {
          const pidFile = join(mkdtempSync(join(tmp(), 'pid-')), 'nginx.pid')
          writeFileSync(pidFile, `${master.pid}\n`)
          const from = seen.length
          const r = await run('sh', inner(spec({ previewRoute: '/down' }), pidFile))
          expect(r.code).toBe(1)
          const s = splitSections(r.stdout)
          expect([...s.keys()]).toEqual(['preview'])
          expect(s.get('preview')).toEqual({ rc: 1, out: Array(4).fill('200 503').join('\n') })
          expect(marks(r.stdout)).toEqual(['@@ops-at preview T', '@@ops-at end T'])
          expect(r.stdout).not.toContain('@@ops switch')
          expect(livePaths(from)).toEqual([])
          const times = stageTimes(r.stdout)
          expect(times.preview).toBeGreaterThanOrEqual(0)
          expect(times).toMatchObject({ switch: 0, verify: 0 })
          // A HUP would have ended it (sleep does not catch it).
          await new Promise(res => setTimeout(res, 100))
          expect(master.exitCode).toBe(null)
          expect(master.signalCode).toBe(null)
        } finally {
          master.kill()
        }
      }
    )

    it.skipIf(!hasWget)(
      'a switch whose signal fails (no pid file): exit 3 in its section, and verify never runs',
      { timeout: 20_000 },
      async () => {
        const from = seen.length
        const r = await run('sh', inner(spec(), join(tmp(), 'no-such-dir', 'nginx.pid')))
        expect(r.code).toBe(1)
        const s = splitSections(r.stdout)
        expect([...s.keys()]).toEqual(['preview', 'switch'])
        // The preview header went with the preview's requests (the route answers 204 only with it).
        expect(s.get('preview')).toEqual({ rc: 0, out: '200 204\n200 204\nok' })
        expect(s.get('switch')?.rc).toBe(3)
        expect(marks(r.stdout)).toEqual(['@@ops-at preview T', '@@ops-at switch T', '@@ops-at end T'])
        expect(livePaths(from)).toEqual([])
      }
    )

    /**
     * Inside a pid namespace of its own (its own /proc, so no other nginx of this host shows), a fake nginx: a
     * master whose pid is in the pid file and one worker, both titled as nginx titles them. On SIGHUP (counted in
     * PIDFILE.hup) the master, in mode `reload`, starts a new worker and 100 ms later tells the old one to stop (it
     * is then "shutting down" for a second); in mode `refuse` it keeps its old worker, as nginx does with a config it
     * cannot load.
     */
    const FAKE_NGINX = [
      "const { spawn } = require('node:child_process')",
      "const { appendFileSync, writeFileSync } = require('node:fs')",
      'const [pidFile, mode] = process.argv.slice(2)',
      "process.title = 'nginx: master process'",
      "const down = ['shutting', 'down'].join(' ')",
      "const code = `process.title = 'nginx: worker process'; process.on('SIGQUIT', () => { process.title = 'nginx: worker process is ${down}'; setTimeout(() => process.exit(0), 1000) }); setInterval(() => {}, 1000); process.stdout.write('ready')`",
      "const worker = () => new Promise(resolve => { const w = spawn(process.execPath, ['-e', code, 'x'.repeat(64)], { stdio: ['ignore', 'pipe', 'inherit'] }); w.stdout.once('data', () => resolve(w)) })",
      'let workers = []',
      'worker().then(w => { workers = [w]; writeFileSync(pidFile, `${process.pid}\\n`) })',
      "process.on('SIGHUP', async () => {",
      "  appendFileSync(`${pidFile}.hup`, 'hup\\n')",
      "  if (mode !== 'reload') return",
      '  const old = workers',
      '  workers = [await worker()]',
      "  setTimeout(() => old.forEach(w => w.kill('SIGQUIT')), 100)",
      '})'
    ].join('\n')
    // pid 1 of the namespace: starts the fake nginx, waits for its pid file, runs the script (its end ends them all).
    const INIT =
      'node=$1 fake=$2 pid=$3 mode=$4 s=$5; shift 5; "$node" "$fake" "$pid" "$mode" & ' +
      'i=0; while [ ! -s "$pid" ]; do sleep 0.02; i=$((i + 1)); [ $i -lt 250 ] || { echo "the fake nginx did not start" >&2; exit 99; }; done; ' +
      'sh -c "$s" "$@"'
    const UNSHARE = ['-Urpf', '--kill-child', '--mount-proc']
    const canUnshare =
      spawnSync('unshare', [...UNSHARE, 'sh', '-c', '[ "$$" = 1 ] && [ -r /proc/1/cmdline ]'], { timeout: 5_000 }).status === 0

    function inFakeNginx(mode: 'reload' | 'refuse', s: SwitchSpec) {
      const dir = mkdtempSync(join(tmp(), 'fake-nginx-'))
      writeFileSync(join(dir, 'fake-nginx.cjs'), FAKE_NGINX)
      const pidFile = join(dir, 'nginx.pid')
      const [, script, ...args] = inner(s, pidFile)
      const hups = () => lines(`${pidFile}.hup`).length
      return {
        hups,
        result: run('unshare', [
          ...UNSHARE,
          'sh',
          '-c',
          INIT,
          'sh',
          process.execPath,
          join(dir, 'fake-nginx.cjs'),
          pidFile,
          mode,
          script,
          ...args
        ])
      }
    }

    it.skipIf(!hasWget || !canUnshare)(
      "success (in a fake nginx's pid namespace): preview, the reload (new worker serving, the old one shutting down), verify; exit 0",
      { timeout: 20_000 },
      async () => {
        const from = seen.length
        const f = inFakeNginx('reload', spec({ reloadTimeoutS: 5 }))
        const r = await f.result
        expect(r.stderr).not.toContain('did not start')
        expect(r.code).toBe(0)
        const s = splitSections(r.stdout)
        expect([...s.keys()]).toEqual(['preview', 'switch', 'verify'])
        expect(s.get('preview')).toEqual({ rc: 0, out: '200 204\n200 204\nok' })
        expect(s.get('verify')).toEqual({ rc: 0, out: '200 200\n200 200\nok' })
        const sw = s.get('switch') as { rc: number; out: string }
        expect(sw.rc).toBe(0)
        // The processes as reloadAndWait parses them: only the new worker serves, the old one is shutting down.
        expect(sw.out.split('\n')[0]).toBe('PID COMMAND')
        const workers = parseWorkers(sw.out)
        expect(workers.active).toHaveLength(1)
        expect(workers.draining).toHaveLength(1)
        expect(workers.active[0]).not.toBe(workers.draining[0])
        // Workers only: the master and every other process are left out.
        expect(sw.out.split('\n')).toHaveLength(3)
        expect(sw.out).not.toMatch(/master process/)
        expect(f.hups()).toBe(1)
        expect(marks(r.stdout)).toEqual(['@@ops-at preview T', '@@ops-at switch T', '@@ops-at verify T', '@@ops-at end T'])
        // The switch took at least the 100 ms nginx gives its new workers before the old ones stop.
        const times = stageTimes(r.stdout)
        expect(times.switch).toBeGreaterThanOrEqual(0.09)
        expect(times.preview).toBeGreaterThanOrEqual(0)
        expect(times.verify).toBeGreaterThanOrEqual(0)
        expect(livePaths(from).sort()).toEqual(['/live/health', '/live/health', '/live/route', '/live/route'])
      }
    )

    it.skipIf(!hasWget || !canUnshare)(
      'nginx keeps its old workers (a config it refused): the switch times out with exit 4 and verify never runs',
      { timeout: 20_000 },
      async () => {
        const from = seen.length
        const started = Date.now()
        const f = inFakeNginx('refuse', spec({ reloadTimeoutS: 1 }))
        const r = await f.result
        expect(r.code).toBe(1)
        const s = splitSections(r.stdout)
        expect([...s.keys()]).toEqual(['preview', 'switch'])
        expect(s.get('switch')).toEqual({ rc: 4, out: '' })
        expect(f.hups()).toBe(1)
        expect(marks(r.stdout)).toEqual(['@@ops-at preview T', '@@ops-at switch T', '@@ops-at end T'])
        expect(livePaths(from)).toEqual([])
        expect(Date.now() - started).toBeLessThan(10_000)
      }
    )
  })
})

describe('other builders (argv as docker gets it)', () => {
  it('nginxTest: in the given container, or in the running nginx of the stack found by its compose labels', async () => {
    expect(dockerArgv(nginxTest({ container: 'abc123' }))).toEqual(['exec', 'abc123', 'nginx', '-t', '-c', NGINX_CONF])
    const fake = 'printf "%s\\n" "$*" >> "$FAKE/calls"; [ "$1" = ps ] && [ -e "$FAKE/running" ] && echo n1; exit 0'
    const running = await runWithFakeDocker(tmp(), nginxTest('stack'), `touch "$FAKE/running"; ${fake}`)
    expect(running.code).toBe(0)
    expect(readFileSync(join(running.dir, 'calls'), 'utf8').split('\n')).toEqual([
      'ps -q --filter label=com.docker.compose.project=behindy --filter label=com.docker.compose.service=nginx',
      `exec n1 nginx -t -c ${NGINX_CONF}`,
      ''
    ])
    const none = await runWithFakeDocker(tmp(), nginxTest('stack'), fake)
    expect(none).toMatchObject({ code: 1, stdout: 'no running nginx container\n' })
    expect(readFileSync(join(none.dir, 'calls'), 'utf8')).not.toContain('exec')
  })

  /** compose's arguments before the command: the ops-dir env file, project and compose file. */
  const tail = ['--env-file', '/o/.env', '-p', 'behindy', '-f', '/o/compose/docker-compose.yml']

  it('compose: v2 plugin or v1 binary, with the ops-dir env file, project and compose file', () => {
    expect(dockerArgv(composeUp(composeV2('2.29.1'), '/o'))).toEqual(['compose', ...tail, 'up', '-d', '--remove-orphans'])
    expect(dockerArgv(composeConfig(composeV2('2.29.1'), '/o'))).toEqual(['compose', ...tail, 'config', '-q'])
    expect(dockerArgv(composeNginxTest(composeV2('2.29.1'), '/o'))).toEqual([
      'compose',
      ...tail,
      'run',
      '--rm',
      '--no-deps',
      '-T',
      'nginx',
      'nginx',
      '-t',
      '-c',
      NGINX_CONF
    ])
    expect(composeUp(composeV1('1.29.2'), '/o').sh).toBe(`docker-compose ${tail.join(' ')} up -d --remove-orphans`)
  })

  it('compose for the front and the nginx handover: the stack but nginx, a second nginx beside the first, its hash, the front tested', () => {
    const v2 = composeV2('2.29.1')
    expect(dockerArgv(composeUpServices(v2, '/o', ['db', 'redis', 'front']))).toEqual([
      'compose',
      ...tail,
      'up',
      '-d',
      '--remove-orphans',
      '--no-deps',
      'db',
      'redis',
      'front'
    ])
    // The running nginx is left as it is (--no-recreate), its dependencies too (--no-deps).
    expect(dockerArgv(composeAddContainer(v2, '/o', 'nginx'))).toEqual([
      'compose',
      ...tail,
      'up',
      '-d',
      '--no-deps',
      '--no-recreate',
      '--scale',
      'nginx=2',
      'nginx'
    ])
    expect(dockerArgv(composeServiceHash(v2, '/o', 'nginx'))).toEqual(['compose', ...tail, 'config', '--hash', 'nginx'])
    expect(dockerArgv(composeNginxTest(v2, '/o', 'front'))).toEqual([
      'compose',
      ...tail,
      'run',
      '--rm',
      '--no-deps',
      '-T',
      'front',
      'nginx',
      '-t',
      '-c',
      FRONT_CONF
    ])
    expect(FRONT_CONF).toBe('/etc/nginx/ops/front/nginx.conf')
    expect(dockerArgv(frontTest('front-id'))).toEqual(['exec', 'front-id', 'nginx', '-t', '-c', FRONT_CONF])
    // A new nginx that failed its checks is force-removed (it never served).
    expect(dockerArgvs([removeContainers(['nginx-2'])])).toEqual([[['rm', '--force', '--volumes', 'nginx-2']]])
    expect(composeServiceHash(composeV1('1.29.2'), '/o', 'nginx').sh).toBe(`docker-compose ${tail.join(' ')} config --hash nginx`)
  })

  it('stopAndRemove: docker stop with the timeout, then docker rm; prints the milliseconds the stop took; a failed stop removes nothing', async () => {
    const fake =
      'printf "%s\\n" "$*" >> "$FAKE/calls"; [ "$1" = stop ] && [ -e "$FAKE/stuck" ] && { echo "Error: cannot stop" >&2; exit 1; }; exit 0'
    const ok = await runWithFakeDocker(tmp(), stopAndRemove("nginx 'old'", 40), fake)
    expect(ok.code).toBe(0)
    expect(ok.stdout).toMatch(/^\d+\n$/)
    expect(readFileSync(join(ok.dir, 'calls'), 'utf8')).toBe("stop -t 40 nginx 'old'\nrm nginx 'old'\n")
    const stuck = await runWithFakeDocker(tmp(), stopAndRemove('nginx-1', 40), `touch "$FAKE/stuck"; ${fake}`)
    expect(stuck.code).toBe(1)
    expect(stuck.stdout).toBe('')
    expect(readFileSync(join(stuck.dir, 'calls'), 'utf8')).toBe('stop -t 40 nginx-1\n')
  })

  it('createNetwork', () => {
    expect(dockerArgv(createNetwork('appnet'))).toEqual(['network', 'create', '--driver', 'bridge', 'appnet'])
  })
})

describe('stopContainers / removeContainers', () => {
  it('one docker call per container, the names and the stop timeout as arguments; no names, no call', () => {
    expect(
      dockerArgvs([stopContainers(['a', "it's b"], 30), removeContainers(['a', "it's b"]), stopContainers([], 5), removeContainers([])])
    ).toEqual([
      [
        ['stop', '--time', '30', 'a'],
        ['stop', '--time', '30', "it's b"]
      ],
      [
        ['rm', '--force', '--volumes', 'a'],
        ['rm', '--force', '--volumes', "it's b"]
      ],
      [],
      []
    ])
  })

  // As docker answers: the name on stdout; a container already gone (the two wordings docker versions use) or
  // another error on stderr, exit 1.
  const fake = [
    'n=$4; printf "%s %s\\n" "$1" "$n" >> "$FAKE/calls"',
    'case $n in',
    '  gone-old*) echo "Error: No such container: $n" >&2; exit 1 ;;',
    '  gone*) echo "Error response from daemon: No such container: $n" >&2; exit 1 ;;',
    '  locked*) echo "Error response from daemon: cannot $1 container: $n: permission denied" >&2; exit 1 ;;',
    '  busy*) echo "Error response from daemon: removal of container $n is already in progress" >&2; exit 1 ;;',
    'esac',
    'echo "$n"'
  ].join('\n')
  const builders = [
    ['stopContainers', 'stop', (names: string[]) => stopContainers(names, 3)],
    ['removeContainers', 'rm', (names: string[]) => removeContainers(names)]
  ] as const

  it.each(builders)('%s: a container already gone is no error; docker says nothing on success', async (_name, verb, build) => {
    const r = await runWithFakeDocker(tmp(), build(['gone-1', 'ok-1', 'gone-old-2']), fake)
    expect(r).toMatchObject({ code: 0, stdout: '', stderr: '' })
    expect(lines(join(r.dir, 'calls'))).toEqual([`${verb} gone-1`, `${verb} ok-1`, `${verb} gone-old-2`])
  })

  it.each(builders)(
    '%s: any other error fails (exit 1, its message on stderr), after trying every container',
    async (_name, verb, build) => {
      const r = await runWithFakeDocker(tmp(), build(['locked-1', 'gone-1', 'ok-1']), fake)
      expect(r.code).toBe(1)
      expect(r.stderr).toBe(`Error response from daemon: cannot ${verb} container: locked-1: permission denied\n`)
      expect(lines(join(r.dir, 'calls'))).toEqual([`${verb} locked-1`, `${verb} gone-1`, `${verb} ok-1`])
    }
  )
})

describe('retireContainers', () => {
  const OLD = ['backend-0000aaaa', 'backend-1111bbbb']
  const retirement = (log: string, over: Partial<Retirement> = {}): Retirement => ({
    nginxId: 'nginx-0123',
    port: 8080,
    containers: OLD,
    drainTimeoutS: 10,
    workersS: 10,
    stopTimeoutS: 3,
    log,
    ...over
  })
  /**
   * A docker whose nginx (pid not on this host) has a reloaded-away worker until `$FAKE/drained` exists, whose old
   * containers have no connections left (pid 0), and whose stop and rm work. Every call is recorded.
   */
  const fake = [
    'printf "%s\\n" "$*" >> "$FAKE/calls"',
    'case "$1" in',
    '  inspect) if [ "$3" != "{{.State.Pid}}" ]; then echo "172.18.0.2 "; elif [ "$4" = nginx-0123 ]; then echo 99999999; else shift 3; for c; do echo 0; done; fi ;;',
    '  top) echo "PID COMMAND"; echo "  41 nginx: worker process"; [ -e "$FAKE/drained" ] || echo "  17 nginx: worker process is shutting down" ;;',
    '  stop|rm) echo "$4" ;;',
    'esac'
  ].join('\n')
  const STAMP = '\\d{4}-\\d\\d-\\d\\dT\\d\\d:\\d\\d:\\d\\dZ'
  const STAMPS = [
    new RegExp(`^${STAMP} retiring backend-0000aaaa backend-1111bbbb: waiting until nginx is done with them$`),
    new RegExp(`^${STAMP} stopping backend-0000aaaa backend-1111bbbb \\(stop-timeout 3 s\\)$`),
    new RegExp(`^${STAMP} removed backend-0000aaaa backend-1111bbbb$`)
  ]

  it(
    'returns at once; the job waits until nginx is done with the old containers, then stops, then removes them',
    { timeout: 20_000 },
    async () => {
      const log = join(mkdtempSync(join(tmp(), 'log-')), 'retire log')
      const r = await runWithFakeDocker(tmp(), retireContainers(retirement(log)), fake)
      expect(r).toMatchObject({ code: 0, stdout: '', stderr: '' })
      const calls = () => lines(join(r.dir, 'calls'))
      // The job polls nginx's workers (the reloaded-away one is still there) and has stopped nothing.
      expect(await until(() => calls().filter(c => c.startsWith('top ')).length >= 2)).toBe(true)
      expect(calls().filter(c => /^(stop|rm) /.test(c))).toEqual([])
      expect(lines(log)).toHaveLength(1)
      writeFileSync(join(r.dir, 'drained'), '')
      expect(await until(() => lines(log).length === 3)).toBe(true)
      const all = calls()
      // Its connections were looked for by the old containers' names (each an argument), on nginx's addresses.
      expect(all).toContain('inspect --format {{.State.Pid}} backend-0000aaaa backend-1111bbbb')
      const firstStop = all.findIndex(c => c.startsWith('stop '))
      expect(all.slice(firstStop)).toEqual([
        'stop --time 3 backend-0000aaaa',
        'stop --time 3 backend-1111bbbb',
        'rm --force --volumes backend-0000aaaa',
        'rm --force --volumes backend-1111bbbb'
      ])
      expect(all.slice(0, firstStop).at(-1)).toBe('top nginx-0123 -eo pid,args')
      // Its own lines, time-stamped; docker's output is not in the log.
      const written = lines(log)
      STAMPS.forEach((re, i) => expect(written[i]).toMatch(re))
    }
  )

  it('nginx cannot be inspected (the wait fails both ways): the containers are still stopped and removed; one already gone is no error', async () => {
    const gone = [
      'printf "%s\\n" "$*" >> "$FAKE/calls"',
      'case "$1" in',
      '  inspect|top) echo "Error: No such object: $4" >&2; exit 1 ;;',
      '  stop|rm) [ "$4" = backend-0000aaaa ] && { echo "Error response from daemon: No such container: $4" >&2; exit 1; }; echo "$4" ;;',
      'esac'
    ].join('\n')
    const log = join(mkdtempSync(join(tmp(), 'log-')), 'retire.log')
    const r = await runWithFakeDocker(tmp(), retireContainers(retirement(log)), gone)
    expect(r.code).toBe(0)
    expect(await until(() => lines(log).some(l => / removed /.test(l)))).toBe(true)
    // Its own lines and docker's complaints about nginx; the tolerated "No such container" is not logged.
    expect(lines(log)).toEqual([
      expect.stringMatching(STAMPS[0]),
      'Error: No such object: nginx-0123',
      'Error: No such object: nginx-0123',
      expect.stringMatching(STAMPS[1]),
      expect.stringMatching(STAMPS[2])
    ])
    expect(lines(join(r.dir, 'calls')).filter(c => /^(stop|rm) /.test(c))).toEqual([
      'stop --time 3 backend-0000aaaa',
      'stop --time 3 backend-1111bbbb',
      'rm --force --volumes backend-0000aaaa',
      'rm --force --volumes backend-1111bbbb'
    ])
  })

  it('the log is appended to, and set aside as .1 once past 256 KiB', async () => {
    const drained = `touch "$FAKE/drained"; ${fake}`
    const dir = mkdtempSync(join(tmp(), 'log-'))
    const log = join(dir, 'retire.log')
    writeFileSync(log, 'an earlier retirement\n')
    await runWithFakeDocker(tmp(), retireContainers(retirement(log, { workersS: 0 })), drained)
    expect(await until(() => lines(log).length === 4)).toBe(true)
    expect(lines(log)[0]).toBe('an earlier retirement')
    expect(existsSync(`${log}.1`)).toBe(false)

    const big = 'x'.repeat(300_000) + '\n'
    writeFileSync(log, big)
    await runWithFakeDocker(tmp(), retireContainers(retirement(log, { workersS: 0 })), drained)
    expect(await until(() => lines(log).length === 3)).toBe(true)
    expect(readFileSync(`${log}.1`, 'utf8')).toBe(big)
    STAMPS.forEach((re, i) => expect(lines(log)[i]).toMatch(re))
  })
})

describe('readFileBase64IfExists', () => {
  it('inside a section, any text comes back whole (marker lines and all); a missing file is empty, exit 0', () => {
    const dir = mkdtempSync(join(tmp(), 'b64-'))
    const text = `A=1\n@@ops-rc 0\n@@ops other\nB=ü $(id) 'q'\nC=${'y'.repeat(300)}\n\n`
    writeFileSync(join(dir, '.env'), text)
    const c = seq(section('env', readFileBase64IfExists(join(dir, '.env'))), section('missing', readFileBase64IfExists(join(dir, 'none'))))
    const s = splitSections(execFileSync('sh', ['-c', c.sh], { encoding: 'utf8' }))
    expect([...s.keys()]).toEqual(['env', 'missing'])
    expect(s.get('env')?.rc).toBe(0)
    expect(Buffer.from(s.get('env')?.out ?? '', 'base64').toString('utf8')).toBe(text)
    expect(s.get('missing')).toEqual({ rc: 0, out: '' })
  })
})

describe('stashFiles', () => {
  /** A directory with `a` (and its stale .ops-prev), `b`, and a stale .ops-prev of `gone`, which itself is missing. */
  function setUp(): string {
    const dir = mkdtempSync(join(tmp(), 'stash-'))
    writeFileSync(join(dir, 'a'), 'a now\n')
    writeFileSync(join(dir, 'a.ops-prev'), 'a before\n')
    writeFileSync(join(dir, "it's b"), 'b now\n')
    writeFileSync(join(dir, 'gone.ops-prev'), 'an earlier run left this\n')
    return dir
  }
  const paths = (dir: string) => ['a', "it's b", 'gone', 'never'].map(f => join(dir, f))
  const read = (path: string): string | undefined => (existsSync(path) ? readFileSync(path, 'utf8') : undefined)

  it('moves each existing file to .ops-prev; a missing one has no copy, so a stale .ops-prev of it goes', () => {
    const dir = setUp()
    execFileSync('sh', ['-c', stashFiles(paths(dir)).sh])
    expect(read(join(dir, 'a'))).toBeUndefined()
    expect(read(join(dir, 'a.ops-prev'))).toBe('a now\n')
    expect(read(join(dir, "it's b"))).toBeUndefined()
    expect(read(join(dir, "it's b.ops-prev"))).toBe('b now\n')
    expect(read(join(dir, 'gone'))).toBeUndefined()
    expect(read(join(dir, 'gone.ops-prev'))).toBeUndefined()
    expect(read(join(dir, 'never.ops-prev'))).toBeUndefined()
  })

  it('restoreFiles puts back what it moved, and leaves the missing ones missing (not the stale copy)', () => {
    const dir = setUp()
    execFileSync('sh', ['-c', `${stashFiles(paths(dir)).sh} && ${restoreFiles(paths(dir)).sh}`])
    expect(read(join(dir, 'a'))).toBe('a now\n')
    expect(read(join(dir, "it's b"))).toBe('b now\n')
    expect(read(join(dir, 'gone'))).toBeUndefined()
    for (const f of ['a', "it's b", 'gone', 'never']) expect(read(join(dir, `${f}.ops-prev`)), f).toBeUndefined()
  })
})

describe('composeV2Version / composeV1Version (cached per program files)', () => {
  /**
   * A host: a PATH of only what the scripts need, plus a fake `docker` whose `compose version` (and a fake
   * `docker-compose`, when given) counts its runs; HOME and the cache dir of its own.
   */
  function host(withV1: boolean) {
    const dir = mkdtempSync(join(tmp(), 'versions-'))
    const bin = join(dir, 'bin')
    mkdirSync(bin)
    for (const tool of ['sh', 'stat', 'tr', 'head', 'tail', 'mkdir', 'cat']) {
      const path = execFileSync('sh', ['-c', `command -v ${tool}`], { encoding: 'utf8' }).trim()
      symlinkSync(path, join(bin, tool))
    }
    const counting = (name: string, version: string) =>
      `#!/bin/sh\nn=$(cat "${dir}/${name}-runs" 2>/dev/null || echo 0); echo $((n + 1)) > "${dir}/${name}-runs"\n` +
      `[ -e "${dir}/broken" ] && { echo "${name}: broken" >&2; exit 1; }\necho ${version}\n`
    writeFileSync(join(bin, 'docker'), counting('docker', '2.29.7'))
    chmodSync(join(bin, 'docker'), 0o755)
    if (withV1) {
      writeFileSync(join(bin, 'docker-compose'), counting('docker-compose', '1.29.2'))
      chmodSync(join(bin, 'docker-compose'), 0o755)
    }
    const env = { PATH: bin, HOME: join(dir, 'home'), XDG_CACHE_HOME: join(dir, 'cache'), DOCKER_HOST: process.env.DOCKER_HOST }
    const run = (c: Sh) => {
      const r = spawnSync('/bin/sh', ['-c', c.sh], { env, encoding: 'utf8' })
      return { code: r.status, stdout: r.stdout, stderr: r.stderr }
    }
    const runs = (name: string) => (existsSync(join(dir, `${name}-runs`)) ? Number(readFileSync(join(dir, `${name}-runs`), 'utf8')) : 0)
    return { dir, bin, env, run, runs }
  }

  it('v2: `docker compose version --short` once; later runs read the cache until the docker CLI changes', () => {
    const h = host(false)
    expect(h.run(composeV2Version())).toEqual({ code: 0, stdout: '2.29.7\n', stderr: '' })
    expect(h.run(composeV2Version())).toEqual({ code: 0, stdout: '2.29.7\n', stderr: '' })
    expect(h.runs('docker')).toBe(1)
    const cache = readFileSync(join(h.dir, 'cache', 'ops-action', 'docker-compose-v2-version'), 'utf8').split('\n')
    expect(cache[0]).toContain(join(h.bin, 'docker'))
    expect(cache.slice(1)).toEqual(['2.29.7', ''])
    // An upgraded docker (another size and mtime) asks again.
    writeFileSync(join(h.bin, 'docker'), `${readFileSync(join(h.bin, 'docker'), 'utf8')}# upgraded\n`)
    expect(h.run(composeV2Version()).stdout).toBe('2.29.7\n')
    expect(h.runs('docker')).toBe(2)
  })

  it("v2: a plugin installed in the user's docker config dir changes the key too", () => {
    const h = host(false)
    h.run(composeV2Version())
    const plugin = join(h.env.HOME, '.docker', 'cli-plugins', 'docker-compose')
    mkdirSync(join(h.env.HOME, '.docker', 'cli-plugins'), { recursive: true })
    writeFileSync(plugin, 'plugin v2.30\n')
    h.run(composeV2Version())
    expect(h.runs('docker')).toBe(2)
    h.run(composeV2Version())
    expect(h.runs('docker')).toBe(2)
  })

  it('a failure is never cached: the next run asks again', () => {
    const h = host(false)
    writeFileSync(join(h.dir, 'broken'), '')
    expect(h.run(composeV2Version())).toEqual({ code: 1, stdout: '', stderr: 'docker: broken\n' })
    expect(existsSync(join(h.dir, 'cache', 'ops-action', 'docker-compose-v2-version'))).toBe(false)
    rmSync(join(h.dir, 'broken'))
    expect(h.run(composeV2Version()).stdout).toBe('2.29.7\n')
    expect(h.runs('docker')).toBe(2)
  })

  it('v1: cached the same way under its own name; without docker-compose, "not found" with exit 127', () => {
    const h = host(true)
    expect(h.run(composeV1Version()).stdout).toBe('1.29.2\n')
    expect(h.run(composeV1Version()).stdout).toBe('1.29.2\n')
    expect(h.runs('docker-compose')).toBe(1)
    // Each has its own cache: v2's is not v1's answer.
    expect(h.run(composeV2Version()).stdout).toBe('2.29.7\n')
    expect(h.runs('docker')).toBe(1)
    expect(host(false).run(composeV1Version())).toEqual({ code: 127, stdout: 'docker-compose: not found\n', stderr: '' })
  })
})
