import { execFileSync, spawn } from 'node:child_process'
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { restoreFiles, stashFiles, unpackAndCommit } from '../../src/commands/files'
import { NGINX_CONF, NGINX_PID_FILE, nginxTest, RELOAD, reloadNginxAndWait } from '../../src/commands/nginx'
import { HostError } from '../../src/errors'
import {
  MIN_NGINX,
  nginxTestFailed,
  nginxTooOld,
  reloadAndWait,
  reloadFailed,
  restoreUnloaded,
  writeAndReload,
  writeAndTest
} from '../../src/nginx'
import type { Sh } from '../../src/shell'
import { stdoutOrThrow, type Remote, type RunResult, type Running } from '../../src/ssh'
import { upstreamConf } from '../../src/upstream'
import { dockerArgv, FakeRemote, sectionsOut, useTempDir } from './helpers'

describe('nginx -t failures', () => {
  const tooOld = [
    'nginx: [emerg] unknown directive "keepalive_min_timeout" in /etc/nginx/ops/nginx.conf:31',
    'nginx: [emerg] invalid parameter "resolve" in /etc/nginx/ops-upstreams/app_frontend.conf:5',
    'nginx: [emerg] unknown directive "keepalive_timeout" in /etc/nginx/ops-upstreams/app_story.conf:7'
  ]

  it.each(tooOld)('an nginx older than the config needs is named as such, with the image to use: %s', out => {
    const e = nginxTooOld(`nginx: the configuration file /etc/nginx/ops/nginx.conf syntax is ok\n${out}`)
    expect(e).toBeInstanceOf(HostError)
    expect(e?.message).toContain(`older than ${MIN_NGINX}`)
    expect(e?.message).toContain(out)
    expect(e?.fix).toMatch(/NGINX_IMAGE .*nginx:1\.30\.6-alpine or newer/)
    expect(nginxTestFailed(out, 'nothing was started').message).toContain(`older than ${MIN_NGINX}`)
  })

  it("the front's nginx too old: the fix names FRONT_IMAGE, not NGINX_IMAGE", () => {
    const out = tooOld[0]
    const e = nginxTooOld(out, 'FRONT_IMAGE')
    expect(e).toBeInstanceOf(HostError)
    expect(e?.message).toContain(`older than ${MIN_NGINX}`)
    expect(e?.message).toContain(out)
    expect(e?.fix).toBe(
      'set FRONT_IMAGE in infra-env to nginx:1.30.6-alpine or newer (or remove it to get the compose default), then run mode infra'
    )
    expect(e?.fix).not.toContain('NGINX_IMAGE')
    // NGINX_IMAGE by default, and by name.
    expect(nginxTooOld(out)?.fix).toBe(nginxTooOld(out, 'NGINX_IMAGE')?.fix)
    expect(nginxTooOld(out)?.fix).toMatch(/^set NGINX_IMAGE in infra-env /)
    expect(nginxTooOld('nginx: [emerg] unknown directive "stream"', 'FRONT_IMAGE')).toBeUndefined()
  })

  it('any other failure is the config: the file nginx names, and what the run did not do', () => {
    const out = 'nginx: [emerg] unknown directive "this_is_not_a_directive" in /etc/nginx/ops/snippets/common.conf:9'
    expect(nginxTooOld(out)).toBeUndefined()
    // keepalive_timeout is known everywhere outside upstream blocks: not a version problem there.
    expect(nginxTooOld('nginx: [emerg] "keepalive_timeout" directive is duplicate in /etc/nginx/ops/nginx.conf:30')).toBeUndefined()
    const e = nginxTestFailed(out, 'nginx was not changed')
    expect(e.message).toBe(`nginx -t fails on the host's nginx config, so nginx was not changed:\n${out}`)
    expect(e.fix).toMatch(/^fix or remove the file nginx names above/)
  })
})

