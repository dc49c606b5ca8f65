/**
 * The kill matrix: for each step of attach and detach, before / during / after the step, SIGKILL one
 * part of the stack, restart it, wait for the workflows, run the checker, and require that the pair
 * ended attached everywhere or absent everywhere (in agreement with how the workflow ended).
 *
 * Hitting the point:
 *   before X  — a pause point at X's `before` check (the activity started, nothing done yet);
 *               steps without a check (awaitEarlierOperation): when the progress query names X current.
 *   during X  — a pause point at X's `after` check (X's effect is done, Temporal does not know yet);
 *               steps with only a `before` check: released, then killed 0–30 ms later (approximate).
 *   after X   — the progress query shows X completed; killed 0–50 ms later.
 * While an activity is held, the runner kills the target; it releases the hold before or after the
 * target's restart (drawn at random), so completions race against a server that is down or back.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { ATTACH_STEPS, DETACH_STEPS } from '../src/domain/steps.ts';
import type { Instance, Volume } from '../src/domain/types.ts';
import {
  apiAttach,
  apiDetach,
  attachAndWait,
  attachWorkflowId,
  CHECK_POINTS,
  convergePair,
  describeAnswer,
  detachWorkflowId,
  newVolume,
  PausePoint,
  progressOf,
  result,
  type Harness,
  type HttpAnswer,
  type HttpFailure,
} from './harness.ts';
import type { CaseResult } from './report.ts';
import { TARGETS, type Target } from './stack.ts';

export type Phase = 'before' | 'during' | 'after';
export type Op = 'attach' | 'detach';

export interface KillCase {
  op: Op;
  step: string;
  phase: Phase;
  target: Target;
}

export const ATTACH_MATRIX_STEPS = Object.keys(ATTACH_STEPS).filter((s) => s !== 'createShelvedBdm');
export const DETACH_MATRIX_STEPS = Object.keys(DETACH_STEPS);
export const PHASES: readonly Phase[] = ['before', 'during', 'after'];

export function killCaseName(c: KillCase): string {
  return `kill ${c.op} ${c.step} ${c.phase} ${c.target}`;
}

/** The whole matrix: (attach steps + detach steps) × phases × targets. */
export function fullMatrix(): KillCase[] {
  const cases: KillCase[] = [];
  for (const [op, steps] of [['attach', ATTACH_MATRIX_STEPS], ['detach', DETACH_MATRIX_STEPS]] as const) {
    for (const step of steps) for (const phase of PHASES) for (const target of TARGETS) cases.push({ op, step, phase, target });
  }
  return cases;
}

type Trigger =
  | { kind: 'pause'; point: 'before' | 'after'; thenDelayMs?: number }
  | { kind: 'progress'; until: 'current' | 'completed'; jitterMs: number };

function triggerFor(h: Harness, c: { step: string; phase: Phase }): Trigger {
  const points = CHECK_POINTS[c.step] ?? [];
  if (c.phase === 'before') return points.includes('before') ? { kind: 'pause', point: 'before' } : { kind: 'progress', until: 'current', jitterMs: 0 };
  if (c.phase === 'during') {
    if (points.includes('after')) return { kind: 'pause', point: 'after' };
    if (points.includes('before')) return { kind: 'pause', point: 'before', thenDelayMs: h.rnd.int(0, 30) };
    return { kind: 'progress', until: 'current', jitterMs: h.rnd.int(0, 30) };
  }
  return { kind: 'progress', until: 'completed', jitterMs: h.rnd.int(0, 50) };
}

/**
 * What a case with a real guest adds (chaos/guest-kills.ts): a device path (the bus), data written
 * before the fault, and the guest's view checked after it converged.
 */
export interface CaseHooks {
  device?: string;
  /** After the volume was made (and, for a detach, attached): e.g. write a pattern through the guest. */
  prepare?: (server: Instance, volume: Volume) => Promise<void>;
  /** After convergence, before the tidy-up: problems with the guest's data (empty: none). */
  verify?: (server: Instance, volume: Volume, state: string) => Promise<string[]>;
  /** Scenario name prefix (e.g. `guest `). */
  prefix?: string;
  /** After the workflow closed, before the stores are read: waits for what must follow the fault; returns problems. */
  settle?: (server: Instance, volume: Volume) => Promise<string[]>;
}

