import { execFileSync } from 'node:child_process'
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest'
import { parse as parseYaml } from 'yaml'
import { DEFAULTS, getInputs, MODES } from '../../src/inputs'

// Every workflow that uses the action (examples/, this repository's own workflows, the README's yaml blocks) may only
// give inputs action.yml declares, must give its required ones, and may only read outputs it declares.

const ROOT = join(__dirname, '..', '..')

interface ActionYml {
  inputs: Record<string, { required?: boolean }>
  outputs: Record<string, unknown>
}

const action = parseYaml(readFileSync(join(ROOT, 'action.yml'), 'utf8')) as ActionYml
const INPUTS = new Set(Object.keys(action.inputs))
const REQUIRED = Object.keys(action.inputs).filter(name => action.inputs[name].required === true)
const OUTPUTS = new Set(Object.keys(action.outputs))

type Node = unknown
type Obj = Record<string, Node>
const isObj = (v: Node): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v)

/** `behindy/ops-action@<ref>` (published) or `./` (this repository's own action.yml). */
export function isOpsAction(uses: Node): boolean {
  return typeof uses === 'string' && (/^behindy\/ops-action@[\w.\-/]+$/.test(uses.trim()) || /^\.\/?$/.test(uses.trim()))
}

/** Every string value in a YAML tree. */
function strings(node: Node, out: string[] = []): string[] {
  if (typeof node === 'string') out.push(node)
  else if (Array.isArray(node)) node.forEach(n => strings(n, out))
  else if (isObj(node)) Object.values(node).forEach(v => strings(v, out))
  return out
}

/** Objects holding a `steps` list (jobs), found anywhere; a bare list of steps (a README fragment) counts as one. */
function scopes(node: Node, path: string, out: Array<{ name: string; scope: Obj; steps: Obj[] }> = []) {
  if (Array.isArray(node)) {
    if (node.length && node.every(s => isObj(s) && ('uses' in s || 'run' in s)))
      out.push({ name: path, scope: { steps: node }, steps: node as Obj[] })
    else node.forEach((n, i) => scopes(n, `${path}[${i}]`, out))
  } else if (isObj(node)) {
    if (Array.isArray(node.steps)) out.push({ name: path, scope: node, steps: node.steps.filter(isObj) })
    else for (const [k, v] of Object.entries(node)) scopes(v, path ? `${path}.${k}` : k, out)
  }
  return out
}

const STEP_OUTPUT = /\bsteps\.([A-Za-z_][\w-]*)\.outputs(?:\.([A-Za-z_][\w-]*)|\[\s*'([^']*)'\s*\])/g
const NEEDS_OUTPUT = /\bneeds\.([A-Za-z_][\w-]*)\.outputs\.([A-Za-z_][\w-]*)/g

/**
 * Problems with the uses of the action in one workflow (or workflow fragment); [] when there are none. `found`
 * receives how many steps use the action, so a caller can tell "all fine" from "nothing checked".
 */
