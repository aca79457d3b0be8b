import { execFileSync } from 'node:child_process'
import { describe, expect, it, vi } from 'vitest'
import { canaryFiles, canaryPaths, type CanaryInputs } from '../../src/canary'
import { CATALOGUE } from '../../src/catalogue'
import { healthGateLoop } from '../../src/commands/http'
import { nginxTest, reloadNginxAndWait } from '../../src/commands/nginx'
import { stashFiles } from '../../src/commands/files'
import { DIGESTS_MARK } from '../../src/commands/images'
import { retireContainers } from '../../src/commands/retire'
import { previewSwitchVerify } from '../../src/commands/switch'
import { runDeploy, swap, type SwapContext } from '../../src/deploy'
import { failureOf, HostError, RolledBack } from '../../src/errors'
import type { HistoryRecord } from '../../src/history'
import { runInfra, type InfraChange, type InfraResult } from '../../src/infra'
import type { AppInputs, AppRun, InfraInputs } from '../../src/inputs'
import { DIGEST_LABEL, IMAGE_LABEL } from '../../src/labels'
import { withLock, type Lock } from '../../src/lock'
import { Phases } from '../../src/phases'
import type { Sh } from '../../src/shell'
import type { RunResult } from '../../src/ssh'
import { liveOf, upstreamConf } from '../../src/upstream'
import { appContainer, captureStdout, dockerArgvs, FakeRemote, sectionsOut, until, type Rule } from './helpers'

// swap(), the zero-downtime path of deploy, rollback and restart, against an in-memory host: every command it sends
// is answered by the fake and recorded, so each branch's sequence of commands is checked, not just its result.

const stdout = captureStdout()

// runDeploy's own part (what it runs beside infra) is tested with infra stubbed: runInfra is infra.test's, and what
// a run of it changed is all runDeploy reads of it (its phases and its `ready` are kept, see fakeInfra).
vi.mock('../../src/infra', async importOriginal => ({ ...(await importOriginal<Record<string, unknown>>()), runInfra: vi.fn() }))

const OPS = '/opt/behindy-ops'
const NGINX = 'nginx-0123'
const OLD = 'backend-0000aaaa'
const PREV_IMAGE = 'ghcr.io/behindy/back:v1'
const IMAGE = 'ghcr.io/behindy/back:v2'
/** What the tags named when they were pulled. */
const PREV_DIGEST = `ghcr.io/behindy/back@sha256:${'1'.repeat(64)}`
const DIGEST = `ghcr.io/behindy/back@sha256:${'2'.repeat(64)}`
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
/** backend's canary files on the host: a deploy without a canary moves an interrupted canary's leftovers aside. */
const CANARY_FILES = canaryPaths('backend').map(p => `${OPS}/${p}`)

/** A new container's name (any service's). */
const NEW = '[a-z][a-z0-9-]*-[0-9a-f]{8}'

/** What each step of a swap sends, told apart by the text of its command. */
const STEP = {
  probe: /@@ops nginx-test/,
  start: new RegExp(`docker run --detach --name ${NEW} `),
  healthGate: /echo "healthy \$ip \$last"/,
  // The upstream file's write + nginx -t, one round trip, while the health gate runs.
  writeAndTest: /@@ops write/,
  // Preview, switch (the reload) and verify: one docker exec into nginx (its script holds the reload function too,
  // so the rollback's reload below is told apart by how it ends).
  throughNginx: /; at end; exit \$r' sh \/tmp\/nginx\.pid /,
  // A reload of its own: the rollback's (and a service outside the catalogue's, for its route).
  reload: /reload "\$1" "\$2"' sh \/tmp\/nginx\.pid \d+$/,
  forget: /rm -f "\$f\.ops-prev"; done' sh /,
  retire: /until nginx is done with them/,
  history: /cat >> "\$1"' sh \/opt\/behindy-ops\/history\.jsonl$/,
  images: /^docker images --digests --format '\{\{\.Repository\}\}:\{\{\.Tag\}\} \{\{\.Digest\}\} \{\{\.ID\}\}' ghcr\.io\/behindy\/back$/,
  rmi: /docker rmi "\$i"/,
  restore: /mv -f "\$f\.ops-prev" "\$f"/,
  inspectNew: new RegExp(`^\\{ docker inspect --format .* ${NEW}; \\} 2>/dev/null$`),
  logs: /@@ops logs/,
  removeNew: new RegExp(`docker rm --force --volumes "\\$c".*' sh ${NEW}$`),
  // The release command's one-off container, and the canary's log (cleared, read, removed inside nginx).
  releaseCommand: /echo "@@ops-release \$rc"/,
  clearLog: /': > "\$1"' sh \/tmp\/ops-canary-backend\.log$/,
  readLog: /tail -c \+/,
  removeLog: /^docker exec nginx-0123 rm -f \/tmp\/ops-canary-backend\.log$/,
  // Ending a canary: which container the upstream file names (a promotion may have written it).
  readUpstream: /^sh -c '\[ -f "\$1" \] && cat "\$1"; exit 0' sh \/opt\/behindy-ops\/upstreams\/app_backend\.conf$/,
  // Ending a canary: its files moved aside on their own (no nginx -t: the config is the one before the canary).
  stash: /^sh -c 'for f; do if \[ -e "\$f" \]; then mv -f "\$f" "\$f\.ops-prev"/
}
type Step = keyof typeof STEP
const stepOf = (sh: string): string => Object.entries(STEP).find(([, re]) => re.test(sh))?.[0] ?? sh
/**
 * The steps sent, in order. The health gate and the upstream file's write + test run at the same time, so which of
 * the two the fake gets first is not the code's to promise: two of them next to each other are put gate first.
 */
function steps(remote: FakeRemote): string[] {
  const all = remote.calls.map(c => stepOf(c.sh))
  const i = all.indexOf('healthGate')
  if (i > 0 && all[i - 1] === 'writeAndTest') [all[i - 1], all[i]] = [all[i], all[i - 1]]
  return all
}

/** What waves prints: NEED (3) pairs per wave, `ok` after a good one; 5 bad waves otherwise. */
const waves = (codes: string, ok: boolean) => `${`${codes}\n`.repeat(ok ? 3 : 15)}${ok ? 'ok\n' : ''}`
const TEST_OK = 'nginx: configuration file /etc/nginx/ops/nginx.conf test is successful'
const WORKERS = 'PID COMMAND\n1 nginx: master process nginx\n52 nginx: worker process\n41 nginx: worker process is shutting down\n'
type Stage = 'preview' | 'switch' | 'verify'
/**
 * What previewSwitchVerify prints for the stages that ran (a section each, its `@@ops-at` mark before it, 0.25 s
 * apart), then the end mark; its exit code is 0 only when all three passed.
 */
function switchOut(stages: Partial<Record<Stage, string | { rc: number; out: string }>>): Partial<RunResult> {
  const names = Object.keys(stages) as Stage[]
  const at = (i: number) => (1234.5 + i * 0.25).toFixed(2)
  const out = names.map((name, i) => `@@ops-at ${name} ${at(i)}\n${sectionsOut({ [name]: stages[name] ?? '' })}`).join('')
  const passed = names.length === 3 && Object.values(stages).every(p => typeof p === 'string' || p.rc === 0)
  return { code: passed ? 0 : 1, stdout: `${out}@@ops-at end ${at(names.length)}\n` }
}
const PASSED = { preview: waves('200 200', true), switch: WORKERS, verify: waves('200 200', true) }

