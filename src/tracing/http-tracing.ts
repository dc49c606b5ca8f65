/**
 * A SERVER span for every HTTP request the API answers: `<METHOD> <route>` with the method, route,
 * path and status code (never headers, query or body: tokens and passwords travel there). An
 * incoming W3C `traceparent` makes the span a child of the caller's. The route handler runs with the
 * span active, so the Temporal client's StartWorkflow / UpdateWithStartWorkflow spans are its children.
 * Installed only when tracing is on.
 */
import { context, propagation, ROOT_CONTEXT, SpanKind, SpanStatusCode, trace, type Span } from '@opentelemetry/api';
import type { FastifyInstance, FastifyReply, FastifyRequest, RouteHandlerMethod } from 'fastify';
import { activeTracing } from './tracing.ts';

const spans = new WeakMap<FastifyRequest, Span>();

/**
 * Call on the root instance before any route is added (the handlers of later routes get wrapped).
 * Any server flavour and type provider: the hooks only read method, route, url and status.
 */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export function installHttpTracing(app: FastifyInstance<any, any, any, any, any>): void {
  const tracing = activeTracing();
  if (!tracing) return;

  app.addHook('onRequest', async (request) => {
    const parent = propagation.extract(ROOT_CONTEXT, request.headers);
    const route = request.routeOptions.url;
    const span = tracing.tracer.startSpan(
      route ? `${request.method} ${route}` : request.method,
      {
        kind: SpanKind.SERVER,
        attributes: {
          'http.request.method': request.method,
          'url.path': request.url.split('?', 1)[0] ?? '',
          ...(route ? { 'http.route': route } : {}),
          'tether.request_id': request.id,
        },
      },
      parent,
    );
    spans.set(request, span);
  });

  app.addHook('onResponse', async (request, reply) => {
    const span = spans.get(request);
    if (!span) return;
    spans.delete(request);
    span.setAttribute('http.response.status_code', reply.statusCode);
    if (reply.statusCode >= 500) span.setStatus({ code: SpanStatusCode.ERROR });
    span.end();
  });

  // A request that is aborted never gets onResponse.
  app.addHook('onRequestAbort', async (request) => {
    const span = spans.get(request);
    if (!span) return;
    spans.delete(request);
    span.setStatus({ code: SpanStatusCode.ERROR, message: 'request aborted' });
    span.end();
  });

  app.addHook('onRoute', (route) => {
    const handler = route.handler as (this: FastifyInstance, request: FastifyRequest, reply: FastifyReply) => unknown;
    route.handler = function (this: FastifyInstance, request: FastifyRequest, reply: FastifyReply) {
      const span = spans.get(request);
      return span ? context.with(trace.setSpan(context.active(), span), () => handler.call(this, request, reply)) : handler.call(this, request, reply);
    } as RouteHandlerMethod;
  });
}
