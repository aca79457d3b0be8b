import { execFileSync, spawn } from 'node:child_process'
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { restoreFiles, unpackAndCommit } from '../../src/commands/files'
import { NGINX_CONF, nginxTest, reloadNginxAndWait } from '../../src/commands/nginx'
import { HostError } from '../../src/errors'
import { MIN_NGINX, nginxTestFailed, nginxTooOld, reloadAndWait, restoreUnloaded, writeAndTest } from '../../src/nginx'
import type { Sh } from '../../src/shell'
import { stdoutOrThrow, type Remote, type RunResult, type Running } from '../../src/ssh'
import { upstreamConf } from '../../src/upstream'
import { FakeRemote, sectionsOut, useTempDir } from './helpers'

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
  const RELOAD = /docker kill --signal HUP/
  const TEST_OK = 'nginx: configuration file /etc/nginx/ops/nginx.conf test is successful'
  const step = (sh: string) => (WRITE.test(sh) ? 'write' : RESTORE.test(sh) ? 'restore' : RELOAD.test(sh) ? 'reload' : sh)

  it('writeAndTest: the write and nginx -t in one round trip, the files as an archive; nothing reloaded', async () => {
    const remote = new FakeRemote([[WRITE, { stdout: sectionsOut({ write: '', test: TEST_OK }) }]])
    await writeAndTest(remote, OPS, NGINX, files)
    expect(remote.unmatched).toEqual([])
    expect(remote.calls).toHaveLength(1)
    const [call] = remote.calls
    const write = call.sh.indexOf(`echo '@@ops write'; { ${unpackAndCommit(OPS, [PATH]).sh}; }`)
    const test = call.sh.indexOf(`echo '@@ops test'; { ${nginxTest({ container: NGINX }).sh}; }`)
    expect(write).toBeGreaterThanOrEqual(0)
    expect(test).toBeGreaterThan(write)
    expect(call.sh).not.toMatch(RELOAD)
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

  it('restoreUnloaded: the previous files back, no reload (nginx never loaded the new ones)', async () => {
    const remote = new FakeRemote([[RESTORE, {}]])
    await restoreUnloaded(remote, OPS, [PATH])
    expect(remote.calls.map(c => c.sh)).toEqual([restoreFiles([`${OPS}/${PATH}`]).sh])
    const failing = new FakeRemote([[RESTORE, { code: 1, stderr: 'mv: cannot move: Permission denied' }]])
    await expect(restoreUnloaded(failing, OPS, [PATH])).rejects.toThrow(
      new HostError('restoring the previous nginx files failed (exit 1):\nmv: cannot move: Permission denied')
    )
  })

  it('reloadAndWait: one round trip; the new and the shutting-down workers', async () => {
    const remote = new FakeRemote([
      [RELOAD, { stdout: 'PID COMMAND\n   51 nginx: worker process\n   41 nginx: worker process is shutting down\n' }]
    ])
    expect(await reloadAndWait(remote, NGINX, 2_500)).toEqual({ active: ['51'], draining: ['41'] })
    expect(remote.calls.map(c => c.sh)).toEqual([reloadNginxAndWait(NGINX, 3).sh])
  })

  it.each<[number, string, HostError]>([
    [
      4,
      '',
      new HostError(
        'nginx did not apply the new configuration within 10 s (its old workers are still serving)',
        'check `docker logs` of the nginx container'
      )
    ],
    [
      3,
      'Error response from daemon: cannot kill container nginx-0123',
      new HostError('reloading nginx failed (exit 3): Error response from daemon: cannot kill container nginx-0123')
    ],
    [5, 'Error: No such object: nginx-0123', new HostError('listing nginx processes failed (exit 5): Error: No such object: nginx-0123')],
    [255, 'connection reset by peer', new HostError('listing nginx processes failed (exit 255): connection reset by peer')]
  ])('reloadAndWait fails with exit %i: the error says which step', async (code, stderr, error) => {
    const remote = new FakeRemote([[RELOAD, { code, stderr }]])
    await expect(reloadAndWait(remote, NGINX)).rejects.toThrow(error)
  })
})

/** A Remote that runs each command in a real sh here, with a fake `docker` first on PATH. */
class LocalHost implements Remote {
  constructor(private readonly bin: string) {}
  run(command: Sh, opts: { stdin?: string | Buffer } = {}): Promise<RunResult> {
    return new Promise((resolve, reject) => {
      const p = spawn('sh', ['-c', command.sh], { env: { ...process.env, PATH: `${this.bin}:${process.env.PATH}` } })
      let stdout = ''
      let stderr = ''
      p.stdout.on('data', d => (stdout += d))
      p.stderr.on('data', d => (stderr += d))
      p.on('error', reject)
      p.on('close', code => resolve({ code: code ?? -1, stdout, stderr }))
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
   * ops-dir with the old upstream file; a docker whose `nginx -t` fails on a file containing "BROKEN", whose HUP
   * starts a new worker (the old one shutting down) or fails (killFails). Every call is recorded.
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
      `  exec) if grep -q BROKEN ${join(ops, PATH)}; then echo 'nginx: [emerg] unknown directive "BROKEN"' >&2; exit 1; fi; echo 'nginx: test is successful' >&2 ;;`,
      '  inspect) echo 99999999 ;;',
      '  top) echo "PID COMMAND"; if [ -e "$F/hup" ]; then echo "  51 nginx: worker process"; echo "  41 nginx: worker process is shutting down"; else echo "  41 nginx: worker process"; fi ;;',
      `  kill) ${killFails ? 'echo "cannot kill container" >&2; exit 1' : 'touch "$F/hup"; echo "$4"'} ;;`,
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
    expect(h.calls()).toContain('kill --signal HUP nginx-0123')
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
    expect(h.calls().filter(c => c.startsWith('kill '))).toEqual([])
  })

  it('restoreUnloaded after a passing test (the preview failed): the old file is live again, no HUP', async () => {
    const h = setUp()
    await writeAndTest(h.remote, h.ops, 'nginx-0123', [{ path: PATH, content: NEW }])
    await restoreUnloaded(h.remote, h.ops, [PATH])
    expect(h.live()).toBe(OLD)
    expect(h.prev()).toBeUndefined()
    expect(h.calls().filter(c => c.startsWith('kill '))).toEqual([])
  })

  it('a HUP that fails: exit 3, the new file still in place with the old one as .ops-prev (for the rollback)', async () => {
    const h = setUp(true)
    await writeAndTest(h.remote, h.ops, 'nginx-0123', [{ path: PATH, content: NEW }])
    await expect(reloadAndWait(h.remote, 'nginx-0123')).rejects.toThrow(
      new HostError('reloading nginx failed (exit 3): cannot kill container')
    )
    expect(h.live()).toBe(NEW)
    expect(h.prev()).toBe(OLD)
  })
})
