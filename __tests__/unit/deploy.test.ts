import { imageRepository, imageTag } from '../../src/context'
import { execFile, execFileSync, spawn, type ChildProcessWithoutNullStreams } from 'node:child_process'
import { chmodSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest'
import { CATALOGUE, publicPath, routeReaches, serviceFromRepository } from '../../src/catalogue'
import { httpStatus, pull, runContainer, SERVICE_LABEL, IMAGE_LABEL, type RunSpec } from '../../src/commands/app'
import { INSPECT_FORMAT } from '../../src/commands/host'
import { parseInspect } from '../../src/containers'
import { memoryMiB, previousImage, type HistoryRecord } from '../../src/deploy'
import { lockScript } from '../../src/lock'
import { failureMarkdown, gantt } from '../../src/main'
import { Phases } from '../../src/phases'
import type { Sh } from '../../src/shell'
import { placeholderUpstream } from '../../src/upstream'
import { customServiceFiles, liveOf, upstreamConf, upstreamVar } from '../../src/upstream'

let tmp: string
beforeAll(() => {
  tmp = mkdtempSync(join(tmpdir(), 'deploy-test-'))
})
afterAll(() => {
  rmSync(tmp, { recursive: true, force: true })
})

beforeEach(() => {
  // Phases and friends log through @actions/core (stdout).
  vi.spyOn(process.stdout, 'write').mockImplementation((() => true) as typeof process.stdout.write)
})
afterEach(() => {
  vi.restoreAllMocks()
})

/** The argv a POSIX shell makes of a command line whose program is `docker` (parsed by sh itself, nothing run). */
function dockerArgv(c: Sh): string[] {
  const out = execFileSync('sh', ['-c', `docker() { printf '%s\\0' "$@"; }; ${c.sh}`])
  return out.toString('utf8').split('\0').slice(0, -1)
}

/** Runs a command line under sh, with a fake `docker` first on PATH; resolves with code, stdout and stderr. */
function runWithFakeDocker(c: Sh, fakeDocker: string, stdin: string): Promise<{ code: number; stdout: string; stderr: string }> {
  const bin = mkdtempSync(join(tmp, 'bin-'))
  writeFileSync(join(bin, 'docker'), `#!/bin/sh\n${fakeDocker}\n`)
  chmodSync(join(bin, 'docker'), 0o755)
  return new Promise((resolve, reject) => {
    const p = spawn('sh', ['-c', c.sh], { env: { ...process.env, PATH: `${bin}:${process.env.PATH}`, FAKE: bin } })
    let stdout = ''
    let stderr = ''
    p.stdout.on('data', d => (stdout += d))
    p.stderr.on('data', d => (stderr += d))
    p.on('error', reject)
    p.on('close', code => resolve({ code: code ?? -1, stdout, stderr }))
    p.stdin.end(stdin)
  })
}

function rec(over: Partial<HistoryRecord>): HistoryRecord {
  return {
    time: '2026-01-01T00:00:00Z',
    mode: 'deploy',
    service: 'backend',
    image: 'ghcr.io/behindy/back:v1',
    previousImage: '',
    container: 'backend-00000000',
    result: 'success',
    phases: {},
    ...over
  }
}

describe('previousImage', () => {
  const img = (t: string) => `ghcr.io/behindy/back:${t}`

  it('is the newest successful release other than the one serving', () => {
    const h = [rec({ image: img('v1') }), rec({ image: img('v2') }), rec({ image: img('v3') })]
    expect(previousImage(h, 'backend', img('v3'))).toBe(img('v2'))
    expect(previousImage(h, 'backend', img('v2'))).toBe(img('v3'))
  })

  it('skips failed and rolled-back releases', () => {
    const h = [
      rec({ image: img('v1') }),
      rec({ image: img('v2'), result: 'rolled-back' }),
      rec({ image: img('v3'), result: 'failed' }),
      rec({ image: img('v4') })
    ]
    expect(previousImage(h, 'backend', img('v4'))).toBe(img('v1'))
  })

  it('skips other services', () => {
    const h = [rec({ image: img('v1') }), rec({ service: 'story', image: 'ghcr.io/behindy/story:s9' }), rec({ image: img('v2') })]
    expect(previousImage(h, 'backend', img('v2'))).toBe(img('v1'))
    expect(previousImage(h, 'story', 'ghcr.io/behindy/story:s9')).toBeUndefined()
  })

  it('skips repeated deploys of the serving image', () => {
    const h = [rec({ image: img('v1') }), rec({ image: img('v2') }), rec({ image: img('v2') })]
    expect(previousImage(h, 'backend', img('v2'))).toBe(img('v1'))
  })

  it('without a live upstream, takes the newest release as serving', () => {
    const h = [rec({ image: img('v1') }), rec({ image: img('v2') })]
    expect(previousImage(h, 'backend', undefined)).toBe(img('v1'))
  })

  it('undefined when there is nothing to go back to', () => {
    expect(previousImage([], 'backend', img('v1'))).toBeUndefined()
    expect(previousImage([rec({ image: img('v1') })], 'backend', img('v1'))).toBeUndefined()
    expect(previousImage([rec({ image: img('v1') })], 'backend', undefined)).toBeUndefined()
    expect(previousImage([rec({ image: img('v0'), result: 'failed' }), rec({ image: img('v1') })], 'backend', img('v1'))).toBeUndefined()
  })
})

describe('memoryMiB', () => {
  it.each([
    ['768m', 768],
    ['1g', 1024],
    ['2g', 2048],
    ['512k', 0.5],
    ['1073741824', 1024],
    ['1048576b', 1]
  ])('%s = %d MiB', (m, mib) => {
    expect(memoryMiB(m)).toBe(mib)
  })
})

describe('catalogue', () => {
  it.each([
    ['behindy/behindy-front', 'frontend'],
    ['behindy/behindy-frontend', 'frontend'],
    ['behindy/behindy-back', 'backend'],
    ['behindy/behindy-backend', 'backend'],
    ['behindy/behindy-story', 'story'],
    ['behindy/behindy-llmserver', 'story'],
    ['Other/Behindy-Back', 'backend']
  ])('serviceFromRepository(%j) = %s', (repo, service) => {
    expect(serviceFromRepository(repo)).toBe(service)
  })

  it.each([undefined, '', 'behindy/website', 'behindy/behindy-back-old', 'behindy-back/other'])(
    'serviceFromRepository(%j) is undefined',
    repo => {
      expect(serviceFromRepository(repo)).toBeUndefined()
    }
  )

  it('publicPath: story is reached under /llm, backend and frontend as they are', () => {
    expect(publicPath(CATALOGUE.story, '/health')).toBe('/llm/health')
    expect(publicPath(CATALOGUE.story, '/')).toBe('/llm/')
    expect(publicPath(CATALOGUE.backend, '/api/ai-stories/health')).toBe('/api/ai-stories/health')
    expect(publicPath(CATALOGUE.frontend, '/')).toBe('/')
  })

  it('routeReaches: a prefix route reaches only paths under it; a stripped one reaches every path', () => {
    expect(routeReaches(CATALOGUE.backend, '/api/ai-stories/health')).toBe(true)
    expect(routeReaches(CATALOGUE.backend, '/api')).toBe(true)
    expect(routeReaches(CATALOGUE.backend, '/actuator/health')).toBe(false)
    expect(routeReaches(CATALOGUE.backend, '/apix')).toBe(false)
    expect(routeReaches(CATALOGUE.story, '/health')).toBe(true)
    expect(routeReaches(CATALOGUE.story, '/anything/at/all')).toBe(true)
    expect(routeReaches(CATALOGUE.frontend, '/')).toBe(true)
    expect(routeReaches(CATALOGUE.frontend, '/healthz')).toBe(true)
  })

  it('every catalogue health path is reachable through its route', () => {
    for (const [name, spec] of Object.entries(CATALOGUE)) expect(routeReaches(spec, spec.healthPath), name).toBe(true)
  })
})

describe('upstream files', () => {
  it('upstreamConf and liveOf round-trip', () => {
    const live = { container: 'backend-1a2b3c4d', image: 'ghcr.io/behindy/back:abc' }
    const conf = upstreamConf('app_backend', 8080, live)
    // The container by name (resolved by nginx per request through docker's DNS), never an address that may change.
    expect(conf).toMatch(/^map "" \$app_backend \{\s*default backend-1a2b3c4d:8080;\s*\}$/m)
    expect(conf.endsWith('\n')).toBe(true)
    expect(liveOf(conf)).toEqual(live)
  })

  it('liveOf of the 503 placeholder, garbage or an empty file is undefined', () => {
    expect(liveOf(placeholderUpstream('backend'))).toBeUndefined()
    expect(liveOf('')).toBeUndefined()
    expect(liveOf('# live: {not json}\n')).toBeUndefined()
    expect(liveOf('# live: {"container":1,"image":"x"}\n')).toBeUndefined()
  })

  it('upstreamVar replaces - by _', () => {
    expect(upstreamVar('my-svc')).toBe('$up_my_svc')
    expect(upstreamVar('backend')).toBe('$up_backend')
  })

  it('customServiceFiles: map, location through the variable, and a placeholder only when nothing is live', () => {
    const files = customServiceFiles('my-svc', '/things/', false)
    const byPath = new Map(files.map(f => [f.path, f.content]))
    expect([...byPath.keys()].sort()).toEqual([
      'upstreams/app_my-svc.conf',
      'upstreams/app_my-svc.locations',
      'upstreams/app_my-svc_vars.conf'
    ])
    const vars = byPath.get('upstreams/app_my-svc_vars.conf') as string
    expect(vars).toMatch(/map \$server_port \$up_my_svc \{/)
    expect(vars).toMatch(/^\s*8504\s+\$http_x_ops_upstream;/m)
    expect(vars).toMatch(/^\s*default\s+\$app_my_svc;/m)
    const loc = byPath.get('upstreams/app_my-svc.locations') as string
    expect(loc).toMatch(/location \/things\/ \{/)
    expect(loc).toContain('proxy_pass http://$up_my_svc;')
    expect(loc).toContain('include snippets/proxy.conf;')
    expect(byPath.get('upstreams/app_my-svc.conf')).toBe(placeholderUpstream('my-svc'))

    const withLive = customServiceFiles('my-svc', '/things/', true)
    expect(withLive.map(f => f.path).sort()).toEqual(['upstreams/app_my-svc.locations', 'upstreams/app_my-svc_vars.conf'])
  })
})

describe('parseInspect', () => {
  /** One line as `docker inspect --format INSPECT_FORMAT` prints it: each {{json .X}} replaced by X's JSON. */
  function inspectLine(fields: {
    Name: string
    Id: string
    State: unknown
    RestartCount: number
    Networks: unknown
    Labels: unknown
    Image?: string
  }): string {
    const values: Record<string, unknown> = {
      '.Config.Image': fields.Image ?? 'example/app:v1',
      '.Name': fields.Name,
      '.Id': fields.Id,
      '.State': fields.State,
      '.RestartCount': fields.RestartCount,
      '.NetworkSettings.Networks': fields.Networks,
      '.Config.Labels': fields.Labels
    }
    const line = INSPECT_FORMAT.replace(/\{\{json ([^}]+)\}\}/g, (_, path: string) => {
      expect(path in values, `field ${path} of INSPECT_FORMAT`).toBe(true)
      return JSON.stringify(values[path])
    })
    expect(line).not.toContain('{{')
    return line
  }

  const id1 = 'a'.repeat(64)
  const id2 = 'b'.repeat(64)
  const withHealth = inspectLine({
    Name: '/backend-1a2b3c4d',
    Id: id1,
    State: {
      Status: 'running',
      Running: true,
      Paused: false,
      Restarting: false,
      OOMKilled: false,
      Dead: false,
      Pid: 4242,
      ExitCode: 0,
      Error: '',
      StartedAt: '2026-01-01T00:00:00.123456789Z',
      FinishedAt: '0001-01-01T00:00:00Z',
      Health: {
        Status: 'healthy',
        FailingStreak: 0,
        Log: [{ Start: '2026-01-01T00:00:05Z', End: '2026-01-01T00:00:05Z', ExitCode: 0, Output: 'ok\n' }]
      }
    },
    RestartCount: 0,
    Networks: {
      internal: {
        IPAMConfig: null,
        Links: null,
        Aliases: ['backend', 'backend-1a2b3c4d'],
        MacAddress: '02:42:ac:12:00:05',
        NetworkID: 'c'.repeat(64),
        EndpointID: 'd'.repeat(64),
        Gateway: '172.18.0.1',
        IPAddress: '172.18.0.5',
        IPPrefixLen: 16,
        IPv6Gateway: '',
        GlobalIPv6Address: '',
        GlobalIPv6PrefixLen: 0,
        DriverOpts: null,
        DNSNames: ['backend-1a2b3c4d', 'backend']
      },
      bridge: { IPAddress: '172.17.0.3', Gateway: '172.17.0.1' }
    },
    Labels: {
      [SERVICE_LABEL]: 'backend',
      [IMAGE_LABEL]: 'ghcr.io/behindy/back:abc',
      'ops-action.port': '8080',
      'org.opencontainers.image.title': 'back <app> & co'
    }
  })
  const noHealth = inspectLine({
    Name: '/backend-5e6f7a8b',
    Id: id2,
    State: {
      Status: 'exited',
      Running: false,
      Restarting: false,
      Dead: false,
      Pid: 0,
      ExitCode: 1,
      Error: '',
      StartedAt: '2026-01-01T00:00:00Z',
      FinishedAt: '2026-01-01T00:00:09Z'
    },
    RestartCount: 2,
    Networks: {},
    Labels: null
  })

  it('reads a container with a HEALTHCHECK', () => {
    expect(parseInspect(withHealth)).toEqual([
      {
        name: 'backend-1a2b3c4d',
        id: id1,
        status: 'running',
        restarts: 0,
        health: 'healthy',
        ips: { internal: '172.18.0.5', bridge: '172.17.0.3' },
        labels: {
          [SERVICE_LABEL]: 'backend',
          [IMAGE_LABEL]: 'ghcr.io/behindy/back:abc',
          'ops-action.port': '8080',
          'org.opencontainers.image.title': 'back <app> & co'
        },
        image: 'example/app:v1',
        startedAt: '2026-01-01T00:00:00.123456789Z'
      }
    ])
  })

  it('reads a container without Health, networks or labels', () => {
    expect(parseInspect(noHealth)).toEqual([
      {
        name: 'backend-5e6f7a8b',
        id: id2,
        status: 'exited',
        restarts: 2,
        health: 'none',
        ips: {},
        labels: {},
        image: 'example/app:v1',
        startedAt: '2026-01-01T00:00:00Z'
      }
    ])
  })

  it('Health: null counts as none, and a go-escaped label (\\u003c) is decoded', () => {
    const line = withHealth.replace('"Health":{', '"Health":null,"X":{').replace('back <app> & co', 'back \\u003capp\\u003e \\u0026 co')
    const [c] = parseInspect(line)
    expect(c.health).toBe('none')
    expect(c.labels['org.opencontainers.image.title']).toBe('back <app> & co')
  })

  it('skips blank, error, marker and broken lines, keeping the order of the rest', () => {
    const out = ['', 'Error: No such object: gone', withHealth, '@@ops-rc 0', '"/broken"\t{not json', '   ', noHealth, ''].join('\n')
    expect(parseInspect(out).map(c => c.name)).toEqual(['backend-1a2b3c4d', 'backend-5e6f7a8b'])
    expect(parseInspect('')).toEqual([])
  })
})

describe('gantt', () => {
  it('one mermaid row per phase, failed ones marked crit', async () => {
    const phases = new Phases()
    expect(await phases.run('Connect to ubuntu@example.com:22', async () => 1)).toBe(1)
    await expect(
      phases.run('Health gate (direct)', async () => {
        throw new Error('unhealthy')
      })
    ).rejects.toThrow('unhealthy')
    await phases.run('Roll back; #1', async () => 'x')
    const text = gantt(phases)
    const lines = text.split('\n')
    expect(lines[0]).toBe('```mermaid')
    expect(lines[lines.length - 1]).toBe('```')
    expect(lines).toContain('gantt')
    expect(lines.map(l => l.trim())).toContain('dateFormat x')
    const rows = lines.filter(l => /:\s*(crit, )?p\d+, \d+, \d+$/.test(l))
    expect(rows).toHaveLength(3)
    expect(rows[0]).toMatch(/^\s+Connect to ubuntu@example\.com 22 :p0, \d+, \d+$/)
    expect(rows[1]).toMatch(/^\s+Health gate \(direct\) :crit, p1, \d+, \d+$/)
    expect(rows[2]).not.toContain('crit')
    // The task names hold no mermaid syntax characters.
    for (const r of rows) expect(r.slice(0, r.lastIndexOf(' :'))).not.toMatch(/[:#;]/)
    // Start and end are milliseconds from the first phase, end after start.
    for (const r of rows) {
      const [, start, end] = /(\d+), (\d+)$/.exec(r) as RegExpExecArray
      expect(Number(end)).toBeGreaterThan(Number(start))
    }
  })

  it('no phases: just the header', () => {
    const text = gantt(new Phases())
    expect(text).toContain('gantt')
    expect(text.split('\n').filter(l => /p\d+,/.test(l))).toEqual([])
  })
})

describe('runContainer', () => {
  const spec: RunSpec = {
    name: 'backend-1a2b3c4d',
    service: 'backend',
    image: 'ghcr.io/behindy/back:abc',
    network: 'internal',
    aliases: ['backend', 'llmserver'],
    port: 8080,
    stopTimeoutS: 30,
    memory: '768m',
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
    expect(c.sh).toContain('--memory 768m')
    expect(c.sh).toMatch(/^umask 077 && /)
  })

  it('run against a fake docker: env arrives through a private temp file that is gone afterwards', async () => {
    const fake = [
      'out="$FAKE/call"; : > "$out"; f=""; prev=""',
      'for a; do printf "%s\\n" "$a" >> "$out"; [ "$prev" = "--env-file" ] && f="$a"; prev="$a"; done',
      'cp "$f" "$FAKE/env"; printf "%s\\n" "$f" > "$FAKE/envpath"; stat -c %a "$f" > "$FAKE/mode"; echo cid123'
    ].join('\n')
    const r = await runWithFakeDocker(runContainer(spec), fake, envText)
    expect(r.stderr).toBe('')
    expect(r.code).toBe(0)
    expect(r.stdout.trim()).toBe('cid123')
    const bin = readdirSync(tmp)
      .filter(d => d.startsWith('bin-'))
      .map(d => join(tmp, d))
      .find(d => existsSync(join(d, 'call'))) as string
    const argv = readFileSync(join(bin, 'call'), 'utf8').split('\n').slice(0, -1)
    expect(argv.slice(0, 2)).toEqual(['run', '--detach'])
    // The image comes last, after the host env file and, last of all, the inline env file (so the inline values win).
    expect(argv[argv.length - 1]).toBe(spec.image)
    const envFiles = argv.flatMap((a, i) => (a === '--env-file' ? [argv[i + 1]] : []))
    expect(envFiles[0]).toBe('/opt/app/back.env')
    expect(envFiles.length).toBeGreaterThanOrEqual(2)
    expect(argv[argv.length - 3]).toBe('--env-file')
    expect(readFileSync(join(bin, 'env'), 'utf8')).toBe(envText)
    expect(readFileSync(join(bin, 'mode'), 'utf8').trim()).toBe('600')
    expect(existsSync(readFileSync(join(bin, 'envpath'), 'utf8').trim())).toBe(false)
    for (const [, v] of env) expect(argv.join('\n')).not.toContain(v)
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
    const r = await runWithFakeDocker(pull('ghcr.io/behindy/back:abc', registry), fake, `${password}\n`)
    expect(r.code).toBe(0)
    const bin = readdirSync(tmp)
      .filter(d => d.startsWith('bin-'))
      .map(d => join(tmp, d))
      .find(d => existsSync(join(d, 'calls'))) as string
    expect(readFileSync(join(bin, 'stdin'), 'utf8')).toBe(`${password}\n`)
    const calls = readFileSync(join(bin, 'calls'), 'utf8')
    expect(calls).not.toContain(password)
    expect(calls).toMatch(/login --username bot --password-stdin ghcr\.io/)
    expect(calls).toMatch(/pull --quiet ghcr\.io\/behindy\/back:abc/)
    expect(calls).toMatch(/logout ghcr\.io/)
    const config = readFileSync(join(bin, 'config'), 'utf8').trim()
    expect(config).not.toBe('')
    expect(existsSync(config)).toBe(false)
  })

  it('a failed login exits 3 without pulling', async () => {
    const fake = ['printf "%s\\n" "$*" >> "$FAKE/calls2"', '[ "$3" = login ] && { cat >/dev/null; exit 1; }', 'exit 0'].join('\n')
    const r = await runWithFakeDocker(pull('ghcr.io/behindy/back:abc', registry), fake, `${password}\n`)
    expect(r.code).toBe(3)
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

describe('httpStatus', () => {
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

  /** Runs the inner script locally as the nginx container would (async: the server lives in this process). */
  function status(url: string, timeoutS = 2, header = ''): Promise<string> {
    const script = dockerArgv(httpStatus('nginx', url, timeoutS, header))[4]
    return new Promise((resolve, reject) =>
      execFile('sh', ['-c', script, 'sh', url, String(timeoutS), header], { timeout: 15_000 }, (err, stdout) =>
        err ? reject(err) : resolve(stdout)
      )
    )
  }

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
})

describe('lockScript (flock, run locally)', () => {
  interface Proc {
    p: ChildProcessWithoutNullStreams
    out: () => string
    exit: Promise<number>
  }

  function startLock(lockFile: string, holderFile: string, timeoutS: number, holder: string, staleS?: number): Proc {
    const p = spawn('sh', ['-c', lockScript(lockFile, holderFile, timeoutS, holder, staleS).sh], { stdio: ['pipe', 'pipe', 'pipe'] })
    let out = ''
    p.stdout.on('data', d => (out += d))
    p.stderr.on('data', d => (out += d))
    const exit = new Promise<number>(r => p.on('close', code => r(code ?? -1)))
    return { p, out: () => out, exit }
  }

  async function until(cond: () => boolean, ms = 5000): Promise<void> {
    const end = Date.now() + ms
    while (!cond()) {
      if (Date.now() > end) throw new Error('timed out waiting')
      await new Promise(r => setTimeout(r, 20))
    }
  }

  const procs: Proc[] = []
  afterAll(() => {
    for (const pr of procs) if (pr.p.exitCode === null) pr.p.stdin.end()
  })

  it('the first holds the lock while its stdin is open; a second times out with BUSY <holder>; then it is free again', async () => {
    const dir = mkdtempSync(join(tmp, 'lock-'))
    const lockFile = join(dir, 'ops', '.deploy.lock')
    const holderFile = join(dir, 'ops', '.deploy.lock.holder')

    const first = startLock(lockFile, holderFile, 5, 'deploy of backend by behindy/behindy-back')
    procs.push(first)
    await until(() => /^LOCKED$/m.test(first.out()))
    expect(readFileSync(holderFile, 'utf8')).toBe('deploy of backend by behindy/behindy-back\n')

    const second = startLock(lockFile, holderFile, 1, 'mode infra')
    procs.push(second)
    const code = await second.exit
    expect(code).toBe(75)
    expect(second.out()).toMatch(/^BUSY deploy of backend by behindy\/behindy-back$/m)
    expect(second.out()).toMatch(/^TIMEOUT$/m)
    expect(second.out()).not.toMatch(/^LOCKED$/m)
    // The holder file still names the first run.
    expect(readFileSync(holderFile, 'utf8')).toBe('deploy of backend by behindy/behindy-back\n')
    expect(first.p.exitCode).toBeNull()

    first.p.stdin.end()
    expect(await first.exit).toBe(0)

    const started = Date.now()
    const third = startLock(lockFile, holderFile, 0, 'rollback of backend')
    procs.push(third)
    await until(() => /^LOCKED$/m.test(third.out()))
    expect(Date.now() - started).toBeLessThan(2000)
    expect(third.out()).not.toContain('BUSY')
    expect(readFileSync(holderFile, 'utf8')).toBe('rollback of backend\n')
    third.p.stdin.end()
    expect(await third.exit).toBe(0)
  })

  it('a waiter gets the lock as soon as the holder lets go', async () => {
    const dir = mkdtempSync(join(tmp, 'lock-'))
    const lockFile = join(dir, '.deploy.lock')
    const holderFile = join(dir, '.deploy.lock.holder')
    const first = startLock(lockFile, holderFile, 5, 'first')
    procs.push(first)
    await until(() => /^LOCKED$/m.test(first.out()))
    const second = startLock(lockFile, holderFile, 10, 'second')
    procs.push(second)
    await until(() => /^BUSY first$/m.test(second.out()))
    first.p.stdin.end()
    await until(() => /^LOCKED$/m.test(second.out()))
    expect(readFileSync(holderFile, 'utf8')).toBe('second\n')
    second.p.stdin.end()
    expect(await second.exit).toBe(0)
  })

  it('a holder without heartbeats is stale: a waiter ends it and takes the lock after staleS, not its timeout', async () => {
    const dir = mkdtempSync(join(tmp, 'lock-'))
    const lockFile = join(dir, '.deploy.lock')
    const holderFile = join(dir, '.deploy.lock.holder')
    const hung = startLock(lockFile, holderFile, 5, 'hung run', 2)
    procs.push(hung)
    await until(() => /^LOCKED$/m.test(hung.out()))
    // The lock file names the holding shell (the one with fd 9), whose command line names the lock file.
    const pid = readFileSync(lockFile, 'utf8').trim()
    expect(pid).toMatch(/^\d+$/)
    expect(readFileSync(`/proc/${pid}/cmdline`, 'utf8')).toContain(lockFile)
    const started = Date.now()
    const waiter = startLock(lockFile, holderFile, 60, 'waiter', 2)
    procs.push(waiter)
    await until(() => /^LOCKED$/m.test(waiter.out()), 10_000)
    const waited = Date.now() - started
    expect(waited).toBeGreaterThanOrEqual(1500)
    expect(waited).toBeLessThan(8000)
    expect(waiter.out()).toMatch(/^BUSY hung run$/m)
    expect(waiter.out()).toMatch(/^STALE \d+$/m)
    expect(await hung.exit).not.toBe(0)
    expect(readFileSync(holderFile, 'utf8')).toBe('waiter\n')
    waiter.p.stdin.end()
    expect(await waiter.exit).toBe(0)
  })

  it('a holder that sends heartbeats keeps the lock however long it runs', async () => {
    const dir = mkdtempSync(join(tmp, 'lock-'))
    const lockFile = join(dir, '.deploy.lock')
    const holderFile = join(dir, '.deploy.lock.holder')
    const alive = startLock(lockFile, holderFile, 5, 'long run', 1)
    procs.push(alive)
    await until(() => /^LOCKED$/m.test(alive.out()))
    const beat = setInterval(() => alive.p.stdin.write('\n'), 300)
    const waiter = startLock(lockFile, holderFile, 4, 'waiter', 1)
    procs.push(waiter)
    expect(await waiter.exit).toBe(75)
    clearInterval(beat)
    expect(waiter.out()).not.toMatch(/STALE/)
    expect(alive.p.exitCode).toBeNull()
    alive.p.stdin.end()
    expect(await alive.exit).toBe(0)
  })
})

describe('imageRepository / imageTag', () => {
  it.each([
    ['127.0.0.1:5000/behindy/sample-app:v1', '127.0.0.1:5000/behindy/sample-app', 'v1'],
    ['127.0.0.1:5000/behindy/sample-app', '127.0.0.1:5000/behindy/sample-app', 'latest'],
    [`ghcr.io/b/back@sha256:${'a'.repeat(64)}`, 'ghcr.io/b/back', ''],
    [`ghcr.io/b/back:v2@sha256:${'a'.repeat(64)}`, 'ghcr.io/b/back', 'v2']
  ])('%s -> %s, tag %j', (image, repository, tag) => {
    expect(imageRepository(image)).toBe(repository)
    expect(imageTag(image)).toBe(tag)
  })
})

describe('failureMarkdown (job summary of a failed run)', () => {
  it('the error as a caution alert, its fix as a tip, the rollback as a warning with what it did', () => {
    const md = failureMarkdown('frontend-1a2b3c4d exited before becoming healthy\n(last probe: none)\nFix: check the logs above', [
      'removed the new container frontend-1a2b3c4d',
      'frontend-9e8d7c6b kept serving'
    ])
    const blocks = md.split('\n\n')
    expect(blocks).toEqual([
      '> [!CAUTION]\n> frontend-1a2b3c4d exited before becoming healthy\n> (last probe: none)',
      '> [!TIP]\n> **Fix:** check the logs above',
      '> [!WARNING]\n> **Rolled back**: the previous release serves.\n> - removed the new container frontend-1a2b3c4d\n> - frontend-9e8d7c6b kept serving'
    ])
  })

  it('no fix and no rollback: only the error', () => {
    expect(failureMarkdown("Input 'image': is required")).toBe("> [!CAUTION]\n> Input 'image': is required")
  })
})
