import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { beforeAll, describe, expect, it } from 'vitest'
import {
  backend,
  DB,
  deployInputs,
  expectOk,
  frontend,
  http,
  HTTP_PORT,
  infraInputs,
  loadDuring,
  OPS_DIR,
  psql,
  resetHost,
  runAction,
  sandboxScript,
  SECRET,
  serviceContainers,
  sh,
  tryRun,
  underLoad,
  watchArgv
} from './sandbox'

// Issue 14: the release phase (release-command), mode maintenance / live, and the automatic canary.

const deps = `PGHOST=db\nPGUSER=${DB.user}\nPGPASSWORD=${DB.pass}\nPGDATABASE=${DB.name}\nSECRET_TOKEN=${SECRET}`
const storyWith = (tag: string, extra: Record<string, string>) => deployInputs('story', tag, `VERSION=s-${tag}\n${deps}`, extra)
/** The one-off containers of release commands still on the host. */
const releaseContainers = () =>
  sh('docker', ['ps', '-a', '--filter', 'label=ops-action.release', '--format', '{{.Names}}']).trim().split('\n').filter(Boolean)
const lastHistory = (): Record<string, unknown> =>
  JSON.parse(sh('sh', ['-c', `tail -n 1 ${OPS_DIR}/history.jsonl`])) as Record<string, unknown>
const version = async (path: string): Promise<string> => (JSON.parse((await http(path)).body) as { version: string }).version

