import { execFile, execFileSync } from 'node:child_process'
import { existsSync, readFileSync } from 'node:fs'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { composeConfig, composeNginxTest, composeUp, composeV1, composeV2, createNetwork } from '../../src/commands/compose'
import { runContainer, stopContainers, type RunSpec } from '../../src/commands/containers'
import { httpRounds, httpStatus } from '../../src/commands/http'
import { pull } from '../../src/commands/images'
import { NGINX_CONF, nginxTest } from '../../src/commands/nginx'
import { IMAGE_LABEL, SERVICE_LABEL, SPEC_LABEL } from '../../src/labels'
import { dockerArgv, runWithFakeDocker, useTempDir } from './helpers'

// The command builders of src/commands/, run by a real sh against fake docker (and wget) programs.

const tmp = useTempDir('commands-test')

describe('runContainer', () => {
  const spec: RunSpec = {
    name: 'backend-1a2b3c4d',
    service: 'backend',
    image: 'ghcr.io/behindy/back:abc',
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
    // The image comes last, after the host env file and, last of all, the inline env file (so the inline values win).
    expect(argv[argv.length - 1]).toBe(spec.image)
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
    expect(labels).toContain(`${SPEC_LABEL}=${JSON.stringify(deployed)}`)
  })

  it('inheriting from a container that is gone fails without starting anything', async () => {
    const fake = 'case "$1" in inspect) echo "Error: No such object" >&2; exit 1 ;; run) touch "$FAKE/ran" ;; esac'
    const r = await runWithFakeDocker(tmp(), runContainer({ ...spec, inheritEnvFrom: 'gone' }), fake, '')
    expect(r.code).not.toBe(0)
    expect(existsSync(join(r.dir, 'ran'))).toBe(false)
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
    expect(calls).toMatch(/logout ghcr\.io/)
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
})

const hasWget = (() => {
  try {
    execFileSync('sh', ['-c', 'command -v wget'], { stdio: 'ignore' })
    return true
  } catch {
    return false
  }
})()

describe('httpStatus / httpRounds', () => {
  let server: Server
  let port: number
  let closedPort: number

  beforeAll(async () => {
    server = createServer((req, res) => {
      const code =
        req.url === '/missing'
          ? 404
          : req.url === '/down'
            ? 503
            : req.url === '/moved'
              ? 301
              : req.url === '/header'
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

  it('httpRounds is docker exec VIA sh -c SCRIPT sh HEALTH ROUTE NEED MAX TIMEOUT HEADER', () => {
    const argv = dockerArgv(httpRounds('nginx-id', 'http://127.0.0.1:8504/h', 'http://127.0.0.1:8504/r/', 3, 9, 2, 'X-Ops-Upstream: a:1'))
    expect(argv.slice(0, 4)).toEqual(['exec', 'nginx-id', 'sh', '-c'])
    expect(argv.slice(5)).toEqual(['sh', 'http://127.0.0.1:8504/h', 'http://127.0.0.1:8504/r/', '3', '9', '2', 'X-Ops-Upstream: a:1'])
  })

  it.skipIf(!hasWget)('httpRounds: ok after NEED good rounds in a row; a 5xx route or a non-2xx health path never is', async () => {
    const rounds = (health: string, route: string) =>
      inNginx(dockerArgv(httpRounds('nginx', `http://127.0.0.1:${port}${health}`, `http://127.0.0.1:${port}${route}`, 2, 4, 2)))
    expect(await rounds('/health', '/missing')).toBe('200 404\n200 404\nok\n')
    expect(await rounds('/health', '/down')).toBe('200 503\n'.repeat(4))
    expect(await rounds('/missing', '/health')).toBe('404 200\n'.repeat(4))
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

  it('compose: v2 plugin or v1 binary, with the ops-dir env file, project and compose file', () => {
    const tail = ['--env-file', '/o/.env', '-p', 'behindy', '-f', '/o/compose/docker-compose.yml']
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

  it('createNetwork and stopContainers', () => {
    expect(dockerArgv(createNetwork('appnet'))).toEqual(['network', 'create', '--driver', 'bridge', 'appnet'])
    expect(dockerArgv(stopContainers(['a', 'b'], 30))).toEqual(['stop', '--time', '30', 'a', 'b'])
  })
})
