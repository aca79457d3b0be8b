import { execFileSync } from 'node:child_process'
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import {
  DEFAULT_PAGE,
  inMaintenance,
  listMaintenance,
  MAINTENANCE_PAGE,
  maintenancePath,
  parseMaintenance,
  SITE_WIDE
} from '../../src/maintenance'
import { loadBundle } from '../../src/stackfiles'
import { stateIncludes } from '../../src/upstream'
import { useTempDir } from './helpers'

// mode maintenance / live's state: a `<target>.maintenance.map` file per route in upstreams/.

const tmp = useTempDir('maintenance-test')

describe('maintenancePath', () => {
  it("a service's file, or all.maintenance.map site-wide, in upstreams/", () => {
    expect(maintenancePath('backend')).toBe('upstreams/backend.maintenance.map')
    expect(maintenancePath('my-svc')).toBe('upstreams/my-svc.maintenance.map')
    expect(SITE_WIDE).toBe('all')
    expect(maintenancePath(SITE_WIDE)).toBe('upstreams/all.maintenance.map')
  })

  it("is the file the service's map includes (the site-wide one too)", () => {
    const includes = stateIncludes('backend').join('\n')
    for (const target of ['backend', SITE_WIDE]) {
      const name = maintenancePath(target).replace(/^upstreams\//, '')
      expect(includes).toContain(`/etc/nginx/ops-upstreams/${name.slice(0, -1)}[${name.slice(-1)}];`)
    }
    // Another service's file is not.
    expect(includes).not.toContain('frontend.maintenance')
  })

  it('the page goes to upstreams/ (the 8505 server serves it from there); the default is the shipped one', () => {
    expect(MAINTENANCE_PAGE).toBe('upstreams/maintenance.html')
    expect(loadBundle().get(DEFAULT_PAGE)).toMatch(/<title>Down for maintenance<\/title>/)
  })
})

describe('parseMaintenance', () => {
  it('one target a line; blank lines and spaces dropped', () => {
    expect(parseMaintenance('all\nbackend\n')).toEqual(['all', 'backend'])
    expect(parseMaintenance('  story \n\n\nmy-svc')).toEqual(['story', 'my-svc'])
  })

  it('no output: nothing in maintenance', () => {
    expect(parseMaintenance('')).toEqual([])
    expect(parseMaintenance('\n \n')).toEqual([])
  })
})

describe('inMaintenance', () => {
  it('site-wide puts every service in maintenance', () => {
    for (const s of ['frontend', 'backend', 'story', 'my-svc']) expect(inMaintenance([SITE_WIDE], s), s).toBe(true)
  })

  it("a service's own maintenance is only its", () => {
    expect(inMaintenance(['backend'], 'backend')).toBe(true)
    expect(inMaintenance(['backend'], 'frontend')).toBe(false)
    expect(inMaintenance(['backend', 'story'], 'story')).toBe(true)
    // No prefix or substring matches.
    expect(inMaintenance(['back'], 'backend')).toBe(false)
    expect(inMaintenance(['my-svc'], 'my-svc-2')).toBe(false)
  })

  it('nothing listed: no service', () => {
    expect(inMaintenance([], 'backend')).toBe(false)
  })
})

describe('listMaintenance (a real sh on files here)', () => {
  const list = (opsDir: string): string[] => parseMaintenance(execFileSync('sh', ['-c', listMaintenance(opsDir).sh], { encoding: 'utf8' }))

  it("the target of each upstreams/*.maintenance.map, nothing else of upstreams/ (a canary's map, the page, .ops-prev copies)", () => {
    const ops = mkdtempSync(join(tmp(), 'ops-'))
    mkdirSync(join(ops, 'upstreams'))
    for (const f of [
      'all.maintenance.map',
      'backend.maintenance.map',
      'my-svc.maintenance.map',
      'story.maintenance.map.ops-prev',
      'frontend.canary.map',
      'maintenance.html',
      'app_backend.conf'
    ])
      writeFileSync(join(ops, 'upstreams', f), '~. ops_maintenance;\n')
    expect(list(ops).sort()).toEqual(['all', 'backend', 'my-svc'])
  })

  it('none, an empty upstreams/ or no ops-dir at all: nothing, exit 0', () => {
    const ops = mkdtempSync(join(tmp(), 'ops-'))
    expect(list(ops)).toEqual([])
    mkdirSync(join(ops, 'upstreams'))
    expect(list(ops)).toEqual([])
    expect(list(join(ops, 'missing'))).toEqual([])
  })

  it('ops-dir is an argument, never shell', () => {
    const ops = join(mkdtempSync(join(tmp(), 'ops-')), "it's $(echo x)")
    mkdirSync(join(ops, 'upstreams'), { recursive: true })
    writeFileSync(join(ops, 'upstreams', 'story.maintenance.map'), '')
    expect(list(ops)).toEqual(['story'])
  })
})