describe('writeAndTest / restoreUnloaded / reloadAndWait (against a fake host)', () => {
  const OPS = '/o'
  const NGINX = 'nginx-0123'
  const PATH = 'upstreams/app_backend.conf'
  const files = [{ path: PATH, content: upstreamConf('app_backend', 8080, { container: 'backend-1a2b3c4d', image: 'b:2' }) }]
  const WRITE = /@@ops write/
  const RESTORE = /mv -f "\$f\.ops-prev" "\$f"/
  const RELOADS = /reload "\$1" "\$2"' sh \/tmp\/nginx\.pid \d+$/
  const TEST_OK = 'nginx: configuration file /etc/nginx/ops/nginx.conf test is successful'
  const step = (sh: string) => (WRITE.test(sh) ? 'write' : RESTORE.test(sh) ? 'restore' : RELOADS.test(sh) ? 'reload' : sh)

  it('writeAndTest: the write and nginx -t in one round trip, the files as an archive; nothing reloaded', async () => {
    const remote = new FakeRemote([[WRITE, { stdout: sectionsOut({ write: '', test: TEST_OK }) }]])
    await writeAndTest(remote, OPS, NGINX, files)
    expect(remote.unmatched).toEqual([])
    expect(remote.calls).toHaveLength(1)
    const [call] = remote.calls
    const write = call.sh.indexOf(`echo '@@ops write'; { ${unpackAndCommit(OPS, [PATH]).sh}; }`)
    const test = call.sh.indexOf(`echo '@@ops test'; { ${nginxTest({ container: NGINX }, OPS).sh}; }`)
    expect(write).toBeGreaterThanOrEqual(0)
    expect(test).toBeGreaterThan(write)
    expect(call.sh).not.toMatch(RELOADS)
    expect(execFileSync('tar', ['-xOf', '-', PATH], { input: call.stdin as Buffer, encoding: 'utf8' })).toBe(files[0].content)
  })

  it('writeAndTest: nginx -t fails, so the previous files are put back and the error says nginx was not changed', async () => {
    const emerg = 'nginx: [emerg] unknown directive "servr" in /etc/nginx/ops-upstreams/app_backend.conf:3'
    const remote = new FakeRemote([
      [WRITE, { stdout: sectionsOut({ write: '', test: { rc: 1, out: emerg } }) }],
      [RESTORE, {}]
    ])
    const e = (await writeAndTest(remote, OPS, NGINX, files).catch((x: unknown) => x)) as HostError
    expect(e).toBeInstanceOf(HostError)
    expect(e.message).toBe(`nginx -t fails on the host's nginx config, so nginx was not changed:\n${emerg}`)
    expect(e.fix).toMatch(/^fix or remove the file nginx names above/)
    expect(remote.calls.map(c => step(c.sh))).toEqual(['write', 'restore'])
    expect(remote.matching(RESTORE)[0].sh.endsWith(`' sh ${OPS}/${PATH}`)).toBe(true)
  })

  it('writeAndTest: the write fails, so there is nothing to put back', async () => {
    const remote = new FakeRemote([[WRITE, { stdout: sectionsOut({ write: { rc: 1, out: 'tar: short read' }, test: TEST_OK }) }]])
    await expect(writeAndTest(remote, OPS, NGINX, files)).rejects.toThrow(
      new HostError('writing nginx upstream files failed (exit 1): tar: short read')
    )
    expect(remote.calls.map(c => step(c.sh))).toEqual(['write'])
  })

  it('writeAndTest with files to remove: they are moved aside in the write, before nginx -t; a failing test puts them back too', async () => {
    const gone = ['upstreams/backend.canary.map', 'upstreams/canary.cookie']
    const remote = new FakeRemote([[WRITE, { stdout: sectionsOut({ write: '', test: TEST_OK }) }]])
    await writeAndTest(remote, OPS, NGINX, files, gone)
    const [call] = remote.calls
    expect(call.sh).toContain(
      `echo '@@ops write'; { { ${unpackAndCommit(OPS, [PATH]).sh}; } && { ${stashFiles(gone.map(g => `${OPS}/${g}`)).sh}; }; }`
    )
    expect(call.sh.indexOf(stashFiles(gone.map(g => `${OPS}/${g}`)).sh)).toBeLessThan(call.sh.indexOf("echo '@@ops test'"))
    // Only the written files travel in the archive.
    expect(execFileSync('tar', ['-tf', '-'], { input: call.stdin as Buffer, encoding: 'utf8' })).toBe(`${PATH}\n`)

    const failing = new FakeRemote([
      [WRITE, { stdout: sectionsOut({ write: '', test: { rc: 1, out: 'nginx: [emerg] x' } }) }],
      [RESTORE, {}]
    ])
    await expect(writeAndTest(failing, OPS, NGINX, files, gone)).rejects.toThrow(HostError)
    expect(failing.matching(RESTORE)[0].sh.endsWith(`' sh ${OPS}/${PATH} ${OPS}/${gone[0]} ${OPS}/${gone[1]}`)).toBe(true)
  })

  it('restoreUnloaded: the previous files back, no reload (nginx never loaded the new ones)', async () => {
    const remote = new FakeRemote([[RESTORE, {}]])
    await restoreUnloaded(remote, OPS, [PATH])
    expect(remote.calls.map(c => c.sh)).toEqual([restoreFiles([`${OPS}/${PATH}`]).sh])
    const failing = new FakeRemote([[RESTORE, { code: 1, stderr: 'mv: cannot move: Permission denied' }]])
    await expect(restoreUnloaded(failing, OPS, [PATH])).rejects.toThrow(
      new HostError('restoring the previous nginx files failed (exit 1):\nmv: cannot move: Permission denied')
    )
  })

  it('reloadAndWait: one round trip, inside the nginx container; the new and the shutting-down workers', async () => {
    const remote = new FakeRemote([
      [
        RELOADS,
        { stdout: 'PID COMMAND\n1 nginx: master process nginx\n51 nginx: worker process\n41 nginx: worker process is shutting down\n' }
      ]
    ])
    expect(await reloadAndWait(remote, NGINX, 2_500)).toEqual({ active: ['51'], draining: ['41'] })
    // The timeout in whole seconds, rounded up.
    expect(remote.calls.map(c => c.sh)).toEqual([reloadNginxAndWait(NGINX, 3).sh])
  })

  it('reloadNginxAndWait is docker exec NGINX sh -c RELOAD sh PIDFILE TIMEOUT: the values arguments, the script fixed', () => {
    expect(dockerArgv(reloadNginxAndWait('nginx;$(id)', 7))).toEqual([
      'exec',
      'nginx;$(id)',
      'sh',
      '-c',
      `${RELOAD}reload "$1" "$2"`,
      'sh',
      NGINX_PID_FILE,
      '7'
    ])
  })

  const TIMEOUT_FIX = 'check `docker logs` of the nginx container'
  it.each<[number, { stderr?: string; stdout?: string; timeoutMs?: number }, string, string | undefined]>([
    [4, {}, 'nginx did not apply the new configuration within 10 s (its old workers are still serving)', TIMEOUT_FIX],
    // The timeout as the reload got it: whole seconds, rounded up.
    [4, { timeoutMs: 2_500 }, 'nginx did not apply the new configuration within 3 s (its old workers are still serving)', TIMEOUT_FIX],
    [
      3,
      { stderr: "sh: can't kill pid 1: Operation not permitted" },
      "signalling nginx's master failed (exit 3): sh: can't kill pid 1: Operation not permitted",
      undefined
    ],
    // Nothing on stderr: what it printed instead.
    [
      3,
      { stdout: "cat: can't open '/tmp/nginx.pid': No such file or directory\n" },
      "signalling nginx's master failed (exit 3): cat: can't open '/tmp/nginx.pid': No such file or directory",
      undefined
    ],
    [
      5,
      { stderr: 'Error: No such object: nginx-0123' },
      'reaching the nginx container failed (exit 5): Error: No such object: nginx-0123',
      undefined
    ],
    [
      126,
      { stderr: 'OCI runtime exec failed: unable to start container process' },
      'reaching the nginx container failed (exit 126): OCI runtime exec failed: unable to start container process',
      undefined
    ],
    [255, { stderr: 'connection reset by peer' }, 'reaching the nginx container failed (exit 255): connection reset by peer', undefined]
  ])(
    'reloadAndWait fails with exit %i: the error says which step (%j)',
    async (code, { stderr = '', stdout = '', timeoutMs }, message, fix) => {
      const remote = new FakeRemote([[RELOADS, { code, stderr, stdout }]])
      const e = (await reloadAndWait(remote, NGINX, timeoutMs).catch((x: unknown) => x)) as HostError
      expect(e).toBeInstanceOf(HostError)
      expect(e.message).toBe(message)
      expect(e.fix).toBe(fix)
    }
  )

  it('reloadFailed: the same errors for an exit code and output from elsewhere (a stage of a longer script)', () => {
    expect(reloadFailed(4, 'whatever', 10).message).toBe(
      'nginx did not apply the new configuration within 10 s (its old workers are still serving)'
    )
    expect(reloadFailed(3, '  kill: No such process\n', 10).message).toBe(
      "signalling nginx's master failed (exit 3): kill: No such process"
    )
    expect(reloadFailed(1, 'Error response from daemon: container is not running\n', 10).message).toBe(
      'reaching the nginx container failed (exit 1): Error response from daemon: container is not running'
    )
  })

  it("nginx/nginx.conf's pid directive is NGINX_PID_FILE (the reload reads the master's pid there)", () => {
    const conf = readFileSync(join(__dirname, '..', '..', 'nginx', 'nginx.conf'), 'utf8')
    const pids = [...conf.matchAll(/^\s*pid\s+([^;\s]+)\s*;/gm)].map(m => m[1])
    expect(pids).toEqual([NGINX_PID_FILE])
  })
})

