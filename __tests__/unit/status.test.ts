import { describe, expect, it } from 'vitest'
import { httpStatus } from '../../src/commands/http'
import { SPEC_LABEL } from '../../src/labels'
import { listMaintenance } from '../../src/maintenance'
import type { InfraInputs } from '../../src/inputs'
import { runStatus, statusLines, type AppRow, type Status } from '../../src/status'
import { placeholderUpstream, upstreamConf } from '../../src/upstream'
import { appContainer, captureStdout, FakeRemote, sectionsOut, stackContainer } from './helpers'

captureStdout()

describe('statusLines', () => {
  it('one markdown row per stack service and app, never deployed shown as such, pipes escaped', () => {
    const st: Status = {
      stack: [
        {
          service: 'db',
          container: 'behindy_db_1',
          image: 'postgres:15.10-bookworm',
          state: 'running',
          health: 'healthy',
          since: '2026-11-28T04:00:00.123Z'
        }
      ],
      services: [
        {
          service: 'frontend',
          deployed: false,
          container: '',
          image: '',
          digest: '',
          state: 'not deployed',
          since: '',
          direct: '',
          nginx: '',
          maintenance: false
        },
        {
          service: 'backend',
          deployed: true,
          container: 'backend-1a2b3c4d',
          image: 'a|b',
          digest: `ghcr.io/behindy/back@sha256:${'b'.repeat(64)}`,
          state: 'running',
          since: '2026-11-28T04:01:00Z',
          direct: '200',
          nginx: '200',
          maintenance: false,
          lastDeploy: {
            time: '2026-11-28T04:01:02Z',
            mode: 'deploy',
            image: 'a|b',
            digest: `ghcr.io/behindy/back@sha256:${'b'.repeat(64)}`,
            result: 'success',
            actor: 'octocat',
            sha: 'abcdef1234567'
          }
        },
        // Deployed by an earlier release: its upstream file names no digest.
        {
          service: 'story',
          deployed: true,
          container: 'story-0a0b0c0d',
          image: 'st:1',
          digest: '',
          state: 'running',
          since: '2026-11-28T04:02:00Z',
          direct: '200',
          nginx: '200',
          maintenance: false
        }
      ],
      maintenance: []
    }
    const lines = statusLines(st)
    expect(lines).toContain('| db | behindy_db_1 | postgres:15.10-bookworm | running | healthy | 2026-11-28T04:00:00Z |')
    expect(lines).toContain('| Service | Container | Image | Digest | State | Up since | Health (direct) | Health (nginx) | Last deploy |')
    expect(lines).toContain('| --- | --- | --- | --- | --- | --- | --- | --- | --- |')
    expect(lines).toContain('| frontend | — | — | — | not deployed | — | — | — | — |')
    // Only the digest itself: the repository is the image's.
    expect(lines).toContain(
      `| backend | backend-1a2b3c4d | a\\|b | sha256:${'b'.repeat(64)} | running | 2026-11-28T04:01:00Z | 200 | 200 | 2026-11-28T04:01:02Z deploy success by octocat (abcdef1) |`
    )
    expect(lines).toContain('| story | story-0a0b0c0d | st:1 | — | running | 2026-11-28T04:02:00Z | 200 | 200 | — |')
  })

  const row = (service: string, maintenance: boolean): AppRow => ({
    service,
    deployed: true,
    container: `${service}-1a2b3c4d`,
    image: `${service}:1`,
    digest: '',
    state: 'running',
    since: '2026-11-28T04:01:00Z',
    direct: '200',
    nginx: '200',
    maintenance
  })

  it('nothing in maintenance: no maintenance line, the tables first', () => {
    const lines = statusLines({ stack: [], services: [row('backend', false)], maintenance: [] })
    expect(lines[0]).toBe('| Stack | Container | Image | State | Health | Up since |')
    expect(lines.join('\n')).not.toMatch(/maintenance/i)
  })

  it('in maintenance: a line first naming what (site-wide spelled out), and `, in maintenance` in the State cell of each such service', () => {
    const lines = statusLines({ stack: [], services: [row('frontend', true), row('backend', false)], maintenance: ['frontend'] })
    expect(lines.slice(0, 3)).toEqual(['In maintenance: frontend.', '', '| Stack | Container | Image | State | Health | Up since |'])
    expect(lines).toContain(
      '| frontend | frontend-1a2b3c4d | frontend:1 | — | running, in maintenance | 2026-11-28T04:01:00Z | 200 | 200 | — |'
    )
    expect(lines).toContain('| backend | backend-1a2b3c4d | backend:1 | — | running | 2026-11-28T04:01:00Z | 200 | 200 | — |')

    const all = statusLines({ stack: [], services: [row('frontend', true)], maintenance: ['all', 'frontend'] })
    expect(all[0]).toBe('In maintenance: every route (site-wide), frontend.')
  })
})

