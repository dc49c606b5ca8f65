/**
 * `npm run bench` (= node --import tsx bench/run.ts): the cost of durability, measured on the
 * embedded stack. Prints tables and writes bench-results/latest.json and the committed
 * docs/bench/latest.json, then renders from it what `npm run docs` renders (docs/bench/results.md, the
 * SVG charts, the generated parts of README.md and docs/bench/README.md).
 *
 *   --quick              a few cycles per cell, and only the two workflow changes in the A/B
 *   --skip=a,b           skip parts: cli, nova, cluster, matrix, floor, cinder, neighbours, variants, scale
 *   --only=a,b           run only these parts (the others skipped), e.g. --only=nova; --only=cli needs
 *                        no stack and replaces only the `cli` part of docs/bench/latest.json; --only=nova
 *                        and --only=cluster replace their part, with its own run's date and load
 *   --cli-rounds=N       rounds of the CLI start-up part (bench/cli.ts)
 *   --agent-variants=a   the scale part again at its largest size with the agent process changed (AGENT_VARIANTS)
 *   --cinder-mode=M      the real Cinder's mode: single (one process, default) or multi (three daemons over RabbitMQ)
 *   --variants=a,b       side-by-side comparisons (default: all): regular-activities (the code before the
 *                        local-activities change, as 'before'), separate-connector (before the host
 *                        connector came with the device name, as 'before'), worker-tuning (as 'after')
 *   --scale=1,100,1000   instance counts for the task-queue scale test
 *   --instances=1,8,64 --concurrency=1,8,32   override the matrix
 *   --rounds=N --variant-cycles=1:24,8:64   A/B rounds and cycles per variant cell
 *   --running-domains    keep the QEMU guests running (default: paused, see docs/bench/README.md)
 *   --no-docs            write bench-results/ only (for trial runs)
 *   --report=FILE.json   no stack: make FILE docs/bench/latest.json and render the docs from it
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { DefaultLogger, Runtime } from '@temporalio/worker';
import { projectRoot } from '../src/config.ts';
import { LibvirtConnection } from '../src/libvirt/binding.ts';
import { LIBVIRT_URI, startBenchStack, waitFor, type BenchStack } from './stack.ts';
import type { ControlVariant } from './child.ts';
import { createDirectRunner, temporalCycle } from './direct-baseline.ts';
import { runCell, runInterleaved, startBackground, type CellResult, type CycleFn } from './load.ts';
import { historiesBetween } from './history.ts';
import { runScale } from './scale.ts';
import { runFloor } from './floor.ts';
import { runNovaPart } from './nova.ts';
import { runClusterPart } from './cluster.ts';
import { runCliPart } from './cli.ts';
import { rounded, summarize } from './stats.ts';
import type { Client } from '@temporalio/client';
import { pidsWithArgument, startSampler } from './procs.ts';
import { generateWorkflowVariant, WORKFLOW_VARIANTS, type WorkflowVariant } from './variants/generate.ts';
import { markdown, printSummary, writeCharts, type BenchResults, type VariantComparison } from './report.ts';
import { writeDocs as writeGeneratedDocs } from '../scripts/generate-docs.ts';

const argv = process.argv.slice(2);
const flag = (name: string) => argv.includes(`--${name}`);
const opt = (name: string) => argv.find((a) => a.startsWith(`--${name}=`))?.split('=')[1];
const quick = flag('quick');
const PARTS = ['cli', 'nova', 'cluster', 'matrix', 'floor', 'cinder', 'neighbours', 'variants', 'scale'];
const only = opt('only')?.split(',').filter(Boolean);
/**
 * Parts that a run of only them merges into the committed results (each with its own date, commit and
 * load), not a new run of everything: nova, scale and cluster stand on their own run (both sides of
 * each are side by side inside the part); cli may come along.
 */
