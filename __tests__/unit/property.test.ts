import { execFileSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import fc from 'fast-check'
import { beforeAll, describe, expect, it } from 'vitest'
import { composeConfig, composeV2, createNetwork } from '../../src/commands/compose'
import { runContainer } from '../../src/commands/containers'
import { pullResolved } from '../../src/commands/images'
import { mergeEnvFile, readEnvFile } from '../../src/envfile'
import { InputError, InputErrors } from '../../src/errors'
import { digestOf, imageRepository } from '../../src/images'
import { DEFAULTS, DEPLOY_ONLY, getInputs, type Inputs } from '../../src/inputs'
import { quote, type Sh } from '../../src/shell'
import { captureStdout, dockerArgvs, useTempDir } from './helpers'

/**
 * For every input getInputs reads, starting from a valid input set (mode deploy, mode infra) and replacing that one
 * input with an arbitrary string full of shell metacharacters: getInputs either rejects it with an InputError naming
 * the input, or the value it accepts is inert: every string that reaches a command line passes through a real sh
 * unchanged (quoted by src/shell.ts), the argv the real command builders give docker holds it byte for byte, and env
 * values survive the env files they are written to.
 */

const RUNS = Number(process.env.PROPERTY_RUNS ?? 200)

// Every shell metacharacter, whitespace, CR, NUL, and unicode that trim()/toLowerCase()/\s treat specially.
const META = [
  ';',
  '&',
  '|',
  '$',
  '`',
  '(',
  ')',
  '<',
  '>',
  '\\',
  '"',
  "'",
  '*',
  '?',
  '[',
  ']',
  '{',
  '}',
  '~',
  '#',
  '!',
  ' ',
  '\t',
  '\n',
  '\r',
  '\0'
]
const UNICODE = ['é', 'ß', 'ü', '€', 'İ', '\u212a', '\u00a0', '\u2028', '\u2029', '\u200b', '\ufeff', '\u0085', '😀', '日本', 'Ａ', '١']
const PLAIN = [...'abcxyzABXZ0189.-_/:=,@%+'.split('')]
const char = fc.oneof(
  { weight: 3, arbitrary: fc.constantFrom(...META) },
  { weight: 1, arbitrary: fc.constantFrom(...UNICODE) },
  { weight: 3, arbitrary: fc.constantFrom(...PLAIN) }
)
const chars = (min: number, max: number) => fc.array(char, { minLength: min, maxLength: max }).map(a => a.join(''))

/** An arbitrary string, or the valid value with a few characters inserted / replaced / added (near misses). */
function valueArb(valid: string): fc.Arbitrary<string> {
  const mutated = fc
    .tuple(fc.nat(), fc.nat({ max: 3 }), chars(1, 4), fc.constantFrom('insert', 'replace', 'append', 'prepend'))
    .map(([at, len, s, how]) => {
      const i = valid.length ? at % (valid.length + 1) : 0
      if (how === 'append') return valid + s
      if (how === 'prepend') return s + valid
      return valid.slice(0, i) + s + valid.slice(how === 'replace' ? i + len : i)
    })
  return fc.oneof(
    { weight: 2, arbitrary: chars(0, 24) },
    { weight: 3, arbitrary: mutated },
    { weight: 1, arbitrary: fc.string({ unit: 'grapheme', maxLength: 16 }) }
  )
}

/**
 * Inputs whose validity depends on the replaced one: replacing the key may make the error name them instead
 * (e.g. a valid new route makes the old health-path unreachable, and the error names health-path).
 */
const DEPLOY_INPUTS = ['service', 'image', 'app-port', 'route', 'health-path', 'aliases']
const COUPLED: Record<string, string[]> = {
  mode: DEPLOY_INPUTS,
  service: ['app-port', 'route', 'health-path', 'aliases'],
  route: ['health-path'],
  'http-port': ['https-port'],
  'ssh-key': ['ssh-passphrase']
}

/**
 * Inputs no value of which is an error, by mode: the ones mode infra ignores, and ssh-passphrase (the baseline key
 * has none, and a passphrase given for a key without one is not used). Every other input has a rule.
 */
// maintenance-page is mode maintenance's: any other mode ignores it, with a warning (checked below).
const NO_RULE: Record<'deploy' | 'infra', string[]> = {
  deploy: ['ssh-passphrase', 'maintenance-page'],
  infra: [...DEPLOY_ONLY, 'ssh-passphrase', 'maintenance-page']
}

/** The inputs a warning of getInputs names as ignored (`Ignored in mode infra (…): a, b`). */
const ignoredBy = (warnings: string[]): string[] =>
  warnings.flatMap(w =>
    (/^Ignored in mode \w+ \(they belong to mode deploy\/rollback\): (.*)$/.exec(w)?.[1] ?? '').split(', ').filter(Boolean)
  )

const tmp = useTempDir('property-test')
let baselines: Record<'deploy' | 'infra', Record<string, string>>

beforeAll(() => {
  const dir = tmp()
  execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'prop@test', '-f', join(dir, 'id')])
  const key = readFileSync(join(dir, 'id'), 'utf8')
  const fingerprint = execFileSync('ssh-keygen', ['-lf', join(dir, 'id.pub')], { encoding: 'utf8' }).split(/\s+/)[1]

  const connection = {
    host: 'ops.example.com',
    port: '2222',
    username: 'deploy',
    'ssh-key': key,
    'host-fingerprint': fingerprint,
    'connect-timeout': '15',
    'connect-retries': '2',
    'ops-dir': '/srv/behindy-ops',
    network: 'appnet',
    domain: 'example.com',
    'http-port': '8080',
    'https-port': '8443',
    'infra-env': 'DB_USER=behindy\nDB_PASS="s3cret pw#1"\nREDIS_PASSWORD=r3dis-pw',
    'infra-timeout': '300',
    'lock-timeout': '60'
  }
  baselines = {
    infra: { ...DEFAULTS, ...connection, mode: 'infra' },
    deploy: {
      ...DEFAULTS,
      ...connection,
      mode: 'deploy',
      service: 'my-svc',
      image: 'registry.example.com:5000/team/my-svc:v1.2',
      'app-port': '9000',
      route: '/things/',
      'health-path': '/things/health?full=1',
      aliases: 'web, api-v2',
      env: 'A=1\nB="two words"\nexport C=x=y',
      'env-file': '/srv/app.env',
      registry: 'registry.example.com:5000',
      'registry-username': 'bot',
      'registry-password': 'tok3n',
      'health-timeout': '60',
      'drain-timeout': '10',
      'stop-timeout': '20',
      'keep-images': '5',
      memory: '768m'
    }
  }
})

