/**
 * The workflow interceptor modules bundled with tether's workflows: Temporal's OpenTelemetry
 * interceptors when tracing is on (first, so their RunWorkflow span covers the others), then
 * tether's metrics interceptor, then the activities' summaries for the Temporal UI
 * (workflows/activity-summaries.ts). The control-plane worker bundles with this list, and so must any
 * pre-built bundle (`bundleWorkflowCode({ workflowInterceptorModules })`).
 */
import { workflowMetricsInterceptorsPath } from '../metrics/worker-options.ts';
import { tracingWorkflowInterceptorModules } from '../tracing/temporal-tracing.ts';
import { fileURLToPath } from 'node:url';

/** The workflow interceptor module that gives every activity its one-line summary. */
export const activitySummariesPath = fileURLToPath(new URL('../../workflows/activity-summaries.ts', import.meta.url));

export function workflowInterceptorModules(): string[] {
  return [...tracingWorkflowInterceptorModules(), workflowMetricsInterceptorsPath, activitySummariesPath];
}
