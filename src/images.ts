import * as core from '@actions/core'
import { DIGESTS_MARK, imageId, pullResolved, removeImages, repositoryImages } from './commands/images'
import { HostError } from './errors'
import { LABEL } from './inputs/collector'
import type { RegistryLogin } from './inputs/app'
import type { Log } from './phases'
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

/** An image as a deploy runs it: the reference given, and the registry digest it resolved to. */
export interface Resolved {
  /** As given (a tag, or a digest). */
  image: string
  /** `repository@sha256:…` the container runs; '' when the registry gave none (it runs by `image`). */
  digest: string
}

/** Whether the reference pins content (`name@sha256:…`): the only kind a deploy may take from the host without asking the registry. */
export const isDigestReference = (image: string): boolean => /@sha256:[a-f0-9]{64}$/.test(image)

/** The digest among an image's RepoDigests that belongs to the reference's repository ('' if none). */
export function digestOf(image: string, repoDigests: string[]): string {
  const repo = imageRepository(image)
  // `name:tag@sha256:…` runs what the digest names: recorded as `name@sha256:…`, as docker lists it.
  if (isDigestReference(image)) return `${repo}@${image.slice(image.lastIndexOf('@') + 1)}`
  // docker records Docker Hub images by their familiar name (nginx, not docker.io/library/nginx).
  const names = new Set([repo, repo.replace(/^(?:docker\.io|index\.docker\.io|registry-1\.docker\.io)\//, '').replace(/^library\//, '')])
  return repoDigests.find(d => names.has(d.slice(0, d.lastIndexOf('@')))) ?? ''
}

/**
 * Pulls the image (logging in to its registry for this run only) and resolves what its tag names now: every deploy
 * asks the registry (only a manifest check when the layers are here), so a tag that moved deploys its new content.
 * Only a digest reference already on the host skips the pull. A fix for each way a pull usually fails.
 */
export async function pullImage(remote: Remote, image: string, registry: RegistryLogin | undefined, log: Log = core): Promise<Resolved> {
  if (isDigestReference(image) && (await remote.run(imageId(image))).code === 0) {
    log.info(`${image} is pinned by digest and on the host: no pull.`)
    return { image, digest: digestOf(image, []) }
  }
  log.info(`Pulling ${image}${registry ? ` (logged in to ${registry.server} for this run only)` : ''}…`)
  const r = await remote.run(pullResolved(image, registry), { stdin: registry ? `${registry.password}\n` : undefined })
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
          : 'check that the host can reach the registry (an image already on the host is used without asking only when given by digest: name@sha256:…)'
    throw new HostError(`Pulling ${image} failed: ${msg}`, fix)
  }
  const [, after = ''] = r.stdout.split(`${DIGESTS_MARK}\n`)
  const digest = digestOf(image, after.split('\n').filter(Boolean))
  log.info(digest ? `${image} → ${digest}` : `${image}: the registry gave no digest, so it runs by its name.`)
  return { image, digest }
}

/** The repository's images on the host (docker images, newest first), for pruneImages: read while nothing adds one. */
export function listImages(remote: Remote, repository: string): Promise<string> {
  const listed = remote.must(repositoryImages(repository), 'listing images')
  listed.catch(() => undefined) // awaited by pruneImages; until then a failure is not unhandled
  return listed
}

/**
 * Keeps the newest keep-images images of the service's repository, the one serving and the rollback target (each by
 * its tag or its digest: content whose tag moved on stays as long as it is one of them); removes the others by their
 * references (a tag, or `repo@digest` for content no tag names any more).
 */
export async function pruneImages(
  remote: Remote,
  keepImages: number,
  repository: string,
  keep: string[],
  listed: Promise<string> = listImages(remote, repository)
): Promise<void> {
  const rows = (await listed)
    .split('\n')
    .filter(Boolean)
    .map(l => {
      const [ref = '', digest = '<none>', id = ''] = l.split(' ')
      const repo = ref.slice(0, ref.lastIndexOf(':'))
      return { ref, tagged: !ref.endsWith(':<none>'), byDigest: digest === '<none>' ? '' : `${repo}@${digest}`, id }
    })
  const ids = [...new Set(rows.map(r => r.id))]
  const kept = new Set([
    ...ids.slice(0, keepImages),
    ...rows.filter(r => keep.includes(r.ref) || (r.byDigest && keep.includes(r.byDigest))).map(r => r.id)
  ])
  const drop = [
    ...new Set(
      rows
        .filter(r => !kept.has(r.id))
        .map(r => (r.tagged ? r.ref : r.byDigest))
        .filter(Boolean)
    )
  ]
  if (!drop.length) return core.info(`${ids.length} image(s) of ${repository} on the host; nothing to prune.`)
  const out = await remote.must(removeImages(drop), 'removing old images')
  core.info(`Pruned ${drop.join(', ')}${out.trim() ? `\n${out.trim()}` : ''}`)
}
