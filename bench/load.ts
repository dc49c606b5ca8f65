/**
 * Closed-loop load: `concurrency` clients, each with its own volume, run attach+detach cycles
 * back to back; cycle n goes to instance n mod I (round robin), so the load is spread evenly over
 * the instances. A warm-up of one cycle per client is not counted.
 */
import type { Instance, Volume } from '../src/domain/types.ts';
import type { CycleTiming } from './direct-baseline.ts';
import { loadAverage, machineBusySec, startSampler, type GroupSample, type ProcGroup } from './procs.ts';
import { roundTo, summarize, rounded, type Summary } from './stats.ts';

export type CycleFn = (instance: Instance, volume: Volume) => Promise<CycleTiming>;

export interface CellSpec {
  mode: string;
  concurrency: number;
  instances: Instance[];
  volumes: Volume[];
  cycles: number;
  warmup?: boolean;
}

export interface CellResult {
  mode: string;
  concurrency: number;
  instances: number;
  cycles: number;
  errors: number;
  firstError?: string;
  wallMs: number;
  /** completed cycles per second */
  throughput: number;
  cycle: Summary;
  attach: Summary;
  reservation: Summary;
  /**
   * Through Temporal: the part of the reservation (the API's answer) spent in the client's
   * update-with-start call (workflow start, its first task, the reserve steps, the update's answer);
   * the rest of the reservation is tether's service layer before it (resolving, validating).
   */
  updateWithStart?: Summary;
  detach: Summary;
  /** direct path: median ms per step */
  stepsP50?: Record<string, number>;
  resources: Array<GroupSample & { cpuCores: number }>;
  /** cores busy on the whole machine during the cell, and how many of them were not ours (other users' runs) */
  machine: { busyCores: number; otherCores: number; loadAvgBefore: number; loadAvgAfter: number };
  /**
   * CPU milliseconds our processes spent per completed cycle (all groups, and per group): the cost
   * of a cycle that other users of the machine cannot distort the way they distort latency.
   */
  cpuMsPerCycle: { total: number; byGroup: Record<string, number> };
  startedAt: string;
  endedAt: string;
  /** raw cycle latencies (ms), for the charts */
  samples: number[];
}

/** Runs `total` cycles with `concurrency` clients; a cell gives up (without throwing) after 20 errors. */
async function drive(spec: CellSpec, cycle: CycleFn, total: number, out: CycleTiming[], errors: string[]): Promise<void> {
  let next = 0;
  let stop = false;
  const instanceCount = spec.instances.length;
  await Promise.allSettled(
    Array.from({ length: spec.concurrency }, async (_, client) => {
      const volume = spec.volumes[client]!;
      while (!stop && next < total) {
        const n = next++;
        const instance = spec.instances[n % instanceCount]!;
        try {
          out.push(await cycle(instance, volume));
        } catch (err) {
          errors.push((err as Error).message);
          if (errors.length >= 20) stop = true;
        }
      }
    }),
  );
}

/** One measured stretch of cycles of one mode: what a cell result is made of. */
interface Round {
  timings: CycleTiming[];
  errors: string[];
  wallMs: number;
  resources: Array<GroupSample & { cpuCores: number }>;
  busyCoreSec: number;
  loadAvgBefore: number;
  loadAvgAfter: number;
  startedAt: string;
  endedAt: string;
}

async function measureRound(spec: CellSpec, cycle: CycleFn, groups: ProcGroup[]): Promise<Round> {
  // warm-up (not counted): a few cycles, so that connections, caches and JIT are warm
  if (spec.warmup ?? true) await drive({ ...spec, concurrency: Math.min(spec.concurrency, 4) }, cycle, Math.min(spec.concurrency, 4), [], []);
  const timings: CycleTiming[] = [];
  const errors: string[] = [];
  const loadAvgBefore = loadAverage();
  const busy0 = machineBusySec();
  const sampler = startSampler(groups, 1000);
  const startedAt = new Date().toISOString();
  const t0 = performance.now();
  await drive(spec, cycle, spec.cycles, timings, errors);
  const wallMs = performance.now() - t0;
  const resources = sampler.stop();
  return { timings, errors, wallMs, resources, busyCoreSec: machineBusySec() - busy0, loadAvgBefore, loadAvgAfter: loadAverage(), startedAt, endedAt: new Date().toISOString() };
}

