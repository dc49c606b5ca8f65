/**
 * Workflow interceptor module (runs inside the workflow sandbox, so: @temporalio/workflow only, and
 * deterministic). It reports how each workflow run ended through the `tetherMetrics` sink; the sink
 * (src/metrics/sinks.ts) counts it in the worker process, never during replay.
 * Bundle it with `interceptors.workflowModules` / `bundleWorkflowCode({ workflowInterceptorModules })`.
 */
import { ApplicationFailure, ContinueAsNew, isCancellation, proxySinks, type Sinks, type WorkflowInterceptorsFactory } from '@temporalio/workflow';

export interface TetherMetricsSinks extends Sinks {
  tetherMetrics: {
    /** outcome: succeeded | rolled_back | failed | cancelled | continued_as_new; reason: the failure type. */
    operationFinished(outcome: string, reason: string): void;
  };
}

const { tetherMetrics } = proxySinks<TetherMetricsSinks>();

/** tether's sagas fail with an ApplicationFailure whose details say whether the rollback finished. */
function outcomeOf(err: unknown): { outcome: string; reason: string } {
  if (err instanceof ContinueAsNew) return { outcome: 'continued_as_new', reason: '' };
  if (isCancellation(err)) return { outcome: 'cancelled', reason: 'Cancelled' };
  if (err instanceof ApplicationFailure) {
    const details = err.details?.[0] as { rolledBack?: unknown } | undefined;
    return { outcome: details?.rolledBack === true ? 'rolled_back' : 'failed', reason: err.type ?? 'ApplicationFailure' };
  }
  return { outcome: 'failed', reason: err instanceof Error ? err.name : 'Error' };
}

export const interceptors: WorkflowInterceptorsFactory = () => ({
  inbound: [
    {
      async execute(input, next) {
        try {
          const result = await next(input);
          tetherMetrics.operationFinished('succeeded', '');
          return result;
        } catch (err) {
          const { outcome, reason } = outcomeOf(err);
          tetherMetrics.operationFinished(outcome, reason);
          throw err;
        }
      },
    },
  ],
});
