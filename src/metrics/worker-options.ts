/**
 * What a Worker.create needs for tether's metrics:
 *   control plane:   interceptors: { activity: [activityMetricsInterceptor], workflowModules: [workflowMetricsInterceptorsPath] },
 *                    sinks: metricsSinks(),
 *   compute agent:   interceptors: { activity: [activityMetricsInterceptor] },
 * and a pre-built workflow bundle needs `workflowInterceptorModules: [workflowMetricsInterceptorsPath]`.
 */
import { fileURLToPath } from 'node:url';
import type { InjectedSinks } from '@temporalio/worker';
import type { TetherMetricsSinks } from './workflow-interceptors.ts';
import { operationDuration, operationsTotal } from './tether-metrics.ts';

export { activityMetricsInterceptor } from './activity-interceptor.ts';

export const workflowMetricsInterceptorsPath = fileURLToPath(new URL('./workflow-interceptors.ts', import.meta.url));

/** The worker side of the `tetherMetrics` sink: counts finished runs (not during replay). */
export function metricsSinks(): InjectedSinks<TetherMetricsSinks> {
  return {
    tetherMetrics: {
      operationFinished: {
        fn(info, outcome, reason) {
          operationsTotal.inc({ workflow_type: info.workflowType, outcome, reason });
          operationDuration.observe({ workflow_type: info.workflowType, outcome }, Math.max(0, (Date.now() - info.runStartTime.getTime()) / 1000));
        },
        callDuringReplay: false,
      },
    },
  };
}