/** The cell's result from one or more rounds of the same mode (pooled samples, summed CPU and wall time, peak memory). */
function cellResult(spec: CellSpec, rounds: Round[]): CellResult {
  const timings = rounds.flatMap((r) => r.timings);
  const errors = rounds.flatMap((r) => r.errors);
  const wallMs = rounds.reduce((a, r) => a + r.wallMs, 0);
  const resources = rounds[0]!.resources.map((g) => {
    const same = rounds.map((r) => r.resources.find((x) => x.name === g.name) ?? g);
    const cpuSec = same.reduce((a, x) => a + x.cpuSec, 0);
    return { ...g, processes: Math.max(...same.map((x) => x.processes)), rssMb: Math.max(...same.map((x) => x.rssMb)), pssMb: Math.max(...same.map((x) => x.pssMb)), cpuSec, cpuCores: roundTo(cpuSec / (wallMs / 1000), 2) };
  });
  const busyCores = rounds.reduce((a, r) => a + r.busyCoreSec, 0) / (wallMs / 1000);
  const ours = resources.reduce((s, r) => s + r.cpuCores, 0);
  const byGroup: Record<string, number> = {};
  for (const g of resources) byGroup[g.name] = timings.length ? Math.round((Math.max(0, g.cpuSec) * 1000) / timings.length) : 0;
  const cpuMsPerCycle = { total: Object.values(byGroup).reduce((a, b) => a + b, 0), byGroup };
  const machine = { busyCores: roundTo(busyCores, 2), otherCores: roundTo(Math.max(0, busyCores - ours), 2), loadAvgBefore: rounds[0]!.loadAvgBefore, loadAvgAfter: rounds.at(-1)!.loadAvgAfter };
  const pick = (f: (t: CycleTiming) => number) => rounded(summarize(timings.map(f)));
  let stepsP50: Record<string, number> | undefined;
  if (timings.some((t) => t.steps)) {
    stepsP50 = {};
    const names = [...new Set(timings.flatMap((t) => Object.keys(t.steps ?? {})))];
    for (const name of names) stepsP50[name] = rounded(summarize(timings.map((t) => t.steps?.[name] ?? 0))).p50;
  }
  return {
    mode: spec.mode,
    concurrency: spec.concurrency,
    instances: spec.instances.length,
    cycles: timings.length,
    errors: errors.length,
    ...(errors[0] ? { firstError: errors[0] } : {}),
    wallMs: Math.round(wallMs),
    throughput: Math.round((timings.length / (wallMs / 1000)) * 100) / 100,
    cycle: pick((t) => t.totalMs),
    attach: pick((t) => t.attachMs),
    reservation: pick((t) => t.reservationMs),
    detach: pick((t) => t.detachMs),
    ...(stepsP50 ? { stepsP50 } : {}),
    resources,
    machine,
    cpuMsPerCycle,
    startedAt: rounds[0]!.startedAt,
    endedAt: rounds.at(-1)!.endedAt,
    samples: timings.map((t) => Math.round(t.totalMs * 10) / 10),
  };
}

export async function runCell(spec: CellSpec, cycle: CycleFn, groups: ProcGroup[]): Promise<CellResult> {
  if (spec.volumes.length < spec.concurrency) throw new Error('one volume per client is needed');
  return cellResult(spec, [await measureRound(spec, cycle, groups)]);
}

/**
 * Several modes measured in alternating rounds (A B B A A B …, each round `cycles / rounds` cycles),
 * so that a drift of a shared component (a Cinder's periodic tasks, another user of the machine)
 * falls on all of them alike; one pooled result per mode, in the order given. Warm-up before each
 * mode's first round only.
 */
/** `groups`: the processes whose CPU is counted, the same for every mode or chosen per mode (modes on different stacks). */
export async function runInterleaved(spec: Omit<CellSpec, 'mode'>, modes: Array<[string, CycleFn]>, rounds: number, groups: ProcGroup[] | ((mode: string) => ProcGroup[])): Promise<CellResult[]> {
  if (spec.volumes.length < spec.concurrency) throw new Error('one volume per client is needed');
  const perRound = Math.max(spec.concurrency, Math.ceil(spec.cycles / rounds));
  const done = new Map<string, Round[]>(modes.map(([m]) => [m, []]));
  for (let round = 0; round < rounds; round++) {
    const order = round % 2 === 0 ? modes : [...modes].reverse();
    for (const [mode, fn] of order) {
      const counted = typeof groups === 'function' ? groups(mode) : groups;
      done.get(mode)!.push(await measureRound({ ...spec, mode, cycles: perRound, warmup: round < 2 && done.get(mode)!.length === 0 }, fn, counted));
    }
  }
  return modes.map(([mode]) => cellResult({ ...spec, mode }, done.get(mode)!));
}

/** Runs cycles until stopped (background load for the noisy-neighbour measurement). */
export function startBackground(spec: Omit<CellSpec, 'cycles'>, cycle: CycleFn) {
  let stopping = false;
  let cycles = 0;
  let errors = 0;
  let next = 0;
  const done = Promise.all(
    Array.from({ length: spec.concurrency }, async (_, client) => {
      const volume = spec.volumes[client]!;
      while (!stopping) {
        const instance = spec.instances[next++ % spec.instances.length]!;
        try {
          await cycle(instance, volume);
          cycles++;
        } catch {
          errors++;
        }
      }
    }),
  );
  const t0 = performance.now();
  return {
    async stop(): Promise<{ cycles: number; errors: number; throughput: number }> {
      stopping = true;
      const wall = (performance.now() - t0) / 1000;
      await done;
      return { cycles, errors, throughput: Math.round((cycles / wall) * 100) / 100 };
    },
  };
}