export function checkWorkflow(text: string, source: string, found: { steps: number } = { steps: 0 }): string[] {
  let doc: Node
  try {
    doc = parseYaml(text)
  } catch (e) {
    return [`${source}: not valid YAML: ${(e as Error).message.split('\n')[0]}`]
  }
  const problems: string[] = []
  for (const { name, scope, steps } of scopes(doc, '')) {
    const ids = new Set(steps.map(s => s.id).filter((id): id is string => typeof id === 'string'))
    const opsIds = new Set<string>()
    steps.forEach((step, i) => {
      if (!isOpsAction(step.uses)) return
      found.steps++
      const where = `${source}: ${name || 'steps'} step ${typeof step.id === 'string' ? `'${step.id}'` : i + 1}`
      if (typeof step.id === 'string') opsIds.add(step.id)
      const withs = step.with === undefined || step.with === null ? {} : step.with
      if (!isObj(withs)) return problems.push(`${where}: 'with' is not a mapping`)
      for (const key of Object.keys(withs)) if (!INPUTS.has(key)) problems.push(`${where}: '${key}' is not an input of action.yml`)
      for (const key of REQUIRED) {
        const v = withs[key]
        if (v === undefined || v === null || String(v).trim() === '') problems.push(`${where}: required input '${key}' is not given`)
      }
      const mode = withs.mode
      if (typeof mode === 'string' && !mode.includes('${{') && !(MODES as readonly string[]).includes(mode.trim())) {
        problems.push(`${where}: mode '${mode}' is not one of ${MODES.join(', ')}`)
      }
    })
    for (const s of strings(scope)) {
      for (const m of s.matchAll(STEP_OUTPUT)) {
        const [, id, dotted, quoted] = m
        const output = dotted ?? quoted
        if (!ids.has(id)) problems.push(`${source}: ${name || 'steps'} reads steps.${id}.outputs.${output}, but no step has id '${id}'`)
        else if (opsIds.has(id) && !OUTPUTS.has(output))
          problems.push(`${source}: ${name || 'steps'} reads '${output}', which is not an output of action.yml`)
      }
    }
  }
  // needs.<job>.outputs.<name>: the job exists and declares that output.
  const jobs = isObj(doc) && isObj(doc.jobs) ? doc.jobs : undefined
  if (jobs) {
    for (const s of strings(doc)) {
      for (const [, job, output] of s.matchAll(NEEDS_OUTPUT)) {
        const j = jobs[job]
        if (!isObj(j)) problems.push(`${source}: reads needs.${job}.outputs.${output}, but there is no job '${job}'`)
        else if (!isObj(j.outputs) || !(output in j.outputs)) problems.push(`${source}: job '${job}' has no output '${output}'`)
      }
    }
  }
  return problems
}

/** The ```yaml blocks of a markdown text, de-indented (blocks inside list items are indented). */
export function yamlBlocks(markdown: string): string[] {
  const blocks: string[] = []
  for (const m of markdown.matchAll(/^([ \t]*)```ya?ml[^\n]*\n([\s\S]*?)^\1```[ \t]*$/gm)) {
    const indent = m[1].length
    blocks.push(
      m[2]
        .split('\n')
        .map(l => l.slice(Math.min(indent, l.length - l.trimStart().length)))
        .join('\n')
    )
  }
  return blocks
}

const ymlFiles = (dir: string): string[] =>
  existsSync(join(ROOT, dir))
    ? readdirSync(join(ROOT, dir))
        .filter(f => /\.ya?ml$/.test(f))
        .sort()
        .map(f => `${dir}/${f}`)
    : []
const EXAMPLES = ymlFiles('examples')
const WORKFLOWS = ymlFiles('.github/workflows')
const read = (file: string): string => readFileSync(join(ROOT, file), 'utf8')
const opsSteps = (file: string): number => {
  const found = { steps: 0 }
  checkWorkflow(read(file), file, found)
  return found.steps
}

