import { execFileSync } from 'node:child_process'
import { describe, expect, it } from 'vitest'
import { CATALOGUE } from '../../src/catalogue'
import { healthGateLoop } from '../../src/commands/http'
import { reloadNginxAndWait } from '../../src/commands/nginx'
import { retireContainers } from '../../src/commands/retire'
import { swap, type SwapContext } from '../../src/deploy'
import { failureOf, HostError, RolledBack } from '../../src/errors'
import type { HistoryRecord } from '../../src/history'
import type { AppInputs, InfraInputs } from '../../src/inputs'
import { withLock, type Lock } from '../../src/lock'
import { Phases } from '../../src/phases'
import { liveOf, upstreamConf } from '../../src/upstream'
import { appContainer, captureStdout, FakeRemote, sectionsOut, type Rule } from './helpers'

// swap(), the zero-downtime path of deploy, rollback and restart, against an in-memory host: every command it sends
// is answered by the fake and recorded, so each branch's sequence of commands is checked, not just its result.

const stdout = captureStdout()

const OPS = '/opt/behindy-ops'
const NGINX = 'nginx-0123'
const OLD = 'backend-0000aaaa'
const PREV_IMAGE = 'ghcr.io/behindy/back:v1'
const IMAGE = 'ghcr.io/behindy/back:v2'
const NEW_IP = '172.18.0.9'

const infra: InfraInputs = {
  opsDir: OPS,
  network: 'internal',
  settings: {},
  infraEnv: [],
  infraTimeoutS: 120,
  backups: { keep: 7, beforeInfra: true }
}
const app: AppInputs = {
  service: 'backend',
  spec: CATALOGUE.backend,
  env: [['SPRING_PROFILES_ACTIVE', 'prod']],
  healthTimeoutS: 5,
  drainTimeoutS: 2,
  stopTimeoutS: 3,
  keepImages: 3
}
const heldLock: Lock = { lost: () => undefined, check: () => undefined, release: async () => undefined }

/** What each step of a swap sends, told apart by the text of its command. */
const STEP = {
  probe: /@@ops nginx-test/,
  start: /docker run --detach --name backend-[0-9a-f]{8} /,
  healthGate: /echo "healthy \$ip \$last"/,
  preview:
    /' sh http:\/\/127\.0\.0\.1:8504\/api\/ai-stories\/health http:\/\/127\.0\.0\.1:8504\/api\/ 3 9 3 'X-Ops-Upstream: backend-[0-9a-f]{8}:8080'$/,
  // The upstream file's write + nginx -t, one round trip, while the preview runs.
  writeAndTest: /@@ops write/,
  // The switch (and the rollback's reload).
  reload: /docker kill --signal HUP/,
  verify: /' sh http:\/\/127\.0\.0\.1:80\/api\/ai-stories\/health http:\/\/127\.0\.0\.1:80\/api\/ 3 9 3 ''$/,
  forget: /rm -f "\$f\.ops-prev"; done' sh /,
  retire: /until nginx is done with them/,
  history: /cat >> "\$1"' sh \/opt\/behindy-ops\/history\.jsonl$/,
  images: /^docker images --format /,
  restore: /mv -f "\$f\.ops-prev" "\$f"/,
  inspectNew: /^\{ docker inspect --format .* backend-[0-9a-f]{8}; \} 2>\/dev\/null$/,
  logs: /@@ops logs/,
  removeNew: /docker rm --force --volumes "\$c".*' sh backend-[0-9a-f]{8}$/
}
type Step = keyof typeof STEP
const stepOf = (sh: string): string => Object.entries(STEP).find(([, re]) => re.test(sh))?.[0] ?? sh
const steps = (remote: FakeRemote): string[] => remote.calls.map(c => stepOf(c.sh))

const rounds = (codes: string, ok: boolean) => ({ stdout: `${`${codes}\n`.repeat(ok ? 3 : 9)}${ok ? 'ok\n' : ''}` })
const TEST_OK = 'nginx: configuration file /etc/nginx/ops/nginx.conf test is successful'
const WORKERS = 'PID COMMAND\n   52 nginx: worker process\n   41 nginx: worker process is shutting down\n'
/** Answers the first reload with `first`, every later one (the rollback's) as a healthy nginx does. */
const firstReload = (first: { code: number; stdout?: string; stderr?: string }): Rule[1] => {
  let n = 0
  return () => (n++ === 0 ? first : { stdout: WORKERS })
}

