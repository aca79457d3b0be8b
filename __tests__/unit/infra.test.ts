import { execFileSync } from 'node:child_process'
import { join } from 'node:path'
import { describe, expect, it, vi } from 'vitest'
import { composeV1 } from '../../src/commands/compose'
import type { ContainerInfo } from '../../src/containers'
import type { HostState } from '../../src/hoststate'
import { HostError } from '../../src/errors'
import { frontUpstream } from '../../src/front'
import { describeChange, runInfra, stackSettled, type InfraChange } from '../../src/infra'
import { planInfra, type InfraPlan } from '../../src/infraplan'
import type { InfraInputs } from '../../src/inputs'
import { COMPOSE_HASH_LABEL } from '../../src/labels'
import { Phases } from '../../src/phases'
import { loadBundle, sha256 } from '../../src/stackfiles'
import {
  appContainer,
  captureStdout,
  escapeData,
  FakeRemote,
  hostProbeOut,
  hostState,
  sectionsOut,
  stackContainer,
  stackInfo,
  until,
  type Rule
} from './helpers'

const ROOT = join(__dirname, '..', '..')
const stdout = captureStdout()

describe('stackSettled (compose up can be skipped)', () => {
  const host = (containers: ContainerInfo[]): HostState => hostState({ compose: composeV1('1.29.2'), containers })
  const plan = (over: Partial<InfraPlan> = {}): InfraPlan => ({
    files: new Map(),
    write: [],
    remove: [],
    unchanged: 13,
    envText: '',
    envChangedKeys: [],
    frontChanged: false,
    nginxChanged: false,
    notes: [],
    warnings: [],
    ...over
  })
  const healthy = () => [stackInfo('db'), stackInfo('redis'), stackInfo('nginx'), stackInfo('front')]
  const replace = (service: string, c: ContainerInfo) => healthy().map(x => (x.service === service ? c : x))

  it('only when nothing changed and db, redis, nginx and the front are all up and healthy', () => {
    expect(stackSettled(host(healthy()), plan(), [])).toBe(true)
    // Containers that are not the stack's services do not count.
    expect(stackSettled(host([...healthy(), { ...stackInfo('nginx'), service: '' }]), plan(), [])).toBe(true)
  })

  it.each<[string, HostState, InfraPlan, InfraChange[]]>([
    ['a file to write', host(healthy()), plan({ write: ['compose/docker-compose.yml'] }), []],
    ['a file to remove', host(healthy()), plan({ remove: ['nginx/old.conf'] }), []],
    ['a .env change', host(healthy()), plan({ envChangedKeys: ['DB_PASS'] }), []],
    ['a network just created', host(healthy()), plan(), [{ kind: 'network', name: 'internal' }]],
    ['a missing service', host([stackInfo('db'), stackInfo('nginx'), stackInfo('front')]), plan(), []],
    ['no front (a host from before it)', host([stackInfo('db'), stackInfo('redis'), stackInfo('nginx')]), plan(), []],
    ['a service still starting', host(replace('redis', stackInfo('redis', 'running', 'starting'))), plan(), []],
    ['an exited service', host(replace('nginx', stackInfo('nginx', 'exited', 'unhealthy'))), plan(), []],
    ['a stopped service whose last health check passed', host(replace('nginx', stackInfo('nginx', 'exited', 'healthy'))), plan(), []],
    ['an unhealthy service', host(replace('db', stackInfo('db', 'running', 'unhealthy'))), plan(), []],
    ['a service without HEALTHCHECK', host(replace('db', stackInfo('db', 'running', 'none'))), plan(), []],
    ['a second container of a service', host([...healthy(), stackInfo('nginx', 'exited', 'none', 'old-nginx')]), plan(), []],
    ['a front change to reload', host(healthy()), plan({ write: ['nginx/front/nginx.conf'], frontChanged: true }), []]
  ])('not with %s', (_name, h, p, changes) => {
    expect(stackSettled(h, p, changes)).toBe(false)
  })
})

describe('describeChange', () => {
  it('one log line per change', () => {
    const changes: InfraChange[] = [
      { kind: 'wrote', path: 'nginx/nginx.conf' },
      { kind: 'placeholder', path: 'upstreams/app_story.conf' },
      { kind: 'removed', path: 'nginx/conf.d/99-old.conf' },
      { kind: 'env', keys: ['DB_PASS', 'HTTP_PORT'] },
      { kind: 'network', name: 'internal' },
      { kind: 'backup', path: '/o/backups/behindy-x.dump' },
      { kind: 'created', service: 'redis' },
      { kind: 'recreated', service: 'nginx' },
      { kind: 'handed-over', from: 'behindy-nginx-1', to: 'behindy-nginx-2', retiredMs: 10_412 },
      { kind: 'front-pinned', to: 'behindy-nginx-2' },
      { kind: 'reloaded', service: 'nginx' },
      { kind: 'reloaded', service: 'front' }
    ]
    expect(changes.map(describeChange)).toEqual([
      'wrote nginx/nginx.conf',
      'created placeholder upstreams/app_story.conf',
      'removed nginx/conf.d/99-old.conf',
      '.env: set DB_PASS, HTTP_PORT',
      'created docker network internal',
      'backed up the database to /o/backups/behindy-x.dump',
      'created redis',
      'recreated nginx',
      'replaced nginx behindy-nginx-1 by behindy-nginx-2 behind the front (no gap; the old one finished its requests in 10.4 s)',
      'the front relays to behindy-nginx-2',
      'reloaded nginx',
      'reloaded front'
    ])
  })
})

