/** nginx files a deploy writes for one service: its upstream (and, for services outside the catalogue, its route). */

export interface Live {
  container: string
  image: string
}

/** The upstream pointing at one container by IP: resolved now, so nginx never needs the container to exist to start. */
export function upstreamConf(service: string, ip: string, port: number, live: Live): string {
  return [
    `# ops-action: ${service} is served by container ${live.container} (${live.image})`,
    `# live: ${JSON.stringify(live)}`,
    `upstream app_${service} {`,
    `    server ${ip}:${port} max_fails=0;`,
    '    keepalive 16;',
    '    keepalive_timeout 60s;',
    '}',
    ''
  ].join('\n')
}

/** Which container an upstream file points at (undefined for the 503 placeholder or an unreadable file). */
export function liveOf(conf: string): Live | undefined {
  const m = /^# live: (\{.*\})$/m.exec(conf)
  if (!m) return undefined
  try {
    const v = JSON.parse(m[1]) as Live
    return typeof v.container === 'string' && typeof v.image === 'string' ? v : undefined
  } catch {
    return undefined
  }
}

/** The route of a service that is not in the catalogue (the catalogue's routes ship in nginx/routes/). */
export function routeLocations(service: string, route: string): string {
  return [
    `# ops-action: route ${route} -> ${service}`,
    `location ${route} {`,
    '    include snippets/proxy.conf;',
    `    proxy_pass http://app_${service};`,
    '}',
    ''
  ].join('\n')
}

export const upstreamPath = (service: string): string => `upstreams/app_${service}.conf`
export const locationsPath = (service: string): string => `upstreams/app_${service}.locations`
