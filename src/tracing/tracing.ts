/**
 * OpenTelemetry tracing for one tether process: a tracer provider with a batching OTLP/HTTP exporter,
 * registered as the process's global provider (with the AsyncLocalStorage context manager and the
 * W3C trace-context propagator), so every span of the process — the HTTP server spans, Temporal's
 * client and activity interceptors, the libvirt and block-storage spans — goes to one exporter.
 *
 * Off unless an OTLP endpoint is configured (src/config.ts, loadTracingSettings): then nothing is
 * registered, `activeTracing()` is undefined, and every tracing hook in tether is skipped entirely
 * (no interceptors, no wrappers, no no-op spans).
 */
import { context, propagation, trace, type Tracer } from '@opentelemetry/api';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-http';
import { envDetectorSync, Resource } from '@opentelemetry/resources';
import { BatchSpanProcessor, type SpanExporter, type SpanProcessor } from '@opentelemetry/sdk-trace-base';
import { NodeTracerProvider } from '@opentelemetry/sdk-trace-node';
import { loadTracingSettings } from '../config.ts';

/** The name tether's own spans (HTTP, libvirt, block storage) are created under. */
export const TRACER_NAME = 'tether';

export interface Tracing {
  readonly serviceName: string;
  /** Where the spans go (the OTLP endpoint), for logs. */
  readonly endpoint: string;
  readonly resource: Resource;
  /** The processor every span of this process ends in; Temporal's workflow-span sink feeds it too. */
  readonly spanProcessor: SpanProcessor;
  readonly tracer: Tracer;
  /** Exports every span ended so far. */
  forceFlush(): Promise<void>;
  /** Flushes, then stops exporting and unregisters the global provider. */
  shutdown(): Promise<void>;
}

let active: Tracing | undefined;

/** The endpoint as it may be logged: a user or password in the URL is dropped. */
function withoutCredentials(endpoint: string): string {
  try {
    const url = new URL(endpoint);
    url.username = '';
    url.password = '';
    return url.toString();
  } catch {
    return '(not a URL)';
  }
}

/** The process's tracing, or undefined when tracing is off. */
export function activeTracing(): Tracing | undefined {
  return active;
}

export interface StartTracingOptions {
  /** service.name unless OTEL_SERVICE_NAME (or OTEL_RESOURCE_ATTRIBUTES) says otherwise. */
  defaultServiceName: string;
  endpoint: string;
  /** Default: OTLP over HTTP (JSON) to the configured endpoint. */
  exporter?: SpanExporter;
}

/** Registers a global tracer provider. One per process: a second call returns the first one. */
export function startTracing(o: StartTracingOptions): Tracing {
  if (active) return active;
  const resource = Resource.default()
    .merge(new Resource({ 'service.name': o.defaultServiceName }))
    .merge(envDetectorSync.detect());
  // The exporter reads OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT, _HEADERS and _TIMEOUT itself.
  const spanProcessor = new BatchSpanProcessor(o.exporter ?? new OTLPTraceExporter());
  const provider = new NodeTracerProvider({ resource, spanProcessors: [spanProcessor] });
  provider.register();
  const tracing: Tracing = {
    serviceName: String(resource.attributes['service.name']),
    endpoint: withoutCredentials(o.endpoint),
    resource,
    spanProcessor,
    tracer: trace.getTracer(TRACER_NAME),
    forceFlush: () => provider.forceFlush(),
    async shutdown() {
      if (active !== tracing) return;
      active = undefined;
      await provider.shutdown();
      trace.disable();
      context.disable();
      propagation.disable();
    },
  };
  active = tracing;
  return tracing;
}

/**
 * Tracing as the environment configures it for the process `name` (service.name `tether-<name>`),
 * or undefined when no OTLP endpoint is set.
 */
export function startTracingFromEnv(name: string): Tracing | undefined {
  const settings = loadTracingSettings();
  if (settings.endpoint === undefined) return undefined;
  return startTracing({ defaultServiceName: `tether-${name}`, endpoint: settings.endpoint });
}
