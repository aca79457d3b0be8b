// Operator modes on the sandbox host: status (read-only, on a half-deployed host) and backup (pg_dump, keep N,
// restore round trip, automatic backup before an infra change).
import { readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs'
import { beforeAll, describe, expect, it } from 'vitest'
import {
  backend,
  connection,
  DB,
  expectOk,
  frontend,
  hashOpsDir,
  http,
  loadDuring,
  INFRA_ENV,
  infraInputs,
  OPS_DIR,
  psql,
  resetHost,
  runAction,
  serviceContainers,
  sh,
  stackContainers,
  startedAt,
  story,
  tryRun,
  visibleLog
} from './sandbox'

interface StatusJson {
  stack: Array<{ service: string; container: string; state: string; health: string; image: string }>
  services: Array<{
    service: string
    deployed: boolean
    container: string
    image: string
    state: string
    direct: string
    nginx: string
    lastDeploy?: { result: string; image: string }
  }>
}

const dumps = (): string[] =>
  readdirSync(`${OPS_DIR}/backups`)
    .filter(f => f.endsWith('.dump'))
    .sort()
const appContainers = (): string =>
  sh('docker', ['ps', '-a', '--filter', 'label=ops-action.service', '--format', '{{.Names}} {{.Status}}'])
    .split('\n')
    .map(l => l.replace(/Up .*/, 'Up'))
    .sort()
    .join('\n')

describe('mode status and mode backup', () => {
  beforeAll(async () => {
    resetHost()
    expectOk(await runAction(infraInputs()))
    expectOk(await runAction(backend('v1')))
  })

  it('status on a half-deployed host: one table, the JSON output, and nothing changed', async () => {
    const before = { ops: hashOpsDir(), stack: stackContainers(), apps: appContainers() }
    const r = await runAction(infraInputs({ 'infra-env': '', mode: 'status' }))
    expectOk(r)
    console.log(`[operator] status run: ${(r.ms / 1000).toFixed(2)} s`)
    const st = JSON.parse(r.outputs.status) as StatusJson
    expect(st.stack.map(s => [s.service, s.state, s.health])).toEqual([
      ['db', 'running', 'healthy'],
      ['redis', 'running', 'healthy'],
      ['nginx', 'running', 'healthy'],
      ['front', 'running', 'healthy']
    ])
    const byName = Object.fromEntries(st.services.map(s => [s.service, s]))
    expect(byName.backend).toMatchObject({
      deployed: true,
      state: 'running',
      direct: '200',
      nginx: '200',
      image: '127.0.0.1:5000/behindy/sample-backend:v1'
    })
    expect(byName.backend.lastDeploy).toMatchObject({ result: 'success', image: '127.0.0.1:5000/behindy/sample-backend:v1' })
    expect(byName.frontend).toMatchObject({ deployed: false, state: 'not deployed' })
    expect(byName.story).toMatchObject({ deployed: false })
    expect(r.summary).toMatch(
      /\| backend \| backend-[0-9a-f]{8} \| 127\.0\.0\.1:5000\/behindy\/sample-backend:v1 \| sha256:[0-9a-f]{64} \| running \|/
    )
    expect(r.summary).toContain('| frontend | — | — | — | not deployed |')
    expect(r.output).not.toMatch(/Take deploy lock/)
    expect({ ops: hashOpsDir(), stack: stackContainers(), apps: appContainers() }).toEqual(before)
  })

  it('backup of a 100k-row database, keep-backups honoured, and a restore brings dropped rows back', async () => {
    expect(
      psql('CREATE TABLE big (id int primary key, v text); INSERT INTO big SELECT g, md5(g::text) FROM generate_series(1, 100000) g;').code
    ).toBe(0)
    const sum = psql("SELECT count(*), md5(string_agg(v, ',' ORDER BY id)) FROM big").out.trim()
    const r = await runAction(infraInputs({ 'infra-env': '', mode: 'backup', 'keep-backups': '2' }))
    expectOk(r)
    const path = r.outputs.backup
    expect(path).toMatch(new RegExp(`^${OPS_DIR}/backups/${DB.name}-\\d{8}T\\d{6}Z\\.dump$`))
    const size = statSync(path).size
    console.log(`[operator] backup of 100000 rows: ${(size / 1024 / 1024).toFixed(2)} MiB in ${(r.ms / 1000).toFixed(2)} s (whole run)`)
    expect((statSync(path).mode & 0o777).toString(8)).toBe('600')
    expect(sh('head', ['-c', '5', path])).toBe('PGDMP')

    // keep-backups 2: a third backup removes the oldest.
    await new Promise(res => setTimeout(res, 1100))
    expectOk(await runAction(infraInputs({ 'infra-env': '', mode: 'backup', 'keep-backups': '2' })))
    await new Promise(res => setTimeout(res, 1100))
    expectOk(await runAction(infraInputs({ 'infra-env': '', mode: 'backup', 'keep-backups': '2' })))
    expect(dumps()).toHaveLength(2)
    expect(dumps()).not.toContain(path.split('/').at(-1))

    // Restore as the README says: drop the table, pg_restore the newest dump into the running db.
    const newest = `${OPS_DIR}/backups/${dumps().at(-1)}`
    expect(psql('DROP TABLE big').code).toBe(0)
    const db = stackContainers().db
    sh('sh', ['-c', `docker exec -i ${db} sh -c 'pg_restore -U "$POSTGRES_USER" -d "$POSTGRES_DB" --clean --if-exists' < ${newest}`])
    expect(psql("SELECT count(*), md5(string_agg(v, ',' ORDER BY id)) FROM big").out.trim()).toBe(sum)
  })

  it('restart-services: re-swaps story → backend → frontend under load, 0 failed requests, same images and env, order in the history', async () => {
    expectOk(await runAction(story('v1')))
    expectOk(await runAction(frontend('v2')))
    const before = { story: serviceContainers('story'), backend: serviceContainers('backend'), frontend: serviceContainers('frontend') }
    const versions = await Promise.all(['/', '/api/x', '/llm/health'].map(async p => JSON.parse((await http(p)).body).version as string))
    const { result: r, loads } = await loadDuring(['/', '/api/x', '/llm/health'], () =>
      runAction(infraInputs({ 'infra-env': '', 'restart-services': 'true' }))
    )
    expectOk(r)
    const failed = Object.values(loads).reduce((n, l) => n + l.failed, 0)
    const total = Object.values(loads).reduce((n, l) => n + l.total, 0)
    console.log(`[operator] ordered re-swap of 3 services under load: ${failed} failed / ${total} requests, ${(r.ms / 1000).toFixed(1)} s`)
    for (const [path, l] of Object.entries(loads)) expect(l.failed, `${path}: ${l.errors.join('\n')}`).toBe(0)
    expect(r.output).toMatch(/Re-swapping story → backend → frontend with their current images/)
    expect(r.output).toMatch(/Re-swapped story → backend → frontend\./)
    const history = readFileSync(`${OPS_DIR}/history.jsonl`, 'utf8')
      .trim()
      .split('\n')
      .slice(-3)
      .map(l => JSON.parse(l) as { mode: string; service: string; result: string; image: string })
    expect(history.map(h => [h.mode, h.service, h.result])).toEqual([
      ['restart', 'story', 'success'],
      ['restart', 'backend', 'success'],
      ['restart', 'frontend', 'success']
    ])
    for (const svc of ['story', 'backend', 'frontend'] as const) {
      expect(serviceContainers(svc)).toHaveLength(1)
      expect(serviceContainers(svc)).not.toEqual(before[svc])
    }
    // Same images and env: every route answers the same version as before (after /api/'s rate limit refills).
    await new Promise(res => setTimeout(res, 2500))
    expect(await Promise.all(['/', '/api/x', '/llm/health'].map(async p => JSON.parse((await http(p)).body).version as string))).toEqual(
      versions
    )
    expect(history[2].image).toBe('127.0.0.1:5000/behindy/sample-frontend:v2')
  })

  it('an infra run that changes .env backs the database up first', async () => {
    const before = dumps()
    await new Promise(res => setTimeout(res, 1100))
    const r = await runAction(infraInputs({ 'infra-env': `${INFRA_ENV}\nREDIS_MAXMEMORY=128mb`, 'keep-backups': '5' }))
    expectOk(r)
    expect(r.output).toMatch(/::group::Back up the database/)
    expect(r.output).toMatch(/backed up the database to \/opt\/behindy-ops\/backups\//)
    expect(dumps().length).toBe(before.length + 1)
    // Nothing to change: no backup.
    const again = await runAction(infraInputs({ 'infra-env': `${INFRA_ENV}\nREDIS_MAXMEMORY=128mb` }))
    expectOk(again)
    expect(again.output).not.toMatch(/Back up the database/)
    expect(connection().host).toBe('127.0.0.1')
    expect(tryRun('test', ['-e', `${OPS_DIR}/backups`]).code).toBe(0)
  })

  it('plan / dry-run change nothing (ops-dir, containers, nginx config) yet name every difference after a hand edit', async () => {
    const zones = `${OPS_DIR}/nginx/conf.d/00-zones.conf`
    writeFileSync(zones, `${readFileSync(zones, 'utf8')}# hand edit on the host\n`)
    const nginxConfig = () => sh('docker', ['exec', stackContainers().nginx, 'nginx', '-T', '-c', '/etc/nginx/ops/nginx.conf'])
    const snapshot = () => ({
      ops: hashOpsDir(),
      stack: stackContainers(),
      started: startedAt(Object.values(stackContainers())),
      apps: appContainers(),
      nginx: nginxConfig()
    })
    const before = snapshot()
    const r = await runAction(infraInputs({ 'infra-env': `${INFRA_ENV}\nREDIS_MAXMEMORY=64mb`, mode: 'plan' }))
    expectOk(r)
    console.log(`[operator] plan run: ${(r.ms / 1000).toFixed(2)} s, ${r.outputs.changes} changes`)
    expect(r.output).toMatch(/- update nginx\/conf\.d\/00-zones\.conf/)
    expect(r.output).toMatch(/^-# hand edit on the host$/m)
    expect(r.output).toMatch(/- \.env: set REDIS_MAXMEMORY \(values not shown\)/)
    expect(r.output).toMatch(/- compose would recreate \(\.env REDIS_MAXMEMORY changed\) redis/)
    expect(r.output).not.toMatch(/compose would .* (db|nginx)$/m)
    expect(r.output).toMatch(/- reload nginx/)
    expect(visibleLog(r.output)).not.toContain('64mb')
    expect(Number(r.outputs.changes)).toBe(4)
    expect(r.summary).toContain('```diff')
    expect(r.output).not.toMatch(/Take deploy lock/)

    const dry = await runAction(frontend('v1', { 'dry-run': 'true' }))
    expectOk(dry)
    expect(dry.output).toMatch(
      /- pull 127\.0\.0\.1:5000\/behindy\/sample-frontend:v1 \(ask the registry what it names now; a copy is on the host\)/
    )
    // (After the re-swap test frontend serves v2; run alone, it was never deployed.)
    expect(dry.output).toMatch(
      /- switch \/ from (frontend-[0-9a-f]{8} \(127\.0\.0\.1:5000\/behindy\/sample-frontend:v2\)|the 503 placeholder) to the new container/
    )
    expect(snapshot()).toEqual(before)

    // The real infra run then does what the plan said, and a plan after it has nothing to do.
    expectOk(await runAction(infraInputs({ 'infra-env': `${INFRA_ENV}\nREDIS_MAXMEMORY=64mb` })))
    const after = await runAction(infraInputs({ 'infra-env': `${INFRA_ENV}\nREDIS_MAXMEMORY=64mb`, mode: 'plan' }))
    expectOk(after)
    expect(after.outputs.changes).toBe('0')
    expect(after.output).toMatch(/The run would change nothing\./)
  })
})