describe('the checker', () => {
  const good = `
jobs:
  deploy:
    runs-on: ubuntu-latest
    steps:
      - id: deploy
        uses: behindy/ops-action@v1
        with:
          host: example.com
          ssh-key: \${{ secrets.KEY }}
          image: user/app:\${{ github.sha }}
      - run: echo "\${{ steps.deploy.outputs.url }} \${{ steps.deploy.outputs.rolled-back }}"
`
  it('accepts a correct use, and counts it', () => {
    const found = { steps: 0 }
    expect(checkWorkflow(good, 'good', found)).toEqual([])
    expect(found.steps).toBe(1)
  })

  it('catches an input action.yml does not declare', () => {
    const bad = good.replace('          image:', '          bogus: 1\n          image:')
    expect(checkWorkflow(bad, 'bad')).toEqual([`bad: jobs.deploy step 'deploy': 'bogus' is not an input of action.yml`])
  })

  it('catches a missing required input', () => {
    const bad = good.replace(/ {10}ssh-key: .*\n/, '')
    expect(REQUIRED).toContain('ssh-key')
    expect(checkWorkflow(bad, 'bad')).toEqual([`bad: jobs.deploy step 'deploy': required input 'ssh-key' is not given`])
    expect(checkWorkflow(good.replace(/ {8}with:[\s\S]*?(?= {6}- run)/, ''), 'w')).toHaveLength(REQUIRED.length)
  })

  it('catches an output action.yml does not declare, in dot and bracket form', () => {
    expect(checkWorkflow(good.replace('outputs.url', 'outputs.URL'), 'bad')).toEqual([
      `bad: jobs.deploy reads 'URL', which is not an output of action.yml`
    ])
    expect(checkWorkflow(good.replace('outputs.url', "outputs['bogus']"), 'bad')).toEqual([
      `bad: jobs.deploy reads 'bogus', which is not an output of action.yml`
    ])
  })

  it('catches a reference to a step id that does not exist', () => {
    expect(checkWorkflow(good.replace('steps.deploy.outputs.url', 'steps.deplyo.outputs.url'), 'bad')).toEqual([
      `bad: jobs.deploy reads steps.deplyo.outputs.url, but no step has id 'deplyo'`
    ])
  })

  it('catches an unknown literal mode, and leaves expressions alone', () => {
    expect(checkWorkflow(good.replace('host:', 'mode: deploy-all\n          host:'), 'bad')).toEqual([
      `bad: jobs.deploy step 'deploy': mode 'deploy-all' is not one of ${MODES.join(', ')}`
    ])
    expect(checkWorkflow(good.replace('host:', "mode: ${{ inputs.rollback && 'rollback' || 'deploy' }}\n          host:"), 'ok')).toEqual(
      []
    )
  })

  it('checks `uses: ./` and bare step lists (README fragments) too', () => {
    const local = `- uses: ./\n  with:\n    host: h\n    ssh-key: k\n    colour: green\n`
    expect(checkWorkflow(local, 'local')).toEqual([`local: steps step 1: 'colour' is not an input of action.yml`])
  })

  it('ignores other actions and their inputs', () => {
    const other = `jobs:\n  b:\n    steps:\n      - id: x\n        uses: docker/build-push-action@v6\n        with: { tags: a, push: true }\n      - run: echo \${{ steps.x.outputs.digest }}\n`
    const found = { steps: 0 }
    expect(checkWorkflow(other, 'other', found)).toEqual([])
    expect(found.steps).toBe(0)
  })

  it('checks needs.<job>.outputs.<name> against the job', () => {
    const wf = `jobs:\n  a:\n    outputs: { url: x }\n    steps: [{ run: 'true' }]\n  b:\n    needs: a\n    steps: [{ run: 'echo \${{ needs.a.outputs.ur }}' }]\n`
    expect(checkWorkflow(wf, 'wf')).toEqual([`wf: job 'a' has no output 'ur'`])
  })

  it('reports YAML that does not parse', () => {
    expect(checkWorkflow('jobs: [', 'broken')[0]).toMatch(/^broken: not valid YAML/)
  })

  it('finds yaml blocks in markdown, also indented ones in list items', () => {
    const md = 'text\n\n```yaml\na: 1\n```\n\n- item\n\n  ```yaml\n  b:\n    c: 2\n  ```\n\n```sh\nls\n```\n'
    expect(yamlBlocks(md).map(b => parseYaml(b))).toEqual([{ a: 1 }, { b: { c: 2 } }])
  })
})

describe('examples/', () => {
  it('has a workflow per app repository and the operator ones', () => {
    for (const f of ['behindy-front.yml', 'behindy-back.yml', 'behindy-story.yml', 'infra.yml']) expect(EXAMPLES).toContain(`examples/${f}`)
  })

  it.each(EXAMPLES)('%s uses only declared inputs and outputs, and gives the required ones', file => {
    expect(opsSteps(file)).toBeGreaterThan(0)
    expect(checkWorkflow(read(file), file)).toEqual([])
  })

  it.each(['front', 'back', 'story'])('behindy-%s.yml builds the commit and deploys that image, never cancelled halfway', app => {
    const wf = parseYaml(read(`examples/behindy-${app}.yml`)) as { jobs: Record<string, Obj> }
    const build = wf.jobs.build.steps as Obj[]
    const push = build.find(s => String(s.uses).startsWith('docker/build-push-action@')) as Obj
    expect(build.some(s => String(s.uses).startsWith('docker/login-action@'))).toBe(true)
    const tags = String((push.with as Obj).tags)
    expect(tags).toMatch(/^\$\{\{ secrets\.DOCKER_USERNAME \}\}\/behindy-[a-z]+:\$\{\{ github\.sha \}\}$/)

    const deploy = wf.jobs.deploy
    expect(deploy.needs).toBe('build')
    expect(deploy.concurrency).toMatchObject({ 'cancel-in-progress': false })
    const step = (deploy.steps as Obj[]).find(s => isOpsAction(s.uses)) as Obj
    const w = step.with as Obj
    expect(step.uses).toBe('behindy/ops-action@v1')
    expect(w.image).toBe(tags)
    expect(w).toMatchObject({ 'known-hosts': '${{ secrets.EC2_KNOWN_HOSTS }}', 'registry-password': '${{ secrets.DOCKER_TOKEN }}' })
    expect(String(w.memory)).toMatch(/^\d+m$/)
    expect(String(w.env).trim().length).toBeGreaterThan(0)
    // No `service`: it is inferred from the repository name, so the file works as copied.
    expect(w.service).toBeUndefined()
  })
})

