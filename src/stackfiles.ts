import { createHash } from 'node:crypto'
import { readdirSync, readFileSync, statSync } from 'node:fs'
import { join, relative, sep } from 'node:path'
import { CATALOGUE } from './catalogue'

/** The app services whose routes ship with the action (their upstream starts as the 503 placeholder). */
export const ROUTED_SERVICES = Object.keys(CATALOGUE)

/** Files the action ships to the host, relative to ops-dir, in a stable order. */
export type FileSet = Map<string, string>

/** Where the action's own files live: the checkout of the action (dist/.. at run time). */
export function actionRoot(): string {
  return process.env.OPS_ACTION_ROOT || join(__dirname, '..')
}

function walk(dir: string, base: string, out: FileSet): void {
  for (const name of readdirSync(dir).sort()) {
    const full = join(dir, name)
    if (statSync(full).isDirectory()) walk(full, base, out)
    else out.set(relative(base, full).split(sep).join('/'), readFileSync(full, 'utf8'))
  }
}

/** Reads compose/ and nginx/ of the action checkout. */
export function loadBundle(root = actionRoot()): FileSet {
  const files: FileSet = new Map()
  walk(join(root, 'compose'), root, files)
  walk(join(root, 'nginx'), root, files)
  return files
}

export interface RenderOptions {
  domain: string
  /** The certificate for domain exists on the host. */
  tls: boolean
}

/** Turns the bundle into the exact file set for ops-dir: templates rendered, template sources left out. */
export function renderStack(bundle: FileSet, opts: RenderOptions): FileSet {
  const out: FileSet = new Map()
  for (const [path, content] of bundle) if (!path.startsWith('nginx/templates/')) out.set(path, content)
  const template = opts.tls ? 'nginx/templates/servers-tls.conf' : 'nginx/templates/servers-http.conf'
  const source = bundle.get(template)
  if (source === undefined) throw new Error(`the action bundle lacks ${template}`)
  const reason = opts.domain ? `no certificate for ${opts.domain} on the host yet` : 'no domain set'
  out.set('nginx/conf.d/20-servers.conf', source.replaceAll('{{domain}}', opts.domain).replaceAll('{{reason}}', reason))
  return new Map([...out].sort(([a], [b]) => a.localeCompare(b)))
}

export function sha256(content: string): string {
  return createHash('sha256').update(content).digest('hex')
}

export interface FilePlan {
  /** Files to write (new or different content). */
  write: string[]
  /** Files the action shipped before but no longer does, and files nobody shipped in the directories it owns. */
  remove: string[]
  unchanged: number
}

/** Directories of ops-dir that infra owns whole: a file there that the action does not ship is removed. */
export const MANAGED_DIRS = ['compose', 'nginx']

/** Compares the wanted files with the host's (path -> sha256) and the previous manifest. */
export function planFiles(wanted: FileSet, onHost: Map<string, string>, previousManifest: string[]): FilePlan {
  const write = [...wanted].filter(([p, c]) => onHost.get(p) !== sha256(c)).map(([p]) => p)
  const stray = [...onHost.keys()].filter(p => MANAGED_DIRS.some(d => p.startsWith(`${d}/`)))
  const remove = [...new Set([...previousManifest, ...stray])].filter(p => !wanted.has(p) && onHost.has(p))
  return { write, remove, unchanged: wanted.size - write.length }
}
