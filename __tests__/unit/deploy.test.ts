import { execFileSync } from 'node:child_process'
import { describe, expect, it } from 'vitest'
import { CATALOGUE } from '../../src/catalogue'
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

captureStdout()

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
  inspectNew: /^\{ docker inspect --format .* backend-[0-9a-f]{8}; \} 2>\/dev\/null$/,
  healthProbe: /probe "\$1"' sh http:\/\/172\.18\.0\.9:8080\/api\/ai-stories\/health 2 ''$/,
  preview:
    /' sh http:\/\/127\.0\.0\.1:8504\/api\/ai-stories\/health http:\/\/127\.0\.0\.1:8504\/api\/ 3 9 3 'X-Ops-Upstream: backend-[0-9a-f]{8}:8080'$/,
  writeAndTest: /@@ops write/,
  reload: /docker kill --signal HUP/,
  verify: /' sh http:\/\/127\.0\.0\.1:80\/api\/ai-stories\/health http:\/\/127\.0\.0\.1:80\/api\/ 3 9 3 ''$/,
  drainWait: /\/proc\/\$p\/net\/tcp/,
  forget: /rm -f "\$f\.ops-prev"; done' sh /,
  stopOld: /docker stop --time 3 backend-0000aaaa; \} >\/dev\/null 2>&1; \}; \{ docker rm --force --volumes backend-0000aaaa; \}$/,
  history: /cat >> "\$1"' sh \/opt\/behindy-ops\/history\.jsonl$/,
  images: /^docker images --format /,
  restore: /mv -f "\$f\.ops-prev" "\$f"/,
  logs: /@@ops logs/,
  removeNew: /^docker rm --force --volumes backend-[0-9a-f]{8}$/
}
type Step = keyof typeof STEP
const stepOf = (sh: string): string => Object.entries(STEP).find(([, re]) => re.test(sh))?.[0] ?? sh
const steps = (remote: FakeRemote): string[] => remote.calls.map(c => stepOf(c.sh))

const rounds = (codes: string, ok: boolean) => ({ stdout: `${`${codes}\n`.repeat(ok ? 3 : 9)}${ok ? 'ok\n' : ''}` })
const newContainer = (sh: string, over: { status?: string; health?: string } = {}) => {
  const name = /(backend-[0-9a-f]{8})/.exec(sh)?.[1] as string
  return { stdout: appContainer('backend', { name, image: IMAGE, port: 8080, ips: { internal: NEW_IP }, ...over }) }
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
          'nginx-test': 'nginx: configuration file /etc/nginx/ops/nginx.conf test is successful'
        })
      }
    ],
    ['start', { stdout: 'cid\n' }],
    ['inspectNew', call => newContainer(call.sh)],
    ['healthProbe', { stdout: '200\n' }],
    ['preview', rounds('200 200', true)],
    [
      'writeAndTest',
      { stdout: sectionsOut({ write: '', test: 'nginx: configuration file /etc/nginx/ops/nginx.conf test is successful' }) }
    ],
    ['reload', { stdout: 'PID COMMAND\n   41 nginx: worker process\n   17 nginx: worker process is shutting down\n' }],
    ['verify', rounds('200 200', true)],
    ['drainWait', {}],
    ['forget', {}],
    ['stopOld', {}],
    ['history', {}],
    ['images', { stdout: `${IMAGE} id2 2026-01-02\n${PREV_IMAGE} id1 2026-01-01\n` }],
    ['restore', {}],
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

