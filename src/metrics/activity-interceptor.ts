/**
 * Worker activity interceptor: every activity attempt is counted by outcome and failure reason, timed,
 * and tracked while it runs. Register with `interceptors: { activity: [activityMetricsInterceptor] }`
 * on any Worker.create (the control plane and every compute-agent worker).
 */
import type { Context } from '@temporalio/activity';
import { ApplicationFailure, CancelledFailure } from '@temporalio/common';
import type { ActivityInterceptors } from '@temporalio/worker';
import { stepDuration, stepsInFlight, stepsTotal } from './tether-metrics.ts';

/** The failure's type as tether reports it (ApplicationFailure type, else the error's name). */
export function failureReason(err: unknown): string {
  if (err instanceof ApplicationFailure) return err.type ?? 'ApplicationFailure';
  if (err instanceof CancelledFailure) return 'Cancelled';
  if (err instanceof Error) return err.name || 'Error';
  return 'Error';
}

export function activityMetricsInterceptor(ctx: Context): ActivityInterceptors {
  return {
    inbound: {
      async execute(input, next) {
        const { activityType, workflowType } = ctx.info;
        const began = performance.now();
        stepsInFlight.inc({ activity: activityType });
        let outcome = 'completed';
        let reason = '';
        try {
          return await next(input);
        } catch (err) {
          outcome = err instanceof CancelledFailure || ctx.cancellationSignal.aborted ? 'cancelled' : 'failed';
          reason = failureReason(err);
          throw err;
        } finally {
          stepsInFlight.dec({ activity: activityType });
          stepDuration.observe({ activity: activityType, outcome }, (performance.now() - began) / 1000);
          stepsTotal.inc({ activity: activityType, workflow_type: workflowType ?? '', outcome, reason });
        }
      },
    },
  };
}
