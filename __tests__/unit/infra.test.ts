import { execFileSync } from 'node:child_process'
import { join } from 'node:path'
import { describe, expect, it, vi } from 'vitest'
import { composeV1 } from '../../src/commands/compose'
import type { ContainerInfo } from '../../src/containers'
import type { HostState } from '../../src/hoststate'
import { describeChange, runInfra, stackSettled, type InfraChange } from '../../src/infra'
import { planInfra, type InfraPlan } from '../../src/infraplan'
import type { InfraInputs } from '../../src/inputs'
import { Phases } from '../../src/phases'
import { loadBundle, sha256 } from '../../src/stackfiles'
import { captureStdout, FakeRemote, hostProbeOut, hostState, stackContainer, stackInfo, type Rule } from './helpers'

const ROOT = join(__dirname, '..', '..')
captureStdout()

describe('stackSettled (compose up can be skipped)', () => {
  const host = (containers: ContainerInfo[]): HostState => hostState({ compose: composeV1('1.29.2'), containers })
  const plan = (over: Partial<InfraPlan> = {}): InfraPlan => ({
    files: new Map(),
    write: [],
    remove: [],
    unchanged: 13,
    envText: '',
    envChangedKeys: [],
    nginxChanged: false,
    notes: [],
    warnings: [],
    ...over
  })
  const healthy = () => [stackInfo('db'), stackInfo('redis'), stackInfo('nginx')]
  const replace = (service: string, c: ContainerInfo) => healthy().map(x => (x.service === service ? c : x))

  it('only when nothing changed and db, redis and nginx are all up and healthy', () => {
    expect(stackSettled(host(healthy()), plan(), [])).toBe(true)
    // Containers that are not the stack's services do not count.
    expect(stackSettled(host([...healthy(), { ...stackInfo('nginx'), service: '' }]), plan(), [])).toBe(true)
  })

  it.each<[string, HostState, InfraPlan, InfraChange[]]>([
    ['a file to write', host(healthy()), plan({ write: ['compose/docker-compose.yml'] }), []],
    ['a file to remove', host(healthy()), plan({ remove: ['nginx/old.conf'] }), []],
    ['a .env change', host(healthy()), plan({ envChangedKeys: ['DB_PASS'] }), []],
    ['a network just created', host(healthy()), plan(), [{ kind: 'network', name: 'internal' }]],
    ['a missing service', host([stackInfo('db'), stackInfo('nginx')]), plan(), []],
    ['a service still starting', host(replace('redis', stackInfo('redis', 'running', 'starting'))), plan(), []],
    ['an exited service', host(replace('nginx', stackInfo('nginx', 'exited', 'unhealthy'))), plan(), []],
    ['a stopped service whose last health check passed', host(replace('nginx', stackInfo('nginx', 'exited', 'healthy'))), plan(), []],
    ['an unhealthy service', host(replace('db', stackInfo('db', 'running', 'unhealthy'))), plan(), []],
    ['a service without HEALTHCHECK', host(replace('db', stackInfo('db', 'running', 'none'))), plan(), []],
    ['a second container of a service', host([...healthy(), stackInfo('nginx', 'exited', 'none', 'old-nginx')]), plan(), []]
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
      { kind: 'reloaded' }
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
      'reloaded nginx'
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
  const stack = (nginxId = 'nginx-1') => [
    stackContainer('db', { name: 'behindy-db-1', id: 'db-1' }),
    stackContainer('redis', { name: 'behindy-redis-1', id: 'redis-1' }),
    stackContainer('nginx', { name: 'behindy-nginx-1', id: nginxId })
  ]

  // What each step sends, by the text of its command.
  const STEP = {
    probe: /@@ops docker/,
    upload: /\.ops-stage/,
    composeConfig: / config -q$/,
    nginxTest: /^docker exec nginx-1 nginx -t -c /,
    // A throwaway container of the nginx the stack will run (the compose file or .env may change its image).
    composeNginxTest: / run --rm --no-deps -T nginx nginx -t -c /,
    forget: /rm -f "\$f\.ops-prev"; done' sh /,
    backup: /pg_dump/,
    composeUp: / up -d --remove-orphans$/,
    listStack: /^sh -c 'ids=\$\(docker ps -aq --filter "label=\$1"\).* sh com\.docker\.compose\.project=behindy /,
    inspect: /^\{ docker inspect --format /,
    // reloadAndWait: the reload script run inside the nginx container, its pid file and timeout as arguments.
    reload: /^docker exec nginx-1 sh -c .*reload "\$1" "\$2"' sh \/tmp\/nginx\.pid 10$/
  }
  const stepOf = (sh: string) => Object.entries(STEP).find(([, re]) => re.test(sh))?.[0] ?? sh

  /** The host: its probe answer, then each step's answer; `inspect` answers for the containers it is asked about. */
  function host(hashes: Map<string, string>, containers: () => string[]): FakeRemote {
    const rules: Rule[] = [
      [
        STEP.probe,
        {
          stdout: hostProbeOut({
            composeV2: { rc: 1, out: '' },
            composeV1: '1.29.2',
            hashes,
            manifest,
            containers: stack(),
            env: previous.envText
          })
        }
      ],
      [STEP.upload, {}],
      [STEP.composeConfig, {}],
      [STEP.nginxTest, { stderr: 'nginx: configuration file /etc/nginx/ops/nginx.conf test is successful\n' }],
      [STEP.composeNginxTest, { stderr: 'nginx: configuration file /etc/nginx/ops/nginx.conf test is successful\n' }],
      [STEP.forget, {}],
      [STEP.backup, { stdout: `${OPS}/backups/behindy-20260101T000000Z.dump 2048\n` }],
      [STEP.composeUp, { stderr: 'Recreating behindy_nginx_1 ... done\n' }],
      [STEP.listStack, () => ({ stdout: containers().join('\n') })],
      [
        STEP.inspect,
        call => ({
          stdout: containers()
            .filter(l => call.sh.includes(JSON.parse(l.split('\t')[1]) as string))
            .join('\n')
        })
      ]
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

  it('changed compose and nginx files: written in one archive, validated, db backed up, compose up; nginx recreated, so no reload', async () => {
    vi.stubEnv('OPS_ACTION_ROOT', ROOT)
    const hashes = settledHashes()
    hashes.set('compose/docker-compose.yml', sha256('the previous compose file'))
    hashes.set('nginx/nginx.conf', sha256('a hand edit'))
    let upDone = false
    // compose up recreates nginx (a new id); db and redis stay.
    const remote = host(hashes, () => stack(upDone ? 'nginx-2' : 'nginx-1')).prepend([
      STEP.composeUp,
      () => {
        upDone = true
        return { stderr: 'Recreating behindy_nginx_1 ... done\n' }
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
      'forget',
      'backup',
      'composeUp',
      'listStack',
      'inspect'
    ])
    // Only the two changed files travel, in one tar archive unpacked and moved into place by one command.
    const [upload] = remote.matching(STEP.upload)
    expect(upload.sh.endsWith(`sh ${OPS} compose/docker-compose.yml nginx/nginx.conf`)).toBe(true)
    const listing = execFileSync('tar', ['-tf', '-'], { input: upload.stdin as Buffer, encoding: 'utf8' })
    expect(listing.split('\n').filter(Boolean).sort()).toEqual(['compose/docker-compose.yml', 'nginx/nginx.conf'])
    const nginxConf = execFileSync('tar', ['-xOf', '-', 'nginx/nginx.conf'], { input: upload.stdin as Buffer, encoding: 'utf8' })
    expect(nginxConf).toBe(bundle.get('nginx/nginx.conf'))
    // The .ops-prev copies go once the config passed; the backup is of the running db, by id.
    expect(remote.matching(STEP.forget)[0].sh).toContain(`${OPS}/compose/docker-compose.yml ${OPS}/nginx/nginx.conf`)
    expect(remote.matching(STEP.backup)[0].sh).toMatch(/ sh \/opt\/behindy-ops db-1 \d{8}T\d{6}Z 7$/)
    // Health is waited for on the containers compose left: the new nginx.
    expect(remote.matching(STEP.inspect)[0].sh).toContain('nginx-2')
    expect(remote.matching(STEP.reload)).toEqual([])
    expect(r.changes).toEqual([
      { kind: 'wrote', path: 'compose/docker-compose.yml' },
      { kind: 'wrote', path: 'nginx/nginx.conf' },
      { kind: 'backup', path: `${OPS}/backups/behindy-20260101T000000Z.dump` },
      { kind: 'recreated', service: 'nginx' }
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

  it('a changed nginx file with the same nginx container: tested, then reloaded', async () => {
    vi.stubEnv('OPS_ACTION_ROOT', ROOT)
    const hashes = settledHashes()
    hashes.set('nginx/nginx.conf', sha256('a hand edit'))
    const remote = host(hashes, () => stack()).prepend([STEP.reload, { stdout: 'PID COMMAND\n 12 nginx: worker process\n' }])
    const r = await runInfra(remote, inputs, new Phases())
    expect(remote.unmatched).toEqual([])
    expect(remote.calls.map(c => stepOf(c.sh))).toEqual([
      'probe',
      'upload',
      'nginxTest',
      'forget',
      'composeUp',
      'listStack',
      'inspect',
      'reload'
    ])
    expect(r.changes).toEqual([{ kind: 'wrote', path: 'nginx/nginx.conf' }, { kind: 'reloaded' }])
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
})