describe('swap (against a fake host)', () => {
  it('success: probe, start, health gate, preview, switch (write + nginx -t), reload, verify, drain, stop old, record', async () => {
    const remote = healthyHost()
    const ctx = context()
    const r = await swap(remote, ctx)
    expect(remote.unmatched).toEqual([])
    const name = newName(remote)
    expect(r).toEqual({ container: name, image: IMAGE, previousImage: PREV_IMAGE })
    // One inspect and one probe: healthy at the first look, so the gate never waited for its next poll.
    expect(steps(remote)).toEqual([
      'probe',
      'start',
      'inspectNew',
      'healthProbe',
      'preview',
      'writeAndTest',
      'reload',
      'verify',
      'drainWait',
      'forget',
      'stopOld',
      'history',
      'images'
    ])
    // The env goes on stdin, never on the command line.
    const [start] = remote.matching(STEP.start)
    expect(start.stdin).toBe('SPRING_PROFILES_ACTIVE=prod\n')
    expect(start.sh).not.toContain('prod')
    // The new upstream file names the new container: it travels in the archive of the write + nginx -t command.
    const [write] = remote.matching(STEP.writeAndTest)
    const conf = execFileSync('tar', ['-xOf', '-', 'upstreams/app_backend.conf'], { input: write.stdin as Buffer, encoding: 'utf8' })
    expect(liveOf(conf)).toEqual({ container: name, image: IMAGE })
    expect(write.sh).toContain(`docker exec ${NGINX} nginx -t -c /etc/nginx/ops/nginx.conf`)
    // nginx's requests to the old container are waited for, by name, before it stops; old workers for at most
    // keepalive_min_timeout + 1 s (here capped by the 2 s drain-timeout).
    expect(remote.matching(STEP.drainWait)[0].sh).toMatch(new RegExp(`' sh ${NGINX} 8080 2 2 ${OLD}$`))
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
    expect(Object.keys(history(remote)[0].phases)).toEqual([
      'Preflight',
      'Start container',
      'Health gate (direct)',
      'Verify preview through nginx',
      'Switch nginx',
      'Reload nginx',
      'Verify through nginx',
      'Drain',
      'Stop old',
      'Record and prune'
    ])
  })

  it('the health gate fails (the container exited): rolled back before the switch, the upstream file never written', async () => {
    const remote = healthyHost().prepend([STEP.inspectNew, call => newContainer(call.sh, { status: 'exited', health: 'unhealthy' })])
    const e = await swap(remote, context()).catch((x: unknown) => x)
    expect(remote.unmatched).toEqual([])
    const name = newName(remote)
    expect(e).toBeInstanceOf(RolledBack)
    expect((e as RolledBack).message).toBe(`${name} exited before becoming healthy (last health probe: no probe yet)`)
    expect((e as RolledBack).notes).toEqual([`removed the new container ${name}`, `${OLD} kept serving`])
    // Its logs are shown, then it is removed; the old container, nginx and the upstream file are left alone.
    expect(steps(remote)).toEqual(['probe', 'start', 'inspectNew', 'inspectNew', 'logs', 'removeNew', 'history'])
    expect(remote.matching(STEP.removeNew)[0].sh).toBe(`docker rm --force --volumes ${name}`)
    for (const s of ['writeAndTest', 'reload', 'restore', 'stopOld'] as const) expect(remote.matching(STEP[s]), s).toEqual([])
    expect(history(remote)).toEqual([
      expect.objectContaining({ result: 'rolled-back', container: name, previousImage: PREV_IMAGE, error: (e as Error).message })
    ])
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
    expect(steps(remote)).toEqual([
      'probe',
      'start',
      'inspectNew',
      'healthProbe',
      'preview',
      'writeAndTest',
      'reload',
      'verify',
      'drainWait',
      'restore',
      'reload',
      'forget',
      'inspectNew',
      'logs',
      'removeNew',
      'history'
    ])
    // The restore puts back the upstream file only; the old container was never stopped.
    expect(remote.matching(STEP.restore)[0].sh.endsWith(`' sh ${OPS}/upstreams/app_backend.conf`)).toBe(true)
    expect(remote.matching(STEP.stopOld)).toEqual([])
    expect(history(remote)).toEqual([expect.objectContaining({ result: 'rolled-back', container: name })])
  })

  it('the connection is cut at the reload: a HostError that it cannot roll back, and nothing more is sent', async () => {
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
    expect(steps(remote)).toEqual(['probe', 'start', 'inspectNew', 'healthProbe', 'preview', 'writeAndTest', 'reload'])
  })

  it('the lock is lost during the health gate: the next phase stops the run, which does not roll back', async () => {
    // The real lock, held by a command of the fake host: its holder process dies during the health probe.
    const remote = healthyHost().prepend([
      STEP.healthProbe,
      (_call, r) => {
        r.endHeld(137)
        return { stdout: '200\n' }
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
    expect(steps(remote).slice(1)).toEqual(['probe', 'start', 'inspectNew', 'healthProbe'])
    expect(phases.records.map(p => p.name)).toEqual(['Take deploy lock', 'Preflight', 'Start container', 'Health gate (direct)'])
  })

  it('a first deploy (nothing live): no drain wait and nothing to stop; a failure leaves the service undeployed', async () => {
    const empty = sectionsOut({ containers: '', upstream: '', memory: 'MemAvailable: 4000000 kB', 'nginx-test': 'ok' })
    const ok = healthyHost().prepend([STEP.probe, { stdout: empty }])
    expect(await swap(ok, context())).toMatchObject({ previousImage: '' })
    expect(steps(ok)).not.toContain('drainWait')
    expect(steps(ok)).not.toContain('stopOld')

    const failing = healthyHost().prepend([STEP.probe, { stdout: empty }], [STEP.verify, rounds('502 502', false)])
    const e = (await swap(failing, context()).catch((x: unknown) => x)) as RolledBack
    expect(e.notes[0]).toBe('nginx routes /api/ to the 503 placeholder again')
    expect(e.notes.at(-1)).toBe('backend stays undeployed')
  })
})
