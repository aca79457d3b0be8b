import { describe, expect, it } from 'vitest'
import { CATALOGUE } from '../../src/catalogue'
import { healthGateLoop } from '../../src/commands/http'
import { retireContainers } from '../../src/commands/retire'
import { HostError } from '../../src/errors'
import type { AppInputs } from '../../src/inputs'
import { healthGate, parseGate, retireOld, stageTimes } from '../../src/release'
import { captureStdout, FakeRemote, stackInfo } from './helpers'

// The new release's container: the health gate's verdict (one round trip, one line) and the hand-over of the old
// containers to their retirement on the host.

const stdout = captureStdout()

const app: AppInputs = {
  service: 'backend',
  spec: CATALOGUE.backend,
  env: [],
  healthTimeoutS: 5,
  drainTimeoutS: 30,
  stopTimeoutS: 3,
  keepImages: 3
}
const NAME = 'backend-1a2b3c4d'
const NGINX = 'nginx-0123'

describe('parseGate', () => {
  it.each([
    ['healthy 172.18.0.9 200', { kind: 'healthy', ip: '172.18.0.9', code: '200' }],
    ['exited exited 0 none', { kind: 'exited', status: 'exited', restarts: 0, code: 'none' }],
    ['exited running 2 503', { kind: 'exited', status: 'running', restarts: 2, code: '503' }],
    ['unhealthy 000', { kind: 'unhealthy', code: '000' }],
    ['gone none', { kind: 'gone', code: 'none' }],
    ['timeout 503 172.18.0.9', { kind: 'timeout', code: '503', ip: '172.18.0.9' }],
    // Never on the network: the loop prints an empty address (a trailing space).
    ['timeout none ', { kind: 'timeout', code: 'none', ip: '' }]
  ])('%j', (line, result) => {
    expect(parseGate(`${line}\n`)).toEqual(result)
  })

  it('only the last line counts (anything printed before it is not the verdict)', () => {
    expect(parseGate('some noise\nhealthy 172.18.0.9 204\n')).toEqual({ kind: 'healthy', ip: '172.18.0.9', code: '204' })
  })

  it.each([
    ['', 'the health gate printed nothing it knows: (nothing)'],
    ['\n', 'the health gate printed nothing it knows: (nothing)'],
    ['sh: docker: not found\n', 'the health gate printed nothing it knows: sh: docker: not found'],
    ['Healthy 172.18.0.9 200', 'the health gate printed nothing it knows: Healthy 172.18.0.9 200'],
    ['healthy 172.18.0.9 200\nready', 'the health gate printed nothing it knows: healthy 172.18.0.9 200\nready']
  ])('%j: a HostError', (out, message) => {
    expect(() => parseGate(out)).toThrow(new HostError(message))
    expect(() => parseGate(out)).toThrow(HostError)
  })
})

describe('healthGate (against a fake host)', () => {
  const GATE = /echo "healthy \$ip \$last"/
  const gate = (answer: { code?: number; stdout?: string; stderr?: string }) => {
    const remote = new FakeRemote([[GATE, answer]])
    return { remote, result: healthGate(remote, app, NAME, 'internal', NGINX) }
  }

  it('one round trip: the container, network, nginx, port, health path and health-timeout as the loop gets them; healthy returns the address', async () => {
    const { remote, result } = gate({ stdout: 'healthy 172.18.0.9 200\n' })
    expect(await result).toBe('172.18.0.9')
    expect(remote.unmatched).toEqual([])
    expect(remote.calls.map(c => c.sh)).toEqual([
      healthGateLoop({ container: NAME, network: 'internal', via: NGINX, port: 8080, path: '/api/ai-stories/health', timeoutS: 5 }).sh
    ])
    expect(stdout.text()).toContain('GET http://172.18.0.9:8080/api/ai-stories/health -> 200: healthy.')
  })

  it.each([
    ['exited exited 0 none', `${NAME} exited before becoming healthy (last health probe: no probe yet)`],
    [
      'exited dead 0 000',
      `${NAME} dead before becoming healthy (last health probe: GET http://<ip>:8080/api/ai-stories/health -> no answer)`
    ],
    [
      'exited running 2 503',
      `${NAME} restarted 2× before becoming healthy (last health probe: GET http://<ip>:8080/api/ai-stories/health -> 503)`
    ],
    ['exited restarting 1 none', `${NAME} restarted 1× before becoming healthy (last health probe: no probe yet)`],
    ['unhealthy 503', `${NAME}'s own HEALTHCHECK reports unhealthy (last health probe: GET http://<ip>:8080/api/ai-stories/health -> 503)`],
    ['gone none', `${NAME} disappeared (last health probe: no probe yet)`],
    [
      'timeout 503 172.18.0.9',
      `${NAME} did not become healthy within 5 s (last health probe: GET http://172.18.0.9:8080/api/ai-stories/health -> 503)`
    ],
    [
      'timeout 000 172.18.0.9',
      `${NAME} did not become healthy within 5 s (last health probe: GET http://172.18.0.9:8080/api/ai-stories/health -> no answer)`
    ],
    ['timeout none ', `${NAME} did not become healthy within 5 s (last health probe: no probe yet)`]
  ])('%j: a HostError that says why, with the last probe', async (line, message) => {
    const { result } = gate({ stdout: `${line}\n` })
    await expect(result).rejects.toThrow(new HostError(message))
  })

  it('the loop itself fails (the connection, say): a HostError naming the wait', async () => {
    const { result } = gate({ code: 255, stderr: 'connection reset by peer' })
    await expect(result).rejects.toThrow(
      new HostError(`waiting for ${NAME} to become healthy failed (exit 255):\nconnection reset by peer`)
    )
  })
})

