import * as core from '@actions/core'
import { composeV1, composeV2, networkExists, type Compose } from './commands/compose'
import { projectInspect } from './commands/containers'
import { dirWritable, hashFiles, readFileBase64IfExists, readFileIfExists, upstreamFiles } from './commands/files'
import { certificateExists, composeV1Version, composeV2Version, diskFree, dockerServerVersion } from './commands/probes'
import { parseInspect, type ContainerInfo } from './containers'
import { readEnvFile } from './envfile'
import { HostError, InputError } from './errors'
import type { InfraInputs } from './inputs'
import { PROJECT } from './labels'
import { hostPath, OPS } from './paths'
import { concurrently, section, splitSections } from './shell'
import type { Remote } from './ssh'
import type { FileSet } from './stackfiles'
import { splitFiles } from './upstream'

// What infra reads from the host before it changes anything: docker, compose, disk, ops-dir, files, network, stack.

const MIN_FREE_KB = 1024 * 1024
const WARN_FREE_KB = 5 * 1024 * 1024

/** What preflight learned about the host, read-only. */
export interface HostState {
  compose: Compose
  envText: string
  hashes: Map<string, string>
  manifest: string[]
  networkExists: boolean
  /** The stack's containers. */
  containers: ContainerInfo[]
  /** Files of upstreams/ (name -> content): each service's upstream, written by its deploys. */
  upstreams: Map<string, string>
  /** domain and ports in effect: the inputs, else the host's .env, else the defaults. */
  settings: Settings
  tls: boolean
  /** sha256 of the certificate and key nginx serves ('' without TLS): a renewal changes it. */
  certHash: string
}

export interface Settings {
  domain: string
  httpPort: number
  httpsPort: number
}

