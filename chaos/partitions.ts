/**
 * Network partitions (`npm run chaos -- --partitions`): every worker process (control plane, compute
 * agent, API) reaches Temporal and PostgreSQL through a TCP proxy of its own on the loopback
 * (chaos/tcp-proxy.ts, ChaosStack `proxies`). A case cuts one link — one process ↔ one dependency —
 * while an attach or a detach is in flight, in one of three ways:
 *   drop  connections reset, new ones refused, for 10–35 s (drawn);
 *   hold  connections silent (bytes held, nothing lost) for 10–35 s, then released;
 *   slow  200–800 ms added to every chunk for 20 s;
 * then heals it and requires what a kill requires: the workflow closed, the pair attached
 * everywhere or absent everywhere in agreement with it, the checker clean, no process exited by
 * itself, tether still working. The link is cut when the operation reaches a step the process runs
 * (its pause point is claimed, the link cut, the step released); the API's links are cut just
 * before the request.
 *
 * The block storage: with `--cinder` it is a real Cinder (test/support/cinder.ts, Debian's
 * packages), and each process reaches its API through a proxy too. Without it, it is tether's own
 * volume service, whose state is PostgreSQL (covered by the postgres links) and files on the host,
 * with no network link of its own: those cases are skipped with that reason.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { Instance } from '../src/domain/types.ts';
import {
  apiAttach,
  apiDetach,
  attachAndWait,
  attachWorkflowId,
  convergePair,
  describeAnswer,
  detachWorkflowId,
  newVolume,
  PausePoint,
  result,
  type Harness,
  type HttpAnswer,
  type HttpFailure,
} from './harness.ts';
import type { CaseResult } from './report.ts';
import { PROXIED_DEPENDENCIES, PROXIED_WORKERS, type ProxiedDependency, type ProxiedWorker } from './stack.ts';
import type { ProxyMode } from './tcp-proxy.ts';

export interface PartitionCase {
  worker: ProxiedWorker;
  dependency: ProxiedDependency;
  mode: Exclude<ProxyMode, 'pass'>;
  op: 'attach' | 'detach';
}

export function partitionCaseName(c: PartitionCase): string {
  return `partition ${c.worker} ↔ ${c.dependency} ${c.mode} during ${c.op}`;
}

export function partitionMatrix(): PartitionCase[] {
  const cases: PartitionCase[] = [];
  let i = 0;
  for (const worker of PROXIED_WORKERS) {
    for (const dependency of PROXIED_DEPENDENCIES) {
      for (const mode of ['drop', 'hold', 'slow'] as const) cases.push({ worker, dependency, mode, op: i++ % 2 === 0 ? 'attach' : 'detach' });
    }
  }
  return cases;
}

/** The step whose pause point marks "the process is at work on this operation". */
function stepOf(c: PartitionCase): { step: string; phase: 'before' | 'after' } | undefined {
  if (c.worker === 'api') return undefined;
  if (c.worker === 'compute-agent') return c.op === 'attach' ? { step: 'attachDisk', phase: 'before' } : { step: 'detachDisk', phase: 'before' };
  return c.op === 'attach' ? { step: 'initializeConnection', phase: 'after' } : { step: 'beginDetaching', phase: 'before' };
}

export async function runPartition(h: Harness, c: PartitionCase, run: number, server: Instance): Promise<CaseResult> {
  const scenario = partitionCaseName(c);
  const proxy = h.stack.proxy(c.worker, c.dependency);
  if (!proxy) {
    const why = c.dependency === 'block-storage'
      ? "the block storage is tether's own volume service: PostgreSQL (the postgres links) and host files, no network link of its own (--cinder puts a Cinder there)"
      : c.dependency === 'postgres' && !h.stack.ownsPostgres ? 'PostgreSQL comes from DATABASE_URL: no proxy in front of it' : 'the stack has no proxies';
    return result(h, scenario, run, { passed: false, skipped: true, converged: false, outcome: 'skipped', leaked: 0, convergeMs: null, notes: [why] });
  }
  const notes: string[] = [];
  const volume = await newVolume(h, `chaos-part-${c.worker}-${c.dependency}-${c.mode}`.slice(0, 60));
  if (c.op === 'detach') await attachAndWait(h, server, volume);
  const watchedId = c.op === 'attach' ? attachWorkflowId(server.uuid, volume.id) : detachWorkflowId(server.uuid, volume.id);
  const holdMs = c.mode === 'slow' ? 20_000 : h.rnd.int(10_000, 35_000);
  const delayMs = h.rnd.int(200, 800);

  const at = stepOf(c);
  const point = at ? new PausePoint(h.stack.pauseDir, at.step, at.phase) : undefined;
  await point?.arm();
  const cut = () => {
    proxy.setMode(c.mode, { delayMs });
    notes.push(`${c.worker} ↔ ${c.dependency} ${c.mode}${c.mode === 'slow' ? ` (+${delayMs} ms a chunk)` : ''} for ${(holdMs / 1000).toFixed(1)} s${at ? ` from ${at.step} ${at.phase}` : ' from before the request'}`);
  };
  if (!point) cut();
  let answer: HttpAnswer | HttpFailure | undefined;
  const request = (c.op === 'attach' ? apiAttach(h, server, volume) : apiDetach(h, server, volume)).then((a) => (answer = a));
  let healedAt = 0;
  let triggered = !point;
  try {
    if (point) {
      triggered = await point.waitClaimed(60_000, () => answer !== undefined && answer.status >= 400);
      if (!triggered) notes.push(`the ${at!.step} ${at!.phase} point was never reached${answer ? ` (API: ${describeAnswer(answer)})` : ''}; cut anyway`);
      cut();
      await point.release();
    }
    await sleep(holdMs);
  } finally {
    proxy.setMode('pass');
    healedAt = Date.now();
    await point?.release();
  }
  notes.push(`proxy ${proxy.name}: ${proxy.counts.accepted} connections accepted, ${proxy.counts.reset} reset`);

  return result(h, scenario, run, {
    triggered,
    ...(await convergePair(h, { op: c.op, server, volume, watchedId, request, answer: () => answer, since: healedAt, runningAfter: `${h.deadlineMs / 1000} s after the link healed`, notes })),
  });
}
