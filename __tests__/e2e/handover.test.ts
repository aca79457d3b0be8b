// nginx replaced under load: the front (the only published container) hands new connections over from the old nginx
// container to a new one, which was verified first; the old one finishes its requests. An nginx image upgrade and a
// change of nginx's definition (a volume) each, with new-connection, retrying and never-retrying clients.
import { execFileSync } from 'node:child_process'
import { mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { beforeAll, describe, expect, it } from 'vitest'
import {
  backend,
  http,
  connection,
  expectOk,
  frontend,
  HTTP_PORT,
  infraInputs,
  INFRA_ENV,
  loadDuring,
  OPS_DIR,
  resetHost,
  runAction,
  sh,
  stackContainers,
  story,
  type ActionRun,
  type LoadStats
} from './sandbox'

const ROUTES = ['/', '/llm/health']
/** The last commit whose stack had no front (nginx published the ports). */
const PREVIOUS_RELEASE = '14631e6'

const inspect = (id: string, format: string): string => sh('docker', ['inspect', '--format', format, id]).trim()
const frontTarget = (): string => /default ([^\s:]+):8080;/.exec(sh('cat', [`${OPS_DIR}/upstreams/nginx.stream`]))?.[1] ?? ''

/** One infra run under load on every route (4 new-connection, 4 retrying, 4 never-retrying clients per route). */
async function infraUnderLoad(env: string, label: string): Promise<{ run: ActionRun; loads: Record<string, LoadStats> }> {
  const started = Date.now()
  const { result, loads } = await loadDuring(ROUTES, () => runAction(infraInputs({ 'infra-env': `${INFRA_ENV}\n${env}` })), {
    naiveClients: 4
  })
  const sum = (kind: string) =>
    Object.values(loads).reduce((n, l) => ({ failed: n.failed + l.byClient[kind].failed, total: n.total + l.byClient[kind].total }), {
      failed: 0,
      total: 0
    })
  const [plain, retrying, naive] = ['new-connection', 'retrying', 'never-retrying'].map(sum)
  console.log(
    `[handover] ${label}: run ${((Date.now() - started) / 1000).toFixed(1)} s; failed new-connection ${plain.failed}/${plain.total}, ` +
      `retrying ${retrying.failed}/${retrying.total}, never-retrying ${naive.failed}/${naive.total} (reported, not a goal); ` +
      `${/finished its requests in ([\d.]+ s)/.exec(result.output)?.[1] ?? '?'} for the old nginx to finish`
  )
  return { run: result, loads }
}

function expectNoFailures(loads: Record<string, LoadStats>): void {
  for (const [path, l] of Object.entries(loads)) {
    expect(l.byClient['new-connection'].failed, `${path} new-connection: ${l.errors.join('\n')}`).toBe(0)
    expect(l.byClient.retrying.failed, `${path} retrying: ${l.errors.join('\n')}`).toBe(0)
    expect(l.byClient['new-connection'].total, path).toBeGreaterThan(50)
  }
}

describe('nginx replaced behind the front under load', () => {
  beforeAll(async () => {
    resetHost()
    expectOk(await runAction(infraInputs()))
    for (const inputs of [story('v1'), backend('v1'), frontend('v1')]) expectOk(await runAction(inputs))
  })

  it('only the front publishes ports, and it relays to the nginx container by name', () => {
    const ids = stackContainers()
    expect(sh('docker', ['port', ids.front])).toMatch(new RegExp(`80/tcp -> 0\\.0\\.0\\.0:${HTTP_PORT}`))
    for (const s of ['nginx', 'db', 'redis']) expect(sh('docker', ['port', ids[s]]).trim(), s).toBe('')
    expect(frontTarget()).toBe(inspect(ids.nginx, '{{.Name}}').replace(/^\//, ''))
  })

  it("nginx sees each client's own address through the front (PROXY protocol), not the front's: logs and rate limits key on it", async () => {
    const ids = stackContainers()
    const frontIp = inspect(ids.front, '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}')
    const marker = `/client-address-${Date.now()}`
    expect((await http(marker)).status).toBe(200)
    await new Promise(r => setTimeout(r, 300))
    const line =
      sh('docker', ['logs', '--since', '30s', ids.nginx])
        .split('\n')
        .find(l => l.includes(marker)) ?? ''
    const client = line.split(' ')[0]
    expect(client, line).toMatch(/^\d+\.\d+\.\d+\.\d+$/)
    expect(client).not.toBe(frontIp)
  })

  it('an nginx image upgrade (NGINX_IMAGE): planned as a handover, then a new nginx verified and handed over with 0 failed requests', async () => {
    const upgrade = connection().images.nginxUpgrade
    const plan = await runAction(infraInputs({ 'infra-env': `${INFRA_ENV}\nNGINX_IMAGE=${upgrade}`, 'dry-run': 'true' }))
    expectOk(plan)
    expect(plan.output).toMatch(/hand nginx over to a new container \(\.env NGINX_IMAGE changed\).*no gap/)

    const before = stackContainers()
    const { run, loads } = await infraUnderLoad(`NGINX_IMAGE=${upgrade}`, `NGINX_IMAGE -> ${upgrade}`)
    expectOk(run)
    expect(run.output).toMatch(/replaced nginx \S+ by \S+ behind the front \(no gap/)
    expect(run.output).toMatch(/\/healthz 200, \/ 200, \/api\/ai-stories\/health 200, \/llm\/health 200/)
    const after = stackContainers()
    expect(after.nginx).not.toBe(before.nginx)
    for (const s of ['front', 'db', 'redis']) expect(after[s], s).toBe(before[s])
    expect(inspect(after.nginx, '{{.Config.Image}}')).toBe(upgrade)
    expect(frontTarget()).toBe(inspect(after.nginx, '{{.Name}}').replace(/^\//, ''))
    // The old nginx is gone, not stopped and left.
    expect(sh('docker', ['ps', '-aq', '--filter', 'label=com.docker.compose.service=nginx']).trim().split('\n')).toHaveLength(1)
    expectNoFailures(loads)
  })

  it("another change that needs a new nginx container (a volume of nginx's: ACME_WEBROOT): handed over with 0 failed requests", async () => {
    const before = stackContainers()
    sh('mkdir', ['-p', '/tmp/ops-acme-webroot'])
    const { run, loads } = await infraUnderLoad(
      `NGINX_IMAGE=${connection().images.nginxUpgrade}\nACME_WEBROOT=/tmp/ops-acme-webroot`,
      'ACME_WEBROOT changed'
    )
    expectOk(run)
    expect(run.output).toMatch(/replaced nginx/)
    const after = stackContainers()
    expect(after.nginx).not.toBe(before.nginx)
    expect(after.front).toBe(before.front)
    expect(inspect(after.nginx, '{{range .Mounts}}{{.Source}} {{end}}')).toContain('/tmp/ops-acme-webroot')
    expectNoFailures(loads)
  })

  it('back to the shipped default: handed over again; a second run changes nothing', async () => {
    const { run, loads } = await infraUnderLoad('NGINX_IMAGE=\nACME_WEBROOT=', 'back to the default image')
    expectOk(run)
    expect(run.output).toMatch(/replaced nginx/)
    expect(inspect(stackContainers().nginx, '{{.Config.Image}}')).toBe(connection().images.nginx)
    expectNoFailures(loads)
    const again = await runAction(infraInputs({ 'infra-env': `${INFRA_ENV}\nNGINX_IMAGE=\nACME_WEBROOT=` }))
    expectOk(again)
    expect(again.output).toMatch(/No changes/)
  })
})

describe('a host from before the front', () => {
  /** The action as released before the front (nginx published the ports itself): its compose/, nginx/ and dist/. */
  function previousLayout(): string {
    const dir = mkdtempSync(join(tmpdir(), 'ops-before-front-'))
    execFileSync('sh', ['-c', 'git archive "$1" compose nginx dist | tar -x -C "$2"', 'sh', PREVIOUS_RELEASE, dir], {
      cwd: join(__dirname, '..', '..')
    })
    return dir
  }

  it('moves nginx behind the front in one infra run (the plan says it is a one-time gap), deployed apps keep their routes', async () => {
    resetHost()
    const old = previousLayout()
    expectOk(await runAction(infraInputs(), { OPS_ACTION_ROOT: old }))
    for (const inputs of [story('v1'), frontend('v1')]) expectOk(await runAction(inputs, { OPS_ACTION_ROOT: old }))
    const before = stackContainers()
    expect(before.front).toBeUndefined()
    expect(sh('docker', ['port', before.nginx])).toMatch(new RegExp(`:${HTTP_PORT}`))

    const plan = await runAction(infraInputs({ 'dry-run': 'true' }))
    expectOk(plan)
    expect(plan.output).toMatch(/nginx without published ports and create the front after it: a one-time gap/)
    const { run, loads } = await infraUnderLoad('', 'moving behind the front (once)')
    expectOk(run)
    const after = stackContainers()
    expect(after.front).toBeDefined()
    expect(sh('docker', ['port', after.nginx]).trim()).toBe('')
    expect(frontTarget()).toBe(inspect(after.nginx, '{{.Name}}').replace(/^\//, ''))
    expect((await http('/')).status).toBe(200)
    // The gap is real but bounded: requests fail only while nginx is recreated without its ports.
    const failed = Object.values(loads).reduce((n, l) => n + l.failed, 0)
    const stackS = /Start stack \(([\d.]+) s\)/.exec(run.output)?.[1]
    console.log(
      `[handover] moving behind the front: ${failed} failed requests (refused at once: the one-time gap the plan announced), within its Start stack phase of ${stackS} s`
    )
    expect(Number(stackS)).toBeLessThan(30)
  })
})