const MERGED_PARTS = ['nova', 'scale', 'cluster', 'cli'];
const mergeOnly = only !== undefined && only.some((p) => p === 'nova' || p === 'scale' || p === 'cluster') && only.every((p) => MERGED_PARTS.includes(p));
const skip = new Set(only ? PARTS.filter((p) => !only.includes(p)) : (opt('skip') ?? '').split(',').filter(Boolean));

const profile = quick
  ? {
      name: 'quick',
      instances: [1, 8, 64],
      concurrency: [1, 8, 32],
      cycles: { 1: 4, 8: 8, 32: 32 } as Record<number, number>,
      historyLimit: 6,
      cinder: { instances: 8, concurrency: [1, 8], cycles: { 1: 4, 8: 8 } as Record<number, number>, rounds: 2 },
      nova: { instances: 8, concurrency: [1, 8], cycles: { 1: 4, 8: 16 } as Record<number, number>, rounds: 2 },
      cluster: { cells: [{ concurrency: 1, instances: 1, cycles: 6 }, { concurrency: 8, instances: 8, cycles: 16 }], rounds: 2 },
      floorRuns: 10,
      neighbourCycles: 4,
      variantCells: [{ concurrency: 1, instances: 8, cycles: 5 }, { concurrency: 8, instances: 8, cycles: 16 }],
      variantRounds: 2,
      scale: [1, 100],
      probes: 2,
      cliRounds: 5,
    }
  : {
      name: 'full',
      instances: [1, 8, 64],
      concurrency: [1, 8, 32],
      cycles: { 1: 15, 8: 48, 32: 96 } as Record<number, number>,
      historyLimit: 20,
      cinder: { instances: 8, concurrency: [1, 8], cycles: { 1: 32, 8: 64 } as Record<number, number>, rounds: 4 },
      nova: { instances: 8, concurrency: [1, 8], cycles: { 1: 32, 8: 96 } as Record<number, number>, rounds: 4 },
      cluster: { cells: [{ concurrency: 1, instances: 1, cycles: 30 }, { concurrency: 8, instances: 8, cycles: 96 }], rounds: 4 },
      floorRuns: 30,
      neighbourCycles: 10,
      variantCells: [{ concurrency: 1, instances: 8, cycles: 12 }, { concurrency: 8, instances: 8, cycles: 40 }],
      variantRounds: 4,
      scale: [1, 100, 1000],
      probes: 3,
      cliRounds: 15,
    };
const scaleSizes = opt('scale')?.split(',').map(Number) ?? profile.scale;
if (opt('cli-rounds')) profile.cliRounds = Number(opt('cli-rounds'));
if (opt('rounds')) profile.variantRounds = Number(opt('rounds'));
if (opt('variant-cycles')) {
  // e.g. 1:24,8:64 — cycles per variant cell, by concurrency
  const byC = new Map(opt('variant-cycles')!.split(',').map((p) => p.split(':').map(Number) as [number, number]));
  profile.variantCells = profile.variantCells.map((c) => ({ ...c, cycles: byC.get(c.concurrency) ?? c.cycles }));
}
if (opt('instances')) profile.instances = opt('instances')!.split(',').map(Number);
if (opt('concurrency')) profile.concurrency = opt('concurrency')!.split(',').map(Number);