/** One round trip of read-only probes; every failure says how to fix it. */
export async function readHost(remote: Remote, inputs: InfraInputs, bundle: FileSet): Promise<HostState> {
  const probes = concurrently(
    section('docker', dockerServerVersion()),
    section('compose-v2', composeV2Version()),
    section('compose-v1', composeV1Version()),
    section('disk', diskFree(inputs.opsDir)),
    section('opsdir', dirWritable(inputs.opsDir)),
    section('hashes', hashFiles(inputs.opsDir, ['compose', 'nginx', OPS.upstreams, OPS.manifest, OPS.certificate])),
    section('manifest', readFileIfExists(hostPath(inputs.opsDir, OPS.manifest))),
    section('network', networkExists(inputs.network)),
    section('containers', projectInspect(PROJECT)),
    section('upstreams', upstreamFiles(inputs.opsDir)),
    // The .env holds secrets: read with the rest (one round trip), never logged.
    section('env', readFileBase64IfExists(hostPath(inputs.opsDir, OPS.env)))
  )
  const s = splitSections((await remote.run(probes)).stdout)
  const get = (name: string) => s.get(name) ?? { rc: 255, out: '' }

  const docker = get('docker')
  if (docker.rc !== 0) {
    if (/permission denied/i.test(docker.out)) {
      throw new HostError(
        'The SSH user cannot reach the docker daemon (permission denied on /var/run/docker.sock).',
        'add the user to the docker group on the host: sudo usermod -aG docker <user>, then log in again'
      )
    }
    if (/not found/i.test(docker.out))
      throw new HostError('docker is not installed on the host.', 'install Docker Engine (https://docs.docker.com/engine/install/)')
    throw new HostError(`docker is not usable on the host: ${docker.out.trim()}`, 'make sure dockerd runs: sudo systemctl start docker')
  }
  const v2 = get('compose-v2')
  const v1 = get('compose-v1')
  const compose = v2.rc === 0 ? composeV2(v2.out.trim()) : v1.rc === 0 ? composeV1(v1.out.trim()) : undefined
  if (!compose)
    throw new HostError(
      'Neither `docker compose` (v2) nor `docker-compose` (v1) is installed on the host.',
      'install the compose plugin: sudo apt-get install docker-compose-plugin'
    )
  core.info(`docker ${docker.out.trim()}, compose ${compose.argv.join(' ')} ${compose.version}`)

  for (const line of get('disk').out.trim().split('\n')) {
    const [path, kb] = line.split(' ')
    const free = Number(kb)
    if (!Number.isFinite(free)) continue
    if (free < MIN_FREE_KB)
      throw new HostError(
        `Only ${Math.round(free / 1024)} MiB free on ${path}.`,
        'free disk space: docker system prune -a (removes unused images)'
      )
    if (free < WARN_FREE_KB) core.warning(`Only ${Math.round(free / 1024)} MiB free on ${path}.`)
    else core.info(`${(free / 1024 / 1024).toFixed(1)} GiB free on ${path}`)
  }

  const opsdir = get('opsdir').out.trim()
  if (opsdir.startsWith('denied')) {
    throw new HostError(
      `ops-dir ${inputs.opsDir} is not writable by the SSH user (${opsdir.slice(7)} is not writable).`,
      `sudo install -d -o <user> -m 0750 ${inputs.opsDir}`
    )
  }

  const env = get('env')
  if (opsdir === 'exists' && env.rc !== 0) throw new HostError(`reading ${hostPath(inputs.opsDir, OPS.env)} failed: ${env.out.trim()}`)
  const envText = opsdir === 'exists' ? Buffer.from(env.out, 'base64').toString('utf8') : ''
  const hashes = new Map<string, string>()
  for (const line of get('hashes').out.split('\n')) {
    const m = /^([0-9a-f]{64})\s+\*?(.+)$/.exec(line)
    if (m) hashes.set(m[2], m[1])
  }

  const settings = effectiveSettings(inputs, readEnvFile(envText))
  let tls = false
  let certHash = ''
  if (settings.domain) {
    const image = nginxImage(readEnvFile(envText), bundle.get(OPS.compose) ?? '')
    const cert = await remote.run(certificateExists(settings.domain, image))
    const present = /^present ([0-9a-f]{64})$/m.exec(cert.stdout)
    tls = Boolean(present)
    certHash = present?.[1] ?? ''
    if (!tls)
      core.warning(
        `No certificate for ${settings.domain} under /etc/letsencrypt/live on the host: nginx serves HTTP only. Obtain one with certbot (webroot /var/www/certbot), then run infra again.`
      )
    else core.info(`Certificate for ${settings.domain} found: HTTPS enabled.`)
  }

  return {
    compose,
    envText,
    hashes,
    manifest: get('manifest').out.split('\n').filter(Boolean),
    networkExists: get('network').rc === 0,
    containers: parseInspect(get('containers').out),
    upstreams: splitFiles(get('upstreams').out),
    settings,
    tls,
    certHash
  }
}

/**
 * domain, http-port and https-port: the input when given, else what the host has (its .env, written by earlier runs),
 * else the default. So an app repo's deploy, which does not repeat them, never turns HTTPS off or moves nginx.
 */
export function effectiveSettings(inputs: InfraInputs, env: Map<string, string>): Settings {
  const port = (key: string) => (/^\d+$/.test(env.get(key) ?? '') ? Number(env.get(key)) : undefined)
  const given = inputs.settings
  const settings = {
    domain: given.domain ?? env.get('DOMAIN') ?? '',
    httpPort: given.httpPort ?? port('HTTP_PORT') ?? 80,
    httpsPort: given.httpsPort ?? port('HTTPS_PORT') ?? 443
  }
  if (settings.httpPort === settings.httpsPort) {
    throw new InputError(
      given.httpsPort === undefined ? 'http-port' : 'https-port',
      `must differ from the HTTPS port the host uses (both would be ${settings.httpPort})`
    )
  }
  const from = (v: unknown) => (v === undefined ? ' (from the host)' : '')
  core.info(
    `Settings: domain ${settings.domain || 'none (HTTP only)'}${from(given.domain)}, HTTP port ${settings.httpPort}${from(given.httpPort)}, HTTPS port ${settings.httpsPort}${from(given.httpsPort)}`
  )
  return settings
}

/** The nginx image the stack runs: NGINX_IMAGE from .env, else the compose file's default. */
export function nginxImage(env: Map<string, string>, composeText: string): string {
  return env.get('NGINX_IMAGE') || /\$\{NGINX_IMAGE:-([^}]+)\}/.exec(composeText)?.[1] || 'nginx'
}
