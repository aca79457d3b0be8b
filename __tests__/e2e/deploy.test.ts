import { readFileSync } from 'node:fs'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import {
  APPS,
  backend,
  connection,
  deployInputs,
  expectOk,
  frontend,
  http,
  HTTP_PORT,
  INFRA_ENV,
  infraInputs,
  OPS_DIR,
  REGISTRY,
  registryPassword,
  resetHost,
  retirementsDone,
  runAction,
  SECRET,
  serviceContainers,
  sh,
  story,
  tryRun,
  underLoad,
  visibleLog,
  watchArgv
} from './sandbox'

describe('mode deploy on the sandbox host', () => {
  beforeAll(async () => {
    resetHost()
    const r = await runAction(infraInputs())
    expectOk(r)
    // Force real pulls through the registry with login: drop the local copies of the registry tags.
    for (const app of Object.values(APPS)) for (const tag of ['v1', 'v2']) tryRun('docker', ['image', 'rm', `${app}:${tag}`])
  })

  afterAll(() => {
    console.log(sh('sh', ['-c', `tail -n 20 ${OPS_DIR}/history.jsonl | cut -c1-220`]))
  })

  /** A mode rollback of frontend, logged in to the registry (a rollback may pull). */
  const rollbackFrontend = () =>
    infraInputs({
      'infra-env': '',
      mode: 'rollback',
      service: 'frontend',
      registry: REGISTRY,
      'registry-username': 'ci',
      'registry-password': registryPassword()
    })

  /** Deploys each release in order (what a test starts from, so that `-t` runs it alone). */
  async function given(...releases: Array<Record<string, string>>): Promise<void> {
    for (const inputs of releases) expectOk(await runAction(inputs))
  }

  it('deploys story, backend and frontend for the first time, pulling with registry login; every route answers through nginx', async () => {
    for (const inputs of [story('v1'), backend('v1'), frontend('v1')]) {
      const r = await runAction(inputs)
      expectOk(r)
      // Each service's image (its own framework's sample app) is pulled, with login.
      expect(r.output).toMatch(/Pulling .* \(logged in to 127\.0\.0\.1:5000 for this run only\)/)
      expect(r.outputs['previous-image']).toBe('')
      expect(r.outputs.image).toBe(inputs.image)
      expect(r.outputs.container).toMatch(new RegExp(`^${inputs.service}-[0-9a-f]{8}$`))
      expect(r.outputs['rolled-back']).toBe('false')
    }
    expect(JSON.parse((await http('/')).body).version).toBe('f-v1')
    const api = await http('/api/posts/1')
    expect(JSON.parse(api.body)).toMatchObject({ version: 'b-v1', path: '/api/posts/1' })
    const llm = await http('/llm/health')
    expect(llm.status).toBe(200)
    expect(JSON.parse(llm.body)).toMatchObject({ status: 'ok', version: 's-v1' })
    expect(JSON.parse((await http('/llm/generate-complete-story')).body).path).toBe('/generate-complete-story')
    // No credentials stay on the host: the per-run docker config dir is gone.
    expect(tryRun('sh', ['-c', 'grep -rl --include=config.json "127.0.0.1:5000" /tmp /home/deploy/.docker 2>/dev/null']).out).toBe('')
  })

  it('backend reaches story at llmserver:8000 (alias) and story at story:8000', async () => {
    await given(story('v1'), backend('v1'))
    const [back] = serviceContainers('backend')
    expect(sh('docker', ['exec', back, 'wget', '-q', '-O', '-', 'http://llmserver:8000/health'])).toContain('s-v1')
    expect(sh('docker', ['exec', back, 'wget', '-q', '-O', '-', 'http://story:8000/health'])).toContain('s-v1')
  })

  it('v1 -> v2 under constant load: 0 failed requests, secrets in no argv and no output', async () => {
    await given(frontend('v1'))
    const { result, leaks, samples } = await watchArgv([SECRET, registryPassword()], () => underLoad(frontend('v2')))
    expectOk(result.run)
    expect(result.load.failed, result.load.errors.join('\n')).toBe(0)
    // Not even a reset that the keep-alive clients retried: a client that never retries (curl, requests, HttpClient)
    // would have seen none either (nginx's keepalive_min_timeout keeps reused connections open across the reload).
    expect(result.load.rawResets).toBe(0)
    expect(result.load.total).toBeGreaterThan(100)
    expect(result.load.versions['f-v1']).toBeGreaterThan(0)
    expect(result.load.versions['f-v2']).toBeGreaterThan(0)
    expect(result.run.outputs['previous-image']).toBe(`${APPS.frontend}:v1`)
    expect(serviceContainers('frontend')).toHaveLength(1)
    expect(samples).toBeGreaterThan(20)
    expect(leaks).toEqual([])
    const log = visibleLog(result.run.output)
    expect(log).not.toContain(SECRET)
    expect(log).not.toContain(registryPassword())
    console.log(
      `[phases] ${result.run.output
        .split('\n')
        .filter(l => /^✓ /.test(l))
        .join(' | ')}`
    )
  })

  it('the new container starts beside the stack check; when that infra run recreates redis, it goes and a new one starts after it: 0 failed under load', async () => {
    await given(frontend('v1'))
    const beside = await runAction(frontend('v2'))
    expectOk(beside)
    // Started while infra checked the stack; its log group is shown after infra's, never inside one.
    expect(beside.output).toMatch(/✓ Preflight and start container \([0-9.]+ s\)/)
    expect(beside.output).not.toMatch(/::group::Start container/)
    expect(beside.output.indexOf('::group::Preflight and start container')).toBeGreaterThan(beside.output.indexOf('✓ Infra: Reload nginx'))
    for (const [tag, maxmemory] of [
      ['v1', '96mb'],
      ['v2', '128mb']
    ]) {
      const { run, load } = await underLoad(frontend(tag, { 'infra-env': `${INFRA_ENV}\nREDIS_MAXMEMORY=${maxmemory}` }))
      expectOk(run)
      expect(run.output).toMatch(/frontend-[0-9a-f]{8} started before infra recreated redis[^\n]*: it goes, and a new container starts\./)
      expect(run.output).toMatch(/::group::Start container/)
      expect(load.failed, load.errors.join('\n')).toBe(0)
      expect(JSON.parse((await http('/')).body).version).toBe(`f-${tag}`)
      expect(serviceContainers('frontend')).toHaveLength(1)
    }
    expectOk(await runAction(infraInputs()))
  })

  describe.each([
    // health-path /health: the sample app's own health route, which its FAIL_MODEs break.
    ['never healthy', { 'health-path': '/health', 'health-timeout': '6' }, 'FAIL_MODE=never-healthy', /did not become healthy within 6 s/],
    ['exits at start', { 'health-path': '/health' }, 'FAIL_MODE=exit', /before becoming healthy/],
    ['listens on the wrong port', { 'health-path': '/health', 'health-timeout': '6' }, 'FAIL_MODE=wrong-port', /did not become healthy/],
    [
      'healthy directly, 5xx through its route',
      { 'health-path': '/health' },
      'FAIL_MODE=route-5xx',
      /preview port \(before any client was switched\).*GET \/ -> 500/
    ]
  ])('a broken release (%s)', (_name, extra, env, message) => {
    it('fails with the container logs, the previous version keeps serving with 0 failed requests, nothing left over', async () => {
      await given(frontend('v2'))
      const { run, load } = await underLoad(frontend('v1', extra, env))
      expect(run.code).toBe(1)
      expect(run.output).toMatch(message)
      expect(run.output).toMatch(/::group::frontend-[0-9a-f]{8}: last 100 log lines/)
      expect(run.outputs['rolled-back']).toBe('true')
      expect(run.summary).toMatch(/Rolled back/)
      expect(load.failed, load.errors.join('\n')).toBe(0)
      expect(Object.keys(load.versions)).toEqual(['f-v2'])
      expect(serviceContainers('frontend')).toHaveLength(1)
      expect(JSON.parse((await http('/')).body).version).toBe('f-v2')
    })
  })

  it('three deploys started at the same moment all succeed, one at a time', async () => {
    const runs = await Promise.all([runAction(frontend('v1', { memory: '300m' })), runAction(backend('v2')), runAction(story('v2'))])
    for (const r of runs) expectOk(r)
    expect(runs.filter(r => /The host is busy: (deploy|rollback) of/.test(r.output)).length).toBeGreaterThanOrEqual(2)
    const history = readFileSync(`${OPS_DIR}/history.jsonl`, 'utf8')
      .trim()
      .split('\n')
      .slice(-3)
      .map(l => JSON.parse(l) as { service: string; result: string })
    expect(history.map(h => h.service).sort()).toEqual(['backend', 'frontend', 'story'])
    expect(history.every(h => h.result === 'success')).toBe(true)
    expect(JSON.parse((await http('/')).body).version).toBe('f-v1')
    expect(JSON.parse((await http('/api/x')).body).version).toBe('b-v2')
    expect(JSON.parse((await http('/llm/health')).body).version).toBe('s-v2')
  })

  it('a wrong registry password fails clearly and changes nothing', async () => {
    tryRun('docker', ['image', 'rm', '-f', `${APPS.frontend}:v2`])
    const before = serviceContainers('frontend')
    const r = await runAction(frontend('v2', { 'registry-password': 'wrong-password' }))
    expect(r.code).toBe(1)
    expect(r.output).toMatch(/Login to 127\.0\.0\.1:5000 as ci failed/)
    expect(r.output).toMatch(/check registry-username and registry-password/)
    // The pull runs beside the lock and the stack's read-only checks: the host changes only once it is pulled.
    expect(r.output).not.toMatch(/::group::Infra: Upload files/)
    expect(serviceContainers('frontend')).toEqual(before)
  })

  it('mode rollback returns to the previous image under load with 0 failed requests', async () => {
    // The history: v2, then v1 with a memory limit, which serves.
    await given(frontend('v2'), frontend('v1', { memory: '300m' }))
    const c = connection()
    expect(c.host).toBe('127.0.0.1')
    const { run, load } = await underLoad(rollbackFrontend())
    expectOk(run)
    expect(run.outputs.image).toBe(`${APPS.frontend}:v2`)
    expect(run.outputs['previous-image']).toBe(`${APPS.frontend}:v1`)
    expect(load.failed, load.errors.join('\n')).toBe(0)
    expect(load.rawResets).toBe(0)
    // Without an env input, the rollback keeps the env the serving container was started with.
    expect(run.output).toMatch(/with the env of frontend-[0-9a-f]{8}/)
    expect(JSON.parse((await http('/')).body).version).toBe('f-v1')
    // Without a memory input, it keeps the limit too (the release it replaced ran with memory: 300m).
    const [serving] = serviceContainers('frontend')
    expect(sh('docker', ['inspect', '--format', '{{.HostConfig.Memory}}', serving]).trim()).toBe(String(300 * 1024 * 1024))
  })

  it('a tag is a name: a moved tag deploys its new content and the run names the digest; rollback returns to the digest that served before the tag moved', async () => {
    // `stable` names v1's content, then v2's (as CI re-pushes a branch tag).
    const stable = `${APPS.frontend}:stable`
    const push = (from: string) => {
      const cfg = sh('mktemp', ['-d']).trim()
      try {
        sh('docker', ['--config', cfg, 'login', '--username', 'ci', '--password-stdin', REGISTRY], registryPassword())
        sh('docker', ['--config', cfg, 'pull', '-q', from])
        sh('docker', ['tag', from, stable])
        sh('docker', ['--config', cfg, 'push', '-q', stable])
      } finally {
        sh('rm', ['-rf', cfg])
      }
    }
    const digestRe = new RegExp(`^${APPS.frontend.replace(/[.]/g, '\\.')}@sha256:[a-f0-9]{64}$`)
    const deployStable = () => runAction(deployInputs('frontend', 'stable', `SECRET_TOKEN=${SECRET}`))
    const servedVersion = async () => (JSON.parse((await http('/')).body) as { version: string }).version
    const runsDigest = () => sh('docker', ['inspect', '--format', '{{.Config.Image}}', serviceContainers('frontend')[0]]).trim()

    push(`${APPS.frontend}:v1`)
    const first = await deployStable()
    expectOk(first)
    expect(first.outputs.image).toBe(stable)
    expect(first.outputs.digest).toMatch(digestRe)
    expect(await servedVersion()).toBe('v1')
    expect(runsDigest()).toBe(first.outputs.digest)

    // The tag moves while its old content is still on the host (and in use): the deploy asks the registry anyway.
    push(`${APPS.frontend}:v2`)
    const second = await deployStable()
    expectOk(second)
    expect(second.outputs.digest).toMatch(digestRe)
    expect(second.outputs.digest).not.toBe(first.outputs.digest)
    expect(second.output).toContain(`${stable} → ${second.outputs.digest}`)
    expect(await servedVersion()).toBe('v2')
    expect(runsDigest()).toBe(second.outputs.digest)
    const history = readFileSync(`${OPS_DIR}/history.jsonl`, 'utf8')
      .trim()
      .split('\n')
      .map(l => JSON.parse(l) as Record<string, string>)
    expect(history.at(-1)).toMatchObject({ image: stable, digest: second.outputs.digest, previousDigest: first.outputs.digest })

    // Rollback: the digest that served before, from the host (the tag names other content now).
    const back = await runAction(rollbackFrontend())
    expectOk(back)
    expect(back.outputs.digest).toBe(first.outputs.digest)
    expect(back.output).toContain(`${first.outputs.digest} is pinned by digest and on the host: no pull.`)
    expect(await servedVersion()).toBe('v1')
    expect(runsDigest()).toBe(first.outputs.digest)
    const pulls = [first, second].map(r => /✓ Pull image \((\d+\.\d+) s\)/.exec(r.output)?.[1])
    console.log(`[deploy] moved tag: pull phases ${pulls.join(' s, ')} s; served v1 -> v2 -> v1 (rollback by digest)`)
  })

  it('the old container is retired in the background once nginx is done with it: a request in flight to it is answered, a long request to story does not hold it up', async () => {
    // An old release that does not drain on SIGTERM (it exits at once): only waiting for its requests saves them.
    await given(story('v1'), frontend('v1', {}, 'VERSION=f-nodrain\nDRAIN_SECONDS=0'))
    const [old] = serviceContainers('frontend')
    const get = async (path: string) => {
      const r = await fetch(`http://127.0.0.1:${HTTP_PORT}${path}`, { signal: AbortSignal.timeout(40_000) })
      return { status: r.status, body: await r.text(), at: Date.now() }
    }
    const other = get('/llm/slow?s=20') // through an old nginx worker to story, for longer than the retirement may wait
    const mine = get('/slow?s=5') // to the old frontend, in flight at the switch and after the run ends
    const started = Date.now()
    const r = await runAction(frontend('v2'))
    expectOk(r)
    const ended = started + r.ms
    expect(r.output).toMatch(
      new RegExp(`${old} \\(.*\\): stopped .* in the background on the host once nginx has no request in flight to it`)
    )
    // The run does not wait for the old container: it ends while the request to it is still in flight.
    const m = await mine
    expect(ended).toBeLessThan(m.at)
    expect(m.status, m.body).toBe(200)
    expect(JSON.parse(m.body).version).toBe('f-nodrain')
    // The retirement waited for that request, then stopped the old container; not for the story request.
    expect(retirementsDone()).toBe(true)
    const log = sh('cat', [`${OPS_DIR}/retire.log`])
    const stopped = Date.parse(new RegExp(`^(\\S+) stopping ${old}`, 'm').exec(log)?.[1] ?? '')
    expect(stopped).toBeGreaterThanOrEqual(Math.floor(m.at / 1000) * 1000)
    const o = await other
    expect(o.status, o.body).toBe(200)
    expect(stopped).toBeLessThan(o.at)
    console.log(
      `[retire] run ended ${((m.at - ended) / 1000).toFixed(1)} s before the slow request to the old frontend got its 200; old container stopped ${((stopped - ended) / 1000).toFixed(1)} s after the run, ${((o.at - stopped) / 1000).toFixed(1)} s before a 20 s story request ended`
    )
  })
})
