/**
 * What every volume saga (attach, detach, and the ones to come) shows its callers: its state (also
 * the TetherState search attribute), each step so far, and the error that started a rollback. The
 * `progress` query of each saga answers at least this. Safe to import from workflows.
 */
import type { OperationState, StepProgress } from '../steps.ts';

export interface OperationError {
  type: string;
  message: string;
}

export interface OperationProgress {
  state: OperationState;
  currentStep: string | null;
  steps: StepProgress[];
  error: OperationError | null;
}

/** The name of every saga's progress query (each saga file defines it with its own progress type). */
export const PROGRESS_QUERY = 'progress';

/** The details of a saga's final failure: where it failed and whether everything was undone. */
export interface OperationFailureDetails {
  step: string | null;
  rolledBack: boolean;
}