/** `former`: the variant is earlier code, measured as "before" with the shipped code as "after". */
const VARIANTS: Record<string, { description: string; control: ControlVariant; former?: boolean }> = {
  'regular-activities': {
    description:
      'before: every control-plane step a regular activity (the code until the local-activities change); after: the shipped code, where validate, reserveVolume, initializeConnection, completeAttachment, markBdmAttached, validateDetach, beginDetaching, setBdmAttachStatus, deleteAttachment, destroyBdm are local activities of the control worker (the look for an earlier operation is a local isEarlierOperationRunning, the waiting activity scheduled only when there is one; compensations and host steps unchanged, the host connector coming with the device name in both)',
    control: { workflows: 'regular-activities' },
    former: true,
  },
  'separate-connector': {
    description:
      "before: the host connector read by a getHostConnector activity of its own on the instance's queue (the code until the 'connector-with-device-name' patch); after: the shipped code, where reserveDeviceName returns the connector too (one host round trip, one workflow task fewer per attach)",
    control: { workflows: 'separate-connector' },
    former: true,
  },
  'worker-tuning': {
    description: 'shipped workflows; control worker with maxConcurrentWorkflowTaskPolls 2, maxConcurrentActivityTaskPolls 2 (default 10 each)',
    control: { workflows: 'shipped', worker: { maxConcurrentWorkflowTaskPolls: 2, maxConcurrentActivityTaskPolls: 2 } },
  },
};
/** Variants of the compute agent's process, measured by the scale part at its largest size after the shipped agent. */
const AGENT_VARIANTS: Record<string, { description: string; env: Record<string, string> }> = {
  'before-memory': {
    description:
      "the agent before the memory change: SDK worker heartbeats on (a sysinfo thread per Worker, one Worker per instance queue) and no malloc_trim after its syncs (shipped: AGENT_RUNTIME_OPTIONS, releaseFreedMemory)",
    env: { BENCH_AGENT_BEFORE_MEMORY: '1' },
  },
  'malloc-arena-max-2': {
    description: "glibc's malloc limited to 2 arenas (MALLOC_ARENA_MAX=2; default: 8 per core, one per thread that allocates: the libuv pool, V8's and the Temporal core's threads)",
    env: { MALLOC_ARENA_MAX: '2' },
  },
};
// opt-in (--agent-variants=malloc-arena-max-2): measured once on a loaded machine, 491 MB shipped vs ~481 MB
// (sampled), not taken; each variant is a second agent with 1000 queues and its burst
const agentVariantNames = (opt('agent-variants')?.split(',') ?? []).filter((v) => AGENT_VARIANTS[v]);
// --quick compares the proposed change only; the full run also shows a tuning that did not help
let variantNames = (opt('variants')?.split(',') ?? (quick ? ['regular-activities', 'separate-connector'] : Object.keys(VARIANTS))).filter((v) => VARIANTS[v]);

const log = (s: string) => process.stdout.write(`${s}\n`);
const t0 = performance.now();
const elapsed = () => `${Math.round((performance.now() - t0) / 1000)} s`;

async function main(): Promise<void> {
  const reportOnly = opt('report');
  if (reportOnly) {
    const results = JSON.parse(fs.readFileSync(reportOnly, 'utf8')) as BenchResults;
    writeDocs(results, path.join(projectRoot, 'docs', 'bench'));
    printSummary(results, log);
    return;
  }
  if (PARTS.every((p) => p === 'cli' || skip.has(p))) {
    await cliOnly();
    return;
  }
  // The CLI first, before the stack's processes start: start-up is what an operator waits for.
  const cli = skip.has('cli') ? undefined : await measureCli();
  Runtime.install({ logger: new DefaultLogger('ERROR') });
  log(`tether benchmark (${profile.name}); starting the stack…`);
  for (const name of Object.keys(WORKFLOW_VARIANTS) as WorkflowVariant[]) {
    try {
      generateWorkflowVariant(name);
    } catch (err) {
      log(`  ! variant ${name} skipped: ${(err as Error).message}`);
      variantNames = variantNames.filter((v) => v !== name);
    }
  }
  const stack = await startBenchStack({ runningDomains: flag('running-domains'), log });
  let cleaned = false;
  const cleanup = async () => {
    if (cleaned) return;
    cleaned = true;
    log('cleaning up (domains, volumes, database, servers)…');
    await stack.cleanup();
  };
  // a late gRPC retry or a client of an aborted cell must not kill the run before it cleans up
  process.on('uncaughtException', (err) => log(`  ! uncaught: ${err.message}`));
  process.on('unhandledRejection', (err) => log(`  ! unhandled rejection: ${(err as Error)?.message ?? String(err)}`));
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.on(signal, () => {
      void cleanup().finally(() => process.exit(130));
    });
  }
  const results = newResults(stack);
  if (cli) results.cli = cli;
  try {
    await runAll(stack, results);
  } catch (err) {
    log(`benchmark failed: ${(err as Error).stack ?? String(err)}; reporting what was measured`);
    results.meta.failed = (err as Error).message;
    process.exitCode = 1;
  } finally {
    report(results);
    await cleanup();
    log(`done in ${elapsed()}`);
  }
}