/** A Remote that runs each command in a real sh here, with a fake `docker` first on PATH. */
class LocalHost implements Remote {
  constructor(private readonly bin: string) {}
  run(command: Sh, opts: { stdin?: string | Buffer } = {}): Promise<RunResult> {
    return new Promise((resolve, reject) => {
      // The cache of passed nginx -t runs goes next to the fake docker, not into this user's HOME.
      const env = { ...process.env, PATH: `${this.bin}:${process.env.PATH}`, XDG_CACHE_HOME: join(this.bin, '..', 'cache') }
      const p = spawn('sh', ['-c', command.sh], { env })
      let stdout = ''
      let stderr = ''
      p.stdout.on('data', d => (stdout += d))
      p.stderr.on('data', d => (stderr += d))
      p.on('error', reject)
      p.on('close', code => resolve({ code: code ?? -1, stdout, stderr }))
      p.stdin.on('error', () => undefined) // a command that does not read its stdin: no EPIPE left unhandled
      p.stdin.end(opts.stdin ?? '')
    })
  }
  async must(command: Sh, what: string, opts: { stdin?: string | Buffer; fix?: string } = {}): Promise<string> {
    return stdoutOrThrow(await this.run(command, opts), what, opts.fix)
  }
  start(): Running {
    throw new Error('not used here')
  }
  connected(): boolean {
    return true
  }
  close(): void {}
}

