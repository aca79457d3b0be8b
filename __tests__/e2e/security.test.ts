// Security checks on the sandbox host: TLS as clients see it (self-signed certificate for a test domain), hashed
// known_hosts entries, and secrets kept out of output, process tables and files.
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import {
  connection,
  DB,
  expectOk,
  frontend,
  HTTP_PORT,
  HTTPS_PORT,
  infraInputs,
  OPS_DIR,
  REDIS_PASSWORD,
  registryPassword,
  resetHost,
  runAction,
  SECRET,
  sh,
  stackContainers,
  startedAt,
  tryRun,
  visibleLog,
  watchArgv
} from './sandbox'

const DOMAIN = 'behindy.test'
const LIVE = `/etc/letsencrypt/live/${DOMAIN}`
const WEBROOT = '/var/www/certbot'

/** openssl s_client with only the given protocol offered; the client allows old protocols (SECLEVEL=0) so a refusal is the server's. */
function handshake(protocol: string): { code: number; out: string } {
  return tryRun('sh', [
    '-c',
    `openssl s_client -connect 127.0.0.1:${HTTPS_PORT} -servername ${DOMAIN} -${protocol} -cipher 'DEFAULT:@SECLEVEL=0' </dev/null 2>&1`
  ])
}

function curl(args: string[]): string {
  return sh('curl', ['-s', '-o', '/dev/null', '-D', '-', '--max-time', '10', ...args])
}

/** A self-signed certificate for DOMAIN where certbot puts one (fullchain.pem, privkey.pem under live/). */
function selfSignedCertificate(days: number): void {
  sh('openssl', [
    'req',
    '-x509',
    '-newkey',
    'rsa:2048',
    '-nodes',
    '-days',
    String(days),
    '-subj',
    `/CN=${DOMAIN}`,
    '-keyout',
    `${LIVE}/privkey.pem`,
    '-out',
    `${LIVE}/fullchain.pem`
  ])
}

describe('TLS for a domain with a certificate on the host', () => {
  beforeAll(async () => {
    resetHost()
    mkdirSync(LIVE, { recursive: true })
    selfSignedCertificate(2)
    mkdirSync(`${WEBROOT}/.well-known/acme-challenge`, { recursive: true })
    writeFileSync(`${WEBROOT}/.well-known/acme-challenge/token-123`, 'challenge-response')
    const r = await runAction(infraInputs({ domain: DOMAIN }))
    expectOk(r)
    expectOk(await runAction(frontend('v1')))
  })

  afterAll(async () => {
    rmSync(`/etc/letsencrypt/live/${DOMAIN}`, { recursive: true, force: true })
    rmSync(`${WEBROOT}/.well-known/acme-challenge/token-123`, { force: true })
    // Back to HTTP only for the suites that follow.
    expectOk(await runAction(infraInputs()))
  })

  it('refuses TLS 1.0 and 1.1 (the server says protocol version), speaks TLS 1.2 and 1.3', () => {
    for (const old of ['tls1', 'tls1_1']) {
      const r = handshake(old)
      expect(r.code, r.out).not.toBe(0)
      // The server's alert 70 (protocol_version): the client offered the old protocol and nginx refused it.
      expect(r.out, old).toMatch(/alert protocol version/i)
      expect(r.out).toMatch(/no peer certificate available/)
      expect(r.out).toMatch(/Cipher is \(NONE\)/)
    }
    for (const [flag, name] of [
      ['tls1_2', 'TLSv1.2'],
      ['tls1_3', 'TLSv1.3']
    ]) {
      const r = handshake(flag)
      expect(r.code, r.out).toBe(0)
      expect(r.out).toMatch(new RegExp(`(Protocol\\s*: ${name.replace('.', '\\.')}|New, ${name.replace('.', '\\.')},)`))
      expect(r.out).toContain(`CN = ${DOMAIN}`)
    }
  })

  it('a renewed certificate (replaced on the host, as certbot does) is picked up by the next infra run with a reload, no restart', async () => {
    const served = () =>
      sh('sh', [
        '-c',
        `openssl s_client -connect 127.0.0.1:${HTTPS_PORT} -servername ${DOMAIN} </dev/null 2>/dev/null | openssl x509 -noout -fingerprint -sha256`
      ]).trim()
    const onDisk = () => sh('openssl', ['x509', '-noout', '-fingerprint', '-sha256', '-in', `${LIVE}/fullchain.pem`]).trim()
    expect(served()).toBe(onDisk())
    const nginx = stackContainers().nginx
    const started = startedAt([nginx])
    selfSignedCertificate(3) // a different certificate, as a renewal writes
    expect(served()).not.toBe(onDisk())
    const r = await runAction(infraInputs())
    expectOk(r)
    expect(r.output).toMatch(
      new RegExp(`The certificate of ${DOMAIN.replace('.', '\\.')} changed on the host \\(renewed\\?\\): nginx will reload it`)
    )
    expect(r.output).toMatch(/- reloaded nginx/)
    expect(served()).toBe(onDisk())
    expect(stackContainers().nginx).toBe(nginx)
    expect(startedAt([nginx])).toEqual(started)
    // And with nothing renewed, nothing happens.
    const again = await runAction(infraInputs())
    expectOk(again)
    expect(again.outputs.changed).toBe('false')
  })

  it('sends HSTS on every HTTPS response, static assets included, and never over HTTP', () => {
    const resolve = ['-k', '--resolve', `${DOMAIN}:${HTTPS_PORT}:127.0.0.1`]
    for (const path of ['/', '/_next/static/chunks/main.js', '/api/x', '/healthz']) {
      const headers = curl([...resolve, `https://${DOMAIN}:${HTTPS_PORT}${path}`])
      expect(headers, path).toMatch(/^strict-transport-security: max-age=31536000; includeSubDomains\r?$/im)
    }
    expect(curl([`http://127.0.0.1:${HTTP_PORT}/`])).not.toMatch(/strict-transport-security/i)
  })

  it('redirects HTTP for the domain to HTTPS, except the ACME challenge; requests by IP stay on HTTP', () => {
    const redirect = curl(['-H', `Host: ${DOMAIN}`, `http://127.0.0.1:${HTTP_PORT}/some/page?q=1`])
    expect(redirect).toMatch(/^HTTP\/1\.1 301/)
    expect(redirect).toMatch(new RegExp(`^location: https://${DOMAIN.replace('.', '\\.')}/some/page\\?q=1\\r?$`, 'im'))
    const acme = sh('curl', [
      '-s',
      '-i',
      '--max-time',
      '10',
      '-H',
      `Host: ${DOMAIN}`,
      `http://127.0.0.1:${HTTP_PORT}/.well-known/acme-challenge/token-123`
    ])
    expect(acme).toMatch(/^HTTP\/1\.1 200/)
    expect(acme).toContain('challenge-response')
    expect(curl([`http://127.0.0.1:${HTTP_PORT}/`])).toMatch(/^HTTP\/1\.1 200/)
  })
})

