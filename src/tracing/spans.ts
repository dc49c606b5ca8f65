/**
 * tether's own child spans (libvirt and block-storage calls): named after the call, with ids as
 * attributes (instance uuid, volume id, attachment id, and the activity type as `tether.step` when
 * the call runs inside an activity) — never a call's XML, connection_info, secret value or result.
 */
import { SpanKind, SpanStatusCode, type Attributes } from '@opentelemetry/api';
import { Context } from '@temporalio/activity';
import { activeTracing } from './tracing.ts';

/** Attribute names tether uses on its spans. */
export const ATTR = {
  step: 'tether.step',
  instanceUuid: 'tether.instance.uuid',
  volumeId: 'tether.volume.id',
  attachmentId: 'tether.attachment.id',
  host: 'tether.host',
  device: 'tether.device',
  blockStorageKind: 'tether.block_storage.kind',
} as const;

/** The activity type when called inside an activity, else undefined. */
function currentStep(): string | undefined {
  try {
    return Context.current().info.activityType;
  } catch {
    return undefined;
  }
}

/**
 * Runs `fn` in a CLIENT span `name` (a child of the active span: the activity's RunActivity span).
 * A failure marks the span as an error with the error's name only: messages of storage back ends
 * may quote what they were sent.
 */
export async function inSpan<T>(name: string, attributes: Attributes, fn: () => Promise<T>): Promise<T> {
  const tracing = activeTracing();
  if (!tracing) return fn();
  const step = currentStep();
  return tracing.tracer.startActiveSpan(name, { kind: SpanKind.CLIENT, attributes: step ? { ...attributes, [ATTR.step]: step } : attributes }, async (span) => {
    try {
      return await fn();
    } catch (err) {
      const type = err instanceof Error ? err.name : typeof err;
      const code = (err as { code?: unknown } | null)?.code;
      span.setAttribute('error.type', typeof code === 'number' || typeof code === 'string' ? `${type}(${code})` : type);
      span.setStatus({ code: SpanStatusCode.ERROR, message: type });
      throw err;
    } finally {
      span.end();
    }
  });
}

/** Which methods of an object get a span, and the attributes each takes from its arguments. */
export type TracedCalls = Record<string, (args: unknown[]) => Attributes>;

/**
 * `target` with a span around each method named in `calls` (`<prefix>.<method>`); every other
 * property is the target's own. Without tracing, `target` itself.
 */
export function withCallSpans<T extends object>(target: T, prefix: string, calls: TracedCalls, base: Attributes = {}): T {
  if (!activeTracing()) return target;
  return new Proxy(target, {
    get(t, prop) {
      const value: unknown = Reflect.get(t, prop, t);
      if (typeof value !== 'function') return value;
      const method = value as (...args: unknown[]) => Promise<unknown>;
      const attributesOf = typeof prop === 'string' && Object.hasOwn(calls, prop) ? calls[prop] : undefined;
      if (!attributesOf) return method.bind(t);
      return (...args: unknown[]) => inSpan(`${prefix}.${String(prop)}`, { ...base, ...attributesOf(args) }, () => method.apply(t, args));
    },
  });
}