describe('runStatus (against a fake host)', () => {
  const infra: InfraInputs = {
    opsDir: '/opt/ops',
    network: 'internal',
    settings: {},
    infraEnv: [],
    infraTimeoutS: 120,
    backups: { keep: 7, beforeInfra: true }
  }
  const story = { route: '/llm/', healthPath: '/health', stripPrefix: true, aliases: ['llmserver'] }

  it('the stack, every app (deployed or not) and their health directly and through nginx, read-only', async () => {
    const storyDigest = `st@sha256:${'1'.repeat(64)}`
    const history = [
      {
        time: '2026-11-28T04:01:02Z',
        mode: 'deploy',
        service: 'story',
        image: 'st:1',
        digest: storyDigest,
        result: 'success',
        actor: 'octocat'
      },
      {
        time: '2026-11-28T05:00:00Z',
        mode: 'deploy',
        service: 'story',
        image: 'st:2',
        digest: `st@sha256:${'2'.repeat(64)}`,
        result: 'rolled-back'
      }
    ]
    const remote = new FakeRemote([
      [
        /@@ops stack/,
        {
          stdout: sectionsOut({
            stack: [
              stackContainer('db', { name: 'behindy-db-1', image: 'postgres:15' }),
              stackContainer('nginx', { name: 'behindy-nginx-1', id: 'nginx-id', health: null })
            ].join('\n'),
            apps: [
              appContainer('story', { name: 'story-0a0b0c0d', port: 8000, labels: { [SPEC_LABEL]: JSON.stringify(story) } }),
              appContainer('backend', { name: 'backend-11112222', status: 'exited', port: 8080 })
            ].join('\n'),
            upstreams: [
              '@@file app_story.conf',
              upstreamConf('app_story', 8000, { container: 'story-0a0b0c0d', image: 'st:1', digest: storyDigest }),
              '@@file app_backend.conf',
              upstreamConf('app_backend', 8080, { container: 'backend-11112222', image: 'bk:1' }),
              '@@file app_frontend.conf',
              placeholderUpstream('frontend')
            ].join('\n'),
            history: history.map(h => JSON.stringify(h)).join('\n')
          })
        }
      ],
      [/@@ops direct-/, { stdout: sectionsOut({ 'direct-2': '200', 'nginx-2': '502' }) }]
    ])
    const st: Status = await runStatus(remote, infra)
    expect(remote.unmatched).toEqual([])
    expect(st.stack.map(r => [r.service, r.container, r.state, r.health])).toEqual([
      ['db', 'behindy-db-1', 'running', 'healthy'],
      ['redis', '', 'missing', ''],
      ['nginx', 'behindy-nginx-1', 'running', 'none'],
      ['front', '', 'missing', '']
    ])
    const rows = new Map(st.services.map(r => [r.service, r]))
    expect([...rows.keys()]).toEqual(['frontend', 'backend', 'story'])
    expect(rows.get('frontend')).toMatchObject({ deployed: false, state: 'not deployed' })
    // Only a running container is probed: one probe pair, from inside nginx, by container name, and through /llm/.
    expect(rows.get('frontend')?.digest).toBe('')
    // backend's upstream file is an earlier release's: no digest in it, none shown.
    expect(rows.get('backend')).toMatchObject({
      deployed: true,
      container: 'backend-11112222',
      digest: '',
      state: 'exited',
      direct: '',
      nginx: ''
    })
    // The digest is the serving one's (the upstream's), not the last deploy's, which was rolled back.
    expect(rows.get('story')).toMatchObject({
      deployed: true,
      image: 'st:1',
      digest: storyDigest,
      state: 'running',
      direct: '200',
      nginx: '502'
    })
    expect(rows.get('story')?.lastDeploy).toMatchObject({
      time: '2026-11-28T05:00:00Z',
      image: 'st:2',
      digest: `st@sha256:${'2'.repeat(64)}`,
      result: 'rolled-back'
    })
    expect(statusLines(st)).toContain(
      `| story | story-0a0b0c0d | st:1 | sha256:${'1'.repeat(64)} | running | 2026-01-01T00:00:00Z | 200 | 502 | 2026-11-28T05:00:00Z deploy rolled-back |`
    )
    const [probes] = remote.matching(/@@ops direct-/)
    expect(probes.sh).toContain('docker exec nginx-id sh -c')
    expect(probes.sh).toContain('http://story-0a0b0c0d:8000/health')
    expect(probes.sh).toContain('http://127.0.0.1:80/llm/health')
    expect(probes.sh).not.toContain('backend-11112222')
    // Nothing but reads.
    expect(remote.calls).toHaveLength(2)
  })

  it("in maintenance: every row says so (site-wide), and the nginx probe goes through the service's upstream on the preview port", async () => {
    const remote = new FakeRemote([
      [
        /@@ops stack/,
        {
          stdout: sectionsOut({
            stack: stackContainer('nginx', { name: 'behindy-nginx-1', id: 'nginx-id', health: null }),
            apps: appContainer('story', { name: 'story-0a0b0c0d', port: 8000, labels: { [SPEC_LABEL]: JSON.stringify(story) } }),
            upstreams: ['@@file app_story.conf', upstreamConf('app_story', 8000, { container: 'story-0a0b0c0d', image: 'st:1' })].join(
              '\n'
            ),
            history: '',
            maintenance: 'all\n'
          })
        }
      ],
      [/@@ops direct-/, { stdout: sectionsOut({ 'direct-2': '200', 'nginx-2': '200' }) }]
    ])
    const st = await runStatus(remote, infra)
    expect(remote.unmatched).toEqual([])
    // listMaintenance of ops-dir, in the same round trip as the rest.
    expect(remote.calls[0].sh).toContain("echo '@@ops maintenance'")
    expect(remote.calls[0].sh).toContain(listMaintenance('/opt/ops').sh)
    expect(st.maintenance).toEqual(['all'])
    expect(st.services.map(r => [r.service, r.maintenance])).toEqual([
      ['frontend', true],
      ['backend', true],
      ['story', true]
    ])
    // Through nginx as clients see it would be the maintenance page's 503: the release is probed past it.
    const [probes] = remote.matching(/@@ops direct-/)
    expect(probes.sh).toContain(httpStatus('nginx-id', 'http://127.0.0.1:8504/llm/health', 3, 'X-Ops-Upstream: app_story').sh)
    expect(probes.sh).not.toContain('http://127.0.0.1:80/')
    expect(statusLines(st)[0]).toBe('In maintenance: every route (site-wide).')
    expect(statusLines(st)).toContain(
      '| story | story-0a0b0c0d | st:1 | — | running, in maintenance | 2026-01-01T00:00:00Z | 200 | 200 | — |'
    )
  })

  it('one service in maintenance: only its row', async () => {
    const remote = new FakeRemote([
      [/@@ops stack/, { stdout: sectionsOut({ stack: '', apps: '', upstreams: '', history: '', maintenance: 'backend\n' }) }]
    ])
    const st = await runStatus(remote, infra)
    expect(remote.unmatched).toEqual([])
    expect(st.maintenance).toEqual(['backend'])
    expect(st.services.filter(r => r.maintenance).map(r => r.service)).toEqual(['backend'])
  })
})
