/**
 * The operation an activity works for: `<workflow id>/<run id>` of the workflow that scheduled it
 * (the same for every attempt of the activity, and for local activities too). Outbox rows are unique
 * per (operation, event type). Outside an activity (a direct call) there is none: no event is written.
 */
import { Context } from '@temporalio/activity';

export function currentOperation(): string | null {
  let execution: { workflowId: string; runId: string } | undefined;
  try {
    execution = Context.current().info.workflowExecution;
  } catch {
    return null;
  }
  return execution ? `${execution.workflowId}/${execution.runId}` : null;
}
