/** Who runs the action, from the runner's environment: recorded in the history, shown to lock waiters and in the summary. */
export interface RunInfo {
  repository?: string
  sha?: string
  actor?: string
  runUrl?: string
  commitUrl?: string
}

export function runInfo(env: NodeJS.ProcessEnv = process.env): RunInfo {
  const base = env.GITHUB_SERVER_URL && env.GITHUB_REPOSITORY ? `${env.GITHUB_SERVER_URL}/${env.GITHUB_REPOSITORY}` : undefined
  return {
    repository: env.GITHUB_REPOSITORY,
    sha: env.GITHUB_SHA,
    actor: env.GITHUB_ACTOR,
    runUrl: base && env.GITHUB_RUN_ID ? `${base}/actions/runs/${env.GITHUB_RUN_ID}` : undefined,
    commitUrl: base && env.GITHUB_SHA ? `${base}/commit/${env.GITHUB_SHA}` : undefined
  }
}
