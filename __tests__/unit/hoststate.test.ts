import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { HostError } from '../../src/errors'
import { readFileBase64IfExists } from '../../src/commands/files'
import { frontTarget, frontUpstream } from '../../src/front'
import { effectiveSettings, nginxImage, readHost } from '../../src/hoststate'
import type { InfraInputs } from '../../src/inputs'
import { loadBundle, type FileSet } from '../../src/stackfiles'
import { migrateUpstreamFile, placeholderUpstream, upstreamConf } from '../../src/upstream'
import { captureStdout, FakeRemote, hostProbeOut, stackContainer } from './helpers'

const bundle = loadBundle(join(__dirname, '..', '..'))
const stdout = captureStdout()

/** The file's text, failing the test when it is missing. */
function file(files: FileSet, path: string): string {
  const text = files.get(path)
  expect(text, `${path} is in the file set`).toBeDefined()
  return text as string
}

const given = (settings: InfraInputs['settings']): InfraInputs => ({
  opsDir: '/o',
  network: 'internal',
  settings,
  infraEnv: [],
  infraTimeoutS: 120,
  backups: { keep: 7, beforeInfra: true }
})

describe('effectiveSettings', () => {
  const env = new Map([
    ['DOMAIN', 'behindy.me'],
    ['HTTP_PORT', '8080'],
    ['HTTPS_PORT', '8443']
  ])

  it("an app deploy that gives none of them keeps the host's: HTTPS stays on, nginx stays on its ports", () => {
    expect(effectiveSettings(given({}), env)).toEqual({ domain: 'behindy.me', httpPort: 8080, httpsPort: 8443 })
  })

  it('inputs win; domain none ("") turns HTTPS off; a fresh host gets the defaults', () => {
    expect(effectiveSettings(given({ domain: '', httpPort: 80 }), env)).toEqual({ domain: '', httpPort: 80, httpsPort: 8443 })
    expect(effectiveSettings(given({}), new Map())).toEqual({ domain: '', httpPort: 80, httpsPort: 443 })
  })

  it("refuses an HTTP port equal to the host's HTTPS port, naming the input", () => {
    expect(() => effectiveSettings(given({ httpPort: 8443 }), env)).toThrow(/Input 'http-port': must differ/)
  })
})

describe('nginxImage', () => {
  const compose = file(bundle, 'compose/docker-compose.yml')

  it('prefers NGINX_IMAGE from .env', () => {
    expect(nginxImage(new Map([['NGINX_IMAGE', 'registry.example.com/nginx:1.27.4']]), compose)).toBe('registry.example.com/nginx:1.27.4')
  })

  it('else the compose default', () => {
    expect(nginxImage(new Map(), compose)).toBe('nginx:1.30.6-alpine')
    expect(nginxImage(new Map([['NGINX_IMAGE', '']]), compose)).toBe('nginx:1.30.6-alpine')
    expect(nginxImage(new Map([['REDIS_IMAGE', 'redis:8']]), compose)).toBe('nginx:1.30.6-alpine')
  })

  it('else plain nginx', () => {
    expect(nginxImage(new Map(), '')).toBe('nginx')
  })
})

