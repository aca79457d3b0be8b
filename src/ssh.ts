import * as core from '@actions/core'
import { createConnection } from 'node:net'
import { NodeSSH } from 'node-ssh'
import { PassThrough, Readable } from 'node:stream'
import { HostError } from './errors'
import { checkHostKey, fingerprintOf, keyTypeOf, type KnownHostEntry } from './hostkey'
import { sleep, type Sh } from './shell'

/** Where and how to connect (inputs/connection.ts reads them). */
export interface ConnectionInputs {
  host: string
  port: number
  username: string
  privateKey: string
  passphrase?: string
  knownHosts?: KnownHostEntry[]
  fingerprint?: string
  skipHostKeyCheck: boolean
  connectTimeoutMs: number
  connectRetries: number
}

export interface RunResult {
  code: number
  stdout: string
  stderr: string
}

/** A connected host. Commands come in as Sh (built by src/shell.ts), never as ad-hoc strings. */
export interface Remote {
  /** Runs a command; a non-zero exit is returned, not thrown. */
  run(command: Sh, opts?: { stdin?: string | Buffer }): Promise<RunResult>
  /** Runs a command and returns its stdout; a non-zero exit throws a HostError saying what failed. */
  must(command: Sh, what: string, opts?: { stdin?: string | Buffer; fix?: string }): Promise<string>
  /** Starts a long-running command whose stdin stays open until `end()`; `onStdout` sees its output as it comes. */
  start(command: Sh, onStdout: (text: string) => void): Running
  /** False once the connection is gone (closed by either side or cut). */
  connected(): boolean
  close(): void
}

export interface Running {
  done: Promise<RunResult>
  /** Writes to the command's stdin. */
  write(text: string): void
  /** Closes the command's stdin. */
  end(): void
}

/** What Remote.must returns: the stdout, or a HostError naming `what` with the exit code and the output's last lines. */
export function stdoutOrThrow(r: RunResult, what: string, fix?: string): string {
  if (r.code === 0) return r.stdout
  const detail = (r.stderr.trim() || r.stdout.trim()).split('\n').slice(-20).join('\n')
  throw new HostError(`${what} failed (exit ${r.code})${detail ? `:\n${detail}` : ''}`, fix)
}

/** Why a connection attempt failed, and whether trying again can help. */
export class ConnectError extends Error {
  constructor(
    message: string,
    readonly retryable: boolean
  ) {
    super(message)
    this.name = 'ConnectError'
  }
}

class SshRemote implements Remote {
  private closed = false

  constructor(private readonly ssh: NodeSSH) {
    const mark = () => (this.closed = true)
    // Many small request/response exchanges: without TCP_NODELAY, Nagle plus delayed ACKs add ~40 ms to each.
    ssh.connection?.setNoDelay(true)
    ssh.connection?.once('close', mark).once('end', mark)
  }

  async run(command: Sh, opts: { stdin?: string | Buffer } = {}): Promise<RunResult> {
    const started = Date.now()
    const stdin = Buffer.isBuffer(opts.stdin) ? Readable.from([opts.stdin]) : opts.stdin
    const r = await this.ssh.execCommand(command.sh, { stdin, noTrim: true })
    core.debug(`remote (${Date.now() - started} ms, exit ${r.code}): ${command.sh}`)
    return { code: r.code ?? (r.signal ? 128 : 255), stdout: r.stdout, stderr: r.stderr.replace(/\r\n?/g, '\n') }
  }

  async must(command: Sh, what: string, opts: { stdin?: string | Buffer; fix?: string } = {}): Promise<string> {
    return stdoutOrThrow(await this.run(command, opts), what, opts.fix)
  }

  start(command: Sh, onStdout: (text: string) => void): Running {
    core.debug(`remote (held): ${command.sh}`)
    const stdin = new PassThrough()
    const done = this.ssh
      .execCommand(command.sh, { stdin, noTrim: true, onStdout: chunk => onStdout(chunk.toString('utf8')) })
      .then(r => ({ code: r.code ?? 255, stdout: r.stdout, stderr: r.stderr }))
    return { done, write: text => void stdin.write(text), end: () => stdin.end() }
  }