export async function runKillCase(h: Harness, c: KillCase, run: number, server: Instance, hooks: CaseHooks = {}): Promise<CaseResult> {
  const scenario = `${hooks.prefix ?? ''}${killCaseName(c)}`;
  const why = h.stack.cannotKill(c.target);
  if (why) return result(h, scenario, run, { passed: false, skipped: true, converged: false, outcome: 'skipped', leaked: 0, convergeMs: null, notes: [why] });
  // Kill, restart, release (the hold goes before or after the restart).
  return runPointCase(h, c, { scenario, label: c.target, run, server, hooks }, async ({ held, heldBy, release, notes }) => {
    const releaseAfterRestart = held && h.rnd.bool();
    const killedAt = Date.now();
    await h.stack.kill(c.target);
    notes.push(`killed ${c.target}${heldBy ? ` (activity held in pid ${heldBy})` : ''}, release ${releaseAfterRestart ? 'after' : 'before'} restart`);
    if (!releaseAfterRestart) await release();
    await h.stack.restart(c.target);
    if (releaseAfterRestart) await release();
    return killedAt;
  });
}

/** What a fault at a point of an attach or detach gets: the hold (if the point is a pause point) and the case's notes. */
export interface StrikeContext {
  /** A pause point was armed for the case (it may or may not hold an activity now). */
  held: boolean;
  /** The process whose activity holds the point. */
  heldBy: number | undefined;
  /** Lets the held activity go on (no-op when nothing holds it). */
  release: () => Promise<void>;
  notes: string[];
}

/** The fault: returns the moment it struck (time to converge counts from there). */
export type Strike = (s: StrikeContext) => Promise<number>;

/**
 * One case at a point of attach or detach: a fresh volume (attached first for a detach), the point
 * armed, the request sent through the API, the point reached (kills.ts's placing: before / during /
 * after the step), `strike` run there, then convergePair: the workflow closed, the pair attached
 * everywhere or absent everywhere as its end says, the checker clean, tether still working.
 */
export async function runPointCase(
  h: Harness,
  c: { op: Op; step: string; phase: Phase },
  o: { scenario: string; label: string; run: number; server: Instance; hooks?: CaseHooks },
  strike: Strike,
): Promise<CaseResult> {
  const { server, hooks = {} } = o;
  const notes: string[] = [];
  const volume = await newVolume(h, `chaos-${c.op}-${c.step}-${c.phase}-${o.label}`.slice(0, 60));
  const attachId = attachWorkflowId(server.uuid, volume.id);
  const detachId = detachWorkflowId(server.uuid, volume.id);
  if (c.op === 'detach') await attachAndWait(h, server, volume, hooks.device);
  await hooks.prepare?.(server, volume);
  const watchedId = c.op === 'attach' ? attachId : detachId;

  const trigger = triggerFor(h, c);
  const point = trigger.kind === 'pause' ? new PausePoint(h.stack.pauseDir, c.step, trigger.point) : undefined;
  await point?.arm();

  // Start the operation the way a client does, through the API; do not wait for the answer.
  let answer: HttpAnswer | HttpFailure | undefined;
  const request = (c.op === 'attach' ? apiAttach(h, server, volume, hooks.device) : apiDetach(h, server, volume)).then((a) => (answer = a));

  // Wait for the point.
  let triggered = false;
  let struckAt = 0;
  try {
    if (point) {
      triggered = await point.waitClaimed(60_000, () => answer !== undefined && answer.status !== 0 && answer.status >= 400);
      if (!triggered) notes.push(`the ${c.step} ${trigger.kind === 'pause' ? trigger.point : ''} point was never reached${answer ? ` (API: ${describeAnswer(answer)})` : ''}`);
      if (trigger.kind === 'pause' && trigger.thenDelayMs !== undefined && triggered) {
        await point.release();
        await sleep(trigger.thenDelayMs);
      }
    } else if (trigger.kind === 'progress') {
      const deadline = Date.now() + 60_000;
      while (Date.now() < deadline) {
        const p = await progressOf(h, watchedId);
        if (p) {
          const hit = trigger.until === 'current'
            ? p.currentStep === c.step || p.steps.some((s) => s.step === c.step)
            : p.steps.some((s) => s.step === c.step && s.status === 'completed');
          if (hit) {
            triggered = true;
            break;
          }
        }
        const closed = await h.stack.client.workflow.getHandle(watchedId).describe().then((d) => d.status.name !== 'RUNNING', () => false);
        if (closed || (answer && answer.status >= 400)) break;
        await sleep(10);
      }
      if (!triggered) notes.push(`the workflow never showed ${c.step} ${trigger.until}; struck anyway`);
      await sleep(trigger.jitterMs);
    }
    struckAt = await strike({ held: point !== undefined, heldBy: point?.claimedByPid, release: async () => point?.release(), notes });
  } finally {
    await point?.release();
  }

  return result(h, o.scenario, o.run, {
    triggered,
    ...(await convergePair(h, {
      op: c.op,
      server,
      volume,
      watchedId,
      request,
      answer: () => answer,
      since: struckAt,
      ...(hooks.verify ? { verify: (state: string) => hooks.verify!(server, volume, state) } : {}),
      ...(hooks.settle ? { settle: () => hooks.settle!(server, volume) } : {}),
      notes,
    })),
  });
}
