// Fault injection on the sandbox host: the action killed or cut off at each phase of a deploy, a hung lock holder,
// dockerd restarted, nginx config broken by hand, the registry or the disk failing a pull, an infra change under live
// data, sshd away at connect time. Load runs through nginx during each; every fault must leave the site answering and
// the next ordinary run able to finish the job.
import { spawn, type ChildProcess } from 'node:child_process'
import { rmSync, writeFileSync, mkdtempSync, readFileSync } from 'node:fs'
import { createServer, type Server, type Socket } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { liveOf } from '../../src/upstream'
import {
  actionCopy,
  APPS,
  backend,
  connection,
  DB,
  deployInputs,
  expectOk,
  frontend,
  hashOpsDir,
  http,
  HTTP_PORT,
  infraInputs,
  INFRA_ENV,
  loadDuring,
  OPS_DIR,
  psql,
  REDIS_PASSWORD,
  redisCli,
  REGISTRY,
  registryPassword,
  resetHost,
  runAction,
  sandboxScript,
  serviceContainers,
  sh,
  stackContainers,
  story,
  tryRun,
  underLoad,
  settleRetirements,
  watchArgv,
  type ActionRun
} from './sandbox'

const tally = { injected: 0, survived: 0 }
const ROUTES = ['/', '/api/x', '/llm/health']

/** Every app container on the host (any service): exactly one per deployed service when nothing is left over. */
function appContainers(): string[] {
  settleRetirements()
  return sh('docker', ['ps', '-a', '--filter', 'label=ops-action.service', '--format', '{{.Names}}'])
    .trim()
    .split('\n')
    .filter(Boolean)
    .sort()
}

function liveContainer(service: string): string | undefined {
  return liveOf(tryRun('cat', [`${OPS_DIR}/upstreams/app_${service}.conf`]).out)?.container
}

/**
 * GETs /llm/deps every 0.1 s (a new connection each, 5 s timeout) in a process of its own (this one is busy with
 * the run and its argv sampling) until stopped: how many failed, over how long, when it answered 200 again.
 */
function watchDeps(): {
  stop(): Promise<{ total: number; errors: number; errorSpanS: number; recoveredAt: number; lastStatus: number; samples: string[] }>
} {
  const child = spawn(
    process.execPath,
    [
      '-e',
      `const http = require('node:http');
       const get = () => new Promise(res => {
         const req = http.get('http://127.0.0.1:${HTTP_PORT}/llm/deps', { agent: false, timeout: 5000 }, r => {
           let b = ''; r.on('data', c => (b += c)); r.on('end', () => res([r.statusCode, b]));
         });
         req.on('timeout', () => req.destroy(new Error('timeout')));
         req.on('error', e => res([0, e.message]));
       });
       (async () => { for (;;) { const t0 = Date.now(); const [s, b] = await get(); console.log(JSON.stringify([t0, Date.now(), s, b.slice(0, 160)])); await new Promise(r => setTimeout(r, 100)); } })();`
    ],
    { stdio: ['ignore', 'pipe', 'inherit'] }
  )
  let out = ''
  child.stdout.on('data', (d: Buffer) => (out += d.toString('utf8')))
  return {
    stop: async () => {
      child.kill()
      await new Promise(r => child.on('close', r))
      const rows = out
        .split('\n')
        .filter(Boolean)
        .map(l => JSON.parse(l) as [number, number, number, string])
      const failed = rows.filter(([, , s]) => s !== 200)
      const lastFail = failed.at(-1)?.[1] ?? 0
      return {
        total: rows.length,
        errors: failed.length,
        // From the start of the first failed request to the answer of the last.
        errorSpanS: failed.length ? (lastFail - failed[0][0]) / 1000 : 0,
        recoveredAt: rows.find(([, t, s]) => s === 200 && t > lastFail)?.[1] ?? 0,
        lastStatus: rows.at(-1)?.[2] ?? 0,
        samples: [...new Set(failed.map(([, , s, b]) => `${s} ${b}`))].slice(0, 3)
      }
    }
  }
}

