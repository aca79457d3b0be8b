import { cmd, type Sh } from '../shell'

/** Where the nginx container sees the action's nginx/ directory. */
export const NGINX_CONF = '/etc/nginx/ops/nginx.conf'

/** The compose project name of the stack: containers are behindy_db_1 (v1) / behindy-db-1 (v2). */
export const PROJECT = 'behindy'

/** How compose is invoked on the host: v2 plugin or v1 standalone. */
export interface Compose {
  argv: string[]
  version: string
}

export const composeV2 = (version: string): Compose => ({ argv: ['docker', 'compose'], version })
export const composeV1 = (version: string): Compose => ({ argv: ['docker-compose'], version })

function compose(c: Compose, opsDir: string, ...args: string[]): Sh {
  return cmd(...c.argv, '--env-file', `${opsDir}/.env`, '-p', PROJECT, '-f', `${opsDir}/compose/docker-compose.yml`, ...args)
}

/** Creates or recreates only the services whose configuration changed; running, unchanged ones are left alone. */
export const composeUp = (c: Compose, opsDir: string): Sh => compose(c, opsDir, 'up', '-d', '--remove-orphans')

/** Validates the compose file with the host's .env (prints nothing on success). */
export const composeConfig = (c: Compose, opsDir: string): Sh => compose(c, opsDir, 'config', '-q')

/** Runs `nginx -t` in a throwaway container of the nginx service (used when nginx is not running yet). */
export const composeNginxTest = (c: Compose, opsDir: string): Sh =>
  compose(c, opsDir, 'run', '--rm', '--no-deps', '-T', 'nginx', 'nginx', '-t', '-c', NGINX_CONF)