// Nothing here should print (getInputs returns its warnings), but keep the test output readable if something does.
captureStdout()

/** The app inputs of a deploy (undefined for host modes). */
const appOf = (i: Inputs) => (i.mode === 'deploy' || i.mode === 'rollback' ? i.app : undefined)
const imageOf = (i: Inputs) => (i.mode === 'deploy' ? i.image : '')

/** The strings of the parsed inputs that reach a remote command line as arguments. */
function argvStrings(i: Inputs): string[] {
  const d = appOf(i)
  return [
    i.infra.opsDir,
    i.infra.network,
    i.infra.settings.domain ?? '',
    ...(d
      ? [
          d.service,
          imageOf(i),
          d.spec.route,
          d.spec.healthPath,
          ...d.spec.aliases,
          d.envFile ?? '',
          d.registry?.server ?? '',
          d.registry?.username ?? '',
          d.memory === undefined ? '' : String(d.memory)
        ]
      : [])
  ]
}

/** Runs `printf '%s\0' <quote(v)>…` in a real sh (in chunks, to stay below the argument size limit). */
function throughSh(values: string[]): string[] {
  const out: string[] = []
  for (let start = 0; start < values.length;) {
    let size = 0
    let end = start
    while (end < values.length && (end === start || size + values[end].length < 60_000)) size += values[end++].length * 4 + 3
    const chunk = values.slice(start, end)
    const printed = execFileSync('sh', ['-c', `printf '%s\\0' ${chunk.map(quote).join(' ')}`], { encoding: 'utf8' })
    out.push(...printed.split('\0').slice(0, -1))
    start = end
  }
  return out
}