/** The deploy lock is free: root can take it without waiting. */
function lockFree(): boolean {
  return tryRun('flock', ['-n', `${OPS_DIR}/.deploy.lock`, 'true']).code === 0
}

/** Files a run writes on its way (staging dirs, .ops-new, .ops-prev), which a finished deploy leaves none of. */
function stagingLeftovers(): string {
  return tryRun('find', [OPS_DIR, '(', '-name', '*.ops-new', '-o', '-name', '*.ops-prev', '-o', '-name', '.ops-stage', ')']).out.trim()
}

async function allRoutesOk(): Promise<boolean> {
  const codes = await Promise.all(
    ROUTES.map(p =>
      http(p).then(
        r => r.status,
        () => 0
      )
    )
  )
  return codes.every(c => c === 200)
}

describe('faults during a deploy', () => {
  beforeAll(async () => {
    resetHost()
    expectOk(await runAction(infraInputs()))
    for (const inputs of [story('v1'), backend('v1'), frontend('v1')]) expectOk(await runAction(inputs))
  })

  afterAll(() => {
    console.log(`[faults] ${tally.injected} faults injected, ${tally.survived} survived (site answered throughout, next run healed)`)
  })

  /** After a fault: an ordinary deploy under load succeeds and leaves one container per service, nginx on it, the lock free. */
  async function healsOnNextDeploy(version: string): Promise<ActionRun> {
    const { run, load } = await underLoad(frontend('v1', {}, `VERSION=${version}`))
    expectOk(run)
    expect(load.failed, load.errors.join('\n')).toBe(0)
    expect(serviceContainers('frontend')).toEqual([run.outputs.container])
    expect(liveContainer('frontend')).toBe(run.outputs.container)
    expect(appContainers()).toHaveLength(3)
    expect(lockFree()).toBe(true)
    expect(stagingLeftovers()).toBe('')
    expect(JSON.parse((await http('/')).body).version).toBe(version)
    return run
  }

  const killPoints: Array<[string, RegExp, number, string]> = [
    ['while it pulls and takes the lock', /::group::Take deploy lock/, 0, ''],
    ['after the new container started', /::group::Health gate \(direct\)/, 0, ''],
    ['during the health gate', /::group::Health gate \(direct\)/, 1500, 'STARTUP_DELAY=4'],
    ['during the preview check', /::group::Preview, switch and verify through nginx/, 50, ''],
    // Preview, switch and verify are one round trip (~0.1 s, ~0.15 s, ~0.1 s at rest): a kill mid-way leaves the exec in
    // nginx running, so it may switch with no run watching.
    ['around the switch', /::group::Preview, switch and verify through nginx/, 200, ''],
    ['while the old container is handed to its retirement and the run recorded', /::group::Retire old and record/, 0, '']
  ]

  it.each(killPoints)('action process killed %s: the site keeps answering, the next deploy heals', async (_name, when, afterMs, env) => {
    tally.injected++
    const version = `f-killed-${tally.injected}`
    const { run, load } = await underLoad(frontend('v1', {}, `VERSION=${version}${env ? `\n${env}` : ''}`), {
      fault: { when, afterMs },
      settleMs: 1500
    })
    expect(run.signal).toBe('SIGKILL')
    expect(load.failed, load.errors.join('\n')).toBe(0)
    expect(await allRoutesOk()).toBe(true)
    const next = await healsOnNextDeploy(`f-healed-${tally.injected}`)
    // What the killed run left is cleaned up by the next one, which says so.
    if (appContainers().length !== 3 || /Leftovers|leftovers/.test(next.output))
      console.log(
        `[faults] ${_name}: ${next.output
          .split('\n')
          .filter(l => /eftovers/.test(l))
          .join(' | ')}`
      )
    tally.survived++
  })

  it('connection cut on the host side (sshd session killed) during the health gate: fails clearly, the site keeps answering, the next deploy heals', async () => {
    tally.injected++
    const { run, load } = await underLoad(frontend('v1', {}, 'VERSION=f-cut\nSTARTUP_DELAY=3'), {
      fault: {
        when: /::group::Health gate \(direct\)/,
        afterMs: 1000,
        signal: 0,
        onSent: () => tryRun('pkill', ['-KILL', '-f', '^sshd: deploy'])
      },
      settleMs: 1000
    })
    expect(run.code).toBe(1)
    const error = run.output.split('\n').find(l => l.startsWith('::error::')) ?? ''
    console.log(`[faults] connection cut: ${error}`)
    expect(error).toMatch(
      /(connection to the host was lost|deploy lock was lost).*so this run cannot roll back\. nginx routes \/ to frontend-[0-9a-f]{8}; the next deploy of frontend removes what this one left/
    )
    expect(load.failed, load.errors.join('\n')).toBe(0)
    await healsOnNextDeploy('f-healed-cut')
    tally.survived++
  })

  it('action killed while holding the lock: the next deploy takes the lock at once, not after lock-timeout', async () => {
    tally.injected++
    const killed = await runAction(frontend('v1', {}, 'VERSION=f-lock-killed'), {}, { when: /Deploy lock taken/ })
    expect(killed.signal).toBe('SIGKILL')
    const started = Date.now()
    const next = await runAction(frontend('v1', { 'lock-timeout': '600' }, 'VERSION=f-after-kill'))
    expectOk(next)
    const busy = /The host is busy/.test(next.output)
    console.log(
      `[faults] lock after SIGKILL: next deploy ${((Date.now() - started) / 1000).toFixed(1)} s, ${busy ? 'waited' : 'did not wait'}`
    )
    expect(Date.now() - started).toBeLessThan(20_000)
    expect(appContainers()).toHaveLength(3)
    expect(lockFree()).toBe(true)
    tally.survived++
  })

  it('action hung (SIGSTOP) while holding the lock: the next deploy sees no heartbeat and takes over after 30 s, not lock-timeout', async () => {
    tally.injected++
    let hung: ChildProcess | undefined
    const first = runAction(
      frontend('v1', {}, 'VERSION=f-hung'),
      {},
      { when: /Deploy lock taken/, signal: 'SIGSTOP', onSent: c => (hung = c) }
    )
    const deadline = Date.now() + 30_000
    while (!hung) {
      if (Date.now() > deadline) throw new Error(`the first run never took the lock:\n${(await first).output}`)
      await new Promise(r => setTimeout(r, 100))
    }
    const started = Date.now()
    const next = await runAction(frontend('v1', { 'lock-timeout': '600' }, 'VERSION=f-after-hang'))
    const waited = (Date.now() - started) / 1000
    hung.kill('SIGKILL')
    await first
    expectOk(next)
    expect(next.output).toMatch(/sent no heartbeat for \d+ s: it is hung or gone\. Took the lock over/)
    console.log(`[faults] lock held by a hung run: next deploy done after ${waited.toFixed(1)} s (lock-timeout 600 s)`)
    expect(waited).toBeLessThan(60)
    expect(JSON.parse((await http('/')).body).version).toBe('f-after-hang')
    expect(appContainers()).toHaveLength(3)
    tally.survived++
  })

  it('dockerd restarted: every route is healthy again through nginx within 60 s, without a deploy', async () => {
    tally.injected++
    expect(await allRoutesOk()).toBe(true)
    sh('bash', [sandboxScript(), 'stop', 'dockerd'])
    const started = Date.now()
    sh('bash', [sandboxScript(), 'start', 'dockerd'])
    while (!(await allRoutesOk())) {
      expect(Date.now() - started, 'routes healthy again within 60 s').toBeLessThan(60_000)
      await new Promise(r => setTimeout(r, 250))
    }
    console.log(
      `[faults] dockerd restart: all routes 200 through nginx ${((Date.now() - started) / 1000).toFixed(1)} s after dockerd was started again`
    )
    expect(appContainers()).toHaveLength(3)
    tally.survived++
  })

  it("nginx config broken by hand (a stray file nginx includes): the deploy fails at nginx -t with nginx's message and changes nothing", async () => {
    tally.injected++
    const stray = `${OPS_DIR}/upstreams/zz-hand-edit.conf`
    writeFileSync(stray, 'this_is_not_a_directive on;\n')
    try {
      const before = { ops: hashOpsDir(), containers: appContainers() }
      const { run, load } = await underLoad(frontend('v2', {}, 'VERSION=f-never'))
      expect(run.code).toBe(1)
      expect(run.output).toMatch(/nginx -t fails on the host's nginx config, so nginx was not changed and nothing was started/)
      expect(run.output).toMatch(/unknown directive "this_is_not_a_directive" in \/etc\/nginx\/ops-upstreams\/zz-hand-edit\.conf/)
      expect(run.output).not.toMatch(/::group::Start container/)
      expect(load.failed, load.errors.join('\n')).toBe(0)
      expect(hashOpsDir()).toBe(before.ops)
      expect(appContainers()).toEqual(before.containers)
    } finally {
      rmSync(stray, { force: true })
    }
    tally.survived++
  })

  it("a stray file in nginx/ (owned by the action) is removed by the deploy's infra step, which says so", async () => {
    tally.injected++
    const stray = `${OPS_DIR}/nginx/conf.d/zz-hand-edit.conf`
    writeFileSync(stray, 'this_is_not_a_directive on;\n')
    const { run, load } = await underLoad(frontend('v1', {}, 'VERSION=f-after-stray'))
    expectOk(run)
    expect(run.output).toMatch(/remove nginx\/conf\.d\/zz-hand-edit\.conf/)
    expect(tryRun('test', ['-e', stray]).code).toBe(1)
    expect(load.failed, load.errors.join('\n')).toBe(0)
    tally.survived++
  })

  describe('pull failures: a clear error, nothing changed', () => {
    const BIG = `${APPS.frontend}:big`
    beforeAll(() => {
      // An image with a layer of its own (3 MB), so pulling it must download and store something.
      const dir = mkdtempSync(join(tmpdir(), 'big-image-'))
      sh('sh', [
        '-c',
        `head -c 3145728 /dev/urandom > ${dir}/blob && printf 'FROM ${APPS.frontend}:v1\\nCOPY blob /blob\\n' > ${dir}/Dockerfile`
      ])
      sh('docker', ['build', '-q', '-t', BIG, dir])
      const config = mkdtempSync(join(tmpdir(), 'docker-config-'))
      sh('docker', ['--config', config, 'login', '-u', 'ci', '--password-stdin', REGISTRY], registryPassword())
      sh('docker', ['--config', config, 'push', '-q', BIG])
      rmSync(config, { recursive: true, force: true })
      rmSync(dir, { recursive: true, force: true })
    })

    afterAll(() => {
      tryRun('umount', ['/var/lib/docker/tmp'])
      sh('bash', [sandboxScript(), 'start', 'registry'])
    })

    const cases: Array<[string, () => void, () => void, Record<string, string>, string, RegExp, RegExp]> = [
      [
        'registry down',
        () => sh('bash', [sandboxScript(), 'stop', 'registry']),
        () => sh('bash', [sandboxScript(), 'start', 'registry']),
        {},
        'big',
        /Login to 127\.0\.0\.1:5000 as ci failed: .*connection refused/,
        /check that the host can reach the registry/
      ],
      [
        'image missing',
        () => undefined,
        () => undefined,
        {},
        'v404',
        /Pulling 127\.0\.0\.1:5000\/behindy\/sample-frontend:v404 failed: .*(not found|manifest unknown)/,
        /check the image name and tag/
      ],
      [
        'auth wrong',
        () => undefined,
        () => undefined,
        { 'registry-password': 'not-the-password' },
        'big',
        /Login to 127\.0\.0\.1:5000 as ci failed/,
        /check registry-username and registry-password/
      ],
      [
        'disk full on pull',
        () => sh('mount', ['-t', 'tmpfs', '-o', 'size=64k', 'tmpfs', '/var/lib/docker/tmp']),
        () => sh('umount', ['/var/lib/docker/tmp']),
        {},
        'big',
        /no space left on device/,
        /free disk space on the host/
      ]
    ]

    it.each(cases)('%s', async (_name, inject, repair, extra, tag, message, fix) => {
      tally.injected++
      tryRun('docker', ['image', 'rm', `${APPS.frontend}:${tag}`])
      const before = { ops: hashOpsDir(), containers: appContainers() }
      inject()
      let run: ActionRun
      try {
        run = await runAction(frontend(tag, extra))
      } finally {
        repair()
      }
      expect(run.code).toBe(1)
      expect(run.output).toMatch(message)
      expect(run.output).toMatch(fix)
      expect(run.output).not.toMatch(/::group::Infra: Upload files/)
      expect(hashOpsDir()).toBe(before.ops)
      expect(appContainers()).toEqual(before.containers)
      expect(tryRun('docker', ['image', 'inspect', `${APPS.frontend}:${tag}`]).code).not.toBe(0)
      expect(await allRoutesOk()).toBe(true)
      tally.survived++
    })
  })

  it('an infra change that recreates db and redis under live data: postgres rows 100 % kept, apps keep answering, no secret in any argv', async () => {
    tally.injected++
    const ROWS = 10_000
    expect(
      psql(
        `DROP TABLE IF EXISTS fault_rows; CREATE TABLE fault_rows (id int primary key, v text); INSERT INTO fault_rows SELECT g, md5(g::text) FROM generate_series(1, ${ROWS}) g;`
      ).code
    ).toBe(0)
    for (let i = 0; i < 100; i++) expect(redisCli(['set', `k${i}`, `v${i}`], REDIS_PASSWORD).out.trim()).toBe('OK')
    const checksum = psql("SELECT count(*), md5(string_agg(v, ',' ORDER BY id)) FROM fault_rows").out.trim()

    // story with a route that opens a connection to postgres and to redis per request (/llm/deps), as the apps' API does.
    const deps = `PGHOST=db\nPGUSER=${DB.user}\nPGPASSWORD=${DB.pass}\nPGDATABASE=${DB.name}\nREDIS_HOST=redis\nREDIS_PASSWORD=${REDIS_PASSWORD}`
    expectOk(await runAction(deployInputs('story', 'v1', `VERSION=s-deps\n${deps}`)))
    expect((await http('/llm/deps')).status).toBe(200)

    // The change: a postgres setting in the compose file (recreates db) and redis's memory limit (recreates redis).
    const root = actionCopy()
    const compose = join(root, 'compose', 'docker-compose.yml')
    writeFileSync(
      compose,
      readFileSync(compose, 'utf8').replace('      TZ: Asia/Seoul\n', '      TZ: Asia/Seoul\n      PGOPTIONS: -c statement_timeout=60000\n')
    )
    const env = `${INFRA_ENV}\nREDIS_MAXMEMORY=200mb`
    const before = stackContainers()
    const monitor = watchDeps()
    const { result, leaks, samples } = await watchArgv([DB.pass, REDIS_PASSWORD], () =>
      loadDuring(ROUTES, () => runAction(infraInputs({ 'infra-env': env }), { OPS_ACTION_ROOT: root }))
    )
    const runEnded = Date.now()
    expectOk(result.result)
    const outage = (service: string) =>
      Number(new RegExp(`recreated ${service} \\(unreachable for ([\\d.]+) s`).exec(result.result.output)?.[1])
    expect(outage('db')).toBeGreaterThan(0)
    expect(outage('redis')).toBeGreaterThan(0)
    // The API recovers by itself (no deploy): /llm/deps answers 200 again.
    const deadline = Date.now() + 15_000
    while (
      (await http('/llm/deps').then(
        r => r.status,
        () => 0
      )) !== 200 &&
      Date.now() < deadline
    )
      await new Promise(r => setTimeout(r, 200))
    const api = await monitor.stop()
    expect(api.lastStatus, api.samples.join('\n')).toBe(200)
    expect(api.errors).toBeGreaterThan(0)
    const recoveredS = (api.recoveredAt - runEnded) / 1000
    console.log(
      `[faults] db/redis recreated: unreachable ${outage('db')} s (db), ${outage('redis')} s (redis) as the run printed; ` +
        `the API (/llm/deps) failed ${api.errors} of ${api.total} requests over ${api.errorSpanS.toFixed(1)} s, ` +
        `answering 200 again ${Math.abs(recoveredS).toFixed(1)} s ${recoveredS <= 0 ? 'before' : 'after'} the run ended, without a deploy; errors: ${api.samples.join(' | ')}`
    )
    const after = stackContainers()
    expect(after.db).not.toBe(before.db)
    expect(after.nginx).toBe(before.nginx)
    for (const [path, load] of Object.entries(result.loads)) expect(load.failed, `${path}: ${load.errors.join('\n')}`).toBe(0)
    expect(psql("SELECT count(*), md5(string_agg(v, ',' ORDER BY id)) FROM fault_rows").out.trim()).toBe(checksum)
    const keys = Number(redisCli(['dbsize'], REDIS_PASSWORD).out.trim())
    console.log(
      `[faults] infra change under live data: ${ROWS}/${ROWS} postgres rows kept (same checksum); redis (a cache: LRU, no AOF, no RDB) kept ${keys}/100 keys; ${samples} argv samples, ${leaks.length} with a secret`
    )
    expect(samples).toBeGreaterThan(20)
    expect(leaks).toEqual([])

    // Back to the shipped stack and story.
    expectOk(await runAction(infraInputs()))
    expectOk(await runAction(story('v1')))
    expect(psql('SELECT count(*) FROM fault_rows').out.trim()).toBe(String(ROWS))
    tally.survived++
  })
})

describe('connect retries', () => {
  it('sshd away when the action starts: it retries with backoff and succeeds once sshd is back', async () => {
    tally.injected++
    sh('bash', [sandboxScript(), 'stop', 'sshd'])
    const back = new Promise<void>(resolve =>
      setTimeout(() => {
        sh('bash', [sandboxScript(), 'start', 'sshd'])
        resolve()
      }, 2500)
    )
    let run: ActionRun
    try {
      run = await runAction(infraInputs({ 'connect-retries': '4', 'connect-timeout': '5' }))
    } finally {
      await back
    }
    expectOk(run)
    expect(run.output).toMatch(/Cannot connect to 127\.0\.0\.1:2222: ECONNREFUSED.*retrying in 1 s \(attempt 2 of 5\)/)
    expect(run.output).toMatch(/retrying in 2 s \(attempt 3 of 5\)/)
    tally.survived++
  })

  it('nothing listening: fails within connect-timeout x attempts + backoff, naming host, port and what to check', async () => {
    const run = await runAction(
      infraInputs({
        port: '2299',
        'connect-retries': '2',
        'connect-timeout': '2',
        'known-hosts': '',
        'host-fingerprint': connection().fingerprint
      })
    )
    expect(run.code).toBe(1)
    expect(run.output).toMatch(
      /Cannot connect to 127\.0\.0\.1:2299: ECONNREFUSED.*gave up after 3 attempts; check host, port, the security group and that sshd runs/
    )
    // 3 attempts of at most 2 s each, plus 1 s + 2 s of backoff, plus node's start.
    expect(run.ms).toBeLessThan(3 * 2000 + 3000 + 3000)
  })

  describe('a port that accepts TCP but never speaks SSH', () => {
    let server: Server
    const sockets: Socket[] = []
    beforeAll(async () => {
      // A reset from the client (ECONNRESET) is no error of the test's: without a listener it would fail the whole run.
      server = createServer(s => sockets.push(s.on('error', () => undefined)))
      await new Promise<void>(r => server.listen(0, '127.0.0.1', r))
    })
    afterAll(() => {
      for (const s of sockets) s.destroy()
      server.close()
    })

    it('times out each attempt after connect-timeout and gives up with a clear message', async () => {
      const port = (server.address() as { port: number }).port
      const run = await runAction(
        infraInputs({
          port: String(port),
          'connect-retries': '1',
          'connect-timeout': '2',
          'known-hosts': '',
          'host-fingerprint': connection().fingerprint
        })
      )
      expect(run.code).toBe(1)
      expect(run.output).toMatch(new RegExp(`Cannot connect to 127\\.0\\.0\\.1:${port}: .*[Tt]imed out.*gave up after 2 attempts`))
      expect(sockets.length).toBe(2)
      expect(run.ms).toBeLessThan(2 * 2000 + 1000 + 3000)
    })
  })
})
