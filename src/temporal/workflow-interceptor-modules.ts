/**
 * The workflow interceptor modules bundled with tether's workflows: Temporal's OpenTelemetry
 * interceptors when tracing is on (first, so their RunWorkflow span covers the others), then
 * tether's metrics interceptor. The control-plane worker bundles with this list, and so must any
 * pre-built bundle (`bundleWorkflowCode({ workflowInterceptorModules })`).
 */
import { workflowMetricsInterceptorsPath } from '../metrics/worker-options.ts';
import { tracingWorkflowInterceptorModules } from '../tracing/temporal-tracing.ts';

export function workflowInterceptorModules(): string[] {
  return [...tracingWorkflowInterceptorModules(), workflowMetricsInterceptorsPath];
}
