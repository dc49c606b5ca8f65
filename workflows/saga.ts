/**
 * The saga machinery shared by tether's workflows: steps recorded for the `progress` query,
 * compensations kept as a stack (registered *before* the step they undo, because a step that timed
 * out may still have happened; every compensation is safe when nothing was done), and the
 * translation of an activity failure into the reason a person reads.
 */
import { ActivityFailure, ApplicationFailure, CancellationScope, log } from '@temporalio/workflow';
import type { StepProgress, StepStatus } from '../src/domain/steps.ts';

export interface Compensation {
  step: string;
  description: string;
  run: () => Promise<unknown>;
}

export class Saga {
  readonly steps: StepProgress[] = [];
  private readonly compensations: Compensation[] = [];
  current: string | null = null;

  private record(step: string, description: string): StepProgress {
    const p: StepProgress = { step, description, status: 'running', startedAt: new Date().toISOString() };
    this.steps.push(p);
    this.current = step;
    return p;
  }

  private finish(p: StepProgress, status: StepStatus, error?: string): void {
    p.status = status;
    p.endedAt = new Date().toISOString();
    if (error !== undefined) p.error = error;
    this.current = null;
  }

  /** Runs one forward step, recording it; the failure (if any) carries the step's name. */
  async step<T>(step: string, description: string, fn: () => Promise<T>): Promise<T> {
    const p = this.record(step, description);
    try {
      const result = await fn();
      this.finish(p, 'completed');
      return result;
    } catch (err) {
      this.finish(p, 'failed', failureMessage(err));
      throw new StepFailed(step, err);
    }
  }

  /** The first step that failed: the forward step whose failure started the rollback (failure notifications report it). */
  get failedStep(): string | null {
    return this.steps.find((st) => st.status === 'failed')?.step ?? null;
  }

  addCompensation(c: Compensation): void {
    this.compensations.unshift(c);
  }

  /**
   * Runs the compensations, newest first, even if the workflow is being cancelled. Stops at the first
   * one that cannot complete, so that what is left still agrees with itself (a disk that could not be
   * detached keeps its BDM and attachment); returns false then.
   */
  async compensate(): Promise<boolean> {
    return CancellationScope.nonCancellable(async () => {
      while (this.compensations.length > 0) {
        const c = this.compensations[0]!;
        const p = this.record(c.step, c.description);
        try {
          await c.run();
          this.finish(p, 'compensated');
          this.compensations.shift();
        } catch (err) {
          this.finish(p, 'failed', failureMessage(err));
          log.error('compensation failed', { step: c.step, error: failureMessage(err) });
          return false;
        }
      }
      return true;
    });
  }
}

export class StepFailed extends Error {
  constructor(
    readonly step: string,
    readonly failure: unknown,
  ) {
    super(`step ${step} failed: ${failureMessage(failure)}`);
  }
}

/** The innermost ApplicationFailure of an activity failure: its type is tether's error type. */
export function rootApplicationFailure(err: unknown): ApplicationFailure | null {
  let e: unknown = err instanceof StepFailed ? err.failure : err;
  while (e instanceof ActivityFailure) e = e.cause;
  return e instanceof ApplicationFailure ? e : null;
}

export function failureMessage(err: unknown): string {
  const root = rootApplicationFailure(err);
  if (root) return root.message;
  if (err instanceof ActivityFailure && err.cause) return err.cause.message;
  return err instanceof Error ? err.message : String(err);
}

/** The failure type a host step answers when a newer operation owns its pair (activities/host/step-guard.ts). */
const OPERATION_SUPERSEDED = 'OperationSuperseded';

/**
 * For a compensation's host step: a newer operation owns the pair now, so there is nothing of this
 * operation's left to undo there — the step counts as done.
 */
export async function unlessSuperseded<T>(step: Promise<T>): Promise<T | { superseded: true }> {
  try {
    return await step;
  } catch (err) {
    if (rootApplicationFailure(err)?.type === OPERATION_SUPERSEDED) return { superseded: true };
    throw err;
  }
}
