/**
 * Temporal nodes as targets (`npm run chaos -- --temporal-nodes`): the chaos stack on the production
 * topology — two Temporal nodes on PostgreSQL with mTLS (ChaosStack `temporalCluster`), every tether
 * process failing over between the frontends through its FrontendRelay — and, at the points of
 * chaos/kills.ts (before / during / after every attach and detach step), one of:
 *
 *   SIGKILL:temporal-1 / SIGKILL:temporal-2   the node dies; restarted at once (it rejoins the ring);
 *   SIGSTOP:temporal-1 / SIGSTOP:temporal-2   the node hangs (sockets open, nothing answers) for
 *                                             10–20 s (drawn) — longer than the relays need to give up
 *                                             on it (two missed health checks, ~5 s) — then SIGCONT;
 *   SIGKILL:frontend-of-worker, SIGSTOP:frontend-of-worker
 *                                             the node whose frontend the worker running the step
 *                                             (the compute agent for getHostConnector, attachDisk,
 *                                             detachDisk; the control plane otherwise) is connected to,
 *                                             read from that process's TCP connections, and from its
 *                                             relay's log on a tie (ChaosStack.frontendOf).
 *
 * An activity held at a pause point is let go at a random moment: before or after the restart, during
 * the stop or after the SIGCONT, so its completion races a node that is down, hung or back. Each case
 * requires what every kill case requires (convergePair): the workflow closed, the pair attached or
 * absent everywhere as its end says, the checker clean, tether still working; time to converge counts
 * from the signal.
 *
 * The matrix: every (operation, step, phase) point once, the six (signal, target) pairs taken in turn
 * (each pair ~8 times over attach and detach); `--all-targets` makes it the full product (6× as many).
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { Instance } from '../src/domain/types.ts';
import { result, type Harness } from './harness.ts';
import { ATTACH_MATRIX_STEPS, DETACH_MATRIX_STEPS, PHASES, runPointCase, type Op, type Phase, type StrikeContext } from './kills.ts';
import type { CaseResult } from './report.ts';
import type { WorkerName } from './stack.ts';

export const NODE_SIGNALS = ['SIGKILL', 'SIGSTOP'] as const;
export type NodeSignal = (typeof NODE_SIGNALS)[number];
export const NODE_TARGETS = ['temporal-1', 'temporal-2', 'frontend-of-worker'] as const;
export type NodeTarget = (typeof NODE_TARGETS)[number];

export interface TemporalNodeCase {
  op: Op;
  step: string;
  phase: Phase;
  signal: NodeSignal;
  target: NodeTarget;
}

/** `kill <op> <step> <phase> <signal>:<target>`: docs/chaos.md's tables group by the last word (time to converge per target). */
export function temporalNodeCaseName(c: TemporalNodeCase): string {
  return `kill ${c.op} ${c.step} ${c.phase} ${c.signal}:${c.target}`;
}

/** Every point once with the (signal, target) pairs in turn; `all`: every point × every pair. */
export function temporalNodeMatrix(o: { all?: boolean } = {}): TemporalNodeCase[] {
  const pairs: Array<{ signal: NodeSignal; target: NodeTarget }> = [
    { signal: 'SIGKILL', target: 'temporal-1' },
    { signal: 'SIGSTOP', target: 'temporal-2' },
    { signal: 'SIGKILL', target: 'frontend-of-worker' },
    { signal: 'SIGSTOP', target: 'temporal-1' },
    { signal: 'SIGKILL', target: 'temporal-2' },
    { signal: 'SIGSTOP', target: 'frontend-of-worker' },
  ];
  const cases: TemporalNodeCase[] = [];
  let i = 0;
  for (const [op, steps] of [['attach', ATTACH_MATRIX_STEPS], ['detach', DETACH_MATRIX_STEPS]] as const) {
    for (const step of steps) {
      for (const phase of PHASES) {
        if (o.all) for (const p of pairs) cases.push({ op, step, phase, ...p });
        else cases.push({ op, step, phase, ...pairs[i++ % pairs.length]! });
      }
    }
  }
  return cases;
}