/**
 * Times the client's executeUpdateWithStart calls (the attach's reservation through Temporal): what
 * of the API's answer is update-with-start and what is tether's service layer around it.
 */
function timeUpdateWithStart(client: Client): { take(): number[] } {
  const wf = client.workflow as unknown as { executeUpdateWithStart: (...args: unknown[]) => Promise<unknown> };
  const original = wf.executeUpdateWithStart.bind(wf);
  let samples: number[] = [];
  wf.executeUpdateWithStart = async (...args: unknown[]) => {
    const t0 = performance.now();
    try {
      return await original(...args);
    } finally {
      samples.push(performance.now() - t0);
    }
  };
  return {
    take() {
      const s = samples;
      samples = [];
      return s;
    },
  };
}

async function measureCli() {
  log(`CLI start-up: node -e 0 and tether's help, ${profile.cliRounds} interleaved rounds…`);
  const r = await runCliPart({ rounds: profile.cliRounds, log });
  r.commit = gitCommit();
  return r;
}

/**
 * `--only=cli`: no stack. The CLI part replaces the `cli` of docs/bench/latest.json (the other parts
 * stay as their own run measured them; the CLI part carries its own date and commit).
 */
async function cliOnly(): Promise<void> {
  const cli = await measureCli();
  const resultsDir = path.join(projectRoot, 'bench-results');
  fs.mkdirSync(resultsDir, { recursive: true });
  fs.writeFileSync(path.join(resultsDir, `cli-${cli.date.replace(/[:.]/g, '-')}.json`), `${JSON.stringify(cli, null, 1)}\n`);
  if (flag('no-docs')) return;
  const file = path.join(projectRoot, 'docs', 'bench', 'latest.json');
  if (!fs.existsSync(file)) {
    log(`no ${path.relative(projectRoot, file)} to add the CLI part to: run the whole bench once`);
    return;
  }
  const results = JSON.parse(fs.readFileSync(file, 'utf8')) as BenchResults;
  results.cli = cli;
  writeDocs(results, path.dirname(file));
}

function gitCommit(): string {
  try {
    return execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: projectRoot }).toString().trim();
  } catch {
    return 'unknown'; // not a checkout
  }
}

function newResults(stack: BenchStack): BenchResults {
  const commit = gitCommit();
  return {
    meta: {
      date: new Date().toISOString(),
      profile: profile.name,
      commit,
      cpus: os.cpus().length,
      cpuModel: os.cpus()[0]?.model,
      memoryGb: Math.round(os.totalmem() / 2 ** 30),
      node: process.version,
      postgres: stack.databaseKind,
      temporal: 'dev server (CLI 1.5.1), in memory, tether dynamic config',
      libvirt: LIBVIRT_URI,
      domains: flag('running-domains') ? 'running' : 'paused (see README)',
      bus: 'scsi',
      cyclesPerCell: profile.cycles,
      command: `npm run bench${process.argv.length > 2 ? ` -- ${process.argv.slice(2).join(' ')}` : ''}`,
      loadStart: Math.round(os.loadavg()[0]! * 10) / 10,
    },
    rest: { resources: [] },
    matrix: [],
    histories: [],
    variants: [],
  };
}

