import { and, cmd, noStderr, privately, script, type Sh } from '../shell'

// Commands for images: look up, pull, list and remove. Pure: each returns a command; nothing here runs anything.

/** Prints the image id when the image is on the host (exit 1 otherwise). */
export const imageId = (image: string): Sh => noStderr(cmd('docker', 'image', 'inspect', '--format', '{{.Id}}', image))

/**
 * Pulls an image, logging in first when a registry is given: the password comes on stdin, the credentials live in a
 * docker config directory of this run only, which is removed afterwards (concurrent runs never share or keep them;
 * removing it is the logout: one docker call fewer on the deploy's critical path).
 */
export const pull = (image: string, registry?: { server: string; username: string }): Sh =>
  registry
    ? privately(
        script(
          'd=$(mktemp -d) || exit 1; trap \'rm -rf "$d"\' EXIT; ' +
            'docker --config "$d" login --username "$2" --password-stdin "$1" >/dev/null || exit 3; ' +
            'docker --config "$d" pull --quiet "$3"',
          registry.server,
          registry.username,
          image
        )
      )
    : cmd('docker', 'pull', '--quiet', image)

/** The line between a pull's own output and the digests pullResolved prints after it. */
export const DIGESTS_MARK = '@@ops digests'

/**
 * Pulls the image (as `pull`), then prints DIGESTS_MARK and the image's registry digests (`repo@sha256:…`, one a
 * line): what the tag names now. One round trip; the exit code is the pull's when it fails.
 */
export const pullResolved = (image: string, registry?: { server: string; username: string }): Sh =>
  and(
    pull(image, registry),
    cmd('echo', DIGESTS_MARK),
    cmd('docker', 'image', 'inspect', '--format', '{{range .RepoDigests}}{{println .}}{{end}}', image)
  )

/** `repository:tag digest id` of the images of one repository, newest first (tag or digest `<none>` when missing). */
export const repositoryImages = (repository: string): Sh =>
  cmd('docker', 'images', '--digests', '--format', '{{.Repository}}:{{.Tag}} {{.Digest}} {{.ID}}', repository)

/** Removes images; ones still used by a container are skipped with a message, never forced. */
export const removeImages = (refs: string[]): Sh =>
  script('for i; do docker rmi "$i" >/dev/null 2>&1 || echo "kept $i (in use)"; done; exit 0', ...refs)
