/**
 * Temporal's own OpenTelemetry interceptors (@temporalio/interceptors-opentelemetry), wired the way
 * the SDK's interceptors-opentelemetry sample does, for whichever process has tracing on:
 *   client:   the workflow client interceptor: StartWorkflow / UpdateWithStartWorkflow / … spans,
 *             their context sent to the workflow in its headers;
 *   workflow: the package's interceptor module bundled with the workflows (RunWorkflow, StartActivity
 *             spans, created inside the sandbox) and the `exporter` sink that hands those spans to
 *             this process's span processor;
 *   activity: RunActivity spans, children of the workflow's StartActivity span, active while the
 *             activity runs (so libvirt and block-storage spans nest under them), and trace ids in
 *             the activity's log attributes.
 * Every function returns nothing to add when tracing is off.
 */
import { createRequire } from 'node:module';
import type { WorkflowClientInterceptor } from '@temporalio/client';
import type { ActivityInterceptorsFactory, InjectedSinks } from '@temporalio/worker';
import {
  makeWorkflowExporter,
  OpenTelemetryActivityInboundInterceptor,
  OpenTelemetryActivityOutboundInterceptor,
  OpenTelemetryWorkflowClientInterceptor,
  type OpenTelemetrySinks,
} from '@temporalio/interceptors-opentelemetry';
import { activeTracing } from './tracing.ts';

const require = createRequire(import.meta.url);

/** The package's workflow interceptor module (inbound, outbound and internals interceptors). */
export const openTelemetryWorkflowInterceptorsPath = require.resolve('@temporalio/interceptors-opentelemetry/lib/workflow-interceptors');

/** For `new Client({ interceptors: { workflow: … } })`. */
export function tracingClientInterceptors(): WorkflowClientInterceptor[] {
  return activeTracing() ? [new OpenTelemetryWorkflowClientInterceptor()] : [];
}

/** For `Worker.create({ interceptors: { activity: … } })`, before tether's own (so the span covers them). */
export function tracingActivityInterceptors(): ActivityInterceptorsFactory[] {
  if (!activeTracing()) return [];
  return [(ctx) => ({ inbound: new OpenTelemetryActivityInboundInterceptor(ctx), outbound: new OpenTelemetryActivityOutboundInterceptor(ctx) })];
}

/** For `interceptors.workflowModules` / `bundleWorkflowCode({ workflowInterceptorModules })`. */
export function tracingWorkflowInterceptorModules(): string[] {
  return activeTracing() ? [openTelemetryWorkflowInterceptorsPath] : [];
}

/** The `exporter` sink the workflow interceptors send their finished spans to. */
export function tracingSinks(): InjectedSinks<OpenTelemetrySinks> | Record<string, never> {
  const tracing = activeTracing();
  return tracing ? { exporter: makeWorkflowExporter(tracing.spanProcessor, tracing.resource) } : {};
}