async function runAll(stack: BenchStack, results: BenchResults): Promise<void> {
  const maxConcurrency = Math.max(...profile.concurrency);
  const volumes = await stack.ensureVolumes(maxConcurrency + 1);
  await stack.ensureInstances(1);
  log(`stack up after ${elapsed()} (${stack.databaseKind} PostgreSQL, Temporal ${stack.temporal.address}, host ${stack.host})`);

  // at rest
  await sleep(2_000);
  const rest = startSampler(stack.procGroups(), 1000);
  await sleep(10_000);
  results.rest.resources = rest.stop();
  log(`at rest: ${results.rest.resources.map((g) => `${g.name} ${g.rssMb} MB`).join(', ')}`);

  const updateWithStart = timeUpdateWithStart(stack.client);
  const directLibvirt = await LibvirtConnection.open(LIBVIRT_URI); // pool of 4, as the compute agent's
  const direct = createDirectRunner({ db: stack.db, blockStorage: stack.blockStorage, libvirt: directLibvirt, host: stack.host, service: stack.service });
  const temporal: CycleFn = (i, v) => temporalCycle(stack.service, i, v);
  const modes: Array<[string, CycleFn]> = [
    ['temporal', temporal],
    ['direct', (i, v) => direct.cycle(i, v)],
  ];

  try {
    if (!skip.has('matrix')) {
      for (const count of profile.instances) {
        const instances = await stack.ensureInstances(count);
        for (const c of profile.concurrency) {
          for (const [mode, fn] of modes) {
            updateWithStart.take();
            const r = await runCell({ mode, concurrency: c, instances, volumes, cycles: profile.cycles[c]! }, fn, stack.procGroups());
            const uws = updateWithStart.take();
            if (mode === 'temporal' && uws.length) r.updateWithStart = rounded(summarize(uws));
            results.matrix.push(r);
            log(
              `[${elapsed()}] ${mode.padEnd(8)} instances ${String(count).padStart(2)} concurrency ${String(c).padStart(2)}: ` +
                `p50 ${r.cycle.p50} p95 ${r.cycle.p95} p99 ${r.cycle.p99} ms, ${r.throughput} cycles/s` +
                `${r.errors ? `, ${r.errors} errors (${r.firstError})` : ''} [other load ${r.machine.otherCores} cores]`,
            );
            if (mode === 'temporal') {
              const h = await historiesBetween(stack.client, stack.controlTaskQueue, r.startedAt, r.endedAt, { limit: profile.historyLimit, expected: r.cycles });
              results.histories.push({ concurrency: c, instances: count, ...h });
            }
          }
        }
      }
    }

    if (!skip.has('floor')) {
      // its throughput at the matrix's 8 instances × 8 clients, as many cycles as tether's cell
      const floorLoad = { concurrency: 8, instances: 8, cycles: profile.cycles[8] ?? 48 };
      results.floor = await runFloor(stack, stack.client, profile.floorRuns, floorLoad);
      log(`[${elapsed()}] floor (steps that do nothing): attach-shaped p50 ${results.floor.attachShaped.p50} ms, detach-shaped p50 ${results.floor.detachShaped.p50} ms, empty workflow p50 ${results.floor.empty.p50} ms`);
      const ft = results.floor.throughput;
      if (ft) log(`[${elapsed()}] floor throughput at ${ft.instances} host queues × ${ft.concurrency} clients: ${ft.cyclesPerSecond} cycles/s (cycle p50 ${ft.cycle.p50} ms)`);
    }

    if (!skip.has('cinder')) {
      results.cinder = await runCinderPart(stack, directLibvirt);
    }

    if (!skip.has('nova')) {
      results.nova = await runNovaPart(stack, { ...profile.nova, runningDomains: flag('running-domains') }, log, elapsed);
    }

    if (!skip.has('cluster')) {
      results.cluster = await runClusterPart(stack, { ...profile.cluster, runningDomains: flag('running-domains'), log: (s) => log(`[${elapsed()}] ${s}`) });
    }

    if (!skip.has('neighbours')) {
      const all = await stack.ensureInstances(Math.max(...profile.instances));
      const [quietInstance, ...others] = all;
      const backgroundClients = 8;
      const bgVolumes = volumes.slice(0, backgroundClients);
      const probeVolume = [volumes[maxConcurrency]!];
      const quiet: Record<string, CellResult> = {};
      const busy: Record<string, CellResult> = {};
      let background = { concurrency: backgroundClients, instances: others.length, cycles: 0, errors: 0, throughput: 0 };
      for (const [mode, fn] of modes) {
        quiet[mode] = await runCell({ mode, concurrency: 1, instances: [quietInstance!], volumes: probeVolume, cycles: profile.neighbourCycles }, fn, stack.procGroups());
        const bg = startBackground({ mode, concurrency: backgroundClients, instances: others, volumes: bgVolumes }, fn);
        await sleep(2_000);
        busy[mode] = await runCell({ mode, concurrency: 1, instances: [quietInstance!], volumes: probeVolume, cycles: profile.neighbourCycles, warmup: false }, fn, stack.procGroups());
        const b = await bg.stop();
        if (mode === 'temporal') background = { ...background, ...b };
        log(`[${elapsed()}] neighbours ${mode}: quiet p50 ${quiet[mode]!.cycle.p50} ms, busy p50 ${busy[mode]!.cycle.p50} ms (background ${b.throughput} cycles/s)`);
      }
      results.neighbours = { background, quiet, busy };
    }

    if (!skip.has('variants')) {
      // Before and after side by side: the shipped control worker and the variant's, each on its own
      // task queue, measured in alternating short rounds so that both see the same machine load.
      for (const name of variantNames) {
        const v = VARIANTS[name]!;
        const queue = `${stack.controlTaskQueue}-${name}`;
        const variant = await stack.startVariantControl(v.control, queue);
        const groups = stack.procGroups([{ name: 'node: control-plane worker (variant)', pids: () => [variant.child.pid] }]);
        const shipped = { fn: temporal, queue: stack.controlTaskQueue };
        const other = { fn: ((i, vol) => temporalCycle(variant.service, i, vol)) as CycleFn, queue };
        const sides = v.former ? { before: other, after: shipped } : { before: shipped, after: other };
        const comparison: VariantComparison = { name, description: v.description, cells: [] };
        try {
          for (const spec of profile.variantCells) {
            const entry = { concurrency: spec.concurrency, instances: spec.instances, before: [] as CellResult[], after: [] as CellResult[] };
            comparison.cells.push(entry);
            const instances = await stack.ensureInstances(spec.instances);
            const perRound = Math.max(spec.concurrency, Math.ceil(spec.cycles / profile.variantRounds));
            for (let round = 0; round < profile.variantRounds; round++) {
              const order = round % 2 === 0 ? (['before', 'after'] as const) : (['after', 'before'] as const);
              for (const which of order) {
                const side = sides[which];
                const r = await runCell(
                  { mode: `temporal ${(which === 'after') === !!v.former ? 'shipped' : name}`, concurrency: spec.concurrency, instances, volumes, cycles: perRound, warmup: round === 0 },
                  side.fn,
                  groups,
                );
                entry[which].push(r);
                log(
                  `[${elapsed()}] ${name} ${which.padEnd(6)} round ${round + 1} instances ${spec.instances} concurrency ${spec.concurrency}: ` +
                    `p50 ${r.cycle.p50} ms, ${r.throughput} cycles/s, ${r.cpuMsPerCycle.total} CPU ms/cycle [other load ${r.machine.otherCores} cores]`,
                );
                if (round === 0 && spec === profile.variantCells[0]) {
                  const h = await historiesBetween(stack.client, side.queue, r.startedAt, r.endedAt, { limit: profile.historyLimit, expected: r.cycles });
                  if (which === 'before') comparison.historyBefore = h;
                  else comparison.historyAfter = h;
                }
              }
            }
          }
        } finally {
          await variant.child.stop();
        }
        results.variants.push(comparison);
      }
    }
  } finally {
    await directLibvirt.close();
  }

  if (!skip.has('scale')) {
    log(`[${elapsed()}] task queues at scale: ${scaleSizes.join(', ')} instances on one agent`);
    results.scale = await runScale(stack, scaleSizes, { idleWindowMs: 10_000, probes: profile.probes, log });
    results.scaleVariants = [];
    for (const name of agentVariantNames) {
      const v = AGENT_VARIANTS[name]!;
      log(`[${elapsed()}] task queues at scale, agent variant ${name} (${v.description}): ${Math.max(...scaleSizes)} instances`);
      const r = await runScale(stack, [Math.max(...scaleSizes)], { idleWindowMs: 10_000, probes: profile.probes, log, agentEnv: v.env, name });
      results.scaleVariants.push({ ...r, variant: { name, ...v } });
    }
  }
}