describe('retireOld (against a fake host)', () => {
  const RETIRE = /until nginx is done with them/
  const old = [
    { ...stackInfo('backend'), name: 'backend-0000aaaa', image: 'ghcr.io/behindy/back:v1' },
    { ...stackInfo('backend'), name: 'backend-1111bbbb', image: 'ghcr.io/behindy/back:v0' }
  ]

  it('hands every old container to one retirement job, by name, with the drain and stop timeouts and the log in ops-dir', async () => {
    const remote = new FakeRemote([[RETIRE, {}]])
    await retireOld(remote, '/opt/behindy-ops', NGINX, app, old)
    expect(remote.unmatched).toEqual([])
    // Old workers are waited for keepalive_min_timeout + 1 s at most (drain-timeout 30 s is longer).
    expect(remote.calls.map(c => c.sh)).toEqual([
      retireContainers({
        nginxId: NGINX,
        port: 8080,
        containers: ['backend-0000aaaa', 'backend-1111bbbb'],
        drainTimeoutS: 30,
        workersS: 11,
        stopTimeoutS: 3,
        log: '/opt/behindy-ops/retire.log'
      }).sh
    ])
    expect(stdout.text()).toContain(
      'backend-0000aaaa (ghcr.io/behindy/back:v1), backend-1111bbbb (ghcr.io/behindy/back:v0): stopped (SIGTERM, stop-timeout 3 s) and removed in the background'
    )
    expect(stdout.text()).toContain('(≤ 11 s; drain-timeout 30 s); log: /opt/behindy-ops/retire.log.')
  })

  it('a drain-timeout shorter than keepalive_min_timeout + 1 s caps the wait for old workers', async () => {
    const remote = new FakeRemote([[RETIRE, {}]])
    await retireOld(remote, '/o', NGINX, { ...app, drainTimeoutS: 4 }, old.slice(0, 1))
    expect(remote.calls.map(c => c.sh)).toEqual([
      retireContainers({
        nginxId: NGINX,
        port: 8080,
        containers: ['backend-0000aaaa'],
        drainTimeoutS: 4,
        workersS: 4,
        stopTimeoutS: 3,
        log: '/o/retire.log'
      }).sh
    ])
  })

  it('nothing to retire: no command', async () => {
    const remote = new FakeRemote([])
    await retireOld(remote, '/o', NGINX, app, [])
    expect(remote.calls).toEqual([])
    expect(stdout.text()).toContain('No previous container to stop.')
  })

  it('the job cannot be started: a warning naming the containers and what happens to them, no error', async () => {
    const remote = new FakeRemote([[RETIRE, { code: 2, stderr: 'sh: cannot create /o/retire.log: Read-only file system' }]])
    await retireOld(remote, '/o', NGINX, app, old)
    expect(stdout.text()).toContain(
      '::warning::Could not start the retirement of backend-0000aaaa, backend-1111bbbb (exit 2): sh: cannot create /o/retire.log: Read-only file system. It keeps running, without clients; the next deploy of backend stops and removes it.'
    )
  })
})

describe('stageTimes', () => {
  it('seconds per stage, each from its mark to the next one', () => {
    const out = [
      '@@ops-at preview 1000.10',
      '@@ops preview',
      '200 200',
      'ok',
      '@@ops-rc 0',
      '@@ops-at switch 1000.50',
      '@@ops switch',
      'PID COMMAND',
      '@@ops-rc 0',
      '@@ops-at verify 1001.25',
      '@@ops verify',
      '@@ops-rc 0',
      '@@ops-at end 1001.40',
      ''
    ].join('\n')
    const t = stageTimes(out)
    expect(Object.keys(t)).toEqual(['preview', 'switch', 'verify'])
    expect(t.preview).toBeCloseTo(0.4, 6)
    expect(t.switch).toBeCloseTo(0.75, 6)
    expect(t.verify).toBeCloseTo(0.15, 6)
  })

  it('a stage that never ran took 0 s; no marks at all, all 0', () => {
    expect(stageTimes('@@ops-at preview 10.00\n@@ops preview\n@@ops-rc 1\n@@ops-at end 12.50\n')).toEqual({
      preview: 2.5,
      switch: 0,
      verify: 0
    })
    expect(stageTimes('')).toEqual({ preview: 0, switch: 0, verify: 0 })
    // A mark must be a line of its own.
    expect(stageTimes('x @@ops-at preview 1.00\n@@ops-at end 2.00\n')).toEqual({ preview: 0, switch: 0, verify: 0 })
  })
})
