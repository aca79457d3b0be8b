import { cmd, noStderr, privately, script, type Sh } from '../shell'

// Commands for images: look up, pull, list and remove. Pure: each returns a command; nothing here runs anything.

/** Prints the image id when the image is on the host (exit 1 otherwise). */
export const imageId = (image: string): Sh => noStderr(cmd('docker', 'image', 'inspect', '--format', '{{.Id}}', image))

/**
 * Pulls an image, logging in first when a registry is given: the password comes on stdin, the credentials live in a
 * docker config directory of this run only, which is removed afterwards (concurrent runs never share or keep them).
 */
export const pull = (image: string, registry?: { server: string; username: string }): Sh =>
  registry
    ? privately(
        script(
          'd=$(mktemp -d) || exit 1; trap \'rm -rf "$d"\' EXIT; ' +
            'docker --config "$d" login --username "$2" --password-stdin "$1" >/dev/null || exit 3; ' +
            'docker --config "$d" pull --quiet "$3"; rc=$?; docker --config "$d" logout "$1" >/dev/null 2>&1; exit $rc',
          registry.server,
          registry.username,
          image
        )
      )
    : cmd('docker', 'pull', '--quiet', image)

/** `repository:tag id created` of the images of one repository, newest first. */
export const repositoryImages = (repository: string): Sh =>
  cmd('docker', 'images', '--format', '{{.Repository}}:{{.Tag}} {{.ID}} {{.CreatedAt}}', repository)

/** Removes images; ones still used by a container are skipped with a message, never forced. */
export const removeImages = (refs: string[]): Sh =>
  script('for i; do docker rmi "$i" >/dev/null 2>&1 || echo "kept $i (in use)"; done; exit 0', ...refs)