describe('readHost (against a fake host)', () => {
  const probe = /@@ops docker/

  it('one round trip of probes, .env among them; parses hashes, manifest, network, the stack and the .env', async () => {
    const sha = 'f'.repeat(64)
    const remote = new FakeRemote([
      [
        probe,
        {
          stdout: hostProbeOut({
            hashes: new Map([['nginx/nginx.conf', sha]]),
            manifest: ['nginx/nginx.conf', 'compose/docker-compose.yml'],
            network: false,
            containers: [stackContainer('db', { name: 'behindy-db-1', id: 'db1' })],
            env: 'DB_USER=u\nDOMAIN=\nHTTP_PORT=8080\n'
          })
        }
      ]
    ])
    const host = await readHost(remote, given({}), bundle)
    expect(remote.unmatched).toEqual([])
    expect(remote.calls).toHaveLength(1)
    // The .env is its own section of the probes, base64-encoded, its path an argument.
    expect(remote.calls[0].sh).toContain(`echo '@@ops env'; { ${readFileBase64IfExists('/o/.env').sh}; }`)
    expect(host.compose).toEqual({ argv: ['docker', 'compose'], version: '2.29.7' })
    expect([...host.hashes]).toEqual([['nginx/nginx.conf', sha]])
    expect(host.manifest).toEqual(['nginx/nginx.conf', 'compose/docker-compose.yml'])
    expect(host.networkExists).toBe(false)
    expect(host.containers.map(c => [c.service, c.id, c.status, c.health])).toEqual([['db', 'db1', 'running', 'healthy']])
    expect(host.envText).toBe('DB_USER=u\nDOMAIN=\nHTTP_PORT=8080\n')
    // The host's own port is kept; no domain, so no certificate probe and no TLS.
    expect(host.settings).toEqual({ domain: '', httpPort: 8080, httpsPort: 443 })
    expect(host.tls).toBe(false)
    // .env holds secrets: never logged.
    expect(stdout.text()).not.toContain('DB_USER=u')
    // No upstreams/ yet.
    expect(host.upstreams.size).toBe(0)
  })

  it('reads every file of upstreams/ by file name, in the same round trip', async () => {
    const live = upstreamConf('app_backend', 8080, { container: 'backend-1a2b3c4d', image: 'b:1' })
    // ops-action's placeholder before upstream blocks.
    const legacy =
      '# frontend is not deployed yet: nginx answers 503 for its route. A deploy of frontend replaces this file.\nmap "" $app_frontend {\n    default 127.0.0.1:8503;\n}\n'
    const vars = 'map $server_port $up_my_svc {\n    8504    $http_x_ops_upstream;\n    default $app_my_svc;\n}\n'
    const remote = new FakeRemote([
      [
        probe,
        {
          stdout: hostProbeOut({
            upstreams: new Map([
              ['app_backend.conf', live],
              ['app_frontend.conf', legacy],
              ['app_my-svc_vars.conf', vars],
              ['nginx.stream', frontUpstream('behindy-nginx-2')]
            ])
          })
        }
      ]
    ])
    const host = await readHost(remote, given({}), bundle)
    expect(remote.unmatched).toEqual([])
    expect(remote.calls).toHaveLength(1)
    expect(remote.matching(probe)[0].sh).toContain('for f in *.conf *.locations *.stream; do')
    expect([...host.upstreams.keys()]).toEqual(['app_backend.conf', 'app_frontend.conf', 'app_my-svc_vars.conf', 'nginx.stream'])
    // The front's file too: which nginx container it relays to.
    expect(frontTarget(host.upstreams.get('nginx.stream'))).toBe('behindy-nginx-2')
    // Each file as it is (upstreamFiles() ends each with a blank line), and the migration sees it as it is.
    expect(host.upstreams.get('app_backend.conf')?.trimEnd()).toBe(live.trimEnd())
    expect(host.upstreams.get('app_frontend.conf')?.trimEnd()).toBe(legacy.trimEnd())
    expect(host.upstreams.get('app_my-svc_vars.conf')?.trimEnd()).toBe(vars.trimEnd())
    expect(migrateUpstreamFile('app_backend.conf', host.upstreams.get('app_backend.conf') as string)).toBeUndefined()
    expect(migrateUpstreamFile('app_frontend.conf', host.upstreams.get('app_frontend.conf') as string)).toBe(
      placeholderUpstream('frontend')
    )
  })

  it('compose v1 when v2 is missing; a fresh ops-dir has no .env to read', async () => {
    // Whatever the env section says (here: a failure) does not count when ops-dir does not exist yet.
    const env = { rc: 1, out: 'base64: /o/.env: No such file or directory' }
    const remote = new FakeRemote([
      [probe, { stdout: hostProbeOut({ composeV2: { rc: 1, out: 'unknown command' }, composeV1: '1.29.2', opsdir: 'creatable', env }) }]
    ])
    const host = await readHost(remote, given({}), bundle)
    expect(host.compose).toEqual({ argv: ['docker-compose'], version: '1.29.2' })
    expect(host.envText).toBe('')
    expect(remote.calls).toHaveLength(1)
  })

  it.each([
    [
      { docker: { rc: 1, out: 'permission denied while trying to connect to the Docker daemon socket' } },
      /permission denied/,
      /usermod -aG docker/
    ],
    [{ docker: { rc: 127, out: 'sh: docker: not found' } }, /^docker is not installed/, /install Docker Engine/],
    [{ composeV2: { rc: 1, out: '' }, composeV1: { rc: 127, out: '' } }, /^Neither `docker compose`/, /docker-compose-plugin/],
    [{ disk: '/var/lib/docker 524288\n/opt 52428800' }, /^Only 512 MiB free on \/var\/lib\/docker\.$/, /docker system prune -a/],
    [{ opsdir: 'denied /o' }, /^ops-dir \/o is not writable by the SSH user/, /sudo install -d -o <user> -m 0750 \/o/]
  ])('%j: a HostError with its fix', async (over, message, fix) => {
    const remote = new FakeRemote([[probe, { stdout: hostProbeOut(over) }]])
    const e = (await readHost(remote, given({}), bundle).catch((x: unknown) => x)) as HostError
    expect(e).toBeInstanceOf(HostError)
    expect(e.message).toMatch(message)
    expect(e.fix).toMatch(fix)
  })

  it("with a domain: the certificate is probed with the stack's nginx image; present means TLS and its hash", async () => {
    const remote = new FakeRemote([
      [probe, { stdout: hostProbeOut({ env: 'NGINX_IMAGE=registry.example.com/nginx:1.27.4\n' }) }],
      [/letsencrypt.* sh behindy\.me registry\.example\.com\/nginx:1\.27\.4$/, { stdout: `present ${'c'.repeat(64)}\n` }]
    ])
    const host = await readHost(remote, given({ domain: 'behindy.me' }), bundle)
    expect(remote.unmatched).toEqual([])
    expect(host).toMatchObject({ tls: true, certHash: 'c'.repeat(64), settings: { domain: 'behindy.me', httpPort: 80, httpsPort: 443 } })
  })

  it('.env text that looks like section markers, and any bytes, survive the shared round trip (base64)', async () => {
    const envText = "DB_PASS=a\n@@ops-rc 0\n@@ops docker\nJWT_SECRET=ü $(id) `id` 'q'\n" + `LONG=${'x'.repeat(200)}\n`
    const remote = new FakeRemote([[probe, { stdout: hostProbeOut({ env: envText }) }]])
    const host = await readHost(remote, given({}), bundle)
    expect(host.envText).toBe(envText)
    // The marker lines inside it started no section: docker's version is the docker section's.
    expect(stdout.text()).toContain('docker 27.3.1, compose docker compose 2.29.7')
    expect(stdout.text()).not.toContain('JWT_SECRET')
  })

  it('an existing ops-dir whose .env cannot be read: a HostError naming the file (no second round trip)', async () => {
    const env = { rc: 1, out: 'base64: /o/.env: Permission denied' }
    const remote = new FakeRemote([[probe, { stdout: hostProbeOut({ env }) }]])
    await expect(readHost(remote, given({}), bundle)).rejects.toThrow(
      new HostError('reading /o/.env failed: base64: /o/.env: Permission denied')
    )
    expect(remote.calls).toHaveLength(1)
  })
})
