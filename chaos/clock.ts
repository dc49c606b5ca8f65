/**
 * Clock jumps (`npm run chaos -- --clock`): control plane, compute agent and API run with libfaketime
 * preloaded (Debian's `libfaketime`; ChaosStack `fakeTime`), each reading its wall-clock offset
 * from a file of its own. A case steps one process's wall clock an hour ahead, an hour back or a
 * day ahead while an attach or a detach is at a step of that process (its pause point claimed, the
 * clock stepped, the step released; the API's before the request), and requires what a kill
 * requires: the workflow closed, the pair attached or absent everywhere in agreement with it, the
 * checker clean, no process exited by itself. The monotonic clock is left alone (as an NTP step
 * leaves it); Temporal and PostgreSQL keep the true time. The clock is put back after each case.
 *
 * Without libfaketime every case is skipped, saying so (`bash scripts/test-deps/faketime.sh`).
 */
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import type { Instance } from '../src/domain/types.ts';
import {
  apiAttach,
  apiDetach,
  attachAndWait,
  attachWorkflowId,
  convergePair,
  detachWorkflowId,
  newVolume,
  PausePoint,
  result,
  type Harness,
  type HttpAnswer,
  type HttpFailure,
} from './harness.ts';
import type { CaseResult } from './report.ts';
import { PROXIED_WORKERS, type ProxiedWorker } from './stack.ts';

/** Where Debian's libfaketime puts its library (multiarch folder of this machine, then the others). */
const LIBFAKETIME_PLACES = [
  `/usr/lib/${process.arch === 'arm64' ? 'aarch64' : 'x86_64'}-linux-gnu/faketime/libfaketime.so.1`,
  '/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1',
  '/usr/lib/aarch64-linux-gnu/faketime/libfaketime.so.1',
  '/usr/lib/faketime/libfaketime.so.1',
];
export const LIBFAKETIME = LIBFAKETIME_PLACES[0]!;

export function fakeTimeLibrary(): string | undefined {
  return LIBFAKETIME_PLACES.find((p) => fs.existsSync(p));
}

export interface ClockCase {
  worker: ProxiedWorker;
  /** Seconds added to the wall clock. */
  jump: number;
  op: 'attach' | 'detach';
}

const JUMPS = [3600, -3600, 86_400] as const;

function jumpName(s: number): string {
  return s === 86_400 ? 'a day ahead' : s > 0 ? 'an hour ahead' : 'an hour back';
}

export function clockCaseName(c: ClockCase): string {
  return `clock ${c.worker} jumps ${jumpName(c.jump)} during ${c.op}`;
}

export function clockMatrix(): ClockCase[] {
  const cases: ClockCase[] = [];
  for (const worker of PROXIED_WORKERS) for (const jump of JUMPS) for (const op of ['attach', 'detach'] as const) cases.push({ worker, jump, op });
  return cases;
}

function stepOf(c: ClockCase): { step: string; phase: 'before' | 'after' } | undefined {
  if (c.worker === 'api') return undefined;
  if (c.worker === 'compute-agent') return c.op === 'attach' ? { step: 'attachDisk', phase: 'before' } : { step: 'detachDisk', phase: 'before' };
  return c.op === 'attach' ? { step: 'initializeConnection', phase: 'after' } : { step: 'beginDetaching', phase: 'before' };
}

export async function runClockJump(h: Harness, c: ClockCase, run: number, server: Instance, available: boolean): Promise<CaseResult> {
  const scenario = clockCaseName(c);
  if (!available) return result(h, scenario, run, { passed: false, skipped: true, converged: false, outcome: 'skipped', leaked: 0, convergeMs: null, notes: [`libfaketime is not installed (${LIBFAKETIME}; bash scripts/test-deps/faketime.sh)`] });
  const notes: string[] = [];
  const volume = await newVolume(h, `chaos-clock-${c.worker}-${c.jump}-${c.op}`.slice(0, 60));
  if (c.op === 'detach') await attachAndWait(h, server, volume);
  const watchedId = c.op === 'attach' ? attachWorkflowId(server.uuid, volume.id) : detachWorkflowId(server.uuid, volume.id);
  const clockFile = h.stack.clockFile(c.worker);
  const at = stepOf(c);
  const point = at ? new PausePoint(h.stack.pauseDir, at.step, at.phase) : undefined;
  await point?.arm();
  const jump = async () => {
    await fsp.writeFile(clockFile, `${c.jump > 0 ? '+' : ''}${c.jump}\n`);
    notes.push(`${c.worker}'s wall clock ${c.jump > 0 ? '+' : ''}${c.jump} s${at ? ` at ${at.step} ${at.phase}` : ' before the request'}`);
  };
  if (!point) await jump();
  let answer: HttpAnswer | HttpFailure | undefined;
  const request = (c.op === 'attach' ? apiAttach(h, server, volume) : apiDetach(h, server, volume)).then((a) => (answer = a));
  let triggered = !point;
  const t0 = Date.now();
  try {
    if (point) {
      triggered = await point.waitClaimed(60_000, () => answer !== undefined && answer.status >= 400);
      if (!triggered) notes.push(`the ${at!.step} ${at!.phase} point was never reached; jumped anyway`);
      await jump();
    }
  } finally {
    await point?.release();
  }
  const verdict = await convergePair(h, { op: c.op, server, volume, watchedId, request, answer: () => answer, since: t0, requireRollbackFinished: false, notes });
  // tether had to work with the clock stepped (convergePair tidied up); now the clock goes back
  await fsp.writeFile(clockFile, '+0\n');
  return result(h, scenario, run, { triggered, ...verdict });
}
