/** Container labels: the ones ops-action puts on app containers, and the ones compose puts on the stack's. */

/** Marks containers ops-action manages, valued with the service name. */
export const SERVICE_LABEL = 'ops-action.service'
/** The image reference the deploy was given (a tag, or a digest). */
export const IMAGE_LABEL = 'ops-action.image'
/** The registry digest the container runs (`repo@sha256:…`), when the image has one. */
export const DIGEST_LABEL = 'ops-action.digest'
/** The app's port inside the container. */
export const PORT_LABEL = 'ops-action.port'
/** The service's route, health path, aliases and memory limit as deployed (JSON), for mode status and re-swaps. */
export const SPEC_LABEL = 'ops-action.spec'
/** Marks a release command's one-off container, valued with the service name (never a service's container). */
export const RELEASE_LABEL = 'ops-action.release'

export const COMPOSE_PROJECT_LABEL = 'com.docker.compose.project'
export const COMPOSE_SERVICE_LABEL = 'com.docker.compose.service'
/** What compose recorded of the service definition a container was created from (`compose config --hash`). */
export const COMPOSE_HASH_LABEL = 'com.docker.compose.config-hash'

/** What SPEC_LABEL holds. */
export interface DeployedSpec {
  route: string
  healthPath: string
  stripPrefix: boolean
  aliases?: string[]
  /** Bytes (older releases recorded the input's text, such as "768m"). */
  memory?: number | string
}

/** The compose project name of the stack: containers are behindy_db_1 (v1) / behindy-db-1 (v2). */
export const PROJECT = 'behindy'