/** The rules of a host where backend's OLD container serves PREV_IMAGE (PREV_DIGEST) and every step succeeds at once. */
function healthyRules(): Rule[] {
  const rules: Array<[Step, Rule[1]]> = [
    [
      'probe',
      {
        stdout: sectionsOut({
          containers: appContainer('backend', { name: OLD, image: PREV_IMAGE, port: 8080, ips: { internal: '172.18.0.4' } }),
          upstream: upstreamConf('app_backend', 8080, { container: OLD, image: PREV_IMAGE, digest: PREV_DIGEST }),
          memory: 'MemTotal:        8000000 kB\nMemAvailable:    4000000 kB',
          'nginx-test': TEST_OK,
          // Nothing in maintenance (listMaintenance prints one name per upstreams/*.maintenance.map).
          maintenance: ''
        })
      }
    ],
    ['start', { stdout: 'cid\n' }],
    ['healthGate', { stdout: `healthy ${NEW_IP} 200\n` }],
    ['writeAndTest', { stdout: sectionsOut({ write: '', test: TEST_OK }) }],
    ['throughNginx', switchOut(PASSED)],
    ['reload', { stdout: WORKERS }],
    ['forget', {}],
    ['retire', {}],
    ['history', {}],
    ['images', { stdout: `${IMAGE} sha256:${'2'.repeat(64)} id2\n${PREV_IMAGE} sha256:${'1'.repeat(64)} id1\n` }],
    ['rmi', {}],
    ['restore', {}],
    [
      'inspectNew',
      call => {
        const name = new RegExp(`(${NEW})`).exec(call.sh)?.[1] as string
        return { stdout: appContainer(name.replace(/-[0-9a-f]{8}$/, ''), { name, image: IMAGE, port: 8080, ips: { internal: NEW_IP } }) }
      }
    ],
    ['logs', { stdout: sectionsOut({ logs: '2026-01-01T00:00:00Z boom', health: '' }) }],
    ['removeNew', {}]
  ]
  return rules.map(([step, answer]): Rule => [STEP[step], answer])
}
const healthyHost = (): FakeRemote => new FakeRemote(healthyRules())

function context(over: Partial<SwapContext> = {}): SwapContext {
  return {
    infra,
    release: { app, image: IMAGE, digest: DIGEST, mode: 'deploy', inherit: false },
    nginxId: NGINX,
    lock: heldLock,
    phases: new Phases(),
    ...over
  }
}

/** The records appended to the history, as written. */
const history = (remote: FakeRemote): HistoryRecord[] =>
  remote.matching(STEP.history).map(c => JSON.parse(String(c.stdin)) as HistoryRecord)
const newName = (remote: FakeRemote): string => new RegExp(`--name (${NEW}) `).exec(remote.matching(STEP.start)[0].sh)?.[1] as string

const PHASES = ['Preflight', 'Start container', 'Health gate (direct)', 'Preview, switch and verify through nginx', 'Retire old and record']
/** What a rollback sends once the new container is there: its state and logs, its removal, the record. */
const REMOVE_NEW = ['inspectNew', 'logs', 'removeNew', 'history']
/** What a rollback after the switch sends first: the previous upstream file back, nginx reloaded with it, the copies dropped. */
const UNSWITCH = ['restore', 'reload', 'forget']
const EMERG = 'nginx: [emerg] host not found in upstream "backend-1a2b3c4d:8080" in /etc/nginx/ops-upstreams/app_backend.conf:4'

/** What a successful swap sends, in order (as steps() names them). */
const EVERY_STEP = ['probe', 'start', 'healthGate', 'writeAndTest', 'images', 'throughNginx', 'forget', 'retire', 'history']
/**
 * Up to the switch: the probe, the new container, its health gate and, meanwhile, its upstream file written and tested;
 * the repository's images read beside the switch (for the pruning after it).
 */
const UP_TO_SWITCH = ['probe', 'start', 'healthGate', 'writeAndTest', 'images', 'throughNginx']

/** The one previewSwitchVerify a swap of backend to `name` sends (nginx's preview port, then its client port). */
const throughNginxOf = (name: string): Sh =>
  previewSwitchVerify({
    nginxId: NGINX,
    preview: {
      health: 'http://127.0.0.1:8504/api/ai-stories/health',
      route: 'http://127.0.0.1:8504/api/',
      header: `X-Ops-Upstream: ${name}:8080`
    },
    live: { health: 'http://127.0.0.1:80/api/ai-stories/health', route: 'http://127.0.0.1:80/api/', header: '' },
    need: 3,
    maxWaves: 5,
    probeTimeoutS: 3,
    reloadTimeoutS: 10
  })
/** The paths in a write's archive, and one file's content. */
const archived = (call: { stdin?: string | Buffer }): string[] =>
  execFileSync('tar', ['-tf', '-'], { input: call.stdin as Buffer, encoding: 'utf8' })
    .split('\n')
    .filter(Boolean)
const archivedFile = (call: { stdin?: string | Buffer }, path: string): string =>
  execFileSync('tar', ['-xOf', '-', path], { input: call.stdin as Buffer, encoding: 'utf8' })

/** A host whose health gate answers only once the upstream file's write + test was sent (or after 3 s): no gate without the write meanwhile. */
class GateAwaitsWrite extends FakeRemote {
  sawWrite: boolean | undefined
  override async run(command: Sh, opts: { stdin?: string | Buffer } = {}): Promise<RunResult> {
    if (STEP.healthGate.test(command.sh)) this.sawWrite = await until(() => this.matching(STEP.writeAndTest).length > 0, 3_000)
    return super.run(command, opts)
  }
}

/** A host whose upstream write + test is sent only once the health gate has answered, 50 ms later (a slow write). */
class WriteAfterGate extends FakeRemote {
  override async run(command: Sh, opts: { stdin?: string | Buffer } = {}): Promise<RunResult> {
    if (STEP.writeAndTest.test(command.sh)) {
      await until(() => this.matching(STEP.healthGate).length > 0, 3_000)
      await new Promise(r => setTimeout(r, 50))
    }
    return super.run(command, opts)
  }
}

