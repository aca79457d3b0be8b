import { execFileSync } from 'node:child_process'
import { appendFileSync, mkdtempSync, readFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { beforeAll, describe, expect, it } from 'vitest'
import {
  actionCopy,
  connection,
  hashOpsDir,
  http,
  infraInputs,
  OPS_DIR,
  psql,
  redisCli,
  REDIS_PASSWORD,
  resetHost,
  runAction,
  sh,
  sshLogins,
  stackContainers,
  startedAt,
  tryRun,
  visibleLog,
  type ActionRun
} from './sandbox'

function expectOk(r: ActionRun): void {
  if (r.code !== 0) throw new Error(`action failed (exit ${r.code}):\n${r.output}`)
}

describe('mode infra on a fresh host', () => {
  let first: ActionRun
  beforeAll(async () => {
    resetHost()
    first = await runAction(infraInputs())
  })

  it('succeeds and reports what it created', () => {
    expectOk(first)
    expect(first.outputs.changed).toBe('true')
    expect(first.output).toMatch(/created docker network internal/)
    for (const s of ['db', 'redis', 'nginx']) expect(first.output).toMatch(new RegExp(`created ${s}`))
    expect(first.summary).toMatch(/\| Preflight \|/)
  })

  it('keeps .env private with the merged values', () => {
    expect(sh('stat', ['-c', '%a %U', `${OPS_DIR}/.env`]).trim()).toBe('600 deploy')
    const env = readFileSync(`${OPS_DIR}/.env`, 'utf8')
    expect(env).toContain("DB_PASS='s3cret pass#1'")
    expect(env).toContain('HTTP_PORT=18080')
  })

  it('never prints a secret', () => {
    const log = visibleLog(first.output)
    expect(first.output).toContain('::add-mask::s3cret pass#1')
    expect(log).not.toContain('s3cret pass#1')
    expect(log).not.toContain(REDIS_PASSWORD)
    expect(log).not.toContain(readFileSync(connection().keyPath, 'utf8').split('\n')[1])
  })

  it('postgres answers DB_USER/DB_PASS from a container on the internal network, and refuses a wrong password', () => {
    expect(psql('select 40 + 2')).toEqual({ code: 0, out: '42\n' })
    expect(psql('select 1', 'wrong').code).not.toBe(0)
  })

  it('redis refuses commands without the password and answers with it', () => {
    expect(redisCli(['set', 'k', 'v']).out).toMatch(/NOAUTH/)
    expect(redisCli(['ping'], REDIS_PASSWORD).out.trim()).toBe('PONG')
    const config = redisCli(['config', 'get', 'maxmemory-policy'], REDIS_PASSWORD).out
    expect(config).toContain('allkeys-lru')
    expect(redisCli(['config', 'get', 'appendonly'], REDIS_PASSWORD).out).toContain('no')
  })

  it('publishes only the front: nginx, postgres and redis have no host ports', () => {
    const ids = stackContainers()
    expect(sh('docker', ['port', ids.db]).trim()).toBe('')
    expect(sh('docker', ['port', ids.redis]).trim()).toBe('')
    expect(sh('docker', ['port', ids.nginx]).trim()).toBe('')
    expect(sh('docker', ['port', ids.front])).toMatch(/80\/tcp -> 0\.0\.0\.0:18080/)
  })

  it('nginx answers /healthz and 503 on every undeployed route', async () => {
    expect((await http('/healthz')).status).toBe(200)
    for (const path of ['/', '/api/posts', '/llm/health', '/ws']) {
      const r = await http(path)
      expect(r.status, path).toBe(503)
      expect(r.body).toMatch(/not been deployed/)
    }
    expect((await http('/healthz')).headers.get('server')).toBe('nginx')
  })

  it('shares the network: the stack joined "internal" (declared external)', () => {
    const names = sh('docker', ['network', 'inspect', 'internal', '--format', '{{range .Containers}}{{.Name}} {{end}}'])
    for (const s of ['db', 'redis', 'nginx', 'front']) expect(names).toMatch(new RegExp(`behindy[_-]${s}[_-]1`))
  })
})

describe('mode infra again', () => {
  it('changes nothing the second time: same containers, nothing restarted, says so', async () => {
    const ids = stackContainers()
    const started = startedAt(Object.values(ids))
    const files = hashOpsDir()
    const r = await runAction(infraInputs())
    expectOk(r)
    expect(r.outputs.changed).toBe('false')
    expect(r.output).toMatch(/No changes: \d+ files identical/)
    expect(stackContainers()).toEqual(ids)
    expect(startedAt(Object.values(ids))).toEqual(started)
    expect(hashOpsDir()).toBe(files)
  })

  it('keeps postgres rows across a re-run and an nginx-only change, reloading nginx without restarting anything', async () => {
    expect(
      psql('create table if not exists survivors (id int primary key); insert into survivors values (1) on conflict do nothing').code
    ).toBe(0)
    const ids = stackContainers()
    const started = startedAt(Object.values(ids))

    const root = actionCopy()
    appendFileSync(
      join(root, 'nginx', 'snippets', 'common.conf'),
      'location = /ops-probe {\n    default_type text/plain;\n    return 200 "changed\\n";\n}\n'
    )
    const changed = await runAction(infraInputs(), { OPS_ACTION_ROOT: root })
    expectOk(changed)
    expect(changed.output).toMatch(/reloaded nginx/)
    expect(changed.output).not.toMatch(/recreated/)
    expect(stackContainers()).toEqual(ids)
    expect(startedAt(Object.values(ids))).toEqual(started)
    expect((await http('/ops-probe')).body).toBe('changed\n')

    const back = await runAction(infraInputs())
    expectOk(back)
    expect((await http('/ops-probe')).status).toBe(503)
    expect(psql('select count(*) from survivors').out.trim()).toBe('1')
  })

  it("refuses an nginx config that fails nginx -t: restores the files, reloads nothing, shows nginx's message", async () => {
    const files = hashOpsDir()
    const root = actionCopy()
    appendFileSync(join(root, 'nginx', 'snippets', 'common.conf'), 'this_is_not_a_directive on;\n')
    const r = await runAction(infraInputs(), { OPS_ACTION_ROOT: root })
    expect(r.code).toBe(1)
    expect(r.output).toMatch(/unknown directive "this_is_not_a_directive"/)
    expect(r.output).toMatch(/previous files were restored/)
    expect(hashOpsDir()).toBe(files)
    expect((await http('/healthz')).status).toBe(200)
  })

  it('accepts a host-fingerprint instead of known-hosts, and a passphrase-protected key', async () => {
    const c = connection()
    const r = await runAction(
      infraInputs({
        'known-hosts': '',
        'host-fingerprint': c.fingerprint,
        'ssh-key': readFileSync(c.passphraseKeyPath, 'utf8'),
        'ssh-passphrase': c.passphrase
      })
    )
    expectOk(r)
    expect(r.output).toMatch(/Host key verified by fingerprint/)
    expect(visibleLog(r.output)).not.toContain(c.passphrase)
  })
})

describe('refusals before anything changes', () => {
  it('refuses a host presenting another key: fails before authentication, nothing runs on the host', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'ops-wrong-key-'))
    execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', join(dir, 'k')])
    const other = readFileSync(join(dir, 'k.pub'), 'utf8').split(' ').slice(0, 2).join(' ')
    const c = connection()
    const logins = sshLogins()
    const files = hashOpsDir()
    const r = await runAction(infraInputs({ 'known-hosts': `[${c.host}]:${c.port} ${other}` }))
    expect(r.code).toBe(1)
    expect(r.output).toMatch(/Host key verification failed; nothing was sent to the host/)
    expect(r.output).toMatch(/mismatch/)
    expect(r.output).toContain(c.fingerprint)
    expect(sshLogins()).toBe(logins)
    expect(hashOpsDir()).toBe(files)
  })

  it('without known-hosts or host-fingerprint: fails and prints the presented fingerprint to paste', async () => {
    const c = connection()
    const logins = sshLogins()
    const r = await runAction(infraInputs({ 'known-hosts': '' }))
    expect(r.code).toBe(1)
    expect(r.output).toContain(c.fingerprint)
    expect(r.output).toMatch(/known-hosts|host-fingerprint/)
    expect(sshLogins()).toBe(logins)
  })

  it('skips verification only when told, with a warning', async () => {
    const r = await runAction(infraInputs({ 'known-hosts': '', 'insecure-skip-host-key-check': 'true' }))
    expectOk(r)
    expect(r.output).toMatch(/::warning::Host key NOT verified/)
  })

  it('missing DB_PASS and REDIS_PASSWORD on a fresh host: one error naming both, nothing changed', async () => {
    resetHost()
    const files = hashOpsDir()
    const r = await runAction(infraInputs({ 'infra-env': 'DB_USER=behindy\nDB_NAME=behindy' }))
    expect(r.code).toBe(1)
    const errors = r.output.split('\n').filter(l => l.startsWith('::error::'))
    expect(errors).toHaveLength(1)
    expect(errors[0]).toMatch(/missing required variables DB_PASS, REDIS_PASSWORD/)
    expect(hashOpsDir()).toBe(files)
    expect(stackContainers()).toEqual({})
    expect(tryRun('docker', ['network', 'inspect', 'internal']).code).not.toBe(0)
  })

  it('the values already in the host .env count: infra-env may be empty on later runs', async () => {
    const r1 = await runAction(infraInputs())
    expectOk(r1)
    const r2 = await runAction(infraInputs({ 'infra-env': '' }))
    expectOk(r2)
    expect(r2.outputs.changed).toBe('false')
  })
})