/** The commands the action builds from the inputs that take input values as arguments. */
function commandsOf(i: Inputs): Array<{ sh: Sh; wants: string[][] }> {
  const d = appOf(i)
  const image = imageOf(i)
  // What the pull resolves the image to (a digest reference is its own).
  const digest = image ? digestOf(image, [`${imageRepository(image)}@sha256:${'0'.repeat(64)}`]) : ''
  const memory = d?.memory === undefined ? undefined : String(d.memory)
  const opsDir = i.infra.opsDir
  const list: Array<{ sh: Sh; wants: string[][] }> = [
    { sh: createNetwork(i.infra.network), wants: [['network', 'create', '--driver', 'bridge', i.infra.network]] },
    {
      sh: composeConfig(composeV2('2.29.0'), opsDir),
      wants: [['compose', '--env-file', `${opsDir}/.env`, '-p', 'behindy', '-f', `${opsDir}/compose/docker-compose.yml`, 'config', '-q']]
    }
  ]
  if (d) {
    const name = `${d.service}-0123abcd`
    list.push({
      sh: runContainer({
        name,
        service: d.service,
        image,
        digest,
        network: i.infra.network,
        aliases: d.spec.aliases,
        port: d.spec.port,
        stopTimeoutS: d.stopTimeoutS,
        memory,
        envFile: d.envFile
      }),
      wants: [
        [
          'run',
          '--detach',
          '--name',
          name,
          '--network',
          i.infra.network,
          ...d.spec.aliases.flatMap(a => ['--network-alias', a]),
          '--restart',
          'unless-stopped',
          '--stop-timeout',
          String(d.stopTimeoutS),
          '--label',
          `ops-action.service=${d.service}`,
          '--label',
          `ops-action.image=${image}`,
          ...(digest ? ['--label', `ops-action.digest=${digest}`] : []),
          '--label',
          `ops-action.port=${d.spec.port}`,
          '--log-opt',
          'max-size=10m',
          '--log-opt',
          'max-file=3',
          ...(memory ? ['--memory', memory] : []),
          ...(d.envFile ? ['--env-file', d.envFile] : []),
          '--env-file',
          '*',
          '--env-file',
          '*',
          digest || image
        ]
      ]
    })
    if (image) {
      list.push({
        sh: pullResolved(image, d.registry),
        wants: [
          ...(d.registry
            ? [
                ['--config', '*', 'login', '--username', d.registry.username, '--password-stdin', d.registry.server],
                ['--config', '*', 'pull', '--quiet', image]
              ]
            : [['pull', '--quiet', image]]),
          ['image', 'inspect', '--format', '{{range .RepoDigests}}{{println .}}{{end}}', image]
        ]
      })
    }
  }
  return list
}

/** `*` in a wanted argv matches any one argument (temp file names). */
function matches(got: string[], want: string[]): boolean {
  return got.length === want.length && want.every((w, k) => w === '*' || w === got[k])
}

/** The names of the inputs an error from getInputs names; fails the property for any other kind of error. */
function namedBy(e: unknown): string[] {
  if (e instanceof InputErrors) {
    for (const x of e.errors) expect(e.message).toContain(`Input '${x.input}': `)
    return e.errors.map(x => x.input)
  }
  if (e instanceof InputError) return [e.input]
  throw e
}

describe('getInputs reads every input of action.yml', () => {
  it.each(['deploy', 'infra'] as const)('mode %s', mode => {
    const read = new Set<string>()
    getInputs(name => {
      read.add(name)
      return baselines[mode][name] ?? ''
    })
    expect([...read].sort()).toEqual(Object.keys(DEFAULTS).sort())
  })
})

