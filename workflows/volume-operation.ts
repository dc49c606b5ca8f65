/**
 * The scaffolding every volume saga shares (attach, detach, and the next ones): a Saga whose state is
 * kept in the TetherState search attribute, whose progress the `progress` query reports, and whose
 * failure ends the same way — the error recorded, the compensations run, the state set to
 * `rolled-back` or `failed`, handlers finished, then one final failure that says where it failed and
 * what was undone. A new saga writes only its steps:
 *
 *   const op = new VolumeOperation('extending');
 *   setHandler(extendProgressQuery, () => op.progress());
 *   op.begin();
 *   try { …op.step(…)…; return await op.succeed('extended', result); }
 *   catch (err) { return op.fail(err, { action: `Extending volume ${id}`, defaultType: 'ExtendFailed', kept: 'the volume keeps its size' }); }
 */
import { ApplicationFailure, allHandlersFinished, condition, upsertSearchAttributes } from '@temporalio/workflow';
import type { OperationState } from '../src/domain/steps.ts';
import type { OperationError, OperationFailureDetails, OperationProgress } from '../src/domain/contracts/operation.ts';
import { TetherState } from '../src/temporal/search-attributes.ts';
import { Saga, StepFailed, failureMessage, rootApplicationFailure } from './saga.ts';

export interface FailureWording {
  /** What was being done, e.g. `Attaching volume V to instance I`. */
  action: string;
  /** The failure type when the cause has none of tether's (e.g. AttachFailed). */
  defaultType: string;
  /** What a complete rollback leaves, e.g. `everything was rolled back`. */
  rolledBack: string;
}

export class VolumeOperation extends Saga {
  private stateNow: OperationState;
  /** The error that started the rollback (null while none): compensations may report it (notifications). */
  error: OperationError | null = null;
  /** Set once the rollback has finished: what a caller waiting for an early answer is refused with. */
  refusal: OperationError | null = null;

  constructor(initial: OperationState) {
    super();
    this.stateNow = initial;
  }

  /**
   * Records the initial state in the search attribute. Call it after setting the handlers: an update
   * sent with the start is accepted when its handler is set, and recorded histories have that
   * acceptance before this upsert.
   */
  begin(): void {
    this.setState(this.stateNow);
  }

  get state(): OperationState {
    return this.stateNow;
  }

  setState(s: OperationState): void {
    this.stateNow = s;
    upsertSearchAttributes([{ key: TetherState, value: s }]);
  }

  /** What the `progress` query answers (a saga may add its own fields). */
  progress(): OperationProgress {
    return { state: this.stateNow, currentStep: this.current, steps: this.steps, error: this.error };
  }

  /** The failure a compensation reports (the error and the step where it happened), null before any. */
  fault(): (OperationError & { step: string | null }) | null {
    return this.error && { ...this.error, step: this.failedStep };
  }

  /** Ends a successful run: the final state, then every update and query handler finished. */
  async succeed<T>(state: OperationState, result: T): Promise<T> {
    this.setState(state);
    await condition(allHandlersFinished);
    return result;
  }

  /**
   * Ends a failed run: records the error, runs the compensations (newest first, non-cancellable),
   * sets `rolled-back` or `failed`, lets waiting handlers answer, and throws the final failure
   * (non-retryable, the cause's type, details {step, rolledBack}).
   */
  async fail(err: unknown, wording: FailureWording): Promise<never> {
    const type = rootApplicationFailure(err)?.type ?? wording.defaultType;
    const where = err instanceof StepFailed ? ` at step ${err.step}` : '';
    this.error = { type, message: failureMessage(err) };
    const rolledBack = await this.compensate();
    this.setState(rolledBack ? 'rolled-back' : 'failed');
    this.refusal = this.error;
    await condition(allHandlersFinished);
    const outcome = rolledBack ? wording.rolledBack : 'the rollback could not finish and will need a retry';
    const details: OperationFailureDetails = { step: err instanceof StepFailed ? err.step : null, rolledBack };
    throw ApplicationFailure.nonRetryable(`${wording.action} failed${where}: ${this.error.message} (${outcome})`, type, details);
  }
}