describe('release command on the sandbox host', () => {
  beforeAll(async () => {
    resetHost()
    expectOk(await runAction(infraInputs()))
    expectOk(await runAction(storyWith('v1', {})))
  })

  it('runs once before the new container starts, reaches db with the app env (never on a command line); the deploy succeeds', async () => {
    psql('DROP TABLE IF EXISTS ops_release_check')
    // The migration: a table and a row written with the new release's env (VERSION) through postgres.
    const command =
      "python3 -c \"import os, psycopg2; c = psycopg2.connect(''); k = c.cursor(); " +
      "k.execute('CREATE TABLE IF NOT EXISTS ops_release_check (version text, at timestamptz DEFAULT now())'); " +
      "k.execute('INSERT INTO ops_release_check (version) VALUES (%s)', (os.environ['VERSION'],)); c.commit(); print('migrated to', os.environ['VERSION'])\""
    const { result, leaks } = await watchArgv([SECRET, DB.pass], () =>
      loadDuring(['/llm/health'], () => runAction(storyWith('v2', { 'release-command': command })))
    )
    const { result: r, loads } = result
    expectOk(r)
    expect(leaks).toEqual([])
    expect(r.output).toMatch(
      /Running the release command in story-release-[0-9a-f]{8} \(.*network internal, story's env; release-timeout 300 s\)/
    )
    expect(r.output).toContain('migrated to s-v2')
    expect(r.output).toMatch(/The release command exited 0 after [0-9.]+ s\./)
    // Before the new container: the release phase ends before Start container begins.
    expect(r.output.indexOf('✓ Release command')).toBeLessThan(r.output.indexOf('::group::Start container'))
    expect(psql('SELECT version FROM ops_release_check').out.trim()).toBe('s-v2')
    expect(releaseContainers()).toEqual([])
    expect(await version('/llm/health')).toBe('s-v2')
    expect(lastHistory()).toMatchObject({ result: 'success', release: { exit: 0, command } })
    expect(loads['/llm/health'].failed).toBe(0)
    console.log(
      `[release] ${/✓ Release command \([0-9.]+ s\)/.exec(r.output)?.[0]}; load ${loads['/llm/health'].failed} failed of ${loads['/llm/health'].total}`
    )
  })

  it('a failing release command (stderr boom, exit 3) fails the deploy with boom shown; the old release serves and no container of it is left', async () => {
    const before = serviceContainers('story')
    const { result: r, loads } = await loadDuring(['/llm/health'], () =>
      runAction(storyWith('v1', { 'release-command': 'echo starting; echo boom >&2; exit 3' }))
    )
    expect(r.code).not.toBe(0)
    expect(r.output).toMatch(/the release command exited 3 after [0-9.]+ s; its last lines:[\s\S]*boom/)
    expect(r.output).not.toContain('::group::Start container')
    expect(await version('/llm/health')).toBe('s-v2')
    expect(serviceContainers('story')).toEqual(before)
    expect(releaseContainers()).toEqual([])
    expect(lastHistory()).toMatchObject({ result: 'failed', image: expect.stringContaining(':v1') })
    expect(loads['/llm/health'].failed).toBe(0)
    console.log(
      `[release] failing: ${/✗ Release command \([0-9.]+ s\)/.exec(r.output)?.[0]}; load ${loads['/llm/health'].failed} failed of ${loads['/llm/health'].total}`
    )
  })

  it('a release command past release-timeout is killed and fails the deploy', async () => {
    const r = await runAction(storyWith('v1', { 'release-command': 'echo waiting; sleep 60', 'release-timeout': '2' }))
    expect(r.code).not.toBe(0)
    expect(r.output).toMatch(/the release command did not finish within 2 s \(release-timeout\) and was killed; its last lines:%0Awaiting/)
    expect(releaseContainers()).toEqual([])
    expect(await version('/llm/health')).toBe('s-v2')
  })
})

describe('mode maintenance / live on the sandbox host', () => {
  const workspace = mkdtempSync(join(tmpdir(), 'ops-maint-'))
  writeFileSync(join(workspace, 'maintenance.html'), '<h1>Behindy is being upgraded</h1>\n')
  const maintenance = (extra: Record<string, string> = {}) =>
    runAction(infraInputs({ 'infra-env': '', mode: 'maintenance', ...extra }), { GITHUB_WORKSPACE: workspace })
  const live = (extra: Record<string, string> = {}) => runAction(infraInputs({ 'infra-env': '', mode: 'live', ...extra }))

  beforeAll(async () => {
    resetHost()
    expectOk(await runAction(infraInputs()))
    for (const inputs of [backend('v1'), frontend('v1')]) expectOk(await runAction(inputs))
  })

  it('maintenance of the frontend: / answers 503 with Retry-After and the page, /api/ and /healthz still served; a deploy meanwhile keeps it on', async () => {
    const r = await maintenance({ service: 'frontend', 'maintenance-page': 'maintenance.html' })
    expectOk(r)
    expect(r.output).toMatch(/in maintenance: frontend \(GET \/ -> 503, GET \/healthz -> 200\)/)
    const page = await http('/')
    expect(page.status).toBe(503)
    expect(page.headers.get('retry-after')).toBe('120')
    expect(page.body).toContain('Behindy is being upgraded')
    expect((await http('/some/page')).status).toBe(503)
    expect((await http('/api/posts/1')).status).toBe(200)
    expect((await http('/healthz')).status).toBe(200)

    // dry-run of a deploy meanwhile says maintenance stays on.
    const plan = await runAction({ ...frontend('v2'), 'dry-run': 'true' })
    expectOk(plan)
    expect(plan.output).toContain(
      "keep frontend in maintenance (clients keep the maintenance page; the new release is verified on nginx's preview port)"
    )
    // A deploy of the frontend meanwhile: verified on nginx's preview port, clients keep the maintenance page.
    const d = await runAction(frontend('v2'))
    expectOk(d)
    expect(d.output).toContain('frontend is in maintenance: clients keep the maintenance page')
    expect((await http('/')).status).toBe(503)
    // mode status says so, and reads the frontend's health through its upstream.
    const st = await runAction(infraInputs({ 'infra-env': '', mode: 'status' }))
    expectOk(st)
    const status = JSON.parse(st.outputs.status) as {
      maintenance: string[]
      services: Array<{ service: string; maintenance: boolean; nginx: string }>
    }
    expect(status.maintenance).toEqual(['frontend'])
    expect(status.services.find(s => s.service === 'frontend')).toMatchObject({ maintenance: true, nginx: '200' })
    expect(st.output).toMatch(/\| frontend \| frontend-[0-9a-f]{8} \| .* \| running, in maintenance \|/)
  })

  it('site-wide maintenance turns /api/ 503 too and survives an infra run and a dockerd restart; live restores every route, served by the release deployed meanwhile', async () => {
    expectOk(await maintenance())
    expect((await http('/api/posts/1')).status).toBe(503)
    expect((await http('/llm/health')).status).toBe(503)
    expect((await http('/healthz')).status).toBe(200)
    expectOk(await runAction(infraInputs({ 'infra-env': '' })))
    // dockerd restarted: the stack and nginx come back with the maintenance files in place.
    sh('bash', [sandboxScript(), 'stop', 'dockerd'])
    sh('bash', [sandboxScript(), 'start', 'dockerd'])
    const up = async () => (await http('/healthz').catch(() => ({ status: 0 }))).status === 200
    for (let i = 0; i < 300 && !(await up()); i++) await new Promise(r => setTimeout(r, 200))
    // …and the apps too (restarted by dockerd; asked from nginx's container, since clients get the page).
    const nginx = () => sh('docker', ['ps', '-q', '--filter', 'label=com.docker.compose.service=nginx']).trim()
    const appsUp = () =>
      ['http://frontend:3000/', 'http://backend:8080/api/ai-stories/health'].every(
        u => tryRun('docker', ['exec', nginx(), 'wget', '-q', '-O', '/dev/null', '-T', '2', u]).code === 0
      )
    for (let i = 0; i < 150 && !appsUp(); i++) await new Promise(r => setTimeout(r, 200))
    expect((await http('/api/posts/1')).status).toBe(503)
    expect((await http('/')).status).toBe(503)

    // A service's live leaves site-wide maintenance on (and says so); live without a service ends all of it.
    const one = await live({ service: 'backend' })
    expectOk(one)
    expect(one.output).toContain('Every route is in maintenance (site-wide)')
    expect((await http('/api/posts/1')).status).toBe(503)
    const all = await live()
    expectOk(all)
    expect(all.output).toMatch(/no route in maintenance \(GET \/ -> 200, GET \/healthz -> 200\)/)
    expect(await version('/')).toBe('f-v2')
    expect((await http('/api/posts/1')).status).toBe(200)
    expect(tryRun('sh', ['-c', `ls ${OPS_DIR}/upstreams/*.maintenance.map`]).code).not.toBe(0)
  })

  it('bad input fails before the host changes: maintenance-page missing, an unknown service', async () => {
    const r = await maintenance({ 'maintenance-page': 'nope.html' })
    expect(r.code).not.toBe(0)
    expect(r.output).toMatch(/Input 'maintenance-page': 'nope\.html' is not a file of the repository/)
    const u = await maintenance({ service: 'nosuch' })
    expect(u.code).not.toBe(0)
    expect(u.output).toContain('nosuch has no route on this host')
    expect((await http('/')).status).toBe(200)
  })
})

describe('automatic canary on the sandbox host', () => {
  const canary = { 'canary-percent': '20', 'canary-seconds': '20', 'canary-min-requests': '20' }
  /** The frontend's health path is / (FAIL_MODE route-5xx answers 500 on every other path). */
  const front = (tag: string, env = '', extra: Record<string, string> = {}) => frontend(tag, extra, `HEALTH_PATH=/\n${env}`.trim())

  beforeAll(async () => {
    resetHost()
    expectOk(await runAction(infraInputs()))
    expectOk(await runAction(front('v1')))
  })

  it('dry-run says the release command and the canary would run, and changes nothing', async () => {
    const before = sh('sh', ['-c', `cat ${OPS_DIR}/upstreams/app_frontend.conf; ls ${OPS_DIR}/upstreams`])
    const r = await runAction({ ...front('v2', '', canary), 'dry-run': 'true', 'release-command': 'echo migrate' })
    expectOk(r)
    expect(r.output).toContain('run the release command once in a one-off container of 127.0.0.1:5000/behindy/sample-frontend:v2')
    expect(r.output).toMatch(/send 20 (?:%25|%) of \/'s clients \(sticky by the ops_client cookie\) to the new container for 20 s/)
    expect(sh('sh', ['-c', `cat ${OPS_DIR}/upstreams/app_frontend.conf; ls ${OPS_DIR}/upstreams`])).toBe(before)
    expect(releaseContainers()).toEqual([])
  })

  it('a release whose health path answers but other paths answer 500 is caught by a 20 % canary; errors stay near its share, the old release serves after', async () => {
    const { run, load } = await underLoad(front('v2', 'FAIL_MODE=route-5xx', canary), { path: '/page' })
    expect(run.code).not.toBe(0)
    expect(run.output).toMatch(/The canary failed: the canary answered 100\.0 %(25)? 5xx \(\d+ of \d+\), the old release 0\.0 %/)
    expect(run.outputs['rolled-back']).toBe('true')
    expect(run.output).toMatch(/canary \(20 %\): \d+ requests, \d+ 5xx/)
    // Only the canary's share failed (5xx from f-v2), and only while it ran.
    expect(load.failed).toBeGreaterThan(0)
    expect(load.failed / load.total).toBeLessThan(0.2)
    console.log(
      `[canary] caught: ${load.failed} of ${load.total} requests failed (${((100 * load.failed) / load.total).toFixed(1)} %); ${/canary \(20 %\): [^\n]*/.exec(run.output)?.[0]}; ${/old release: [^\n]*/.exec(run.output)?.[0]}; ${/✓ Canary \([^\n]*|✗ Canary \([^\n]*/.exec(run.output)?.[0]}`
    )
    expect(await version('/page')).toBe('f-v1')
    for (let i = 0; i < 20; i++) expect((await http('/page')).status).toBe(200)
    expect(serviceContainers('frontend')).toHaveLength(1)
  })

  it('a good release is promoted with 0 failed requests after a share of traffic reached it; a client with the cookie stays on one side', async () => {
    let sticky: string[] = []
    const watch = (async () => {
      // Once nginx sets the cookie, the canary runs: one client (its cookie) sees one version throughout.
      for (let i = 0; i < 300; i++) {
        const r = await http('/page')
        const cookie = r.headers.get('set-cookie')?.split(';')[0]
        if (cookie) {
          const seen = new Set<string>()
          for (let j = 0; j < 20; j++) {
            const res = await fetch(`http://127.0.0.1:${HTTP_PORT}/page`, { headers: { cookie } })
            seen.add((JSON.parse(await res.text()) as { version: string }).version)
          }
          sticky = [...seen]
          return
        }
        await new Promise(res => setTimeout(res, 100))
      }
    })()
    // The latency verdict's arithmetic is unit-tested (canary.test.ts); here a cold Next.js on the sandbox's two loaded
    // cores can answer with a p99 over twice the warm old one's in its first seconds (235 vs 106 ms seen in CI), which
    // says nothing about this release: factor 4, so that this test judges promotion, failures and stickiness.
    const { run, load } = await underLoad(front('v2', '', { ...canary, 'canary-seconds': '10', 'canary-latency-factor': '4' }), {
      path: '/page'
    })
    await watch
    expectOk(run)
    expect(run.output).toMatch(/Promoted: nginx routes every client of \/ to frontend-[0-9a-f]{8}\./)
    expect(load.failed).toBe(0)
    expect(load.versions['f-v2']).toBeGreaterThan(0)
    expect(sticky).toHaveLength(1)
    console.log(
      `[canary] promoted: ${load.failed} failed of ${load.total}, ${load.versions['f-v2']} served by the canary or after the promotion`
    )
    expect(await version('/page')).toBe('f-v2')
    expect(lastHistory()).toMatchObject({ result: 'success', canary: { percent: 20, verdict: 'promote' } })
    expect(tryRun('sh', ['-c', `ls ${OPS_DIR}/upstreams/canary* ${OPS_DIR}/upstreams/*.canary.map`]).code).not.toBe(0)
  })
})
