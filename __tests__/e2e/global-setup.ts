import { execFileSync } from 'node:child_process'
import { existsSync } from 'node:fs'
import { join } from 'node:path'

const ROOT = join(__dirname, '..', '..')

/**
 * Brings the sandbox host up (idempotent) before any end-to-end test. Never skips: a machine that cannot host it
 * fails here with the reason (use `npm run test:unit` on a laptop without root/docker).
 */
export default function setup(): void {
  if (process.getuid && process.getuid() !== 0) {
    throw new Error(
      'The end-to-end tests need root to run the sandbox host (sshd, dockerd, registry). Run them as root, or run `npm run test:unit` for the unit tests only.'
    )
  }
  if (!existsSync(join(ROOT, 'dist', 'index.js'))) throw new Error('dist/index.js is missing: run `npm run bundle` first.')
  try {
    execFileSync('bash', [join(ROOT, 'scripts', 'sandbox.sh'), 'up'], { stdio: ['ignore', 'inherit', 'inherit'], timeout: 1_500_000 })
  } catch (e) {
    throw new Error(`The sandbox host could not be brought up (bash scripts/sandbox.sh up): ${(e as Error).message}`)
  }
}
