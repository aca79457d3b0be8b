import { PROJECT } from '../labels'
import { hostPath, OPS } from '../paths'
import { cmd, or, quiet, type Sh } from '../shell'
import { FRONT_TEST_ARGV, NGINX_TEST_ARGV } from './nginx'

// The stack: compose and its docker network. Pure: each returns a command; nothing here runs anything.

/** How compose is invoked on the host: v2 plugin or v1 standalone. */
export interface Compose {
  argv: string[]
  version: string
}

export const composeV2 = (version: string): Compose => ({ argv: ['docker', 'compose'], version })
export const composeV1 = (version: string): Compose => ({ argv: ['docker-compose'], version })

function compose(c: Compose, opsDir: string, ...args: string[]): Sh {
  return cmd(...c.argv, '--env-file', hostPath(opsDir, OPS.env), '-p', PROJECT, '-f', hostPath(opsDir, OPS.compose), ...args)
}

/** Creates or recreates only the services whose configuration changed; running, unchanged ones are left alone. */
export const composeUp = (c: Compose, opsDir: string): Sh => compose(c, opsDir, 'up', '-d', '--remove-orphans')

/** compose up of only these services, without their dependencies: the stack but nginx, which hands over instead. */
export const composeUpServices = (c: Compose, opsDir: string, services: string[]): Sh =>
  compose(c, opsDir, 'up', '-d', '--remove-orphans', '--no-deps', ...services)

/**
 * A second container of the service beside the running one, which is left as it is (`--no-recreate`), from the
 * compose file and .env as they are now: the new nginx of a handover.
 */
export const composeAddContainer = (c: Compose, opsDir: string, service: string): Sh =>
  compose(c, opsDir, 'up', '-d', '--no-deps', '--no-recreate', '--scale', `${service}=2`, service)

/**
 * What compose would give a container of the service now (`<service> <hash>`): a container whose config-hash label
 * differs is one `compose up` would recreate.
 */
export const composeServiceHash = (c: Compose, opsDir: string, service: string): Sh => compose(c, opsDir, 'config', '--hash', service)

/** Validates the compose file with the host's .env (prints nothing on success). */
export const composeConfig = (c: Compose, opsDir: string): Sh => compose(c, opsDir, 'config', '-q')

/** Runs `nginx -t` in a throwaway container of the nginx service (or the front) before it runs with these files. */
export const composeNginxTest = (c: Compose, opsDir: string, service: 'nginx' | 'front' = 'nginx'): Sh =>
  compose(c, opsDir, 'run', '--rm', '--no-deps', '-T', service, ...(service === 'front' ? FRONT_TEST_ARGV : NGINX_TEST_ARGV))

export const networkExists = (name: string): Sh => quiet(cmd('docker', 'network', 'inspect', name))
export const createNetwork = (name: string): Sh => cmd('docker', 'network', 'create', '--driver', 'bridge', name)
export const ensureNetwork = (name: string): Sh => or(networkExists(name), createNetwork(name))