/** Steps whose activity runs in the compute agent; the rest run in the control plane (as does every workflow task). */
const AGENT_STEPS = new Set(['getHostConnector', 'attachDisk', 'detachDisk']);

export function workerOfStep(step: string): WorkerName {
  return AGENT_STEPS.has(step) ? 'compute-agent' : 'control-plane';
}

/** Which node to signal: named, or the one whose frontend the step's worker (or the process holding the point) uses. */
async function resolveNode(h: Harness, c: TemporalNodeCase, heldBy: number | undefined, notes: string[]): Promise<string> {
  if (c.target !== 'frontend-of-worker') return c.target;
  const holder = (Object.keys(h.stack.workers) as WorkerName[]).find((w) => heldBy !== undefined && h.stack.workers[w].pid === heldBy);
  const worker = holder ?? workerOfStep(c.step);
  let last: Error | undefined;
  // a relay that just reconnected may briefly show no winner: ask again for up to 3 s
  for (let attempt = 0; attempt < 15; attempt++) {
    try {
      const f = await h.stack.frontendOf(worker);
      notes.push(`${worker} (pid ${h.stack.workers[worker].pid}) is connected to ${f.node} ${f.address} (by the ${f.decidedBy}; established connections per frontend ${JSON.stringify(f.connections)}, its relay's log says ${f.relaySays})`);
      return f.node;
    } catch (err) {
      last = err as Error;
      await sleep(200);
    }
  }
  throw last!;
}

async function strikeNode(h: Harness, c: TemporalNodeCase, s: StrikeContext): Promise<number> {
  const node = await resolveNode(h, c, s.heldBy, s.notes);
  const pid = h.stack.temporalNodes().find((n) => n.name === node)?.pid;
  if (c.signal === 'SIGKILL') {
    const releaseAfterRestart = s.held && h.rnd.bool();
    const at = Date.now();
    await h.stack.signalTemporalNode(node, 'SIGKILL');
    s.notes.push(`SIGKILL ${node} (pid ${pid})${s.heldBy ? ` (activity held in pid ${s.heldBy})` : ''}, release ${releaseAfterRestart ? 'after' : 'before'} restart`);
    if (!releaseAfterRestart) await s.release();
    const t0 = Date.now();
    await h.stack.restartTemporalNode(node);
    s.notes.push(`${node} serving again ${((Date.now() - t0) / 1000).toFixed(1)} s after its restart began`);
    if (releaseAfterRestart) await s.release();
    return at;
  }
  const holdMs = h.rnd.int(10_000, 20_000);
  // let the held activity go at a random moment of the stop, or only after the SIGCONT
  const releaseAfterMs = s.held && h.rnd.bool() ? h.rnd.int(0, holdMs) : undefined;
  const at = Date.now();
  await h.stack.signalTemporalNode(node, 'SIGSTOP');
  try {
    s.notes.push(`SIGSTOP ${node} (pid ${pid}) for ${(holdMs / 1000).toFixed(1)} s${s.heldBy ? ` (activity held in pid ${s.heldBy})` : ''}, release ${releaseAfterMs !== undefined ? `${(releaseAfterMs / 1000).toFixed(1)} s into the stop` : 'after SIGCONT'}`);
    if (releaseAfterMs !== undefined) {
      await sleep(releaseAfterMs);
      await s.release();
      await sleep(holdMs - releaseAfterMs);
    } else await sleep(holdMs);
  } finally {
    await h.stack.signalTemporalNode(node, 'SIGCONT');
  }
  await s.release();
  return at;
}

export async function runTemporalNodeKill(h: Harness, c: TemporalNodeCase, run: number, server: Instance): Promise<CaseResult> {
  const scenario = temporalNodeCaseName(c);
  if (!h.stack.cluster) {
    return result(h, scenario, run, { passed: false, skipped: true, converged: false, outcome: 'skipped', leaked: 0, convergeMs: null, notes: ['no Temporal cluster in this stack'] });
  }
  return runPointCase(h, c, { scenario, label: `${c.signal}-${c.target}`, run, server }, (s) => strikeNode(h, c, s));
}
