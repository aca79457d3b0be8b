// Shared by the benchmarks: the stack's .env for the sandbox, the phase times an action run printed, statistics.
import { execFile, execFileSync } from 'node:child_process'
import http from 'node:http'
import { promisify } from 'node:util'

/** The infra-env every benchmark run gives (the stack needs these four). */
export const INFRA_ENV = 'DB_USER=behindy\nDB_PASS=bench-db-pass\nDB_NAME=behindy\nREDIS_PASSWORD=bench-redis-pass'

/** Seconds per phase from an action run's output (`✓ <phase> (<s> s)` lines), "Connect to …" as "Connect". */
export const phasesOf = output =>
  Object.fromEntries(
    [...output.matchAll(/^✓ (.+) \((\d+\.\d+) s\)$/gm)].map(m => [m[1].replace(/^Connect to .*/, 'Connect'), Number(m[2])])
  )

/**
 * A docker command's stdout, asynchronously: a load generator in the same process keeps running meanwhile (a
 * synchronous call would stall it, and every response in flight would measure the stall).
 */
export const docker = async (...args) => (await promisify(execFile)('docker', args, { encoding: 'utf8', maxBuffer: 64 << 20 })).stdout

/** The p-th percentile (nearest rank below); NaN for no values. */
export const pct = (xs, p) => {
  if (!xs.length) return NaN
  const s = Float64Array.from(xs).sort()
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]
}

export const median = xs => pct(xs, 50)

const get = url =>
  new Promise(resolve => {
    const req = http.get(url, { agent: false, timeout: 1000 }, res => {
      res.resume()
      resolve(res.statusCode >= 200 && res.statusCode < 300)
    })
    req.on('timeout', () => req.destroy())
    req.on('error', () => resolve(false))
  })

/**
 * The app's own boot-to-healthy, apart from any deployer: k containers of the image started one at a time (on the
 * network, no alias, no route), each polled on its health path from this machine every 10 ms on a new connection;
 * the median of the seconds from dockerd's StartedAt to the first 2xx. A Next.js app answers only ~0.2 s after its
 * `listening` line, so this, not that line, is what a deployer has to wait for.
 */
export async function bootToHealthy({ image, env, network = 'internal', port, path, k = 5 }) {
  const dockerSync = (...args) => execFileSync('docker', args, { encoding: 'utf8' }).trim()
  try {
    dockerSync('image', 'inspect', '--format', '{{.Id}}', image)
  } catch {
    throw new Error(`bootToHealthy: ${image} is not on this docker host (deploy it once first)`)
  }
  const xs = []
  for (let i = 0; i < k; i++) {
    const name = `ops-bench-boot-${process.pid}-${i}`
    dockerSync(
      'run',
      '-d',
      '--name',
      name,
      '--network',
      network,
      ...Object.entries(env).flatMap(([key, v]) => ['-e', `${key}=${v}`]),
      image
    )
    try {
      const [startedAt, ip] = dockerSync(
        'inspect',
        '--format',
        `{{.State.StartedAt}} {{(index .NetworkSettings.Networks "${network}").IPAddress}}`,
        name
      ).split(' ')
      const deadline = Date.now() + 60_000
      while (!(await get(`http://${ip}:${port}${path}`))) {
        if (Date.now() > deadline) throw new Error(`${name} did not answer ${path} within 60 s`)
        await new Promise(r => setTimeout(r, 10))
      }
      xs.push((Date.now() - Date.parse(startedAt)) / 1000)
    } finally {
      dockerSync('rm', '-f', name)
    }
  }
  return median(xs)
}

/**
 * Until the service has one container (ops-action retires the old one in the background), at most 60 s. Asynchronous:
 * a load generator in the same process keeps running meanwhile.
 */
export async function oneContainer(service) {
  const deadline = Date.now() + 60_000
  while (Date.now() < deadline) {
    const ids = (await docker('ps', '-q', '--filter', `name=^/${service}($|-)`)).trim()
    if (ids.split('\n').length === 1 && ids) return
    await new Promise(r => setTimeout(r, 100))
  }
  throw new Error(`the old ${service} container is still running after 60 s`)
}
