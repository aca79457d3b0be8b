import { posix } from 'node:path'

/** Files and directories of ops-dir on the host, relative to it. */
export const OPS = {
  env: '.env',
  history: 'history.jsonl',
  lock: '.deploy.lock',
  lockHolder: '.deploy.lock.holder',
  manifest: '.ops-manifest',
  /** sha256 of the certificate nginx was last given (a renewal changes it). */
  certificate: '.ops-certificate',
  compose: 'compose/docker-compose.yml',
  backups: 'backups',
  /** What the background retirements of old containers did (commands/retire.ts). */
  retireLog: 'retire.log',
  upstreams: 'upstreams',
  /** Which nginx container the front relays to (front.ts). */
  frontUpstream: 'upstreams/nginx.stream'
} as const

/** An absolute path on the host under ops-dir. */
export const hostPath = (opsDir: string, relative: string): string => posix.join(opsDir, relative)

/** Absolute host paths of several ops-dir files. */
export const hostPaths = (opsDir: string, relatives: string[]): string[] => relatives.map(r => hostPath(opsDir, r))