describe.each(['deploy', 'infra'] as const)(
  'property, mode %s: one input replaced by an arbitrary string is rejected naming it, or is inert',
  mode => {
    it.each(Object.keys(DEFAULTS))('%s', name => {
      const base = baselines[mode]
      const accepted: Inputs[] = []
      let rejected = 0
      let namedItself = 0
      fc.assert(
        fc.property(valueArb(base[name]), value => {
          const values = { ...base, [name]: value }
          let inputs: Inputs
          try {
            inputs = getInputs(n => values[n] ?? '')
          } catch (e) {
            const named = namedBy(e)
            const allowed = [name, ...(COUPLED[name] ?? [])]
            // The error names the input (or one whose validity depends on it), and nothing the change did not touch.
            expect(named.length).toBeGreaterThan(0)
            expect(
              named.filter(n => !allowed.includes(n)),
              `${JSON.stringify(value)}: ${(e as Error).message}`
            ).toEqual([])
            rejected++
            if (named.includes(name)) namedItself++
            return
          }
          // Accepted. An input mode infra ignores is named in a warning exactly when it differs from its default.
          if (mode === 'infra' && DEPLOY_ONLY.includes(name))
            expect(ignoredBy(inputs.warnings), JSON.stringify(value)).toEqual(value.trim() === DEFAULTS[name] ? [] : [name])
          if (name === 'maintenance-page')
            expect(
              inputs.warnings.filter(w => w.endsWith('(it belongs to mode maintenance): maintenance-page')),
              JSON.stringify(value)
            ).toEqual(value.trim() ? [`Ignored in mode ${mode} (it belongs to mode maintenance): maintenance-page`] : [])
          // Whatever goes into an env file is something the file holds exactly.
          for (const [, v] of appOf(inputs)?.env ?? [])
            expect(v, 'a docker --env-file value must be one line without NUL').not.toMatch(/[\r\n\0]/)
          const infraEnv = inputs.infra.infraEnv
          if (infraEnv.length) {
            const back = readEnvFile(mergeEnvFile('', infraEnv, 'infra-env').text)
            for (const [k, v] of infraEnv) expect(back.get(k), `.env value of ${k}`).toBe(v)
          }
          accepted.push(inputs)
        }),
        { numRuns: RUNS }
      )

      // Every string that reaches a command line passes through a real sh unchanged (one sh for all of them).
      const strings = [...new Set(accepted.flatMap(argvStrings))]
      expect(throughSh(strings)).toEqual(strings)

      // The commands the action builds from them give docker exactly those strings as arguments. Only accepted sets
      // whose argv strings differ from each other are run (the rest would repeat the same check).
      const distinct = new Map(accepted.map(i => [JSON.stringify(argvStrings(i)), i]))
      const samples = [...distinct.values()].slice(0, 40)
      const built = samples.flatMap(commandsOf)
      const argvs = dockerArgvs(built.map(b => b.sh))
      built.forEach((b, n) => {
        expect(argvs[n].length, b.sh.sh).toBe(b.wants.length)
        b.wants.forEach((want, k) =>
          expect(matches(argvs[n][k], want), `${JSON.stringify(argvs[n][k])} != ${JSON.stringify(want)}`).toBe(true)
        )
      })

      // Not a vacuous pass. An input without a rule in this mode was never rejected, whatever the value (a rule
      // there would break configurations that work). Every other input has a rule the generated values broke, and
      // some of those rejections named the input itself (not only an input coupled to it): a rule that vanished, or
      // an error that named the wrong input, fails here.
      if (NO_RULE[mode].includes(name)) {
        expect(rejected, `${name} is never an error in mode ${mode}`).toBe(0)
        expect(accepted).toHaveLength(RUNS)
      } else {
        expect(rejected, `no value of ${name} was rejected in mode ${mode}: has it lost its rule?`).toBeGreaterThan(0)
        expect(namedItself, `no rejection of a value of ${name} named ${name}`).toBeGreaterThan(0)
      }
    })
  }
)