describe('writeAndTest, restoreUnloaded and reloadAndWait run by a real sh on files here, against a fake docker', () => {
  const tmp = useTempDir('nginx-files')
  const PATH = 'upstreams/app_backend.conf'
  const OLD = upstreamConf('app_backend', 8080, { container: 'backend-0000aaaa', image: 'b:1' })
  const NEW = upstreamConf('app_backend', 8080, { container: 'backend-1a2b3c4d', image: 'b:2' })

  /**
   * ops-dir with the old upstream file; a docker whose `nginx -t` fails on a file containing "BROKEN", and whose
   * reload (the `sh -c` run inside nginx's container) starts a new worker (the old one shutting down) or fails to
   * signal the master (killFails: exit 3). Every call is recorded (a reload as `exec ID sh -c … sh PIDFILE TIMEOUT`).
   */
  function setUp(killFails = false) {
    const dir = mkdtempSync(join(tmp(), 'host-'))
    const ops = join(dir, 'ops')
    mkdirSync(join(ops, 'upstreams'), { recursive: true })
    writeFileSync(join(ops, PATH), OLD)
    const bin = join(dir, 'bin')
    mkdirSync(bin)
    const fake = [
      '#!/bin/sh',
      `F=${dir}`,
      'printf "%s\\n" "$*" >> "$F/calls"',
      'case "$1" in',
      '  exec) case "$3" in',
      `    sh) ${killFails ? 'echo "sh: can\'t kill pid 1: No such process" >&2; exit 3' : 'touch "$F/hup"; printf "PID COMMAND\\n51 nginx: worker process\\n41 nginx: worker process is shutting down\\n"'} ;;`,
      `    *) if grep -q BROKEN ${join(ops, PATH)}; then echo 'nginx: [emerg] unknown directive "BROKEN"' >&2; exit 1; fi; echo 'nginx: test is successful' >&2 ;;`,
      '  esac ;;',
      'esac'
    ].join('\n')
    writeFileSync(join(bin, 'docker'), `${fake}\n`)
    chmodSync(join(bin, 'docker'), 0o755)
    const calls = () => (existsSync(join(dir, 'calls')) ? readFileSync(join(dir, 'calls'), 'utf8').split('\n').slice(0, -1) : [])
    return {
      ops,
      remote: new LocalHost(bin),
      calls,
      live: () => readFileSync(join(ops, PATH), 'utf8'),
      prev: () => (existsSync(join(ops, `${PATH}.ops-prev`)) ? readFileSync(join(ops, `${PATH}.ops-prev`), 'utf8') : undefined)
    }
  }

  it('a passing test: the new file is live (the old one kept as .ops-prev), unloaded until the reload', async () => {
    const h = setUp()
    await writeAndTest(h.remote, h.ops, 'nginx-0123', [{ path: PATH, content: NEW }])
    expect(h.live()).toBe(NEW)
    expect(h.prev()).toBe(OLD)
    expect(h.calls()).toEqual([`exec nginx-0123 nginx -t -c ${NGINX_CONF}`])
    expect(await reloadAndWait(h.remote, 'nginx-0123')).toEqual({ active: ['51'], draining: ['41'] })
    const reloads = h.calls().filter(c => c.startsWith('exec nginx-0123 sh -c '))
    expect(reloads).toHaveLength(1)
    expect(reloads[0].endsWith(` sh ${NGINX_PID_FILE} 10`)).toBe(true)
  })

  it('a failing test: the old file is live again, no .ops-prev left, nginx never got a HUP', async () => {
    const h = setUp()
    const e = (await writeAndTest(h.remote, h.ops, 'nginx-0123', [{ path: PATH, content: `${NEW}BROKEN;\n` }]).catch(
      (x: unknown) => x
    )) as HostError
    expect(e).toBeInstanceOf(HostError)
    expect(e.message).toContain('nginx: [emerg] unknown directive "BROKEN"')
    expect(h.live()).toBe(OLD)
    expect(h.prev()).toBeUndefined()
    expect(h.calls().filter(c => c.startsWith('exec nginx-0123 sh '))).toEqual([])
  })

  it('restoreUnloaded after a passing test (the preview failed): the old file is live again, no HUP', async () => {
    const h = setUp()
    await writeAndTest(h.remote, h.ops, 'nginx-0123', [{ path: PATH, content: NEW }])
    await restoreUnloaded(h.remote, h.ops, [PATH])
    expect(h.live()).toBe(OLD)
    expect(h.prev()).toBeUndefined()
    expect(h.calls().filter(c => c.startsWith('exec nginx-0123 sh '))).toEqual([])
  })

  it('files to remove: moved aside as .ops-prev (a missing one is no error) and back when the test fails', async () => {
    const MAP = 'upstreams/backend.canary.map'
    const h = setUp()
    writeFileSync(join(h.ops, MAP), '~. $ops_canary_backend;\n')
    await writeAndTest(h.remote, h.ops, 'nginx-0123', [{ path: PATH, content: NEW }], [MAP, 'upstreams/canary.cookie'])
    expect(h.live()).toBe(NEW)
    expect(existsSync(join(h.ops, MAP))).toBe(false)
    expect(readFileSync(join(h.ops, `${MAP}.ops-prev`), 'utf8')).toBe('~. $ops_canary_backend;\n')
    expect(existsSync(join(h.ops, 'upstreams/canary.cookie'))).toBe(false)

    const f = setUp()
    writeFileSync(join(f.ops, MAP), '~. $ops_canary_backend;\n')
    await expect(writeAndTest(f.remote, f.ops, 'nginx-0123', [{ path: PATH, content: `${NEW}BROKEN;\n` }], [MAP])).rejects.toThrow(
      HostError
    )
    expect(f.live()).toBe(OLD)
    expect(readFileSync(join(f.ops, MAP), 'utf8')).toBe('~. $ops_canary_backend;\n')
    expect(existsSync(join(f.ops, `${MAP}.ops-prev`))).toBe(false)
  })

  it('a new file with a stale .ops-prev (an interrupted run left it): a failing test removes the new file, the stale copy does not come back', async () => {
    const FILE = 'upstreams/app_my-svc.locations'
    const h = setUp()
    writeFileSync(join(h.ops, `${FILE}.ops-prev`), 'location /stale/ {}\n')
    await expect(
      writeAndTest(h.remote, h.ops, 'nginx-0123', [
        { path: PATH, content: `${NEW}BROKEN;\n` },
        { path: FILE, content: 'location /things/ {}\n' }
      ])
    ).rejects.toThrow(HostError)
    expect(h.live()).toBe(OLD)
    expect(existsSync(join(h.ops, FILE))).toBe(false)
    expect(existsSync(join(h.ops, `${FILE}.ops-prev`))).toBe(false)
  })

  it('writeAndReload with nothing to write, only files to remove (mode live): an empty archive is fine; removed, tested, reloaded', async () => {
    const MAP = 'upstreams/all.maintenance.map'
    const h = setUp()
    writeFileSync(join(h.ops, MAP), '~. ops_maintenance;\n')
    await writeAndReload(h.remote, h.ops, 'nginx-0123', [], [MAP])
    expect(existsSync(join(h.ops, MAP))).toBe(false)
    expect(existsSync(join(h.ops, `${MAP}.ops-prev`))).toBe(true)
    expect(h.live()).toBe(OLD)
    expect(h.calls().map(c => c.split(' ').slice(0, 4).join(' '))).toEqual(['exec nginx-0123 nginx -t', 'exec nginx-0123 sh -c'])
  })

  it('a HUP that fails: exit 3, the new file still in place with the old one as .ops-prev (for the rollback)', async () => {
    const h = setUp(true)
    await writeAndTest(h.remote, h.ops, 'nginx-0123', [{ path: PATH, content: NEW }])
    await expect(reloadAndWait(h.remote, 'nginx-0123')).rejects.toThrow(
      new HostError("signalling nginx's master failed (exit 3): sh: can't kill pid 1: No such process")
    )
    expect(h.live()).toBe(NEW)
    expect(h.prev()).toBe(OLD)
  })
})