  connected(): boolean {
    return !this.closed && this.ssh.isConnected()
  }

  close(): void {
    this.ssh.dispose()
  }
}

/** One attempt: TCP, handshake with host key verification (before authentication), then public-key auth. */
async function connectOnce(c: ConnectionInputs): Promise<NodeSSH> {
  const ssh = new NodeSSH()
  let hostKeyProblem: string | undefined
  // Our own socket, for TCP_NODELAY from the first byte: with Nagle's algorithm every small SSH message that follows
  // another waits for the host's delayed ACK (40 ms on Linux), several times in the handshake and in every command
  // (measured on loopback: ready after 210 ms instead of 50, `true` 60-90 ms instead of 12). ssh2 reports its errors.
  const sock = createConnection({ host: c.host, port: c.port, noDelay: true })
  sock.on('error', () => undefined)
  try {
    await ssh.connect({
      sock,
      host: c.host,
      port: c.port,
      username: c.username,
      // The key is the only credential: no `none` probe first (one round trip less).
      authHandler: ['publickey'],
      privateKey: c.privateKey,
      passphrase: c.passphrase,
      readyTimeout: c.connectTimeoutMs,
      keepaliveInterval: 10_000,
      keepaliveCountMax: 3,
      tryKeyboard: false,
      hostVerifier: (key: Buffer) => {
        const verdict = checkHostKey(
          { host: c.host, port: c.port, knownHosts: c.knownHosts, fingerprint: c.fingerprint, skip: c.skipHostKeyCheck },
          key
        )
        if (verdict.ok) {
          if (verdict.via === 'skipped') {
            core.warning(
              `Host key NOT verified (insecure-skip-host-key-check): ${c.host} presented ${keyTypeOf(key)} ${fingerprintOf(key)}. Set host-fingerprint to this value to verify it.`
            )
          } else core.info(`Host key verified by ${verdict.via}: ${keyTypeOf(key)} ${fingerprintOf(key)}`)
          return true
        }
        hostKeyProblem = verdict.reason
        return false
      }
    })
    return ssh
  } catch (e) {
    ssh.dispose()
    sock.destroy()
    if (hostKeyProblem) throw new ConnectError(`Host key verification failed; nothing was sent to the host. ${hostKeyProblem}`, false)
    const err = e as Error & { level?: string; code?: string }
    if (err.level === 'client-authentication') {
      throw new ConnectError(
        `Authentication failed for ${c.username}@${c.host}:${c.port}: the host refused the key from ssh-key. Check that its public key is in ~${c.username}/.ssh/authorized_keys on the host.`,
        false
      )
    }
    const what = err.code ? `${err.code}: ${err.message}` : err.message
    throw new ConnectError(`Cannot connect to ${c.host}:${c.port}: ${what}`, true)
  }
}

/** Connects with retries and exponential backoff (1 s, 2 s, 4 s, … capped at 30 s) on network errors only. */
export async function connect(c: ConnectionInputs, pause: (ms: number) => Promise<unknown> = sleep): Promise<Remote> {
  for (let attempt = 0; ; attempt++) {
    try {
      return new SshRemote(await connectOnce(c))
    } catch (e) {
      if (!(e instanceof ConnectError) || !e.retryable) throw e
      if (attempt >= c.connectRetries) {
        throw new ConnectError(
          `${e.message} (gave up after ${attempt + 1} attempt${attempt ? 's' : ''}; check host, port, the security group and that sshd runs)`,
          false
        )
      }
      const wait = Math.min(1000 * 2 ** attempt, 30_000)
      core.warning(`${e.message}; retrying in ${wait / 1000} s (attempt ${attempt + 2} of ${c.connectRetries + 1})`)
      await pause(wait)
    }
  }
}
