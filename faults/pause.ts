/**
 * Pause points for the chaos runner (chaos/run.ts): hold an activity exactly before or after one of its steps, so the
 * runner can kill a process (or take a lock, or stop a worker) at that precise point, then let it go.
 *
 *   TETHER_CHAOS_PAUSE=<dir>        set on the worker processes (the runner does it)
 *   <dir>/<step>.<phase>            the runner *arms* a pause point by creating this file
 *                                   (optional content: {"maxMs": N}, default 120000)
 *   <dir>/paused.<step>.<phase>.<pid>   the first check of that point, in any process, claims it by
 *                                   renaming the armed file to this name (rename is atomic: exactly
 *                                   one activity pauses, and a restarted process never pauses again)
 *   release                         the runner deletes the claimed file; the activity goes on
 *                                   (or after maxMs, whichever comes first)
 *
 * FaultInjector.check is synchronous (the activities call it without await), so the pause blocks the
 * calling thread with Atomics.wait: the whole worker process stands still meanwhile, like a process
 * descheduled at that instruction. Keep pauses short (the runner holds them for the time a kill and a
 * restart take) — a pause longer than an activity's timeout is a timeout, which is also a case.
 *
 * Cost when TETHER_CHAOS_PAUSE is unset: one comparison. When set and nothing is armed: one failed
 * rename (ENOENT) per check.
 *
 * The runner can also make one check *fail* once, without restarting the process with TETHER_FAULTS:
 *   <dir>/<step>.<phase>.fail       armed by the runner
 *   <dir>/failed.<step>.<phase>.<pid>   claimed (renamed) by the first check of that point, which then
 *                                   throws a non-retryable InjectedFault (a saga's compensations run)
 * (chaos/compensation-kills.ts makes a saga fail this way, then pauses and kills inside its compensations.)
 *
 * FaultInjector.check (faults/injector.ts) calls chaosPause first, then chaosFail; this module imports nothing from tether.
 */
import fs from 'node:fs';
import path from 'node:path';

const dir = process.env.TETHER_CHAOS_PAUSE || undefined;
const DEFAULT_MAX_MS = 120_000;
let cell: Int32Array | undefined;

/** File names of a pause point. */
export function pausePointFile(pauseDir: string, step: string, phase: string): string {
  return path.join(pauseDir, `${step}.${phase}`);
}

export function claimedPrefix(step: string, phase: string): string {
  return `paused.${step}.${phase}.`;
}

/** Blocks while the runner holds the pause point `step:phase` (see above); a no-op otherwise. */
export function chaosPause(step: string, phase: string): void {
  if (dir === undefined) return;
  const armed = pausePointFile(dir, step, phase);
  const claimed = path.join(dir, `${claimedPrefix(step, phase)}${process.pid}`);
  try {
    fs.renameSync(armed, claimed);
  } catch {
    return; // not armed (or another activity claimed it first)
  }
  let maxMs = DEFAULT_MAX_MS;
  try {
    const spec = JSON.parse(fs.readFileSync(claimed, 'utf8') || '{}') as { maxMs?: unknown };
    if (typeof spec.maxMs === 'number' && spec.maxMs >= 0) maxMs = spec.maxMs;
  } catch {
    /* an empty or unreadable spec: the default */
  }
  cell ??= new Int32Array(new SharedArrayBuffer(4));
  const deadline = Date.now() + maxMs;
  while (fs.existsSync(claimed) && Date.now() < deadline) Atomics.wait(cell, 0, 0, 10);
  fs.rmSync(claimed, { force: true });
}

/** File name of a one-shot failure point. */
export function failPointFile(pauseDir: string, step: string, phase: string): string {
  return path.join(pauseDir, `${step}.${phase}.fail`);
}

export function failedPrefix(step: string, phase: string): string {
  return `failed.${step}.${phase}.`;
}

/** True (once) when the runner armed a failure at `step:phase`: the caller throws. */
export function chaosFail(step: string, phase: string): boolean {
  if (dir === undefined) return false;
  try {
    fs.renameSync(failPointFile(dir, step, phase), path.join(dir, `${failedPrefix(step, phase)}${process.pid}`));
    return true;
  } catch {
    return false;
  }
}
