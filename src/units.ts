/** Memory sizes as docker takes them: a whole number with an optional unit b, k, m or g (powers of 1024). */
const MEMORY_RE = /^([1-9][0-9]*)([bkmg]?)$/

/** Bytes of a memory size like 768m or 1g; undefined when it is not one. */
export function memoryBytes(text: string): number | undefined {
  const m = MEMORY_RE.exec(text.trim().toLowerCase())
  if (!m) return undefined
  return Number(m[1]) * 1024 ** 'bkmg'.indexOf(m[2] || 'b')
}

/** A byte count as MiB for messages ("768 MiB"). */
export const mib = (bytes: number): string => `${Math.round(bytes / 1024 ** 2)} MiB`
