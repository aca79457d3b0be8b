import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { FRONT_PORTS, frontTarget, frontUpstream } from '../../src/front'
import { loadBundle } from '../../src/stackfiles'
import { frontRelays } from './helpers'

const frontConf = loadBundle(join(__dirname, '..', '..')).get('nginx/front/nginx.conf') as string

describe('frontUpstream / frontTarget (upstreams/nginx.stream)', () => {
  it.each(['behindy-nginx-1', 'behindy-nginx-2', 'behindy_nginx_1', 'nginx'])('names %s, and frontTarget reads it back', target => {
    const text = frontUpstream(target)
    expect(frontTarget(text)).toBe(target)
    // As readHost returns it (upstreamFiles() ends each file with a blank line) and with CRLF line ends.
    expect(frontTarget(`${text}\n`)).toBe(target)
    expect(frontTarget(text.replace(/\n/g, '\r\n'))).toBe(target)
  })

  it("the front's 80 goes to the target's plain PROXY protocol port, 443 to its TLS one", () => {
    expect(FRONT_PORTS).toEqual({ http: 8080, https: 8443 })
    expect(frontRelays(frontConf, frontUpstream('behindy-nginx-2'))).toEqual({ 80: 'behindy-nginx-2:8080', 443: 'behindy-nginx-2:8443' })
    // Nothing else names a container: the target appears once per kind of connection, and the comments name none.
    expect(frontUpstream('behindy-nginx-2').match(/behindy-nginx-2/g)).toHaveLength(2)
    for (const line of frontUpstream('behindy-nginx-2')
      .split('\n')
      .filter(l => l.startsWith('#')))
      expect(frontTarget(line)).toBeUndefined()
    expect(frontUpstream('x').endsWith('}\n')).toBe(true)
  })

  it("the first target (HTTP's) is the one frontTarget reads", () => {
    const mixed = frontUpstream('behindy-nginx-1').replace(`behindy-nginx-1:${FRONT_PORTS.https}`, `behindy-nginx-2:${FRONT_PORTS.https}`)
    expect(frontRelays(frontConf, mixed)[443]).toBe(`behindy-nginx-2:${FRONT_PORTS.https}`)
    expect(frontTarget(mixed)).toBe('behindy-nginx-1')
  })

  const written = frontUpstream('behindy-nginx-1')
  it.each<[string, string | undefined]>([
    ['no file', undefined],
    ['an empty file', ''],
    ['only comments', '# Which nginx container the front relays to.\n'],
    ['every line commented out', written.replace(/^/gm, '# ')],
    ['targets without a port', written.replace(/:\d+/g, '')],
    ['the target lines removed', written.replace(/^.*behindy-nginx-1.*\n/gm, '')]
  ])('%s: no target', (_what, content) => {
    expect(frontTarget(content)).toBeUndefined()
  })
})