/**
 * The same cycles against a real Cinder (test/support/cinder.ts: Debian's Cinder with the file
 * driver, so QEMU really attaches the volume): a control worker of its own whose block storage is
 * that Cinder, and the direct baseline with the same Cinder client. Here the work of an attach is
 * what it is in a deployment, HTTP calls to Cinder's API that reach the volume manager over RPC.
 */
async function runCinderPart(stack: BenchStack, directLibvirt: LibvirtConnection): Promise<NonNullable<BenchResults['cinder']>> {
  const mode = opt('cinder-mode') === 'multi' ? 'multi' : 'single';
  const spec = profile.cinder;
  const out: NonNullable<BenchResults['cinder']> = { mode, driver: 'file', instances: spec.instances, cells: [], histories: [] };
  if (!fs.existsSync('/usr/lib/python3/dist-packages/cinder')) {
    out.skipped = 'Cinder is not installed (scripts/setup.sh installs Debian\'s cinder-api, cinder-scheduler, cinder-volume)';
    log(`  ! ${out.skipped}`);
    return out;
  }
  const { startCinder } = await import('../test/support/cinder.ts');
  const { CinderBlockStorage } = await import('../src/blockstorage/cinder/cinder-block-storage.ts');
  log(`[${elapsed()}] starting a real Cinder (${mode} mode, file driver)…`);
  let cinder: Awaited<ReturnType<typeof startCinder>>;
  try {
    cinder = await startCinder({ mode, driver: 'file' });
  } catch (err) {
    out.skipped = `Cinder did not start: ${(err as Error).message.split('\n')[0]}`;
    log(`  ! ${out.skipped}`);
    return out;
  }
  try {
    const blockStorage = new CinderBlockStorage(cinder.config());
    const queue = `${stack.controlTaskQueue}-cinder`;
    const { child, service } = await stack.startVariantControl({ workflows: 'shipped', blockStorageEnv: cinder.env }, queue, blockStorage);
    try {
      const maxC = Math.max(...spec.concurrency);
      const volumes = [];
      for (let i = 0; i < maxC; i++) volumes.push(await service.createVolume({ name: `bench-cinder-v${i}`, size: 1 }));
      for (const v of volumes) await waitFor(`Cinder volume ${v.id} available`, async () => (await blockStorage.getVolume(v.id)).status === 'available', 60_000, 100);
      const instances = await stack.ensureInstances(spec.instances);
      const direct = createDirectRunner({ db: stack.db, blockStorage, libvirt: directLibvirt, host: stack.host, service });
      const groups = stack.procGroups([
        { name: 'node: control-plane worker (Cinder)', pids: () => [child.pid] },
        { name: 'Cinder', pids: () => pidsWithArgument(cinder.stateDir) },
      ]);
      const modes: Array<[string, CycleFn]> = [
        ['temporal', (i, v) => temporalCycle(service, i, v)],
        ['direct', (i, v) => direct.cycle(i, v)],
      ];
      for (const c of spec.concurrency) {
        // Alternating rounds: Cinder's own drift (periodic tasks, its one eventlet process) falls on both modes alike.
        const cells = await runInterleaved({ concurrency: c, instances, volumes, cycles: spec.cycles[c]! }, modes, spec.rounds, groups);
        for (const r of cells) {
          out.cells.push(r);
          log(
            `[${elapsed()}] cinder ${r.mode.padEnd(8)} instances ${spec.instances} concurrency ${String(c).padStart(2)} (${spec.rounds} alternating rounds): attach p50 ${r.attach.p50} ms, ` +
              `cycle p50 ${r.cycle.p50} ms, ${r.throughput} cycles/s${r.errors ? `, ${r.errors} errors (${r.firstError})` : ''} [other load ${r.machine.otherCores} cores]`,
          );
        }
        const t = cells.find((r) => r.mode === 'temporal')!;
        const h = await historiesBetween(stack.client, queue, t.startedAt, t.endedAt, { limit: profile.historyLimit, expected: t.cycles });
        out.histories.push({ concurrency: c, instances: spec.instances, ...h });
      }
      for (const v of volumes) await blockStorage.deleteVolume?.(v.id).catch(() => undefined);
    } finally {
      await child.stop();
    }
  } finally {
    await cinder.stop();
  }
  return out;
}

