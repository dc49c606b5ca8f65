/** Turning tether's business errors into non-retryable Temporal failures, with the same `type`. */
import { ApplicationFailure } from '@temporalio/common';
import { TetherError, type TetherErrorType } from '../src/errors.ts';

export function businessFailure(type: TetherErrorType, message: string): ApplicationFailure {
  return ApplicationFailure.nonRetryable(message, type);
}

/** Use as `.catch(rethrowAsFailure)`: business errors become final, anything else stays retryable. */
export function rethrowAsFailure(err: unknown): never {
  if (err instanceof TetherError) throw businessFailure(err.type, err.message);
  throw err;
}