/** A host where backend's OLD container serves PREV_IMAGE and every step succeeds at once. */
function healthyHost(): FakeRemote {
  const rules: Array<[Step, Rule[1]]> = [
    [
      'probe',
      {
        stdout: sectionsOut({
          containers: appContainer('backend', { name: OLD, image: PREV_IMAGE, port: 8080, ips: { internal: '172.18.0.4' } }),
          upstream: upstreamConf('app_backend', 8080, { container: OLD, image: PREV_IMAGE }),
          memory: 'MemTotal:        8000000 kB\nMemAvailable:    4000000 kB',
          'nginx-test': TEST_OK
        })
      }
    ],
    ['start', { stdout: 'cid\n' }],
    ['healthGate', { stdout: `healthy ${NEW_IP} 200\n` }],
    ['preview', rounds('200 200', true)],
    ['writeAndTest', { stdout: sectionsOut({ write: '', test: TEST_OK }) }],
    ['reload', { stdout: WORKERS }],
    ['verify', rounds('200 200', true)],
    ['forget', {}],
    ['retire', {}],
    ['history', {}],
    ['images', { stdout: `${IMAGE} id2 2026-01-02\n${PREV_IMAGE} id1 2026-01-01\n` }],
    ['restore', {}],
    [
      'inspectNew',
      call => {
        const name = /(backend-[0-9a-f]{8})/.exec(call.sh)?.[1] as string
        return { stdout: appContainer('backend', { name, image: IMAGE, port: 8080, ips: { internal: NEW_IP } }) }
      }
    ],
    ['logs', { stdout: sectionsOut({ logs: '2026-01-01T00:00:00Z boom', health: '' }) }],
    ['removeNew', {}]
  ]
  return new FakeRemote(rules.map(([step, answer]): Rule => [STEP[step], answer]))
}

function context(over: Partial<SwapContext> = {}): SwapContext {
  return {
    infra,
    release: { app, image: IMAGE, mode: 'deploy', inherit: false },
    nginxId: NGINX,
    lock: heldLock,
    phases: new Phases(),
    ...over
  }
}

/** The records appended to the history, as written. */
const history = (remote: FakeRemote): HistoryRecord[] =>
  remote.matching(STEP.history).map(c => JSON.parse(String(c.stdin)) as HistoryRecord)
const newName = (remote: FakeRemote): string => /--name (backend-[0-9a-f]{8}) /.exec(remote.matching(STEP.start)[0].sh)?.[1] as string

const PHASES = [
  'Preflight',
  'Start container',
  'Health gate (direct)',
  'Verify preview through nginx',
  'Switch nginx',
  'Verify through nginx',
  'Retire old and record'
]
/** What a rollback sends once the new container is there: its state and logs, its removal, the record. */
const REMOVE_NEW = ['inspectNew', 'logs', 'removeNew', 'history']
/** What a rollback after the switch sends first: the previous upstream file back, nginx reloaded with it, the copies dropped. */
const UNSWITCH = ['restore', 'reload', 'forget']
const EMERG = 'nginx: [emerg] host not found in upstream "backend-1a2b3c4d:8080" in /etc/nginx/ops-upstreams/app_backend.conf:4'

/** What a successful swap sends, in order (as steps() names them). */
const EVERY_STEP = ['probe', 'start', 'healthGate', 'preview', 'writeAndTest', 'reload', 'verify', 'forget', 'retire', 'history', 'images']