function report(results: BenchResults): void {
  results.meta.durationS = Math.round((performance.now() - t0) / 1000);
  results.meta.loadEnd = Math.round(os.loadavg()[0]! * 10) / 10;
  const resultsDir = path.join(projectRoot, 'bench-results');
  fs.mkdirSync(resultsDir, { recursive: true });
  const json = `${JSON.stringify(results, null, 1)}\n`;
  fs.writeFileSync(path.join(resultsDir, 'latest.json'), json);
  fs.writeFileSync(path.join(resultsDir, `${profile.name}-${String(results.meta.date).replace(/[:.]/g, '-')}.json`), json);
  const md = markdown(results);
  fs.writeFileSync(path.join(resultsDir, 'results.md'), md);
  if (!flag('no-docs') && mergeOnly && (results.nova || results.scale || results.cluster)) {
    mergeParts(results);
  } else if (!flag('no-docs')) {
    const docs = path.join(projectRoot, 'docs', 'bench');
    fs.mkdirSync(docs, { recursive: true });
    writeDocs(results, docs);
  } else {
    writeCharts(results, path.join(resultsDir, 'charts'));
  }
  log('wrote bench-results/latest.json');
  printSummary(results, log);
}

/**
 * `--only=nova`, `--only=scale` and/or `--only=cluster` (with or without cli): the parts run replace
 * theirs in docs/bench/latest.json and carry their own date, commit and load (the other parts stay as
 * their own run measured them). Nova and tether are side by side inside the Nova part, the dev server
 * and the cluster inside the cluster part, in alternating rounds of the same run; the scale part's
 * agent variants ran after the shipped agent, same run.
 */
