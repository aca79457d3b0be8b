import * as core from '@actions/core'
import { imageId, pull, removeImages, repositoryImages } from './commands/images'
import { HostError } from './errors'
import { LABEL } from './inputs/collector'
import type { RegistryLogin } from './inputs/app'
import type { Remote } from './ssh'

// Image references (docker's grammar), pulling with its errors explained, and pruning old images.

/** A registry host: a name with a port, a dotted name, or localhost. */
export const REGISTRY_HOST = String.raw`(?:${LABEL}(?:\.${LABEL})*:[0-9]{1,5}|${LABEL}(?:\.${LABEL})+|localhost)`
const COMPONENT = String.raw`[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*`
const IMAGE_RE = new RegExp(
  String.raw`^(?:${REGISTRY_HOST}/)?${COMPONENT}(?:/${COMPONENT})*(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(?:@sha256:[a-f0-9]{64})?$`
)

/** Whether a text is an image reference like registry.example.com/name:tag or name@sha256:<64 hex>. */
export const isImageReference = (s: string): boolean => s.length <= 255 && IMAGE_RE.test(s)

/** The tag of an image reference ('' for a digest-only reference, 'latest' when none is given). */
export function imageTag(image: string): string {
  const noDigest = image.split('@')[0]
  const last = noDigest.split('/').pop() as string
  if (last.includes(':')) return last.split(':')[1]
  return image.includes('@') ? '' : 'latest'
}

/** The repository of an image reference, without tag or digest (registry:port/name). */
export function imageRepository(image: string): string {
  const noDigest = image.split('@')[0]
  const tag = imageTag(noDigest)
  return noDigest.endsWith(`:${tag}`) ? noDigest.slice(0, -tag.length - 1) : noDigest
}

/** Pulls the image (logging in to its registry for this run only), with a fix for each way it usually fails. */
export async function pullImage(remote: Remote, image: string, registry: RegistryLogin | undefined): Promise<void> {
  const mutable = imageTag(image) === 'latest'
  if (!mutable && (await remote.run(imageId(image))).code === 0) return core.info(`${image} is already on the host: no pull.`)
  core.info(`Pulling ${image}${registry ? ` (logged in to ${registry.server} for this run only)` : ''}…`)
  const r = await remote.run(pull(image, registry), { stdin: registry ? `${registry.password}\n` : undefined })
  if (r.code === 3) {
    const unreachable = /connection refused|no such host|timeout|i\/o timeout|network is unreachable|no route to host/i.test(r.stderr)
    throw new HostError(
      `Login to ${registry?.server} as ${registry?.username} failed: ${r.stderr.trim()}`,
      unreachable
        ? `check that the host can reach the registry ${registry?.server} (DNS, firewall, is it up?)`
        : 'check registry-username and registry-password (a token with read access to the image)'
    )
  }
  if (r.code !== 0) {
    const msg = (r.stderr || r.stdout).trim()
    const fix = /no space left/i.test(msg)
      ? 'free disk space on the host (docker system prune -a)'
      : /not found|manifest unknown|does not exist/i.test(msg)
        ? 'check the image name and tag (was it pushed?)'
        : /denied|unauthorized/i.test(msg)
          ? 'set registry, registry-username and registry-password for a private image'
          : 'check that the host can reach the registry'
    throw new HostError(`Pulling ${image} failed: ${msg}`, fix)
  }
}

/** Keeps the newest keep-images images of the service's repository, the one serving and the rollback target. */
export async function pruneImages(remote: Remote, keepImages: number, image: string, previous: string | undefined): Promise<void> {
  const repository = imageRepository(image)
  const rows = (await remote.must(repositoryImages(repository), 'listing images'))
    .split('\n')
    .filter(Boolean)
    .map(l => l.split(' ')[0])
    .filter(ref => !ref.endsWith(':<none>'))
  const keep = new Set([image, previous ?? '', ...rows.slice(0, keepImages)])
  const drop = rows.filter(ref => !keep.has(ref))
  if (!drop.length) return core.info(`${rows.length} image(s) of ${repository} on the host; nothing to prune.`)
  const out = await remote.must(removeImages(drop), 'removing old images')
  core.info(`Pruned ${drop.join(', ')}${out.trim() ? `\n${out.trim()}` : ''}`)
}
