// Shared by the benchmarks: the stack's .env for the sandbox, the phase times an action run printed, statistics.

/** The infra-env every benchmark run gives (the stack needs these four). */
export const INFRA_ENV = 'DB_USER=behindy\nDB_PASS=bench-db-pass\nDB_NAME=behindy\nREDIS_PASSWORD=bench-redis-pass'

/** Seconds per phase from an action run's output (`✓ <phase> (<s> s)` lines), "Connect to …" as "Connect". */
export const phasesOf = output =>
  Object.fromEntries(
    [...output.matchAll(/^✓ (.+) \((\d+\.\d+) s\)$/gm)].map(m => [m[1].replace(/^Connect to .*/, 'Connect'), Number(m[2])])
  )

/** The p-th percentile (nearest rank below); NaN for no values. */
export const pct = (xs, p) => {
  if (!xs.length) return NaN
  const s = Float64Array.from(xs).sort()
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]
}

export const median = xs => pct(xs, 50)