function mergeParts(results: BenchResults): void {
  const file = path.join(projectRoot, 'docs', 'bench', 'latest.json');
  if (!fs.existsSync(file)) {
    writeDocs(results, path.dirname(file));
    return;
  }
  const committed = JSON.parse(fs.readFileSync(file, 'utf8')) as BenchResults;
  const { date, commit, command, loadStart, loadEnd } = results.meta as Record<string, unknown>;
  const run = { date: String(date), commit: String(commit), command: String(command), loadStart: Number(loadStart), loadEnd: Number(loadEnd) };
  if (results.nova) committed.nova = { ...results.nova, run };
  if (results.scale) {
    committed.scale = { ...results.scale, run };
    committed.scaleVariants = results.scaleVariants ?? [];
  }
  if (results.cluster) committed.cluster = { ...results.cluster, run };
  if (results.cli) committed.cli = results.cli;
  writeDocs(committed, path.dirname(file));
}

/**
 * docs/bench/latest.json, then everything `npm run docs` renders from it: docs/bench/results.md, the
 * charts, and the generated parts of README.md and docs/bench/README.md.
 */
function writeDocs(results: BenchResults, docs: string): void {
  fs.mkdirSync(docs, { recursive: true });
  fs.writeFileSync(path.join(docs, 'latest.json'), `${JSON.stringify(results, null, 1)}\n`);
  const changed = writeGeneratedDocs(projectRoot);
  log(`wrote ${path.relative(projectRoot, path.join(docs, 'latest.json'))}; npm run docs rewrote ${changed.join(', ') || 'nothing'}`);
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
