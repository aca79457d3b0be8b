import { pack } from 'tar-stream'

export interface ArchiveEntry {
  path: string
  content: string
  /** 0o644 unless the file holds secrets (0o600). */
  mode: number
}

/** A tar archive of the given files (the host unpacks it with its own tar). */
export async function tarball(entries: ArchiveEntry[]): Promise<Buffer> {
  const p = pack()
  const chunks: Buffer[] = []
  const done = new Promise<Buffer>((resolve, reject) => {
    p.on('data', (c: unknown) => chunks.push(c as Buffer))
    p.on('end', () => resolve(Buffer.concat(chunks)))
    p.on('error', reject)
  })
  const mtime = new Date()
  for (const e of entries) p.entry({ name: e.path, mode: e.mode, mtime }, e.content)
  p.finalize()
  return done
}
