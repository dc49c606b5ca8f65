/** Turning what Temporal reports about a failed workflow or update back into a TetherError. */
import { ApplicationFailure, WorkflowFailedError, WorkflowUpdateFailedError } from '@temporalio/client';
import { ActivityFailure, TemporalFailure } from '@temporalio/common';
import { TetherError, isTetherErrorType } from '../errors.ts';

function rootCause(err: unknown): unknown {
  let e: unknown = err;
  while (e instanceof WorkflowFailedError || e instanceof WorkflowUpdateFailedError || e instanceof ActivityFailure) {
    e = e.cause;
  }
  return e;
}

/** A TetherError when the failure carries one of tether's error types; the original error otherwise. */
export function fromTemporalFailure(err: unknown): unknown {
  const root = rootCause(err);
  if (root instanceof ApplicationFailure && isTetherErrorType(root.type)) return new TetherError(root.type, root.message);
  if (root instanceof TemporalFailure) return new Error(root.message, { cause: err });
  return err;
}