describe('swap (against a fake host)', () => {
  it('success: probe, start, health gate, preview with the upstream written and tested, switch (reload), verify, retire old in the background and record', async () => {
    const remote = healthyHost()
    const ctx = context()
    const r = await swap(remote, ctx)
    expect(remote.unmatched).toEqual([])
    const name = newName(remote)
    expect(r).toEqual({ container: name, image: IMAGE, previousImage: PREV_IMAGE })
    // Nothing stopped or removed by the run itself: the old container goes to its retirement.
    expect(steps(remote)).toEqual(EVERY_STEP)
    // The env goes on stdin, never on the command line.
    const [start] = remote.matching(STEP.start)
    expect(start.stdin).toBe('SPRING_PROFILES_ACTIVE=prod\n')
    expect(start.sh).not.toContain('prod')
    // The whole gate in one round trip: the new container on the network, probed from nginx at its port and health
    // path, for up to health-timeout.
    expect(remote.matching(STEP.healthGate)[0].sh).toBe(
      healthGateLoop({ container: name, network: 'internal', via: NGINX, port: 8080, path: '/api/ai-stories/health', timeoutS: 5 }).sh
    )
    // The new upstream file names the new container: it travels in the archive of the write + nginx -t command, and
    // nginx loads it only at the switch (a reload of its own).
    const [write] = remote.matching(STEP.writeAndTest)
    const conf = execFileSync('tar', ['-xOf', '-', 'upstreams/app_backend.conf'], { input: write.stdin as Buffer, encoding: 'utf8' })
    expect(liveOf(conf)).toEqual({ container: name, image: IMAGE })
    expect(write.sh).toContain(`docker exec ${NGINX} nginx -t -c /etc/nginx/ops/nginx.conf`)
    expect(write.sh).not.toMatch(STEP.reload)
    expect(remote.matching(STEP.reload).map(c => c.sh)).toEqual([reloadNginxAndWait(NGINX, 10).sh])
    expect(stdout.text()).toContain(`nginx now routes /api/ to ${name}:8080 (now ${NEW_IP}).`)
    // The old container is handed to a job on the host, by name, with the drain and stop timeouts; old workers are
    // waited for at most keepalive_min_timeout + 1 s (here capped by the 2 s drain-timeout). The run does not wait.
    expect(remote.matching(STEP.retire)[0].sh).toBe(
      retireContainers({
        nginxId: NGINX,
        port: 8080,
        containers: [OLD],
        drainTimeoutS: 2,
        workersS: 2,
        stopTimeoutS: 3,
        log: `${OPS}/retire.log`
      }).sh
    )
    expect(stdout.text()).toContain(
      `${OLD} (${PREV_IMAGE}): stopped (SIGTERM, stop-timeout 3 s) and removed in the background on the host once nginx has no request in flight to it`
    )
    expect(
      remote
        .matching(STEP.forget)[0]
        .sh.endsWith(`' sh ${OPS}/upstreams/app_backend.conf ${OPS}/upstreams/app_backend.locations ${OPS}/upstreams/app_backend_vars.conf`)
    ).toBe(true)
    expect(history(remote)).toEqual([
      expect.objectContaining({
        mode: 'deploy',
        service: 'backend',
        image: IMAGE,
        previousImage: PREV_IMAGE,
        container: name,
        result: 'success'
      })
    ])
    // Every phase, the one that writes the record included (still running then).
    expect(Object.keys(history(remote)[0].phases)).toEqual(PHASES)
    expect(ctx.phases.records.map(p => p.name)).toEqual(PHASES)
  })

  it('the health gate fails (the container exited): rolled back before the switch, the upstream file never written', async () => {
    const remote = healthyHost().prepend([STEP.healthGate, { stdout: 'exited exited 0 none\n' }])
    const e = await swap(remote, context()).catch((x: unknown) => x)
    expect(remote.unmatched).toEqual([])
    const name = newName(remote)
    expect(e).toBeInstanceOf(RolledBack)
    expect((e as RolledBack).message).toBe(`${name} exited before becoming healthy (last health probe: no probe yet)`)
    expect((e as RolledBack).notes).toEqual([`removed the new container ${name}`, `${OLD} kept serving`])
    // Its logs are shown, then it is removed; the old container, nginx and the upstream file are left alone.
    expect(steps(remote)).toEqual(['probe', 'start', 'healthGate', ...REMOVE_NEW])
    expect(remote.matching(STEP.removeNew)[0].sh.endsWith(`' sh ${name}`)).toBe(true)
    expect(history(remote)).toEqual([
      expect.objectContaining({ result: 'rolled-back', container: name, previousImage: PREV_IMAGE, error: (e as Error).message })
    ])
  })

  it('the preview fails: the upstream file written meanwhile is put back without a reload (nginx never loaded it)', async () => {
    const remote = healthyHost().prepend([STEP.preview, rounds('200 502', false)])
    const e = await swap(remote, context()).catch((x: unknown) => x)
    expect(remote.unmatched).toEqual([])
    const name = newName(remote)
    expect(e).toBeInstanceOf(RolledBack)
    expect((e as Error).message).toBe(
      "The new release does not answer well on nginx's preview port (before any client was switched): GET /api/ai-stories/health -> 200, GET /api/ -> 502"
    )
    expect((e as RolledBack).notes).toEqual([`removed the new container ${name}`, `${OLD} kept serving`])
    expect(steps(remote)).toEqual(['probe', 'start', 'healthGate', 'preview', 'writeAndTest', 'restore', ...REMOVE_NEW])
    expect(remote.matching(STEP.restore)[0].sh.endsWith(`' sh ${OPS}/upstreams/app_backend.conf`)).toBe(true)
  })

  it('nginx -t fails on the new upstream file (the preview passes): the file put back by the test, rolled back before the switch', async () => {
    const remote = healthyHost().prepend([STEP.writeAndTest, { stdout: sectionsOut({ write: '', test: { rc: 1, out: EMERG } }) }])
    const e = await swap(remote, context()).catch((x: unknown) => x)
    expect(remote.unmatched).toEqual([])
    const name = newName(remote)
    expect(e).toBeInstanceOf(RolledBack)
    expect((e as Error).message).toBe(`nginx -t fails on the host's nginx config, so nginx was not changed:\n${EMERG}`)
    expect((e as RolledBack).notes).toEqual([`removed the new container ${name}`, `${OLD} kept serving`])
    // One restore (writeAndTest's own), no reload.
    expect(steps(remote)).toEqual(['probe', 'start', 'healthGate', 'preview', 'writeAndTest', 'restore', ...REMOVE_NEW])
  })

  it('both fail: the preview is the error; the file is put back once (by the test), no reload', async () => {
    const remote = healthyHost().prepend(
      [STEP.preview, rounds('502 502', false)],
      [STEP.writeAndTest, { stdout: sectionsOut({ write: '', test: { rc: 1, out: EMERG } }) }]
    )
    const e = await swap(remote, context()).catch((x: unknown) => x)
    expect(remote.unmatched).toEqual([])
    expect(e).toBeInstanceOf(RolledBack)
    expect((e as Error).message).toMatch(/^The new release does not answer well on nginx's preview port/)
    expect(steps(remote)).toEqual(['probe', 'start', 'healthGate', 'preview', 'writeAndTest', 'restore', ...REMOVE_NEW])
  })

  it('nginx does not apply the new file at the switch (reload fails): the previous upstream restored and nginx reloaded, then the container removed', async () => {
    const remote = healthyHost().prepend([STEP.reload, firstReload({ code: 4 })])
    const e = await swap(remote, context()).catch((x: unknown) => x)
    expect(remote.unmatched).toEqual([])
    const name = newName(remote)
    expect(e).toBeInstanceOf(RolledBack)
    expect((e as Error).message).toBe('nginx did not apply the new configuration within 10 s (its old workers are still serving)')
    expect((e as RolledBack).notes).toEqual([
      `nginx routes /api/ to ${OLD} (${PREV_IMAGE}) again`,
      `removed the new container ${name}`,
      `${OLD} kept serving`
    ])
    expect(steps(remote)).toEqual(['probe', 'start', 'healthGate', 'preview', 'writeAndTest', 'reload', ...UNSWITCH, ...REMOVE_NEW])
    expect(remote.matching(STEP.restore)[0].sh.endsWith(`' sh ${OPS}/upstreams/app_backend.conf`)).toBe(true)
  })

  it('verify through nginx answers 502 after the switch: the previous upstream restored and nginx reloaded, then the container removed', async () => {
    const remote = healthyHost().prepend([STEP.verify, rounds('502 502', false)])
    const e = await swap(remote, context()).catch((x: unknown) => x)
    expect(remote.unmatched).toEqual([])
    const name = newName(remote)
    expect(e).toBeInstanceOf(RolledBack)
    expect((e as Error).message).toBe(
      'The new release does not answer well through nginx: GET /api/ai-stories/health -> 502, GET /api/ -> 502'
    )
    expect((e as RolledBack).notes).toEqual([
      `nginx routes /api/ to ${OLD} (${PREV_IMAGE}) again`,
      `removed the new container ${name}`,
      `${OLD} kept serving`
    ])
    // The old container was never handed to its retirement.
    expect(steps(remote)).toEqual([
      'probe',
      'start',
      'healthGate',
      'preview',
      'writeAndTest',
      'reload',
      'verify',
      ...UNSWITCH,
      ...REMOVE_NEW
    ])
    expect(remote.matching(STEP.restore)[0].sh.endsWith(`' sh ${OPS}/upstreams/app_backend.conf`)).toBe(true)
    expect(history(remote)).toEqual([expect.objectContaining({ result: 'rolled-back', container: name })])
  })

  it('the connection is cut at the switch: a HostError that it cannot roll back, and nothing more is sent', async () => {
    const remote = healthyHost().prepend([
      STEP.reload,
      (_call, r) => {
        r.cut()
        return { code: 255, stderr: 'connection reset by peer' }
      }
    ])
    const e = await swap(remote, context()).catch((x: unknown) => x)
    const name = newName(remote)
    expect(e).toBeInstanceOf(HostError)
    expect(e).not.toBeInstanceOf(RolledBack)
    const message = (e as Error).message
    expect(message).toMatch(/^listing nginx processes failed \(exit 255\): connection reset by peer\n/)
    // Switched (the file names the new container), so that is where nginx routes now.
    expect(message).toContain(
      `Then the connection to the host was lost, so this run cannot roll back. nginx routes /api/ to ${name}; the next deploy of backend removes what this one left.`
    )
    expect(failureOf(e)).toMatchObject({ fix: 'run the deploy again', notes: undefined })
    expect(steps(remote)).toEqual(['probe', 'start', 'healthGate', 'preview', 'writeAndTest', 'reload'])
  })

  it('the lock is lost during the health gate: the next phase stops the run, which does not roll back', async () => {
    // The real lock, held by a command of the fake host: its holder process dies during the health gate.
    const remote = healthyHost().prepend([
      STEP.healthGate,
      (_call, r) => {
        r.endHeld(137)
        return { stdout: `healthy ${NEW_IP} 200\n` }
      }
    ])
    const phases = new Phases()
    const e = await withLock(remote, phases, { opsDir: OPS, timeoutS: 30, what: 'deploy of backend' }, lock =>
      swap(remote, context({ lock, phases }))
    ).catch((x: unknown) => x)
    expect(remote.unmatched).toEqual([])
    expect(e).toBeInstanceOf(HostError)
    expect(e).not.toBeInstanceOf(RolledBack)
    const message = (e as Error).message
    expect(message).toMatch(/^This run lost the deploy lock \(its holder process ended \(exit 137\)\)/)
    // Not switched: nginx still routes to the old container.
    expect(message).toContain(
      `Then the deploy lock was lost (its holder process ended (exit 137)), so this run cannot roll back. nginx routes /api/ to ${OLD};`
    )
    expect(remote.calls[0].held).toBe(true)
    expect(steps(remote).slice(1)).toEqual(['probe', 'start', 'healthGate'])
    expect(phases.records.map(p => p.name)).toEqual(['Take deploy lock', 'Preflight', 'Start container', 'Health gate (direct)'])
  })

  it('a first deploy (nothing live): nothing to retire; a failure leaves the service undeployed', async () => {
    const empty = sectionsOut({ containers: '', upstream: '', memory: 'MemAvailable: 4000000 kB', 'nginx-test': 'ok' })
    const ok = healthyHost().prepend([STEP.probe, { stdout: empty }])
    expect(await swap(ok, context())).toMatchObject({ previousImage: '' })
    expect(steps(ok)).toEqual([
      'probe',
      'start',
      'healthGate',
      'preview',
      'writeAndTest',
      'reload',
      'verify',
      'forget',
      'history',
      'images'
    ])
    expect(stdout.text()).toContain('No previous container to stop.')

    const failing = healthyHost().prepend([STEP.probe, { stdout: empty }], [STEP.verify, rounds('502 502', false)])
    const e = (await swap(failing, context()).catch((x: unknown) => x)) as RolledBack
    expect(e.notes[0]).toBe('nginx routes /api/ to the 503 placeholder again')
    expect(e.notes.at(-1)).toBe('backend stays undeployed')
  })

  it('the retirement cannot be started: the deploy succeeds with a warning (the new release serves; the next run reaps the old one)', async () => {
    const remote = healthyHost().prepend([
      STEP.retire,
      { code: 1, stderr: 'sh: cannot create /opt/behindy-ops/retire.log: Permission denied' }
    ])
    const r = await swap(remote, context())
    expect(remote.unmatched).toEqual([])
    expect(r.container).toBe(newName(remote))
    expect(stdout.text()).toContain(`::warning::Could not start the retirement of ${OLD} (exit 1)`)
    expect(steps(remote)).toEqual(EVERY_STEP)
  })
})
