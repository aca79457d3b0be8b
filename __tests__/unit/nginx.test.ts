import { describe, expect, it } from 'vitest'
import { HostError } from '../../src/errors'
import { MIN_NGINX, nginxTestFailed, nginxTooOld } from '../../src/nginx'

describe('nginx -t failures', () => {
  const tooOld = [
    'nginx: [emerg] unknown directive "keepalive_min_timeout" in /etc/nginx/ops/nginx.conf:31',
    'nginx: [emerg] invalid parameter "resolve" in /etc/nginx/ops-upstreams/app_frontend.conf:5',
    'nginx: [emerg] unknown directive "keepalive_timeout" in /etc/nginx/ops-upstreams/app_story.conf:7'
  ]

  it.each(tooOld)('an nginx older than the config needs is named as such, with the image to use: %s', out => {
    const e = nginxTooOld(`nginx: the configuration file /etc/nginx/ops/nginx.conf syntax is ok\n${out}`)
    expect(e).toBeInstanceOf(HostError)
    expect(e?.message).toContain(`older than ${MIN_NGINX}`)
    expect(e?.message).toContain(out)
    expect(e?.fix).toMatch(/NGINX_IMAGE .*nginx:1\.30\.6-alpine or newer/)
    expect(nginxTestFailed(out, 'nothing was started').message).toContain(`older than ${MIN_NGINX}`)
  })

  it('any other failure is the config: the file nginx names, and what the run did not do', () => {
    const out = 'nginx: [emerg] unknown directive "this_is_not_a_directive" in /etc/nginx/ops/snippets/common.conf:9'
    expect(nginxTooOld(out)).toBeUndefined()
    // keepalive_timeout is known everywhere outside upstream blocks: not a version problem there.
    expect(nginxTooOld('nginx: [emerg] "keepalive_timeout" directive is duplicate in /etc/nginx/ops/nginx.conf:30')).toBeUndefined()
    const e = nginxTestFailed(out, 'nginx was not changed')
    expect(e.message).toBe(`nginx -t fails on the host's nginx config, so nginx was not changed:\n${out}`)
    expect(e.fix).toMatch(/^fix or remove the file nginx names above/)
  })
})