describe('.github/workflows/', () => {
  it('has ci, e2e and release', () => {
    for (const f of ['ci.yml', 'e2e.yml', 'release.yml']) expect(WORKFLOWS).toContain(`.github/workflows/${f}`)
  })

  it.each(WORKFLOWS)('%s uses only declared inputs and outputs of the action (where it uses it)', file => {
    expect(checkWorkflow(read(file), file)).toEqual([])
  })
})

describe('README yaml blocks', () => {
  const blocks = yamlBlocks(read('README.md'))

  it('use only declared inputs and outputs, and give the required ones', () => {
    const found = { steps: 0 }
    const problems = blocks.flatMap((b, i) => checkWorkflow(b, `README yaml block ${i + 1}`, found))
    expect(problems).toEqual([])
    expect(found.steps).toBeGreaterThanOrEqual(2)
  })

  it('show the front deploy job exactly as examples/behindy-front.yml has it', () => {
    const front = (parseYaml(read('examples/behindy-front.yml')) as { jobs: Obj }).jobs.deploy
    const shown = blocks.map(b => parseYaml(b) as Node).find(d => isObj(d) && isObj(d.jobs) && isObj(d.jobs.deploy)) as { jobs: Obj }
    expect(shown?.jobs.deploy).toEqual(front)
  })
})

