import { cmd, script, type Sh } from '../shell'

// Files on the host: reading, hashing and atomic replacement. Pure: each returns a command; nothing here runs anything.

/** Prints `exists` / `creatable` / `denied <path>` for ops-dir. */
export const dirWritable = (dir: string): Sh =>
  script(
    'if [ -d "$1" ]; then [ -w "$1" ] && echo exists || echo "denied $1"; exit 0; fi; ' +
      'd=$1; while [ ! -d "$d" ]; do d=$(dirname "$d"); done; [ -w "$d" ] && echo creatable || echo "denied $d"',
    dir
  )

/** Lists `sha256  path` of every file under the given subdirectories of dir (missing ones are skipped). */
export const hashFiles = (dir: string, subdirs: string[]): Sh =>
  script(
    'cd "$1" 2>/dev/null || exit 0; shift; for s; do [ -e "$s" ] && find "$s" -type f ! -name "*.ops-new" ! -name "*.ops-prev" -exec sha256sum {} +; done; exit 0',
    dir,
    ...subdirs
  )

/** Prints a file base64-encoded (nothing when it does not exist): its bytes survive sharing a round trip with sections. */
export const readFileBase64IfExists = (path: string): Sh => script('[ -f "$1" ] || exit 0; base64 <"$1"', path)

/** Prints a file, or nothing when it does not exist. */
export const readFileIfExists = (path: string): Sh => script('[ -f "$1" ] && cat "$1"; exit 0', path)

/**
 * Unpacks a tar archive from stdin into `<dir>/.ops-stage`, then moves each listed file into place. The old version
 * is kept as `<path>.ops-prev` (a hard link, so the live name never disappears) and each move is a rename within
 * one filesystem, so readers see the old file or the new one, never a partial one. One round trip for everything.
 */
export const unpackAndCommit = (dir: string, paths: string[]): Sh =>
  script(
    'd=$1; shift; rm -rf "$d/.ops-stage" && mkdir -p "$d/.ops-stage" && tar -xf - -C "$d/.ops-stage" || exit 1; ' +
      'for f; do mkdir -p "$(dirname "$d/$f")" || exit 1; if [ -e "$d/$f" ]; then ln -f "$d/$f" "$d/$f.ops-prev" || exit 1; else rm -f "$d/$f.ops-prev"; fi; ' +
      'mv -f "$d/.ops-stage/$f" "$d/$f" || exit 1; done; rm -rf "$d/.ops-stage"',
    dir,
    ...paths
  )

/** Puts back what unpackAndCommit replaced (files that did not exist before are removed). */
export const restoreFiles = (paths: string[]): Sh =>
  script('for f; do if [ -e "$f.ops-prev" ]; then mv -f "$f.ops-prev" "$f"; else rm -f "$f"; fi; done', ...paths)

/** Moves files aside as `.ops-prev` (restoreFiles puts them back, forgetPrevious drops them); a missing one has no copy. */
export const stashFiles = (paths: string[]): Sh =>
  script('for f; do if [ -e "$f" ]; then mv -f "$f" "$f.ops-prev" || exit 1; else rm -f "$f.ops-prev"; fi; done', ...paths)

/** Drops the `.ops-prev` copies once the new files are known good. */
export const forgetPrevious = (paths: string[]): Sh => script('for f; do rm -f "$f.ops-prev"; done', ...paths)

export const removeFiles = (paths: string[]): Sh => cmd('rm', '-f', '--', ...paths)

/** Appends one line (stdin) to the deploy history; O_APPEND keeps concurrent writers' lines whole. */
export const appendLine = (path: string): Sh => script('cat >> "$1"', path)

/** The last n lines of a file (nothing when it does not exist). */
export const tail = (path: string, n: number): Sh => script('[ -f "$1" ] && tail -n "$2" "$1"; exit 0', path, String(n))

/** Prints every file of ops-dir's upstreams/ (nginx's per-service files, the front's nginx.stream) as `@@file <name>` followed by its content. */
export const upstreamFiles = (opsDir: string): Sh =>
  script(
    'cd "$1/upstreams" 2>/dev/null || exit 0; for f in *.conf *.locations *.stream; do [ -f "$f" ] || continue; echo "@@file $f"; cat "$f"; echo; done',
    opsDir
  )