describe('host keys and secrets', () => {
  it('honours a hashed known_hosts entry (ssh-keygen -H)', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'hashed-'))
    writeFileSync(join(dir, 'known_hosts'), `${connection().knownHostsLine}\n`)
    sh('ssh-keygen', ['-q', '-H', '-f', join(dir, 'known_hosts')])
    const hashed = readFileSync(join(dir, 'known_hosts'), 'utf8')
    expect(hashed).toMatch(/^\|1\|/)
    expect(hashed).not.toContain('127.0.0.1')
    const r = await runAction(infraInputs({ 'known-hosts': hashed }))
    expectOk(r)
    expect(r.output).toMatch(/Host key verified by known-hosts/)
    rmSync(dir, { recursive: true, force: true })
  })

  it('ssh key, passphrase, registry password, env and infra-env values: in no output, no argv on the host, no file left behind', async () => {
    const c = connection()
    const key = readFileSync(c.passphraseKeyPath, 'utf8')
    const keyBody = key.split('\n')[1]
    const secrets = [c.passphrase, keyBody, registryPassword(), SECRET, DB.pass, REDIS_PASSWORD]
    // The env file the deploy writes for docker run: private while it exists, gone after.
    const envFiles: string[] = []
    let watching = true
    const watcher = (async () => {
      while (watching) {
        for (const d of readdirSync('/tmp').filter(n => n.startsWith('tmp.'))) {
          try {
            const f = join('/tmp', d, 'env')
            const mode = (statSync(f).mode & 0o777).toString(8)
            const dirMode = (statSync(join('/tmp', d)).mode & 0o777).toString(8)
            if (!envFiles.includes(`${f} ${mode} ${dirMode}`)) envFiles.push(`${f} ${mode} ${dirMode}`)
          } catch {
            // not an env dir, or gone already
          }
        }
        await new Promise(r => setTimeout(r, 2))
      }
    })()
    const { result, leaks, samples } = await watchArgv(secrets, async () => {
      const infra = await runAction(infraInputs({ 'ssh-key': key, 'ssh-passphrase': c.passphrase }))
      const deploy = await runAction(frontend('v1', { 'ssh-key': key, 'ssh-passphrase': c.passphrase }, 'VERSION=f-secrets'))
      return [infra, deploy]
    })
    watching = false
    await watcher
    for (const r of result) {
      expectOk(r)
      const log = visibleLog(r.output) + r.summary + JSON.stringify(r.outputs)
      for (const s of secrets) expect(log.includes(s), `secret ${s.slice(0, 4)}… in the output`).toBe(false)
    }
    console.log(
      `[security] ${samples} argv samples of every process during an infra run and a deploy: ${leaks.length} with a secret; ${envFiles.length} env file(s) seen while they existed, modes: ${[...new Set(envFiles.map(e => e.split(' ').slice(1).join('/')))].join(', ') || 'none (too short-lived to sample)'}`
    )
    expect(samples).toBeGreaterThan(20)
    expect(leaks).toEqual([])
    for (const e of envFiles) expect(e).toMatch(/ 600 700$/)
    // Nothing with a secret stays in temp dirs, the deploy user's home or ops-dir (except .env, the stack's own, 0600).
    // (The host side of the action only writes to mktemp dirs, /tmp/tmp.*, the deploy user's home and ops-dir.)
    const found = tryRun('sh', [
      '-c',
      `grep -rlF -e "$1" -e "$2" -e "$3" /tmp/tmp.* /var/tmp /home/deploy ${OPS_DIR} 2>/dev/null`,
      'sh',
      SECRET,
      registryPassword(),
      c.passphrase
    ]).out.trim()
    expect(found).toBe('')
    expect((statSync(`${OPS_DIR}/.env`).mode & 0o777).toString(8)).toBe('600')
  })

  it('postgres, redis and nginx are not reachable on any host port (only the front publishes); redis refuses commands without the password', () => {
    for (const port of [5432, 6379]) expect(tryRun('bash', ['-c', `exec 3<>/dev/tcp/127.0.0.1/${port}`]).code, `port ${port}`).not.toBe(0)
    const published = sh('docker', [
      'ps',
      '--filter',
      'label=com.docker.compose.project=behindy',
      '--format',
      '{{.Label "com.docker.compose.service"}} {{.Ports}}'
    ])
    for (const line of published.trim().split('\n'))
      if (!line.startsWith('front')) expect(line.trim(), line).toMatch(/^(db|redis|nginx)( \d+\/tcp)*$/)
  })
})
