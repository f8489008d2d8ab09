// Drive the official E2B JavaScript SDK through the sandbox lifecycle the platform uses.
//
// Connection settings come only from the SDK's own environment variables: E2B_API_URL
// (control plane), E2B_SANDBOX_URL (envd) and E2B_API_KEY. Debug mode is never used.
// Prints one JSON summary on stdout; exits 1 (with the failing step on stderr) on any
// failure, so a caller can assert on either.
import { CommandExitError, FileNotFoundError, Sandbox } from 'e2b'
import { createRequire } from 'node:module'

const require = createRequire(import.meta.url)
const sdkVersion = require('e2b/package.json').version

for (const name of ['E2B_API_URL', 'E2B_SANDBOX_URL', 'E2B_API_KEY']) {
  if (!process.env[name]) {
    console.error(`${name} must be set (the emulator URL / API key)`)
    process.exit(2)
  }
}
if (/^true$/i.test(process.env.E2B_DEBUG ?? '')) {
  console.error('E2B_DEBUG must not be set: this check proves the non-debug connection path')
  process.exit(2)
}

const runId = `js-${process.pid}-${Date.now()}`
const summary = { sdkVersion, runId }
let step = 'start'

function check(condition, message) {
  if (!condition) throw new Error(`${step}: ${message}`)
}

async function errorOf(promise) {
  try {
    await promise
  } catch (err) {
    return { errorClass: err.constructor.name, message: err.message }
  }
  throw new Error(`${step}: expected an error`)
}

async function listByMetadata() {
  const paginator = Sandbox.list({ query: { metadata: { check_run: runId } } })
  const found = []
  while (paginator.hasNext) {
    for (const info of await paginator.nextItems()) {
      found.push({ sandboxId: info.sandboxId, state: info.state, metadata: info.metadata })
    }
  }
  return found
}

let sandbox
try {
  step = 'create'
  sandbox = await Sandbox.create('donmai-worker', {
    timeoutMs: 120_000,
    envs: { GREETING: 'hello-from-js' },
    metadata: { check_run: runId, client: 'e2b-js' },
  })
  const info = await sandbox.getInfo()
  summary.create = {
    sandboxId: sandbox.sandboxId,
    templateId: info.templateId,
    metadata: info.metadata,
    state: info.state,
    timeoutS: Math.round((info.endAt - info.startedAt) / 1000),
  }
  check(info.templateId === 'donmai-worker', `template ${info.templateId}`)
  check(info.metadata.check_run === runId, 'metadata not kept')

  step = 'run'
  const which = await sandbox.commands.run('which donmai')
  const greeting = await sandbox.commands.run('echo "$GREETING"')
  summary.run = {
    which: { exitCode: which.exitCode, stdout: which.stdout.trim() },
    env: greeting.stdout.trim(),
  }
  check(which.exitCode === 0 && which.stdout.trim().endsWith('/donmai'), 'donmai not found')
  check(greeting.stdout === 'hello-from-js\n', 'sandbox envs not applied')

  step = 'run_failure'
  try {
    await sandbox.commands.run('echo partial; echo broken >&2; exit 3')
    throw new Error(`${step}: a non-zero exit did not throw`)
  } catch (err) {
    if (!(err instanceof CommandExitError)) throw err
    summary.runFailure = {
      errorClass: err.constructor.name,
      exitCode: err.exitCode,
      stdout: err.stdout,
      stderr: err.stderr,
      error: err.error,
    }
  }

  step = 'files'
  const written = await sandbox.files.write('notes/js.txt', 'written by js')
  const binary = Uint8Array.from({ length: 256 }, (_, i) => i)
  await sandbox.files.write('/home/user/blob.bin', binary.buffer)
  const readBack = await sandbox.files.read('blob.bin', { format: 'bytes' })
  const missing = await errorOf(sandbox.files.read('missing.txt'))
  summary.files = {
    written: { name: written.name, path: written.path },
    text: await sandbox.files.read('notes/js.txt'),
    bytesEqual: readBack.length === 256 && readBack.every((b, i) => b === i),
    fromCommand: (await sandbox.commands.run('cat notes/js.txt')).stdout,
    listed: (await sandbox.files.list('/home/user')).map((e) => `${e.type}:${e.name}`).sort(),
    exists: [await sandbox.files.exists('notes/js.txt'), await sandbox.files.exists('nope')],
    info: (await sandbox.files.getInfo('notes')).type,
    madeDir: [await sandbox.files.makeDir('made/deep'), await sandbox.files.makeDir('made/deep')],
    missingRead: { ...missing, isFileNotFound: missing.errorClass === FileNotFoundError.name },
    missingInfo: (await errorOf(sandbox.files.getInfo('missing.txt'))).errorClass,
  }
  await sandbox.files.remove('made')
  summary.files.removed = !(await sandbox.files.exists('made'))

  step = 'metrics'
  let samples = []
  for (let i = 0; i < 100 && samples.length === 0; i++) {
    samples = await sandbox.getMetrics()
    if (samples.length === 0) await new Promise((resolve) => setTimeout(resolve, 100))
  }
  check(samples.length > 0, 'no metrics sample')
  const last = samples.at(-1)
  summary.metrics = {
    cpuCount: last.cpuCount,
    memTotal: last.memTotal,
    diskTotal: last.diskTotal,
    cpuInRange: last.cpuUsedPct >= 0 && last.cpuUsedPct <= 100,
    memUsedPositive: last.memUsed > 0,
    timestampIsDate: last.timestamp instanceof Date && !Number.isNaN(last.timestamp.getTime()),
    future: (await Sandbox.getMetrics(sandbox.sandboxId, { start: new Date(Date.now() + 3600e3) })).length,
  }

  step = 'pause'
  summary.pause = { paused: await sandbox.pause() }
  summary.pause.info = (await Sandbox.getInfo(sandbox.sandboxId)).state
  summary.pause.listed = await listByMetadata()
  summary.pause.again = await sandbox.pause() // already paused: false, not an error
  check(summary.pause.paused === true && summary.pause.info === 'paused', 'not paused')

  step = 'connect'
  const resumed = await Sandbox.connect(sandbox.sandboxId, { timeoutMs: 120_000 })
  const afterResume = await resumed.commands.run('echo "$GREETING"')
  summary.connect = {
    sandboxId: resumed.sandboxId,
    state: (await resumed.getInfo()).state,
    stdout: afterResume.stdout.trim(),
  }
  check(summary.connect.state === 'running', 'connect did not resume')

  step = 'kill'
  summary.kill = { killed: await resumed.kill() }
  summary.kill.again = await Sandbox.kill(sandbox.sandboxId) // gone: false, not an error
  summary.kill.listed = await listByMetadata()
  check(summary.kill.killed === true && summary.kill.listed.length === 0, 'not killed')
  sandbox = undefined

  step = 'done'
  summary.ok = true
  console.log(JSON.stringify(summary))
} catch (err) {
  summary.ok = false
  summary.failedStep = step
  summary.error = `${err?.name ?? 'Error'}: ${err?.message ?? err}`
  console.log(JSON.stringify(summary))
  console.error(err?.stack ?? err)
  if (sandbox) await sandbox.kill().catch(() => undefined)
  process.exitCode = 1
}