describe("the examples' values pass the action's own input checks", () => {
  // Expressions become what a runner would pass: a real key, a known_hosts line for the host, a sha, secrets.
  const HOST = 'ec2.example.com'
  let dir: string
  const secrets: Record<string, string> = { EC2_HOST: HOST, DOCKER_USERNAME: 'behindy' }

  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'examples-test-'))
    execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'ops-action', '-f', join(dir, 'key')])
    execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'host', '-f', join(dir, 'host')])
    secrets.EC2_SSH_KEY = readFileSync(join(dir, 'key'), 'utf8')
    const [type, b64] = readFileSync(join(dir, 'host.pub'), 'utf8').trim().split(/\s+/)
    secrets.EC2_KNOWN_HOSTS = `${HOST} ${type} ${b64}`
  })
  afterAll(() => rmSync(dir, { recursive: true, force: true }))
  afterEach(() => {
    vi.restoreAllMocks()
    vi.unstubAllEnvs()
  })

  /** What a run passes for each input of the workflow (`inputs.<name>`); an input it does not declare is 'false'. */
  type Given = Record<string, string>
  const inputOf = (given: Given, name: string): string => given[name] ?? 'false'

  /**
   * The value with its expressions evaluated, or undefined when one is more than a secret, an input, the sha, or
   * `inputs.X == 'a' && 'b' || 'c'` (a choice picking one of two strings).
   */
  function evaluate(value: Node, given: Given): string | undefined {
    let unknown = false
    const text = String(value).replace(/\$\{\{\s*(.*?)\s*\}\}/g, (_, expr: string) => {
      if (expr === 'github.sha') return '0123456789abcdef0123456789abcdef01234567'
      const secret = /^secrets\.(\w+)$/.exec(expr)
      if (secret) return secrets[secret[1]] ?? 'Secret-value-42'
      const input = /^inputs\.([\w-]+)$/.exec(expr)
      if (input) return inputOf(given, input[1])
      const pick = /^inputs\.([\w-]+)\s*==\s*'([^']*)'\s*&&\s*'([^']*)'\s*\|\|\s*'([^']*)'$/.exec(expr)
      // As in GitHub's expressions, an empty middle string is falsy: `c` either way.
      if (pick) return inputOf(given, pick[1]) === pick[2] && pick[3] ? pick[3] : pick[4]
      unknown = true
      return ''
    })
    return unknown ? undefined : text
  }

  /**
   * Every run of a workflow_dispatch the checks cover: each option of a choice and both values of a boolean (all
   * combinations), any other input at its default ('' without one).
   */
  function dispatches(doc: Node): Given[] {
    const on = isObj(doc) ? (doc.on ?? (doc as Obj)['true']) : undefined
    const declared = isObj(on) && isObj(on.workflow_dispatch) && isObj(on.workflow_dispatch.inputs) ? on.workflow_dispatch.inputs : {}
    let runs: Given[] = [{}]
    for (const [name, spec] of Object.entries(declared)) {
      const d = isObj(spec) ? spec : {}
      const values =
        d.type === 'choice' && Array.isArray(d.options)
          ? d.options.map(String)
          : d.type === 'boolean'
            ? ['true', 'false']
            : [d.default === undefined ? '' : String(d.default)]
      runs = runs.flatMap(r => values.map(v => ({ ...r, [name]: v })))
    }
    return runs
  }

  it('examples/maintenance.yml: its state choice picks mode maintenance with the page, or mode live without one', () => {
    const doc = parseYaml(read('examples/maintenance.yml')) as Node
    const [step] = scopes(doc, '').flatMap(s => s.steps.filter(st => isOpsAction(st.uses)))
    const withs = step.with as Obj
    const runs = dispatches(doc)
    expect(runs).toEqual([
      { state: 'on', service: '' },
      { state: 'off', service: '' }
    ])
    expect(runs.map(r => [evaluate(withs.mode, r), evaluate(withs['maintenance-page'], r), evaluate(withs.service, r)])).toEqual([
      ['maintenance', 'ops/maintenance.html', ''],
      ['live', '', '']
    ])
  })

  const sources = [
    ...EXAMPLES.map(file => ({ name: file, text: read(file) })),
    ...yamlBlocks(read('README.md')).map((text, i) => ({ name: `README yaml block ${i + 1}`, text }))
  ]
  it.each(sources)('$name', ({ name, text }) => {
    const doc = parseYaml(text) as Node
    const steps = scopes(doc, '').flatMap(s => s.steps.filter(step => isOpsAction(step.uses)))
    // Repositories the files are meant for: the service is inferred from the name.
    const app = /behindy-(front|back|story)\.yml$/.exec(name)?.[1] ?? 'back'
    vi.stubEnv('GITHUB_REPOSITORY', `behindy3359/behindy-${app}`)
    vi.spyOn(process.stdout, 'write').mockImplementation(() => true)
    const runs = dispatches(doc)
    expect(runs.length).toBeLessThanOrEqual(16)
    for (const run of runs)
      for (const step of steps) {
        const given = Object.entries((step.with ?? {}) as Obj).flatMap(([k, v]) => {
          const e = evaluate(v, run)
          return e === undefined ? [] : [[k, e] as const]
        })
        const all: Record<string, string> = { ...DEFAULTS, ...Object.fromEntries(given) }
        // The workflow checked out its repository, which has the maintenance page it names.
        const workspace = mkdtempSync(join(dir, 'workspace-'))
        const page = all['maintenance-page']?.trim()
        if (page) {
          mkdirSync(dirname(join(workspace, page)), { recursive: true })
          writeFileSync(join(workspace, page), '<!doctype html><title>Back soon</title>\n')
        }
        vi.stubEnv('GITHUB_WORKSPACE', workspace)
        let problem: string | undefined
        try {
          getInputs(k => all[k] ?? '')
        } catch (e) {
          problem = (e as Error).message
        }
        expect(problem, `${name}, step ${String(step.id ?? step.uses)}, inputs ${JSON.stringify(run)}`).toBeUndefined()
      }
  })
})