describe('runInfra (against a fake host)', () => {
  const OPS = '/opt/behindy-ops'
  const inputs: InfraInputs = {
    opsDir: OPS,
    network: 'internal',
    settings: {},
    infraEnv: [
      ['DB_USER', 'behindy'],
      ['DB_PASS', 'db-s3cret'],
      ['DB_NAME', 'behindy'],
      ['REDIS_PASSWORD', 'r3dis-s3cret']
    ],
    infraTimeoutS: 120,
    backups: { keep: 7, beforeInfra: true }
  }
  const bundle = loadBundle(ROOT)
  /** What a previous run left on the host: every file as this run would write it, and its .env. */
  const previous = planInfra(inputs, hostState({ compose: composeV1('1.29.2') }), bundle)
  const settledHashes = () => new Map([...previous.files].map(([p, c]) => [p, sha256(c)]))
  const manifest = (previous.files.get('.ops-manifest') as string).split('\n').filter(Boolean)
  /** The hash compose recorded on the running nginx (`docker compose config --hash nginx` prints it while it is current). */
  const NGINX_HASH = 'a1'.repeat(32)
  const nginx = (id: string, name = 'behindy-nginx-1', hash = NGINX_HASH) =>
    stackContainer('nginx', { name, id, labels: { [COMPOSE_HASH_LABEL]: hash } })
  const front = stackContainer('front', { name: 'behindy-front-1', id: 'front-1' })
  const stack = (nginxId = 'nginx-1') => [
    stackContainer('db', { name: 'behindy-db-1', id: 'db-1' }),
    stackContainer('redis', { name: 'behindy-redis-1', id: 'redis-1' }),
    nginx(nginxId),
    front
  ]
  /** upstreams/ of a host whose front was pointed at behindy-nginx-1 by an earlier run. */
  const pinned = () => new Map([['nginx.stream', frontUpstream('behindy-nginx-1')]])

  // What each step sends, by the text of its command (the first pattern that matches names it).
  const STEP = {
    probe: /@@ops docker/,
    // The front pointed at another nginx: upstreams/nginx.stream alone, written, put back or its copy dropped.
    pointFront: /\.ops-stage.*' sh \/opt\/behindy-ops upstreams\/nginx\.stream$/,
    restoreFront: /mv -f "\$f\.ops-prev" "\$f".*' sh \/opt\/behindy-ops\/upstreams\/nginx\.stream$/,
    forgetFront: /rm -f "\$f\.ops-prev"; done' sh \/opt\/behindy-ops\/upstreams\/nginx\.stream$/,
    upload: /\.ops-stage/,
    composeConfig: / config -q$/,
    nginxTest: /^docker exec nginx-1 nginx -t -c /,
    // A throwaway container of the nginx the stack will run (the compose file or .env may change its image).
    composeNginxTest: / run --rm --no-deps -T nginx nginx -t -c /,
    composeFrontTest: / run --rm --no-deps -T front nginx -t -c \/etc\/nginx\/ops\/front\/nginx\.conf$/,
    frontTest: /^docker exec front-1 nginx -t -c \/etc\/nginx\/ops\/front\/nginx\.conf$/,
    forget: /rm -f "\$f\.ops-prev"; done' sh /,
    backup: /pg_dump/,
    nginxHash: / config --hash nginx$/,
    // Where docker's events of this compose up start (for how long a recreated db or redis was unreachable).
    clock: /^date \+%s\.%N$/,
    composeUp: / up -d --remove-orphans$/,
    // Behind the front: compose up of everything but nginx, which is handed over instead.
    composeUpButNginx: / up -d --remove-orphans --no-deps db redis front$/,
    scaleNginx: / up -d --no-deps --no-recreate --scale nginx=2 nginx$/,
    listStack: /^sh -c 'ids=\$\(docker ps -aq --filter "label=\$1"\).* sh com\.docker\.compose\.project=behindy /,
    // The app containers and what is in maintenance, in one round trip (the routes the handover verifies).
    listApps:
      /echo '@@ops apps'; \{ sh -c 'ids=\$\(docker ps -aq --filter "label=\$1"\).* sh ops-action\.service .*echo '@@ops maintenance'/,
    gate: /^sh -c 'n=\$1 net=\$2 via=\$3 .*' sh nginx-2 internal nginx-2 80 \/healthz 120 /,
    probeNew: /^docker exec nginx-2 sh -c 'fetch\(\)/,
    probeOld: /^docker exec nginx-1 sh -c 'fetch\(\)/,
    logs: /docker logs --tail \d+ --timestamps nginx-2/,
    discard: /^sh -c 'rc=0; for c; do e=\$\(docker rm --force --volumes .*' sh nginx-2$/,
    stopOld: /docker stop -t "\$2" "\$1".*' sh nginx-1 40$/,
    stopLeftover: /docker stop -t "\$2" "\$1".*' sh nginx-2 40$/,
    // The front compose recreated (front-2) alone, its health awaited before the handover.
    inspectNewFront: /^\{ docker inspect --format '[^']*' front-2; \}/,
    inspect: /^\{ docker inspect --format /,
    // reloadAndWait: the reload script run inside the container, its pid file and timeout as arguments.
    reload: /^docker exec nginx-1 sh -c .*reload "\$1" "\$2"' sh \/tmp\/nginx\.pid 10$/,
    reloadFront: /^docker exec front-1 sh -c .*reload "\$1" "\$2"' sh \/tmp\/nginx\.pid 10$/,
    newFrontTest: /^docker exec front-2 nginx -t -c \/etc\/nginx\/ops\/front\/nginx\.conf$/,
    reloadNewFront: /^docker exec front-2 sh -c .*reload "\$1" "\$2"' sh \/tmp\/nginx\.pid 10$/,
    newFrontLogs: /docker logs --tail \d+ --timestamps front-2/
  }
  const stepOf = (sh: string) => Object.entries(STEP).find(([, re]) => re.test(sh))?.[0] ?? sh
  const RELOADED = { stdout: 'PID COMMAND\n 12 nginx: worker process\n' }

  /**
   * The host: its probe answer (the stack before the run: `probed`, default stack(); upstreams/ default pinned()),
   * then each step's answer; `listStack` and `inspect` answer from containers() (what is there now).
   */
  function host(
    hashes: Map<string, string>,
    containers: () => string[],
    probe: { containers?: string[]; upstreams?: Map<string, string>; network?: boolean } = {}
  ): FakeRemote {
    const ok = { stderr: 'nginx: configuration file /etc/nginx/ops/nginx.conf test is successful\n' }
    const rules: Rule[] = [
      [
        STEP.probe,
        {
          stdout: hostProbeOut({
            composeV2: { rc: 1, out: '' },
            composeV1: '1.29.2',
            hashes,
            manifest,
            network: probe.network,
            containers: probe.containers ?? stack(),
            upstreams: probe.upstreams ?? pinned(),
            env: previous.envText
          })
        }
      ],
      [STEP.pointFront, {}],
      [STEP.forgetFront, {}],
      [STEP.upload, {}],
      [STEP.composeConfig, {}],
      [STEP.nginxTest, ok],
      [STEP.composeNginxTest, ok],
      [STEP.composeFrontTest, { stderr: 'nginx: configuration file /etc/nginx/ops/front/nginx.conf test is successful\n' }],
      [STEP.frontTest, { stderr: 'nginx: configuration file /etc/nginx/ops/front/nginx.conf test is successful\n' }],
      [STEP.forget, {}],
      [STEP.backup, { stdout: `${OPS}/backups/behindy-20260101T000000Z.dump 2048\n` }],
      [STEP.nginxHash, { stdout: `nginx ${NGINX_HASH}\n` }],
      [STEP.clock, { stdout: '1767225600.123456789\n' }],
      [STEP.composeUp, { stderr: 'Recreating behindy_nginx_1 ... done\n' }],
      [STEP.composeUpButNginx, { stderr: 'behindy_db_1 is up-to-date\n' }],
      [STEP.listStack, () => ({ stdout: containers().join('\n') })],
      [STEP.listApps, { stdout: sectionsOut({ apps: '', maintenance: '' }) }],
      [
        STEP.inspect,
        call => ({
          stdout: containers()
            .filter(l => call.sh.includes(JSON.parse(l.split('\t')[1]) as string))
            .join('\n')
        })
      ],
      [STEP.reload, RELOADED],
      [STEP.reloadFront, RELOADED]
    ]
    return new FakeRemote(rules)
  }

  it('a settled host: one round trip (its health just read), nothing written, no compose up, no health poll, no reload, no changes', async () => {
    vi.stubEnv('OPS_ACTION_ROOT', ROOT)
    const remote = host(settledHashes(), () => stack())
    const phases = new Phases()
    const r = await runInfra(remote, inputs, phases)
    expect(remote.unmatched).toEqual([])
    // The probe's .env is this run's .env (else the plan would change it and the host would not be settled).
    expect(remote.calls.map(c => stepOf(c.sh))).toEqual(['probe'])
    expect(r).toEqual({
      changes: [],
      changed: false,
      nginxId: 'nginx-1',
      tls: false,
      settings: { domain: '', httpPort: 80, httpsPort: 443 }
    })
    expect(phases.records.map(p => p.name)).toEqual([
      'Preflight',
      'Plan',
      'Upload files',
      'Network',
      'Validate config',
      'Start stack',
      'Reload nginx'
    ])
    expect(phases.records.every(p => p.ok)).toBe(true)
  })

  it('a host from before the front, changed compose and nginx files: one compose up of everything (nginx recreated without ports, the front created), the front pointed at nginx, no reload', async () => {
    vi.stubEnv('OPS_ACTION_ROOT', ROOT)
    const hashes = settledHashes()
    hashes.set('compose/docker-compose.yml', sha256('the previous compose file'))
    hashes.set('nginx/nginx.conf', sha256('a hand edit'))
    hashes.delete('upstreams/nginx.stream')
    hashes.delete('nginx/front/nginx.conf')
    const before = stack().filter(l => !l.includes('"front-1"'))
    let upDone = false
    // compose up recreates nginx (a new id, the same name) and creates the front; db and redis stay.
    const remote = host(hashes, () => (upDone ? stack('nginx-2') : before), { containers: before, upstreams: new Map() }).prepend([
      STEP.composeUp,
      () => {
        upDone = true
        return { stderr: 'Recreating behindy_nginx_1 ... done\nCreating behindy_front_1 ... done\n' }
      }
    ])
    const phases = new Phases()
    const r = await runInfra(remote, inputs, phases, 'Infra: ')
    expect(remote.unmatched).toEqual([])
    expect(remote.calls.map(c => stepOf(c.sh))).toEqual([
      'probe',
      'upload',
      'composeConfig',
      'composeNginxTest',
      'composeFrontTest',
      'forget',
      'backup',
      // No front yet: no hash read, no handover; compose recreates nginx (once, a short gap).
      'clock',
      'composeUp',
      'listStack',
      // Wait until healthy, then (Reload nginx) the new front names the nginx container itself (the placeholder
      // names the service): its one reload, though its files changed too.
      'inspect',
      'pointFront',
      'frontTest',
      'reloadFront',
      'forgetFront'
    ])
    // Only the changed files and the missing ones travel, in one tar archive unpacked and moved into place by one command.
    const [upload] = remote.matching(STEP.upload)
    const sent = ['compose/docker-compose.yml', 'nginx/front/nginx.conf', 'nginx/nginx.conf', 'upstreams/nginx.stream']
    const listing = execFileSync('tar', ['-tf', '-'], { input: upload.stdin as Buffer, encoding: 'utf8' })
    expect(listing.split('\n').filter(Boolean).sort()).toEqual(sent)
    expect(upload.sh.split("' sh ")[1].split(' ').slice(1).sort()).toEqual(sent)
    const untar = (stdin: unknown, path: string) => execFileSync('tar', ['-xOf', '-', path], { input: stdin as Buffer, encoding: 'utf8' })
    expect(untar(upload.stdin, 'nginx/nginx.conf')).toBe(bundle.get('nginx/nginx.conf'))
    expect(untar(upload.stdin, 'upstreams/nginx.stream')).toBe(frontUpstream('nginx'))
    expect(untar(remote.matching(STEP.pointFront)[0].stdin, 'upstreams/nginx.stream')).toBe(frontUpstream('behindy-nginx-1'))
    // The .ops-prev copies go once the config passed; the backup is of the running db, by id.
    expect(remote.matching(STEP.forget)[0].sh).toContain(`${OPS}/compose/docker-compose.yml`)
    expect(remote.matching(STEP.backup)[0].sh).toMatch(/ sh \/opt\/behindy-ops db-1 \d{8}T\d{6}Z 7$/)
    // Health is waited for on the containers compose left: the new nginx and the front.
    expect(remote.matching(STEP.inspect)[0].sh).toContain('nginx-2')
    expect(remote.matching(STEP.inspect)[0].sh).toContain('front-1')
    expect(remote.matching(STEP.reload)).toEqual([])
    expect(remote.matching(STEP.reloadFront)).toHaveLength(1)
    expect(r.changes).toEqual([
      { kind: 'wrote', path: 'compose/docker-compose.yml' },
      { kind: 'wrote', path: 'nginx/front/nginx.conf' },
      { kind: 'wrote', path: 'nginx/nginx.conf' },
      { kind: 'placeholder', path: 'upstreams/nginx.stream' },
      { kind: 'backup', path: `${OPS}/backups/behindy-20260101T000000Z.dump` },
      { kind: 'recreated', service: 'nginx', id: 'nginx-2' },
      { kind: 'created', service: 'front' },
      { kind: 'front-pinned', to: 'behindy-nginx-1' }
    ])
    expect(r.changed).toBe(true)
    expect(r.nginxId).toBe('nginx-2')
    expect(phases.records.map(p => p.name)).toEqual([
      'Infra: Preflight',
      'Infra: Plan',
      'Infra: Upload files',
      'Infra: Network',
      'Infra: Validate config',
      'Infra: Back up the database',
      'Infra: Start stack',
      'Infra: Wait until healthy',
      'Infra: Reload nginx'
    ])
  })

  it.each([
    {
      what: 'a changed nginx file with the same nginx container: tested, compose up of all but nginx, then nginx reloaded',
      file: 'nginx/nginx.conf',
      test: 'nginxTest',
      reload: 'reload',
      service: 'nginx' as const
    },
    {
      what: "a changed file of the front's: tested in the running front, then the front reloaded; nginx neither tested nor reloaded",
      file: 'nginx/front/nginx.conf',
      test: 'frontTest',
      reload: 'reloadFront',
      service: 'front' as const
    }
  ])('$what', async ({ file, test, reload, service }) => {
    vi.stubEnv('OPS_ACTION_ROOT', ROOT)
    const hashes = settledHashes()
    hashes.set(file, sha256('a hand edit'))
    const remote = host(hashes, () => stack())
    const r = await runInfra(remote, inputs, new Phases())
    expect(remote.unmatched).toEqual([])
    expect(remote.calls.map(c => stepOf(c.sh))).toEqual([
      'probe',
      'upload',
      test,
      'forget',
      'nginxHash',
      'clock',
      'composeUpButNginx',
      'listStack',
      'inspect',
      reload
    ])
    expect(r.changes).toEqual([
      { kind: 'wrote', path: file },
      { kind: 'reloaded', service }
    ])
  })

  it("the front's nginx -t says its nginx is too old: the fix names FRONT_IMAGE, the files are put back", async () => {
    vi.stubEnv('OPS_ACTION_ROOT', ROOT)
    const hashes = settledHashes()
    hashes.set('nginx/front/nginx.conf', sha256('a hand edit'))
    const restore = /mv -f "\$f\.ops-prev" "\$f"/
    const remote = host(hashes, () => stack()).prepend(
      [
        STEP.frontTest,
        { code: 1, stderr: 'nginx: [emerg] unknown directive "keepalive_min_timeout" in /etc/nginx/ops/front/nginx.conf:9\n' }
      ],
      [restore, {}]
    )
    const err = await runInfra(remote, inputs, new Phases()).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(HostError)
    expect((err as HostError).message).toMatch(/older than /)
    expect((err as HostError).fix).toMatch(/^set FRONT_IMAGE in infra-env to nginx:1\.30\.6-alpine or newer/)
    expect(remote.unmatched).toEqual([])
    expect(remote.calls.map(c => (restore.test(c.sh) ? 'restore' : stepOf(c.sh)))).toEqual(['probe', 'upload', 'frontTest', 'restore'])
  })

  it('nginx -t failing on the new files: the previous files are put back and nothing (re)starts', async () => {
    vi.stubEnv('OPS_ACTION_ROOT', ROOT)
    const hashes = settledHashes()
    hashes.set('nginx/nginx.conf', sha256('a hand edit'))
    const restore = /mv -f "\$f\.ops-prev" "\$f"/
    const remote = host(hashes, () => stack()).prepend(
      [STEP.nginxTest, { code: 1, stderr: 'nginx: [emerg] unexpected "}" in /etc/nginx/ops/nginx.conf:12\n' }],
      [restore, {}]
    )
    await expect(runInfra(remote, inputs, new Phases())).rejects.toThrow(/^The nginx config test failed; the previous files were restored/)
    expect(remote.calls.map(c => (restore.test(c.sh) ? 'restore' : stepOf(c.sh)))).toEqual(['probe', 'upload', 'nginxTest', 'restore'])
    expect(remote.matching(restore)[0].sh.endsWith(`sh ${OPS}/nginx/nginx.conf`)).toBe(true)
  })

  describe('ready (what a deploy runs beside the first steps: its pull)', () => {
    /** A host where everything is to be done: the compose file and nginx.conf changed, the network missing. */
    const changedHost = () => {
      const hashes = settledHashes()
      hashes.set('compose/docker-compose.yml', sha256('the previous compose file'))
      hashes.set('nginx/nginx.conf', sha256('a hand edit'))
      return host(hashes, () => stack(), { network: false })
    }

    it('is awaited after Plan and before Upload files: nothing is sent until it resolves, then the run goes on', async () => {
      vi.stubEnv('OPS_ACTION_ROOT', ROOT)
      const remote = changedHost().prepend([/docker network create/, {}])
      const phases = new Phases()
      let release: () => void = () => undefined
      const seen: { records: string[]; calls: string[] }[] = []
      const ready = vi.fn(() => {
        seen.push({ records: phases.records.map(r => `${r.name} ${r.ok}`), calls: remote.calls.map(c => stepOf(c.sh)) })
        return new Promise<void>(r => (release = r))
      })
      const run = runInfra(remote, inputs, phases, 'Infra: ', ready)
      await until(() => ready.mock.calls.length > 0)
      // Asked once Preflight and Plan are done, with only the probe sent.
      expect(seen).toEqual([{ records: ['Infra: Preflight true', 'Infra: Plan true'], calls: ['probe'] }])
      // While it is pending, nothing more is sent and no other phase starts.
      await new Promise(r => setTimeout(r, 50))
      expect(remote.calls.map(c => stepOf(c.sh))).toEqual(['probe'])
      expect(phases.records.map(r => r.name)).toEqual(['Infra: Preflight', 'Infra: Plan'])
      release()
      const r = await run
      expect(ready).toHaveBeenCalledTimes(1)
      expect(remote.unmatched).toEqual([])
      expect(remote.calls.map(c => stepOf(c.sh)).slice(0, 2)).toEqual(['probe', 'upload'])
      expect(remote.matching(/docker network create/)).toHaveLength(1)
      expect(phases.records.map(p => p.name).slice(0, 4)).toEqual([
        'Infra: Preflight',
        'Infra: Plan',
        'Infra: Upload files',
        'Infra: Network'
      ])
      expect(r.changes).toContainEqual({ kind: 'network', name: 'internal' })
    })

    it('rejects: runInfra fails with its error, and nothing that changes the host was sent (no upload, network, backup or compose up)', async () => {
      vi.stubEnv('OPS_ACTION_ROOT', ROOT)
      const remote = changedHost().prepend([/docker network create/, {}])
      const phases = new Phases()
      const pullFailed = new HostError('Pulling ghcr.io/behindy/back:v9 failed: manifest unknown', 'check the image name and tag')
      const e = await runInfra(remote, inputs, phases, 'Infra: ', () => Promise.reject(pullFailed)).catch((x: unknown) => x)
      expect(e).toBe(pullFailed)
      expect(remote.unmatched).toEqual([])
      expect(remote.calls.map(c => stepOf(c.sh))).toEqual(['probe'])
      expect(remote.calls.filter(c => c.stdin !== undefined)).toEqual([])
      expect(phases.records.map(p => [p.name, p.ok])).toEqual([
        ['Infra: Preflight', true],
        ['Infra: Plan', true]
      ])
      // A settled host as well: the probe only, then the error.
      const settled = host(settledHashes(), () => stack())
      await expect(runInfra(settled, inputs, new Phases(), '', () => Promise.reject(pullFailed))).rejects.toBe(pullFailed)
      expect(settled.calls.map(c => stepOf(c.sh))).toEqual(['probe'])
    })

    it('never asked before Preflight is done: a failed probe fails the run without it', async () => {
      vi.stubEnv('OPS_ACTION_ROOT', ROOT)
      const remote = host(settledHashes(), () => stack()).prepend([STEP.probe, { code: 255, stderr: 'the connection is gone' }])
      const ready = vi.fn(() => Promise.resolve())
      await expect(runInfra(remote, inputs, new Phases(), '', ready)).rejects.toThrow()
      expect(ready).not.toHaveBeenCalled()
      expect(remote.calls.map(c => stepOf(c.sh))).toEqual(['probe'])
    })
  })

  describe('nginx handed over behind the front', () => {
    const NEW_HASH = 'b2'.repeat(32)
    // Two deployed apps: their health paths through nginx are compared between the old and the new nginx.
    const apps = [
      appContainer('backend', { name: 'backend-11112222', port: 8080 }),
      appContainer('story', { name: 'story-0a0b0c0d', port: 8000 }),
      appContainer('frontend', { name: 'frontend-33334444', status: 'exited', port: 3000 })
    ]
    const answers = (codes: Record<string, string>) => ({
      stdout: Object.entries(codes)
        .map(([path, code]) => `${code} http://127.0.0.1${path}\n`)
        .join('')
    })

    /**
     * The host with the front and one nginx (behindy-nginx-1, created from NGINX_HASH), whose compose file changed
     * (`hash` is what compose says nginx's definition is now), and the files in `change` too. With `newFront` the
     * compose up of db, redis and the front replaces front-1 by that container. `--scale nginx=2` adds
     * behindy-nginx-2; stopping or discarding a container removes it.
     */
    function handoverHost(
      hash: string,
      over: { upstreams?: Map<string, string>; change?: string[]; newFront?: string; maintenance?: string } = {}
    ) {
      const hashes = settledHashes()
      hashes.set('compose/docker-compose.yml', sha256('the previous compose file'))
      for (const p of over.change ?? []) hashes.set(p, sha256('a hand edit'))
      let now = stack()
      const remote = host(hashes, () => now, { upstreams: over.upstreams }).prepend(
        [STEP.nginxHash, { stdout: `nginx ${hash}\n` }],
        [
          STEP.composeUpButNginx,
          () => {
            if (!over.newFront) return { stderr: 'behindy_db_1 is up-to-date\n' }
            const recreated = over.newFront
            now = now.map(l => (l.includes('"front-1"') ? recreated : l))
            return { stderr: 'Recreating behindy_front_1 ... done\n' }
          }
        ],
        [
          STEP.scaleNginx,
          () => {
            now = [...now, nginx('nginx-2', 'behindy-nginx-2', hash)]
            return { stderr: 'Creating behindy_nginx_2 ... done\n' }
          }
        ],
        [STEP.listApps, { stdout: sectionsOut({ apps: apps.join('\n'), maintenance: over.maintenance ?? '' }) }],
        [STEP.gate, { stdout: 'healthy 172.18.0.9 200\n' }],
        [STEP.probeNew, answers({ '/api/ai-stories/health': '200', '/llm/health': '200' })],
        [STEP.probeOld, answers({ '/api/ai-stories/health': '200', '/llm/health': '200' })],
        [STEP.logs, { stdout: '' }],
        [
          STEP.discard,
          () => {
            now = now.filter(l => !l.includes('"nginx-2"'))
            return {}
          }
        ],
        [
          STEP.stopOld,
          () => {
            now = now.filter(l => !l.includes('"nginx-1"'))
            return { stdout: '10412\n' }
          }
        ],
        [STEP.restoreFront, {}]
      )
      return remote
    }

    it('compose would recreate nginx: compose up of db, redis and the front only, a second nginx verified, the front pointed at it and reloaded, the old one stopped and removed', async () => {
      vi.stubEnv('OPS_ACTION_ROOT', ROOT)
      const remote = handoverHost(NEW_HASH)
      const r = await runInfra(remote, inputs, new Phases())
      expect(remote.unmatched).toEqual([])
      expect(remote.calls.map(c => stepOf(c.sh))).toEqual([
        'probe',
        'upload',
        'composeConfig',
        'composeNginxTest',
        'composeFrontTest',
        'forget',
        'backup',
        'nginxHash',
        'clock',
        'composeUpButNginx',
        // The front as compose left it (the same container: no wait for its health).
        'listStack',
        'scaleNginx',
        'listStack',
        'gate',
        'listApps',
        'probeNew',
        'probeOld',
        'pointFront',
        'frontTest',
        'reloadFront',
        'forgetFront',
        'stopOld',
        // The stack after the handover: what is waited for and reported.
        'listStack',
        'inspect'
      ])
      // compose never touches nginx itself: no full compose up, nothing but the scale names nginx.
      expect(remote.matching(STEP.composeUp)).toEqual([])
      // Every deployed (running) app's health path through its route, in the new nginx and in the old one.
      for (const probe of [STEP.probeNew, STEP.probeOld])
        expect(remote.matching(probe)[0].sh).toMatch(
          /' sh '' http:\/\/127\.0\.0\.1\/api\/ai-stories\/health http:\/\/127\.0\.0\.1\/llm\/health$/
        )
      // The front names the new container, and only then does the old one get its stop signal.
      expect(
        execFileSync('tar', ['-xOf', '-', 'upstreams/nginx.stream'], {
          input: remote.matching(STEP.pointFront)[0].stdin as Buffer,
          encoding: 'utf8'
        })
      ).toBe(frontUpstream('behindy-nginx-2'))
      expect(remote.indexOf(STEP.reloadFront)).toBeLessThan(remote.indexOf(STEP.stopOld))
      // Health is waited for on the new nginx; it started with the new files, so it is not reloaded.
      expect(remote.matching(STEP.inspect)[0].sh).toContain('nginx-2')
      expect(remote.matching(STEP.inspect)[0].sh).not.toContain('nginx-1')
      expect(remote.matching(/sh -c .*reload "\$1" "\$2"' sh \/tmp\/nginx\.pid 10$/).map(c => c.sh.split(' ')[2])).toEqual(['front-1'])
      expect(r.changes).toEqual([
        { kind: 'wrote', path: 'compose/docker-compose.yml' },
        { kind: 'backup', path: `${OPS}/backups/behindy-20260101T000000Z.dump` },
        { kind: 'handed-over', from: 'behindy-nginx-1', to: 'behindy-nginx-2', retiredMs: 10_412 }
      ])
      expect(r.nginxId).toBe('nginx-2')
    })

    it('the new nginx never answers /healthz: it is removed, the front and the old nginx are left as they were', async () => {
      vi.stubEnv('OPS_ACTION_ROOT', ROOT)
      const remote = handoverHost(NEW_HASH).prepend([STEP.gate, { stdout: 'timeout 502 172.18.0.9\n' }])
      const phases = new Phases()
      const err = await runInfra(remote, inputs, phases).catch((e: unknown) => e)
      expect(err).toBeInstanceOf(HostError)
      expect((err as Error).message).toBe(
        'The new nginx container failed its checks and was removed; behindy-nginx-1 keeps serving, unchanged: it did not answer /healthz (timeout 502 172.18.0.9)'
      )
      expect(remote.unmatched).toEqual([])
      expect(remote.calls.map(c => stepOf(c.sh)).slice(-7)).toEqual([
        'composeUpButNginx',
        'listStack',
        'scaleNginx',
        'listStack',
        'gate',
        'logs',
        'discard'
      ])
      expect(remote.matching(STEP.discard)).toHaveLength(1)
      for (const step of [STEP.stopOld, STEP.pointFront, STEP.frontTest, STEP.reloadFront, STEP.probeNew])
        expect(remote.matching(step)).toEqual([])
      expect(phases.records.at(-1)).toMatchObject({ name: 'Start stack', ok: false })
    })

    it("the front's nginx -t fails on the file naming the new nginx: the file is put back, the new nginx removed, the old one keeps serving", async () => {
      vi.stubEnv('OPS_ACTION_ROOT', ROOT)
      const remote = handoverHost(NEW_HASH).prepend([
        STEP.frontTest,
        { code: 1, stderr: 'nginx: [emerg] host not found in upstream "behindy-nginx-2:8080"\n' }
      ])
      await expect(runInfra(remote, inputs, new Phases())).rejects.toThrow(
        /^The new nginx container failed its checks and was removed; behindy-nginx-1 keeps serving, unchanged: nginx -t fails on the front's config naming behindy-nginx-2:\nnginx: \[emerg\] host not found/
      )
      expect(remote.unmatched).toEqual([])
      expect(remote.calls.map(c => stepOf(c.sh)).slice(-5)).toEqual(['pointFront', 'frontTest', 'restoreFront', 'logs', 'discard'])
      for (const step of [STEP.stopOld, STEP.reloadFront, STEP.forgetFront]) expect(remote.matching(step)).toEqual([])
    })

    it('a route in maintenance is verified through its upstream on the preview port (clients get the page), in both nginx, by its own probe round', async () => {
      vi.stubEnv('OPS_ACTION_ROOT', ROOT)
      /** 200 for every URL of the probe (its arguments after the header). */
      const allOk = (call: { sh: string }) => ({
        stdout: (call.sh.match(/http:\/\/127\.0\.0\.1\S*/g) ?? []).map(u => `200 ${u}\n`).join('')
      })
      const remote = handoverHost(NEW_HASH, { maintenance: 'backend\n' }).prepend([STEP.probeNew, allOk], [STEP.probeOld, allOk])
      const r = await runInfra(remote, inputs, new Phases())
      expect(remote.unmatched).toEqual([])
      expect(r.changes.at(-1)).toMatchObject({ kind: 'handed-over', to: 'behindy-nginx-2' })
      for (const probe of [STEP.probeNew, STEP.probeOld]) {
        const sent = remote.matching(probe).map(c => c.sh.split("' sh ")[1])
        expect(sent.sort()).toEqual([
          "'' http://127.0.0.1/llm/health",
          "'X-Ops-Upstream: app_backend' http://127.0.0.1:8504/api/ai-stories/health"
        ])
      }
    })

    it('a route that fails only through the new nginx fails the handover; one that fails through the old one too is a warning', async () => {
      vi.stubEnv('OPS_ACTION_ROOT', ROOT)
      const own = handoverHost(NEW_HASH).prepend([STEP.probeNew, answers({ '/api/ai-stories/health': '200', '/llm/health': '502' })])
      await expect(runInfra(own, inputs, new Phases())).rejects.toThrow(
        /keeps serving, unchanged: through it, \/llm\/health answered 502 \(the old nginx: 200\)$/
      )
      expect(own.matching(STEP.discard)).toHaveLength(1)
      expect(own.matching(STEP.pointFront)).toEqual([])
      expect(own.matching(STEP.stopOld)).toEqual([])

      const both = handoverHost(NEW_HASH).prepend(
        [STEP.probeNew, answers({ '/api/ai-stories/health': '200', '/llm/health': '502' })],
        [STEP.probeOld, answers({ '/api/ai-stories/health': '200', '/llm/health': '502' })]
      )
      const r = await runInfra(both, inputs, new Phases())
      expect(both.unmatched).toEqual([])
      expect(r.changes.at(-1)).toEqual({ kind: 'handed-over', from: 'behindy-nginx-1', to: 'behindy-nginx-2', retiredMs: 10_412 })
      expect(stdout.commands('warning')).toEqual([
        escapeData("/llm/health fails through the old nginx too (502): not the new nginx's doing")
      ])
    })

    it('compose up recreated the front too: its health awaited, then the new nginx tested and the front reloaded in the new front', async () => {
      vi.stubEnv('OPS_ACTION_ROOT', ROOT)
      // compose recreates the front (same name, new id); it reports starting at first, then healthy.
      const newFront = (health: string) => stackContainer('front', { name: 'behindy-front-1', id: 'front-2', health })
      let polls = 0
      const remote = handoverHost(NEW_HASH, { newFront: newFront('healthy') }).prepend(
        [STEP.inspectNewFront, () => ({ stdout: newFront(++polls === 1 ? 'starting' : 'healthy') })],
        [STEP.newFrontTest, { stderr: 'nginx: configuration file /etc/nginx/ops/front/nginx.conf test is successful\n' }],
        [STEP.reloadNewFront, RELOADED]
      )
      const r = await runInfra(remote, inputs, new Phases())
      expect(remote.unmatched).toEqual([])
      expect(remote.calls.map(c => stepOf(c.sh)).slice(remote.indexOf(STEP.composeUpButNginx))).toEqual([
        'composeUpButNginx',
        'listStack',
        // The new front, alone, until healthy: only then the second nginx.
        'inspectNewFront',
        'inspectNewFront',
        'scaleNginx',
        'listStack',
        'gate',
        'listApps',
        'probeNew',
        'probeOld',
        'pointFront',
        'newFrontTest',
        'reloadNewFront',
        'forgetFront',
        'stopOld',
        'listStack',
        'inspect'
      ])
      // The old front's id is gone: nothing is sent to it.
      expect(remote.calls.filter(c => /\bfront-1\b/.test(c.sh))).toEqual([])
      expect(
        execFileSync('tar', ['-xOf', '-', 'upstreams/nginx.stream'], {
          input: remote.matching(STEP.pointFront)[0].stdin as Buffer,
          encoding: 'utf8'
        })
      ).toBe(frontUpstream('behindy-nginx-2'))
      expect(remote.indexOf(STEP.reloadNewFront)).toBeLessThan(remote.indexOf(STEP.stopOld))
      // Health is waited for on the stack as it is after the handover: the new nginx and the new front.
      const wait = remote.matching(STEP.inspect).at(-1)?.sh ?? ''
      expect(wait).toContain('nginx-2')
      expect(wait).toContain('front-2')
      expect(wait).not.toContain('nginx-1')
      expect(r.changes).toEqual([
        { kind: 'wrote', path: 'compose/docker-compose.yml' },
        { kind: 'backup', path: `${OPS}/backups/behindy-20260101T000000Z.dump` },
        { kind: 'handed-over', from: 'behindy-nginx-1', to: 'behindy-nginx-2', retiredMs: 10_412 },
        { kind: 'recreated', service: 'front', id: 'front-2' }
      ])
      expect(r.nginxId).toBe('nginx-2')
    })

    it('the recreated front crashes: no second nginx, the old one keeps serving', async () => {
      vi.stubEnv('OPS_ACTION_ROOT', ROOT)
      const crashed = stackContainer('front', { name: 'behindy-front-1', id: 'front-2', status: 'exited', health: 'unhealthy' })
      const remote = handoverHost(NEW_HASH, { newFront: crashed }).prepend([
        STEP.newFrontLogs,
        { stdout: 'nginx: [emerg] bind() failed\n' }
      ])
      const phases = new Phases()
      await expect(runInfra(remote, inputs, phases)).rejects.toThrow(/^front crashed \(exited, restarted 0×\)$/)
      expect(remote.unmatched).toEqual([])
      expect(remote.calls.map(c => stepOf(c.sh)).slice(-4)).toEqual(['composeUpButNginx', 'listStack', 'inspectNewFront', 'newFrontLogs'])
      for (const step of [STEP.scaleNginx, STEP.pointFront, STEP.stopOld, STEP.reloadNewFront]) expect(remote.matching(step)).toEqual([])
      expect(phases.records.at(-1)).toMatchObject({ name: 'Start stack', ok: false })
    })

    it("the front's files changed too: the front reloads once, by the handover (nothing pinned, no second reload)", async () => {
      vi.stubEnv('OPS_ACTION_ROOT', ROOT)
      const remote = handoverHost(NEW_HASH, { change: ['nginx/front/nginx.conf'] })
      const r = await runInfra(remote, inputs, new Phases())
      expect(remote.unmatched).toEqual([])
      // Tested with the compose file as it is now (a throwaway front), then reloaded with the handover's file.
      expect(remote.matching(STEP.composeFrontTest)).toHaveLength(1)
      expect(remote.matching(STEP.pointFront)).toHaveLength(1)
      expect(remote.matching(STEP.reloadFront)).toHaveLength(1)
      expect(remote.calls.map(c => stepOf(c.sh)).slice(-6)).toEqual([
        'frontTest',
        'reloadFront',
        'forgetFront',
        'stopOld',
        'listStack',
        'inspect'
      ])
      expect(r.changes).toEqual([
        { kind: 'wrote', path: 'compose/docker-compose.yml' },
        { kind: 'wrote', path: 'nginx/front/nginx.conf' },
        { kind: 'backup', path: `${OPS}/backups/behindy-20260101T000000Z.dump` },
        { kind: 'handed-over', from: 'behindy-nginx-1', to: 'behindy-nginx-2', retiredMs: 10_412 }
      ])
    })

    it('compose would not recreate nginx (its hash unchanged): no second nginx, nothing stopped, the front untouched', async () => {
      vi.stubEnv('OPS_ACTION_ROOT', ROOT)
      const remote = handoverHost(NGINX_HASH)
      const r = await runInfra(remote, inputs, new Phases())
      expect(remote.unmatched).toEqual([])
      expect(remote.calls.map(c => stepOf(c.sh)).slice(-5)).toEqual(['nginxHash', 'clock', 'composeUpButNginx', 'listStack', 'inspect'])
      for (const step of [STEP.scaleNginx, STEP.composeUp, STEP.gate, STEP.stopOld, STEP.discard, STEP.pointFront, STEP.reloadFront])
        expect(remote.matching(step)).toEqual([])
      expect(r.changes).toEqual([
        { kind: 'wrote', path: 'compose/docker-compose.yml' },
        { kind: 'backup', path: `${OPS}/backups/behindy-20260101T000000Z.dump` }
      ])
      expect(r.nginxId).toBe('nginx-1')
    })

    it('the front still naming the service (its first run since the stack started): pointed at the nginx container', async () => {
      vi.stubEnv('OPS_ACTION_ROOT', ROOT)
      const remote = handoverHost(NGINX_HASH, { upstreams: new Map([['nginx.stream', frontUpstream('nginx')]]) })
      const r = await runInfra(remote, inputs, new Phases())
      expect(remote.unmatched).toEqual([])
      // Pinned once the stack is healthy (Reload nginx), by the front's one reload.
      expect(remote.calls.map(c => stepOf(c.sh)).slice(-7)).toEqual([
        'composeUpButNginx',
        'listStack',
        'inspect',
        'pointFront',
        'frontTest',
        'reloadFront',
        'forgetFront'
      ])
      expect(
        execFileSync('tar', ['-xOf', '-', 'upstreams/nginx.stream'], {
          input: remote.matching(STEP.pointFront)[0].stdin as Buffer,
          encoding: 'utf8'
        })
      ).toBe(frontUpstream('behindy-nginx-1'))
      expect(remote.matching(STEP.scaleNginx)).toEqual([])
      expect(r.changes.at(-1)).toEqual({ kind: 'front-pinned', to: 'behindy-nginx-1' })
    })

    it('two nginx containers (an interrupted handover): the one the front does not relay to finishes and is removed, then the usual compose up without nginx', async () => {
      vi.stubEnv('OPS_ACTION_ROOT', ROOT)
      const two = [...stack(), nginx('nginx-2', 'behindy-nginx-2', NEW_HASH)]
      let stopped = false
      const remote = host(settledHashes(), () => (stopped ? two.filter(l => !l.includes('"nginx-2"')) : two), { containers: two }).prepend([
        STEP.stopLeftover,
        () => {
          stopped = true
          return { stdout: '412\n' }
        }
      ])
      const r = await runInfra(remote, inputs, new Phases())
      expect(remote.unmatched).toEqual([])
      const steps = remote.calls.map(c => stepOf(c.sh))
      expect(steps.slice(0, 3)).toEqual(['probe', 'stopLeftover', 'nginxHash'])
      expect(steps).toContain('composeUpButNginx')
      expect(steps).not.toContain('composeUp')
      expect(steps).not.toContain('stopOld')
      expect(r.nginxId).toBe('nginx-1')
    })
  })
})
