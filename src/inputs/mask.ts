import * as core from '@actions/core'
import { isImageReference } from '../images'
import type { Inputs } from './index'

/** Names of variables that name an image: `NGINX_IMAGE`, `IMAGE`, `postgres_image`. */
const IMAGE_NAME = /(?:^|_)IMAGE$/i
/** Names of variables that hold credentials (or URLs and DSNs, which often embed them). */
const SECRET_NAME = /PASS|PWD|SECRET|TOKEN|KEY|CRED|AUTH|PRIVATE|SALT|SIGN|DSN|URL|URI|CONN/i

/**
 * Whether an env value is masked in the log (the action never prints env values; this guards against a command's
 * output echoing one). Masked: values of credential-like names, and values that look like tokens (8+ characters
 * with letters and digits). Not masked: plain values such as `redis`, `production` or `Asia/Seoul`: masking would
 * turn every mention of them in the log into *** (a container named behindy_redis_1 included), and GitHub already
 * masks whatever came from `secrets.*`. Never masked: values so short or common (true, 8080) they garble the log,
 * and image references under an image's name (`NGINX_IMAGE=nginx:1.30.6-alpine`): the log has to show which image
 * runs, and `user:password` would need a name like that and a value of the reference's shape to slip through.
 */
export function isMaskable(name: string, value: string): boolean {
  if (value.length < 3 || /^(?:true|false|yes|no|on|off|\d{1,5})$/i.test(value)) return false
  if (IMAGE_NAME.test(name) && isImageReference(value)) return false
  return SECRET_NAME.test(name) || (value.length >= 8 && /[A-Za-z]/.test(value) && /\d/.test(value) && !/\s/.test(value))
}

/**
 * Masks every secret the run holds in the log, once, before anything can print it: the key, its passphrase, the
 * registry password, and the env and infra-env values isMaskable picks.
 */
export function maskSecrets(inputs: Inputs): void {
  const { connection, infra } = inputs
  const app = inputs.mode === 'deploy' || inputs.mode === 'rollback' ? inputs.app : undefined
  const secrets = [
    connection.privateKey,
    ...connection.privateKey.split('\n').filter(l => l.length >= 8 && !/^-----/.test(l)),
    connection.passphrase ?? '',
    app?.registry?.password ?? '',
    ...[...infra.infraEnv, ...(app?.env ?? [])].filter(([name, value]) => isMaskable(name, value)).map(([, value]) => value)
  ]
  for (const s of new Set(secrets)) if (s.trim()) core.setSecret(s)
}