describe('swap (against a fake host)', () => {
  it('success: probe, start, health gate with the upstream written and tested meanwhile, then preview, switch and verify in one exec into nginx, retire old in the background and record', async () => {
    const remote = healthyHost()
    const ctx = context()
    const r = await swap(remote, ctx)
    expect(remote.unmatched).toEqual([])
    const name = newName(remote)
    expect(r).toEqual({ container: name, image: IMAGE, digest: DIGEST, previousImage: PREV_IMAGE })
    // Nothing stopped or removed by the run itself: the old container goes to its retirement.
    expect(steps(remote)).toEqual(EVERY_STEP)
    // The env goes on stdin, never on the command line.
    const [start] = remote.matching(STEP.start)
    expect(start.stdin).toBe('SPRING_PROFILES_ACTIVE=prod\n')
    expect(start.sh).not.toContain('prod')
    // It runs the digest the tag named at the pull (the image last, after the env files), labelled with both.
    const [[run]] = dockerArgvs([start as unknown as Sh])
    expect(run.slice(0, 2)).toEqual(['run', '--detach'])
    expect(run.at(-1)).toBe(DIGEST)
    expect(run).toContain(`${IMAGE_LABEL}=${IMAGE}`)
    expect(run).toContain(`${DIGEST_LABEL}=${DIGEST}`)
    expect(stdout.text()).toContain(`Started ${name} from ${DIGEST} on internal`)
    // The whole gate in one round trip: the new container on the network, probed from nginx at its port and health
    // path, for up to health-timeout.
    expect(remote.matching(STEP.healthGate)[0].sh).toBe(
      healthGateLoop({ container: name, network: 'internal', via: NGINX, port: 8080, path: '/api/ai-stories/health', timeoutS: 5 }).sh
    )
    // The new upstream file names the new container: it travels in the archive of the write + nginx -t command, and
    // nginx loads it only at the switch.
    const [write] = remote.matching(STEP.writeAndTest)
    expect(archived(write)).toEqual(['upstreams/app_backend.conf'])
    // With the digest, which the next rollback, restart and status read.
    expect(liveOf(archivedFile(write, 'upstreams/app_backend.conf'))).toEqual({ container: name, image: IMAGE, digest: DIGEST })
    expect(write.sh).toContain(`echo '@@ops test'; { ${nginxTest({ container: NGINX }, OPS).sh}; }`)
    // Without a canary, a leftover canary of an interrupted run is moved aside in the same write, before nginx -t.
    expect(write.sh).toContain(`&& { ${stashFiles(CANARY_FILES).sh}; }`)
    expect(write.sh.indexOf(stashFiles(CANARY_FILES).sh)).toBeLessThan(write.sh.indexOf("echo '@@ops test'"))
    expect(write.sh).not.toMatch(STEP.reload)
    expect(write.sh).not.toMatch(STEP.throughNginx)
    // Preview (the header picks the new container), switch and verify: one exec, the reload inside it; no reload of its own.
    expect(remote.matching(STEP.throughNginx).map(c => c.sh)).toEqual([throughNginxOf(name).sh])
    expect(remote.matching(STEP.reload)).toEqual([])
    expect(stdout.text()).toContain(
      "GET /api/ai-stories/health and GET /api/, 3 of each at once, answer well on nginx's preview port and, after the switch, through nginx (preview 0.25 s, switch 0.25 s, verify 0.25 s)."
    )
    expect(stdout.text()).toContain(`nginx routes /api/ to ${name}:8080 (now ${NEW_IP}).`)
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
        .sh.endsWith(
          `' sh ${OPS}/upstreams/app_backend.conf ${OPS}/upstreams/app_backend.locations ${OPS}/upstreams/app_backend_vars.conf ${CANARY_FILES.join(' ')}`
        )
    ).toBe(true)
    expect(history(remote)).toEqual([
      expect.objectContaining({
        mode: 'deploy',
        service: 'backend',
        image: IMAGE,
        digest: DIGEST,
        previousImage: PREV_IMAGE,
        previousDigest: PREV_DIGEST,
        container: name,
        result: 'success'
      })
    ])
    // Nothing to prune: both images are within keep-images.
    expect(remote.matching(STEP.rmi)).toEqual([])
    // Every phase, the one that writes the record included (still running then).
    expect(Object.keys(history(remote)[0].phases)).toEqual(PHASES)
    expect(ctx.phases.records.map(p => p.name)).toEqual(PHASES)
  })

  it('the upstream file is written and tested while the health gate runs, not after it', async () => {
    const remote = new GateAwaitsWrite(healthyRules())
    await swap(remote, context())
    expect(remote.unmatched).toEqual([])
    expect(remote.sawWrite).toBe(true)
    expect(remote.calls.map(c => stepOf(c.sh)).slice(0, 4)).toEqual(['probe', 'start', 'writeAndTest', 'healthGate'])
  })

  it('the health gate fails (the container exited): the upstream file written meanwhile is put back without a reload, the container removed', async () => {
    const remote = healthyHost().prepend([STEP.healthGate, { stdout: 'exited exited 0 none\n' }])
    const e = await swap(remote, context()).catch((x: unknown) => x)
    expect(remote.unmatched).toEqual([])
    const name = newName(remote)
    expect(e).toBeInstanceOf(RolledBack)
    expect((e as RolledBack).message).toBe(`${name} exited before becoming healthy (last health probe: no probe yet)`)
    expect((e as RolledBack).notes).toEqual([`removed the new container ${name}`, `${OLD} kept serving`])
    // Its logs are shown, then it is removed; the old container and nginx are left alone, nginx never loaded the file.
    expect(steps(remote)).toEqual(['probe', 'start', 'healthGate', 'writeAndTest', 'restore', ...REMOVE_NEW])
    // Before the switch: the upstream file and the canary files the write moved aside, all put back.
    expect(remote.matching(STEP.restore)[0].sh.endsWith(`' sh ${OPS}/upstreams/app_backend.conf ${CANARY_FILES.join(' ')}`)).toBe(true)
    expect(remote.matching(STEP.removeNew)[0].sh.endsWith(`' sh ${name}`)).toBe(true)
    expect(history(remote)).toEqual([
      expect.objectContaining({
        result: 'rolled-back',
        container: name,
        image: IMAGE,
        digest: DIGEST,
        previousImage: PREV_IMAGE,
        previousDigest: PREV_DIGEST,
        error: (e as Error).message
      })
    ])
  })

  it('the health gate fails before the write is done: the file is put back only once the write is over', async () => {
    const remote = new WriteAfterGate(healthyRules()).prepend([STEP.healthGate, { stdout: 'exited exited 0 none\n' }])
    const e = await swap(remote, context()).catch((x: unknown) => x)
    expect(remote.unmatched).toEqual([])
    expect(e).toBeInstanceOf(RolledBack)
    expect(remote.calls.map(c => stepOf(c.sh))).toEqual(['probe', 'start', 'healthGate', 'writeAndTest', 'restore', ...REMOVE_NEW])
  })

  it('the health gate and nginx -t both fail: the gate is the error; the file is put back once (by the test), no reload', async () => {
    const remote = healthyHost().prepend(
      [STEP.healthGate, { stdout: 'exited exited 0 none\n' }],
      [STEP.writeAndTest, { stdout: sectionsOut({ write: '', test: { rc: 1, out: EMERG } }) }]
    )
    const e = await swap(remote, context()).catch((x: unknown) => x)
    expect(remote.unmatched).toEqual([])
    expect(e).toBeInstanceOf(RolledBack)
    expect((e as Error).message).toMatch(/ exited before becoming healthy /)
    expect(steps(remote)).toEqual(['probe', 'start', 'healthGate', 'writeAndTest', 'restore', ...REMOVE_NEW])
  })

  it('nginx -t fails on the new upstream file (the gate passes): the file put back by the test, rolled back before the switch, nothing through nginx', async () => {
    const remote = healthyHost().prepend([STEP.writeAndTest, { stdout: sectionsOut({ write: '', test: { rc: 1, out: EMERG } }) }])
    const ctx = context()
    const e = await swap(remote, ctx).catch((x: unknown) => x)
    expect(remote.unmatched).toEqual([])
    const name = newName(remote)
    expect(e).toBeInstanceOf(RolledBack)
    expect((e as Error).message).toBe(`nginx -t fails on the host's nginx config, so nginx was not changed:\n${EMERG}`)
    expect((e as RolledBack).notes).toEqual([`removed the new container ${name}`, `${OLD} kept serving`])
    // One restore (writeAndTest's own), no reload, no preview.
    expect(steps(remote)).toEqual(['probe', 'start', 'healthGate', 'writeAndTest', 'restore', ...REMOVE_NEW])
    // The error is the combined phase's, at its start.
    expect(ctx.phases.records.map(p => [p.name, p.ok])).toEqual([
      ['Preflight', true],
      ['Start container', true],
      ['Health gate (direct)', true],
      ['Preview, switch and verify through nginx', false],
      ['Roll back', true]
    ])
  })

  it('the write itself fails: nothing to put back, rolled back before the switch', async () => {
    const remote = healthyHost().prepend([
      STEP.writeAndTest,
      { stdout: sectionsOut({ write: { rc: 1, out: 'tar: short read' }, test: TEST_OK }) }
    ])
    const e = await swap(remote, context()).catch((x: unknown) => x)
    expect(remote.unmatched).toEqual([])
    expect(e).toBeInstanceOf(RolledBack)
    expect((e as Error).message).toBe('writing nginx upstream files failed (exit 1): tar: short read')
    expect(steps(remote)).toEqual(['probe', 'start', 'healthGate', 'writeAndTest', ...REMOVE_NEW])
  })

  it('the preview fails: the upstream file is put back without a reload (nginx never loaded it), the container removed', async () => {
    const remote = healthyHost().prepend([STEP.throughNginx, switchOut({ preview: { rc: 1, out: waves('200 502', false) } })])
    const e = await swap(remote, context()).catch((x: unknown) => x)
    expect(remote.unmatched).toEqual([])
    const name = newName(remote)
    expect(e).toBeInstanceOf(RolledBack)
    expect((e as Error).message).toBe(
      "The new release does not answer well on nginx's preview port (before any client was switched): GET /api/ai-stories/health -> 200, GET /api/ -> 502"
    )
    expect((e as RolledBack).notes).toEqual([`removed the new container ${name}`, `${OLD} kept serving`])
    expect(steps(remote)).toEqual([...UP_TO_SWITCH, 'restore', ...REMOVE_NEW])
    // Before the switch: the upstream file and the canary files the write moved aside, all put back.
    expect(remote.matching(STEP.restore)[0].sh.endsWith(`' sh ${OPS}/upstreams/app_backend.conf ${CANARY_FILES.join(' ')}`)).toBe(true)
    expect(remote.matching(STEP.reload)).toEqual([])
  })

  it('the exec into nginx fails before any stage (no sections): it may have switched, so the previous upstream goes back with a reload', async () => {
    const remote = healthyHost().prepend([
      STEP.throughNginx,
      { code: 1, stderr: `Error response from daemon: No such container: ${NGINX}` }
    ])
    const e = await swap(remote, context()).catch((x: unknown) => x)
    expect(remote.unmatched).toEqual([])
    expect(e).toBeInstanceOf(RolledBack)
    expect((e as Error).message).toBe(
      `probing and switching through nginx failed: exit 1: Error response from daemon: No such container: ${NGINX}`
    )
    expect(steps(remote)).toEqual([...UP_TO_SWITCH, ...UNSWITCH, ...REMOVE_NEW])
  })

  it.each([
    [4, '', 'nginx did not apply the new configuration within 10 s (its old workers are still serving)'],
    [3, "sh: can't kill pid 1: No such process", "signalling nginx's master failed (exit 3): sh: can't kill pid 1: No such process"]
  ])(
    'the switch fails (exit %i): verify never runs; the previous upstream restored and nginx reloaded, then the container removed',
    async (rc, out, message) => {
      const remote = healthyHost().prepend([STEP.throughNginx, switchOut({ preview: PASSED.preview, switch: { rc, out } })])
      const e = await swap(remote, context()).catch((x: unknown) => x)
      expect(remote.unmatched).toEqual([])
      const name = newName(remote)
      expect(e).toBeInstanceOf(RolledBack)
      expect((e as Error).message).toBe(message)
      expect((e as RolledBack).notes).toEqual([
        `nginx routes /api/ to ${OLD} (${PREV_IMAGE}) again`,
        `removed the new container ${name}`,
        `${OLD} kept serving`
      ])
      expect(steps(remote)).toEqual([...UP_TO_SWITCH, ...UNSWITCH, ...REMOVE_NEW])
      expect(remote.matching(STEP.restore)[0].sh.endsWith(`' sh ${OPS}/upstreams/app_backend.conf`)).toBe(true)
      expect(remote.matching(STEP.reload).map(c => c.sh)).toEqual([reloadNginxAndWait(NGINX, 10).sh])
    }
  )

  it('verify through nginx answers 502 after the switch: the previous upstream restored and nginx reloaded, then the container removed', async () => {
    const remote = healthyHost().prepend([
      STEP.throughNginx,
      switchOut({ preview: PASSED.preview, switch: WORKERS, verify: { rc: 1, out: waves('502 502', false) } })
    ])
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
    expect(steps(remote)).toEqual([...UP_TO_SWITCH, ...UNSWITCH, ...REMOVE_NEW])
    expect(remote.matching(STEP.restore)[0].sh.endsWith(`' sh ${OPS}/upstreams/app_backend.conf`)).toBe(true)
    expect(history(remote)).toEqual([expect.objectContaining({ result: 'rolled-back', container: name })])
  })

  it('the connection is cut at the switch: a HostError that it cannot roll back, and nothing more is sent', async () => {
    const remote = healthyHost().prepend([
      STEP.throughNginx,
      (_call, r) => {
        r.cut()
        // The preview's section came back; the switch's was cut off.
        const preview = switchOut({ preview: PASSED.preview }).stdout?.replace(/@@ops-at end .*\n$/, '') ?? ''
        return { code: 255, stdout: `${preview}@@ops-at switch 1234.75\n@@ops switch\n`, stderr: 'connection reset by peer' }
      }
    ])
    const e = await swap(remote, context()).catch((x: unknown) => x)
    const name = newName(remote)
    expect(e).toBeInstanceOf(HostError)
    expect(e).not.toBeInstanceOf(RolledBack)
    const message = (e as Error).message
    expect(message).toMatch(/^the switch through nginx did not finish: connection reset by peer\n/)
    // Maybe switched (the file names the new container), so that is where nginx routes now.
    expect(message).toContain(
      `Then the connection to the host was lost, so this run cannot roll back. nginx routes /api/ to ${name}; the next deploy of backend removes what this one left.`
    )
    expect(failureOf(e)).toMatchObject({ fix: 'run the deploy again', notes: undefined })
    expect(steps(remote)).toEqual(UP_TO_SWITCH)
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
    // Nothing through nginx, nothing put back or removed, no record: another run may hold the lock now.
    expect(steps(remote).slice(1)).toEqual(['probe', 'start', 'healthGate', 'writeAndTest'])
    expect(phases.records.map(p => p.name)).toEqual(['Take deploy lock', 'Preflight', 'Start container', 'Health gate (direct)'])
  })

  it('a first deploy (nothing live): nothing to retire; a failure leaves the service undeployed', async () => {
    const empty = sectionsOut({ containers: '', upstream: '', memory: 'MemAvailable: 4000000 kB', 'nginx-test': 'ok' })
    const ok = healthyHost().prepend([STEP.probe, { stdout: empty }])
    expect(await swap(ok, context())).toMatchObject({ digest: DIGEST, previousImage: '' })
    expect(steps(ok)).toEqual([...UP_TO_SWITCH, 'forget', 'history'])
    expect(history(ok)).toEqual([expect.objectContaining({ digest: DIGEST, previousImage: '', previousDigest: '' })])
    expect(stdout.text()).toContain('No previous container to stop.')

    const failing = healthyHost().prepend(
      [STEP.probe, { stdout: empty }],
      [STEP.throughNginx, switchOut({ preview: PASSED.preview, switch: WORKERS, verify: { rc: 1, out: waves('502 502', false) } })]
    )
    const e = (await swap(failing, context()).catch((x: unknown) => x)) as RolledBack
    expect(e.notes[0]).toBe('nginx routes /api/ to the 503 placeholder again')
    expect(e.notes.at(-1)).toBe('backend stays undeployed')
  })

  it('a service outside the catalogue: its route files applied (written, tested, reloaded) before its upstream file is written, all while the gate runs', async () => {
    const spec = { port: 9000, route: '/things/', healthPath: '/things/health', stripPrefix: false, aliases: [] }
    const custom: AppInputs = { ...app, service: 'my-svc', spec }
    const empty = sectionsOut({ containers: '', upstream: '', memory: 'MemAvailable: 4000000 kB', 'nginx-test': 'ok' })
    const remote = healthyHost().prepend([STEP.probe, { stdout: empty }])
    const r = await swap(remote, context({ release: { app: custom, image: IMAGE, digest: DIGEST, mode: 'deploy', inherit: false } }))
    expect(remote.unmatched).toEqual([])
    const name = newName(remote)
    expect(name).toMatch(/^my-svc-[0-9a-f]{8}$/)
    expect(r.container).toBe(name)
    const all = remote.calls.map(c => stepOf(c.sh))
    expect(all.filter(s => s !== 'healthGate')).toEqual([
      'probe',
      'start',
      'writeAndTest',
      'reload',
      'writeAndTest',
      'images',
      'throughNginx',
      'forget',
      'history'
    ])
    expect(all.filter(s => s === 'healthGate')).toHaveLength(1)
    expect(all.indexOf('healthGate')).toBeGreaterThan(all.indexOf('start'))
    expect(all.indexOf('healthGate')).toBeLessThan(all.indexOf('throughNginx'))
    // First the route (nothing live: a placeholder upstream with it), then the upstream naming the new container.
    const [routes, upstream] = remote.matching(STEP.writeAndTest)
    expect(archived(routes).sort()).toEqual([
      'upstreams/app_my-svc.conf',
      'upstreams/app_my-svc.locations',
      'upstreams/app_my-svc_vars.conf'
    ])
    expect(archived(upstream)).toEqual(['upstreams/app_my-svc.conf'])
    expect(liveOf(archivedFile(upstream, 'upstreams/app_my-svc.conf'))).toEqual({ container: name, image: IMAGE, digest: DIGEST })
    expect(remote.matching(STEP.reload).map(c => c.sh)).toEqual([reloadNginxAndWait(NGINX, 10).sh])
    expect(remote.matching(STEP.throughNginx)[0].sh).toContain(
      `'X-Ops-Upstream: ${name}:9000' http://127.0.0.1:8504/things/health http://127.0.0.1:8504/things/ 10 '' `
    )
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

  it('pruning after the switch: keep-images by content, and never the digest that served before, though its tag moved on', async () => {
    const sha = (c: string) => `sha256:${c.repeat(64)}`
    const remote = healthyHost().prepend([
      STEP.images,
      {
        stdout: [
          `${IMAGE} ${sha('2')} id2`,
          `ghcr.io/behindy/back:v1.5 ${sha('5')} id5`,
          // What v1 named when it served: the tag names other content now, pulled by another host's run.
          `ghcr.io/behindy/back:<none> ${sha('1')} id1`,
          `ghcr.io/behindy/back:v0 ${sha('0')} id0`,
          `ghcr.io/behindy/back:<none> ${sha('f')} idf`
        ]
          .map(r => `${r}\n`)
          .join('')
      }
    ])
    await swap(
      remote,
      context({ release: { app: { ...app, keepImages: 1 }, image: IMAGE, digest: DIGEST, mode: 'deploy', inherit: false } })
    )
    expect(remote.unmatched).toEqual([])
    const [rm] = remote.matching(STEP.rmi)
    expect(rm.sh.split("' sh ")[1].split(' ')).toEqual([
      'ghcr.io/behindy/back:v1.5',
      'ghcr.io/behindy/back:v0',
      `ghcr.io/behindy/back@${sha('f')}`
    ])
  })

  it("a release without a digest (an image without a registry digest, an earlier release's restart): runs the image by its name", async () => {
    const remote = healthyHost().prepend([
      STEP.probe,
      {
        stdout: sectionsOut({
          containers: appContainer('backend', { name: OLD, image: PREV_IMAGE, port: 8080, ips: { internal: '172.18.0.4' } }),
          // An upstream file an earlier release wrote: no digest in it.
          upstream: upstreamConf('app_backend', 8080, { container: OLD, image: PREV_IMAGE }),
          memory: 'MemTotal:        8000000 kB\nMemAvailable:    4000000 kB',
          'nginx-test': TEST_OK,
          // Nothing in maintenance (listMaintenance prints one name per upstreams/*.maintenance.map).
          maintenance: ''
        })
      }
    ])
    const r = await swap(remote, context({ release: { app, image: IMAGE, digest: '', mode: 'restart', inherit: true } }))
    expect(remote.unmatched).toEqual([])
    const name = newName(remote)
    expect(r).toEqual({ container: name, image: IMAGE, digest: '', previousImage: PREV_IMAGE })
    const [[run]] = dockerArgvs([remote.matching(STEP.start)[0] as unknown as Sh])
    expect(run.at(-1)).toBe(IMAGE)
    expect(run.some(a => a.startsWith(`${DIGEST_LABEL}=`))).toBe(false)
    const [write] = remote.matching(STEP.writeAndTest)
    expect(liveOf(archivedFile(write, 'upstreams/app_backend.conf'))).toEqual({ container: name, image: IMAGE, digest: '' })
    expect(history(remote)).toEqual([
      expect.objectContaining({ mode: 'restart', image: IMAGE, digest: '', previousImage: PREV_IMAGE, previousDigest: '' })
    ])
  })
})

describe('swap with a release command, in maintenance, with a canary (against a fake host)', () => {
  /** The probe's answer with these maintenance files (listMaintenance's names). */
  const probeIn = (maintenance: string): Rule => [
    STEP.probe,
    {
      stdout: sectionsOut({
        containers: appContainer('backend', { name: OLD, image: PREV_IMAGE, port: 8080, ips: { internal: '172.18.0.4' } }),
        upstream: upstreamConf('app_backend', 8080, { container: OLD, image: PREV_IMAGE, digest: PREV_DIGEST }),
        memory: 'MemAvailable:    4000000 kB',
        'nginx-test': TEST_OK,
        maintenance
      })
    }
  ]
  /** previewSwitchVerify of backend to `name`, verified after the switch on the preview port through `via`. */
  const throughVia = (name: string, via: string): Sh =>
    previewSwitchVerify({
      nginxId: NGINX,
      preview: {
        health: 'http://127.0.0.1:8504/api/ai-stories/health',
        route: 'http://127.0.0.1:8504/api/',
        header: `X-Ops-Upstream: ${name}:8080`
      },
      live: {
        health: 'http://127.0.0.1:8504/api/ai-stories/health',
        route: 'http://127.0.0.1:8504/api/',
        header: `X-Ops-Upstream: ${via}`
      },
      need: 3,
      maxWaves: 5,
      probeTimeoutS: 3,
      reloadTimeoutS: 10
    })

  describe('release command', () => {
    const releaseCommand = { command: './bin/migrate up', timeoutS: 60 }

    it('runs once before the new container starts, with the env on stdin; recorded in the history', async () => {
      const remote = healthyHost().prepend([STEP.releaseCommand, { stdout: 'Applied 2 migrations\n@@ops-release 0\n' }])
      const ctx = context({ releaseCommand })
      const r = await swap(remote, ctx)
      expect(remote.unmatched).toEqual([])
      expect(steps(remote)).toEqual(['probe', 'releaseCommand', ...EVERY_STEP.slice(1)])
      const [call] = remote.matching(STEP.releaseCommand)
      expect(call.stdin).toBe('SPRING_PROFILES_ACTIVE=prod\n')
      expect(call.sh).not.toContain('prod')
      // The digest of the new release, the command as one argument of sh -c.
      const [calls] = dockerArgvs([call as unknown as Sh])
      const create = calls.find(c => c[0] === 'create') as string[]
      expect(create.slice(-5)).toEqual(['--entrypoint', 'sh', DIGEST, '-c', './bin/migrate up'])
      expect(create).toContain('internal')
      expect(r.release).toMatchObject({ command: './bin/migrate up', exit: 0 })
      expect(history(remote)[0].release).toMatchObject({ command: './bin/migrate up', exit: 0 })
      expect(ctx.phases.records.map(p => p.name)).toEqual(['Preflight', 'Release command', ...PHASES.slice(1)])
      expect(stdout.text()).toContain('Applied 2 migrations')
    })

    it('exits non-zero: the deploy fails before anything of the new release starts, recorded as failed', async () => {
      const remote = healthyHost().prepend([STEP.releaseCommand, { stdout: 'ERROR: relation "users" already exists\n@@ops-release 3\n' }])
      const e = await swap(remote, context({ releaseCommand })).catch((x: unknown) => x)
      expect(remote.unmatched).toEqual([])
      expect(e).toBeInstanceOf(HostError)
      expect(e).not.toBeInstanceOf(RolledBack)
      expect((e as Error).message).toMatch(
        /^the release command exited 3 after [\d.]+ s; its last lines:\nERROR: relation "users" already exists$/
      )
      expect(steps(remote)).toEqual(['probe', 'releaseCommand', 'history'])
      expect(history(remote)).toEqual([
        expect.objectContaining({
          result: 'failed',
          error: (e as Error).message,
          release: expect.objectContaining({ command: './bin/migrate up', exit: 3 })
        })
      ])
    })

    it('a one-off container of an interrupted run still running: nothing started, the deploy fails naming it', async () => {
      const remote = healthyHost().prepend([STEP.releaseCommand, { stdout: '@@ops-release running backend-release-0000beef \n' }])
      const e = (await swap(remote, context({ releaseCommand })).catch((x: unknown) => x)) as HostError
      expect(e).toBeInstanceOf(HostError)
      expect(e.message).toBe(
        'a release command of an interrupted run is still running (backend-release-0000beef, label ops-action.release=backend): this one was not started and nothing changed'
      )
      expect(e.fix).toMatch(/^wait for it to finish, or stop it/)
      expect(steps(remote)).toEqual(['probe', 'releaseCommand', 'history'])
      expect(history(remote)[0]).not.toHaveProperty('release')
    })

    it('times out, or its container cannot be created: the deploy fails the same way', async () => {
      const timeout = healthyHost().prepend([STEP.releaseCommand, { stdout: 'waiting for the db\n@@ops-release timeout\n' }])
      const t = (await swap(timeout, context({ releaseCommand })).catch((x: unknown) => x)) as Error
      expect(t.message).toBe(
        'the release command did not finish within 60 s (release-timeout) and was killed; its last lines:\nwaiting for the db'
      )
      expect(steps(timeout)).toEqual(['probe', 'releaseCommand', 'history'])
      expect(history(timeout)[0].release).toMatchObject({ exit: 'timeout' })

      const create = healthyHost().prepend([STEP.releaseCommand, { code: 125, stderr: 'Error response from daemon: No such image' }])
      const c = (await swap(create, context({ releaseCommand })).catch((x: unknown) => x)) as Error
      expect(c.message).toMatch(
        /^the release command's container backend-release-[0-9a-f]{8} could not be started \(exit 125\): Error response from daemon: No such image$/
      )
      expect(steps(create)).toEqual(['probe', 'releaseCommand', 'history'])
    })
  })

  describe('in maintenance', () => {
    it.each(['all', 'backend'])(
      'maintenance %s: verified after the switch on the preview port through the upstream (clients get the page); no canary',
      async maintenance => {
        const remote = healthyHost().prepend(probeIn(`${maintenance}\n`))
        const canary: CanaryInputs = { percent: 10, seconds: 0, minRequests: 1, errorMargin: 1, latencyFactor: 2 }
        const ctx = context({ canary })
        await swap(remote, ctx)
        expect(remote.unmatched).toEqual([])
        const name = newName(remote)
        expect(steps(remote)).toEqual(EVERY_STEP)
        expect(remote.matching(STEP.throughNginx).map(c => c.sh)).toEqual([throughVia(name, 'app_backend').sh])
        expect(stdout.text()).toContain('backend is in maintenance (no client reaches it): no canary.')
        expect(ctx.phases.records.map(p => p.name)).toEqual(PHASES)
      }
    )

    it("another service's maintenance does not change backend's deploy", async () => {
      const remote = healthyHost().prepend(probeIn('frontend\n'))
      await swap(remote, context())
      expect(remote.matching(STEP.throughNginx).map(c => c.sh)).toEqual([throughNginxOf(newName(remote)).sh])
    })
  })

  describe('canary', () => {
    const canary: CanaryInputs = { percent: 10, seconds: 0, minRequests: 2, errorMargin: 1, latencyFactor: 2 }
    const log = (lines: string[]) => ({ stdout: lines.map(l => `1767225600.1 80 ${l}\n`).join('') })
    const GOOD = log(['app_backend_canary 200 0.010', 'app_backend_canary 200 0.012', 'app_backend 200 0.011'])
    const BAD = log(['app_backend_canary 502 0.010', 'app_backend_canary 502 0.012', 'app_backend 200 0.011'])
    /** The canary's own commands, answered at once. */
    const canaryRules = (read: Partial<RunResult>): Rule[] => [
      [STEP.clearLog, {}],
      [STEP.readLog, read],
      [STEP.removeLog, {}],
      [STEP.stash, {}],
      // The old container's until the promotion's write (the second), the new one's after it.
      [
        STEP.readUpstream,
        (_call, r) => ({
          stdout:
            r.matching(STEP.writeAndTest).length > 1
              ? upstreamConf('app_backend', 8080, { container: newName(r), image: IMAGE, digest: DIGEST })
              : upstreamConf('app_backend', 8080, { container: OLD, image: PREV_IMAGE, digest: PREV_DIGEST })
        })
      ]
    ]
    /** The steps with the first ones, which run at the same time (the gate; the log cleared, then the canary's files), in a fixed order. */
    const ordered = (remote: FakeRemote): string[] => {
      const all = remote.calls.map(c => stepOf(c.sh))
      expect(all.indexOf('clearLog')).toBeLessThan(all.indexOf('writeAndTest'))
      return [...all.slice(0, 2), ...all.slice(2, 5).sort(), ...all.slice(5)]
    }

    it('promoted: its files written while the gate runs, a share of clients, the log judged, then the live upstream for every client', async () => {
      const remote = healthyHost().prepend(...canaryRules(GOOD))
      const ctx = context({ canary })
      const r = await swap(remote, ctx)
      expect(remote.unmatched).toEqual([])
      const name = newName(remote)
      expect(ordered(remote)).toEqual([
        'probe',
        'start',
        'clearLog',
        'healthGate',
        'writeAndTest',
        'throughNginx',
        'readLog',
        'writeAndTest',
        'throughNginx',
        'removeLog',
        'forget',
        'retire',
        'history',
        'images'
      ])
      const [start, promote] = remote.matching(STEP.writeAndTest)
      // The canary's files name the new container; the live upstream waits for the promotion.
      expect(archived(start)).toEqual(canaryPaths('backend'))
      const next = { container: name, image: IMAGE, digest: DIGEST }
      for (const f of canaryFiles('backend', 8080, next, 10)) expect(archivedFile(start, f.path)).toBe(f.content)
      // The promotion: the live upstream, the canary's files moved aside in the same write.
      expect(archived(promote)).toEqual(['upstreams/app_backend.conf'])
      expect(liveOf(archivedFile(promote, 'upstreams/app_backend.conf'))).toEqual(next)
      expect(promote.sh).toContain(stashFiles(CANARY_FILES).sh)
      // The canary is verified through its upstream on the preview port; the promotion as clients see it.
      expect(remote.matching(STEP.throughNginx).map(c => c.sh)).toEqual([
        throughVia(name, 'app_backend_canary').sh,
        throughNginxOf(name).sh
      ])
      expect(remote.matching(STEP.readLog)[0].sh).toContain(' /tmp/ops-canary-backend.log 0')
      expect(r.canary?.verdict).toEqual({ kind: 'promote' })
      expect(history(remote)).toEqual([
        expect.objectContaining({
          result: 'success',
          canary: {
            percent: 10,
            seconds: 0,
            verdict: 'promote',
            canary: { requests: 2, errors: 0, p99: 0.012 },
            old: { requests: 1, errors: 0, p99: 0.011 }
          }
        })
      ])
      expect(ctx.phases.records.map(p => p.name)).toEqual([
        'Preflight',
        'Start container',
        'Health gate (direct)',
        'Preview, start the canary (10 %) and verify',
        'Canary (10 % for 0 s)',
        'Promote the canary',
        'Retire old and record'
      ])
      expect(stdout.text()).toContain(`Promoted: nginx routes every client of /api/ to ${name}.`)
    })

    it('failed: every client back on the old release (its files removed, nginx reloaded), the new container retired, recorded', async () => {
      const remote = healthyHost().prepend(...canaryRules(BAD))
      const e = await swap(remote, context({ canary })).catch((x: unknown) => x)
      expect(remote.unmatched).toEqual([])
      const name = newName(remote)
      expect(e).toBeInstanceOf(RolledBack)
      expect((e as Error).message).toBe(
        'The canary failed: the canary answered 100.0 % 5xx (2 of 2), the old release 0.0 % (0 of 1); canary-error-margin allows 1 point(s) more'
      )
      expect((e as RolledBack).notes).toEqual([
        'canary (10 %): 2 requests, 2 5xx (100.0 %), p50 10 ms, p99 12 ms',
        'old release: 1 requests, 0 5xx (0.0 %), p50 11 ms, p99 11 ms',
        'nginx routes every client of /api/ to the old release again',
        `${name} is stopped and removed once nginx has no request in flight to it`
      ])
      // The upstream file still names the old container: only the canary's files go.
      expect(remote.matching(STEP.restore)).toEqual([])
      expect(ordered(remote).slice(5)).toEqual([
        'throughNginx',
        'readLog',
        'stash',
        'reload',
        'forget',
        'removeLog',
        'logs',
        'retire',
        'history'
      ])
      // The canary's files go (nothing written, no nginx -t), and nginx reloads without them; the old upstream file was
      // never touched.
      expect(remote.matching(STEP.writeAndTest)).toHaveLength(1)
      expect(remote.matching(STEP.stash).map(c => c.sh)).toEqual([stashFiles(CANARY_FILES).sh])
      // The new container goes the way an old one does: once nginx is done with it (clients were on it).
      expect(remote.matching(STEP.retire)[0].sh).toContain(`' sh ${NGINX} 8080 `)
      expect(remote.matching(STEP.retire)[0].sh).toContain(name)
      expect(remote.matching(STEP.retire)[0].sh).not.toContain(OLD)
      expect(history(remote)).toEqual([
        expect.objectContaining({
          result: 'rolled-back',
          container: name,
          canary: expect.objectContaining({ verdict: 'fail', canary: { requests: 2, errors: 2, p99: 0.012 } })
        })
      ])
    })

    it('a first deploy (nothing serving): no canary, the first release takes every client', async () => {
      const empty = sectionsOut({ containers: '', upstream: '', memory: 'MemAvailable: 4000000 kB', 'nginx-test': 'ok', maintenance: '' })
      const remote = healthyHost().prepend([STEP.probe, { stdout: empty }])
      await swap(remote, context({ canary }))
      expect(remote.unmatched).toEqual([])
      expect(steps(remote)).toEqual([...UP_TO_SWITCH, 'forget', 'history'])
      expect(stdout.text()).toContain('backend has no release serving yet: no canary, the first release takes every client.')
    })

    it('the canary fails at its own switch (verify through its upstream): rolled back like a failed canary, nginx reloaded without it', async () => {
      const remote = healthyHost().prepend(...canaryRules(GOOD), [
        STEP.throughNginx,
        switchOut({ preview: PASSED.preview, switch: WORKERS, verify: { rc: 1, out: waves('502 502', false) } })
      ])
      const e = await swap(remote, context({ canary })).catch((x: unknown) => x)
      expect(remote.unmatched).toEqual([])
      expect(e).toBeInstanceOf(RolledBack)
      expect(ordered(remote).slice(5)).toEqual(['throughNginx', 'stash', 'reload', 'forget', 'removeLog', 'logs', 'retire', 'history'])
    })

    // The promotion's preview fails (the new container stops answering on the preview port after the canary was
    // judged): nginx still runs the canary's config, so the canary is ended (not just its files put back): the old
    // upstream file back, the canary's files gone, nginx reloaded, and only then the new container retired.
    it('the promotion fails at its preview: nginx is reloaded without the canary before the new container goes', async () => {
      let through = 0
      const remote = healthyHost().prepend(...canaryRules(GOOD), [
        STEP.throughNginx,
        () => (through++ === 0 ? switchOut(PASSED) : switchOut({ preview: { rc: 1, out: waves('502 502', false) } }))
      ])
      const e = await swap(remote, context({ canary })).catch((x: unknown) => x)
      expect(remote.unmatched).toEqual([])
      expect(e).toBeInstanceOf(RolledBack)
      const all = remote.calls.map(c => stepOf(c.sh))
      const promoteFailed = all.lastIndexOf('throughNginx')
      const reload = all.indexOf('reload', promoteFailed)
      // A reload after the failed promotion, of files without the canary, before the container is removed or retired.
      expect(reload).toBeGreaterThan(promoteFailed)
      const gone = Math.max(all.indexOf('removeNew', promoteFailed), all.indexOf('retire', promoteFailed))
      expect(reload).toBeLessThan(gone)
      const lastStash = remote.calls
        .slice(0, reload)
        .filter(c => STEP.stash.test(c.sh))
        .at(-1)
      expect(lastStash?.sh).toBe(stashFiles(CANARY_FILES).sh)
      expect(all.slice(promoteFailed + 1)).toEqual([
        'readUpstream',
        'restore',
        'stash',
        'reload',
        'forget',
        'removeLog',
        'logs',
        'retire',
        'history'
      ])
      // The promotion's upstream file goes back (it names the new container), without a reload of its own.
      expect(remote.matching(STEP.restore)[0].sh.endsWith(`' sh ${OPS}/upstreams/app_backend.conf`)).toBe(true)
      expect((e as RolledBack).notes.slice(-2)).toEqual([
        'nginx routes every client of /api/ to the old release again',
        `${newName(remote)} is stopped and removed once nginx has no request in flight to it`
      ])
    })
  })
})

describe('runDeploy: the new container started beside infra (runInfra stubbed, against a fake host)', () => {
  const connection: AppRun['connection'] = {
    host: 'ec2.example.com',
    port: 22,
    username: 'deploy',
    privateKey: 'key',
    skipHostKeyCheck: true,
    connectTimeoutMs: 1000,
    connectRetries: 0
  }
  const deployInputs = (over: Partial<Extract<AppRun, { mode: 'deploy' }>> = {}): AppRun => ({
    mode: 'deploy',
    connection,
    infra,
    lockTimeoutS: 60,
    dryRun: false,
    warnings: [],
    app,
    image: IMAGE,
    ...over
  })
  const PULL = /^\{ docker pull --quiet /
  const pulled: Rule = [PULL, { stdout: `${IMAGE}\n${DIGESTS_MARK}\n${DIGEST}\n` }]
  /** A host that pulls IMAGE (DIGEST) and where every step of a swap succeeds. */
  const deployHost = () => healthyHost().prepend(pulled)

  /**
   * runInfra as far as runDeploy sees it: its Preflight and Plan, then `ready` awaited, then its Start stack (during
   * which `during` runs), then `changes`.
   */
  function fakeInfra(changes: InfraChange[], during: () => Promise<void> = async () => undefined): void {
    vi.mocked(runInfra).mockImplementation(async (_remote, _inputs, phases, label = '', ready = () => Promise.resolve()) => {
      await phases.run(`${label}Preflight`, async () => undefined)
      await phases.run(`${label}Plan`, async () => undefined)
      await ready()
      await phases.run(`${label}Start stack`, during)
      const result: InfraResult = {
        changes,
        changed: changes.length > 0,
        nginxId: NGINX,
        tls: false,
        settings: { domain: '', httpPort: 80, httpsPort: 443 }
      }
      return result
    })
  }
  const names = (remote: FakeRemote): string[] =>
    remote.matching(STEP.start).map(c => new RegExp(`--name (${NEW}) `).exec(c.sh)?.[1] as string)
  /** What was printed inside a group (its first occurrence). */
  const group = (name: string): string => {
    const text = stdout.text()
    const from = text.indexOf(`::group::${name}\n`)
    expect(from).toBeGreaterThanOrEqual(0)
    return text.slice(from, text.indexOf('::endgroup::', from))
  }

  it('deploy without a release command: preflight and start beside infra (while it runs, from the pulled digest), no Preflight or Start container phase of its own', async () => {
    const remote = deployHost()
    let startedDuringInfra: boolean | undefined
    fakeInfra([], async () => {
      startedDuringInfra = await until(() => remote.matching(STEP.start).length > 0, 3_000)
    })
    const phases = new Phases()
    const r = await runDeploy(remote, deployInputs(), phases)
    expect(remote.unmatched).toEqual([])
    expect(startedDuringInfra).toBe(true)
    const [name] = names(remote)
    expect(names(remote)).toEqual([name])
    expect(r).toMatchObject({
      container: name,
      image: IMAGE,
      digest: DIGEST,
      previousImage: PREV_IMAGE,
      url: 'http://ec2.example.com/api/'
    })
    // The new container runs the digest the pull resolved, though it started before the run asked for the pull's result.
    const [[run]] = dockerArgvs([remote.matching(STEP.start)[0] as unknown as Sh])
    expect(run.at(-1)).toBe(DIGEST)
    // One probe (read beside infra, used for the preflight), the pull before the start; after the start, the swap as usual.
    const all = steps(remote)
    expect(all.filter(s => s === 'probe')).toHaveLength(1)
    expect(remote.indexOf(PULL)).toBeLessThan(all.indexOf('start'))
    expect(all.indexOf('probe')).toBeLessThan(all.indexOf('start'))
    expect(all.slice(all.indexOf('start'))).toEqual(EVERY_STEP.slice(1))
    expect(remote.matching(STEP.removeNew)).toEqual([])
    const recorded = phases.records.map(p => p.name)
    expect(recorded).toContain('Preflight and start container')
    expect(recorded).not.toContain('Start container')
    expect(recorded).not.toContain('Preflight')
    expect(recorded).toEqual([
      'Pull image',
      'Take deploy lock',
      'Preflight and start container',
      'Infra: Preflight',
      'Infra: Plan',
      'Infra: Start stack',
      ...PHASES.slice(2)
    ])
    expect(phases.records.every(p => p.ok)).toBe(true)
    // Its log, held back while infra ran, in its own group: the preflight's lines and the start's.
    const beside = group('Preflight and start container')
    expect(beside).toContain(`backend is served by ${OLD} (${PREV_IMAGE}), running.`)
    expect(beside).toContain(`Started ${name} from ${DIGEST} on internal as backend`)
    expect(beside).toMatch(/✓ Preflight and start container \([0-9.]+ s\)\n$/)
    expect(group('Infra: Start stack')).not.toContain('Started')
  })

  it.each<[string, InfraChange]>([
    ['recreated redis', { kind: 'recreated', service: 'redis', id: 'redis-2' }],
    ['created db', { kind: 'created', service: 'db' }]
  ])('infra %s: the container started beside it is removed and a new one started', async (what, change) => {
    const remote = deployHost()
    fakeInfra([{ kind: 'wrote', path: 'compose/docker-compose.yml' }, change])
    const phases = new Phases()
    const r = await runDeploy(remote, deployInputs(), phases)
    expect(remote.unmatched).toEqual([])
    const [first, second] = names(remote)
    expect(names(remote)).toHaveLength(2)
    expect(second).not.toBe(first)
    expect(r.container).toBe(second)
    expect(stdout.text()).toContain(`${first} started before infra ${what}: it goes, and a new container starts.`)
    expect(stdout.text()).toMatch(new RegExp(`started before infra ${what}`))
    // The first one removed before the second starts; the second goes through the whole swap.
    const all = steps(remote)
    const removed = remote.indexOf(new RegExp(`docker rm --force --volumes .*' sh ${first}$`))
    expect(removed).toBeGreaterThan(all.indexOf('start'))
    expect(removed).toBeLessThan(all.lastIndexOf('start'))
    expect(remote.matching(STEP.removeNew).map(c => c.sh.split("' sh ")[1])).toEqual([first])
    expect(all.slice(all.lastIndexOf('start') - 1)).toEqual(EVERY_STEP)
    // The swap reads the service again (infra changed the stack) and starts it as a phase of its own.
    expect(all.filter(s => s === 'probe')).toHaveLength(2)
    const recorded = phases.records.map(p => p.name)
    expect(recorded).toContain('Preflight and start container')
    expect(recorded.slice(recorded.indexOf('Infra: Start stack') + 1)).toEqual(PHASES)
  })

  it('infra changed only nginx: the container started beside it is kept', async () => {
    const remote = deployHost()
    fakeInfra([
      { kind: 'wrote', path: 'nginx/nginx.conf' },
      { kind: 'recreated', service: 'nginx', id: 'nginx-2' }
    ])
    const r = await runDeploy(remote, deployInputs(), new Phases())
    expect(remote.unmatched).toEqual([])
    expect(names(remote)).toEqual([r.container])
    expect(remote.matching(STEP.removeNew)).toEqual([])
    expect(stdout.text()).not.toContain('started before infra')
  })

  it('the start beside infra fails (the network not there yet): that container removed, started again in order after infra', async () => {
    let starts = 0
    const remote = deployHost().prepend([
      STEP.start,
      () => (starts++ === 0 ? { code: 125, stderr: 'Error response from daemon: network internal not found' } : { stdout: 'cid\n' })
    ])
    fakeInfra([{ kind: 'network', name: 'internal' }])
    const phases = new Phases()
    const r = await runDeploy(remote, deployInputs(), phases)
    expect(remote.unmatched).toEqual([])
    const [first, second] = names(remote)
    expect(r.container).toBe(second)
    expect(remote.matching(STEP.removeNew).map(c => c.sh.split("' sh ")[1])).toEqual([first])
    expect(stdout.text()).toContain(`Not started beside infra (starting ${first} failed (exit 125):`)
    expect(stdout.text()).toContain('network internal not found): now, in order.')
    expect(phases.records.find(p => p.name === 'Preflight and start container')?.ok).toBe(false)
    expect(phases.records.map(p => p.name)).toContain('Start container')
  })

  it("infra fails after the start beside it: that container is removed, and runDeploy fails with infra's error", async () => {
    const remote = deployHost()
    const failed = new HostError('The nginx config test failed; the previous files were restored')
    vi.mocked(runInfra).mockImplementation(async (_remote, _inputs, phases, label = '', ready = () => Promise.resolve()) => {
      await phases.run(`${label}Plan`, async () => undefined)
      await ready()
      return phases.run(`${label}Validate config`, async () => {
        await until(() => remote.matching(STEP.start).length > 0, 3_000)
        throw failed
      })
    })
    const e = await runDeploy(remote, deployInputs(), new Phases()).catch((x: unknown) => x)
    expect(e).toBe(failed)
    expect(remote.unmatched).toEqual([])
    const [name] = names(remote)
    expect(names(remote)).toEqual([name])
    expect(steps(remote).slice(steps(remote).indexOf('start'))).toEqual(['start', 'removeNew'])
    expect(remote.matching(STEP.removeNew).map(c => c.sh.split("' sh ")[1])).toEqual([name])
    // Its log shown (where the run discarded it), the container named.
    expect(group('Preflight and start container')).toContain(`Started ${name} from ${DIGEST}`)
  })

  it('with a release command: nothing started beside infra; preflight, release command and start in order', async () => {
    const remote = deployHost().prepend([STEP.releaseCommand, { stdout: '@@ops-release 0\n' }])
    let startedDuringInfra = 0
    fakeInfra([], async () => {
      await new Promise(r => setTimeout(r, 20))
      startedDuringInfra = remote.matching(STEP.start).length
    })
    const phases = new Phases()
    await runDeploy(remote, deployInputs({ releaseCommand: { command: './bin/migrate up', timeoutS: 60 } }), phases)
    expect(remote.unmatched).toEqual([])
    expect(startedDuringInfra).toBe(0)
    const recorded = phases.records.map(p => p.name)
    expect(recorded).not.toContain('Preflight and start container')
    expect(recorded.slice(recorded.indexOf('Infra: Start stack') + 1)).toEqual(['Preflight', 'Release command', ...PHASES.slice(1)])
    const all = steps(remote)
    expect(all.indexOf('releaseCommand')).toBeLessThan(all.indexOf('start'))
  })

  it('the pull fails: runDeploy fails with its error and nothing is started', async () => {
    const remote = healthyHost().prepend([PULL, { code: 1, stderr: 'manifest unknown' }])
    fakeInfra([])
    const e = (await runDeploy(remote, deployInputs(), new Phases()).catch((x: unknown) => x)) as HostError
    expect(e).toBeInstanceOf(HostError)
    expect(e.message).toMatch(/^Pulling ghcr\.io\/behindy\/back:v2 failed: manifest unknown/)
    expect(remote.matching(STEP.start)).toEqual([])
    expect(stdout.text()).toMatch(/✗ Pull image \([0-9.]+ s\)/)
  })
})
