/**
 * API microversions, negotiated the way Nova and Cinder do: `OpenStack-API-Version: <service> X.Y`
 * first, then Nova's legacy `X-OpenStack-Nova-API-Version: X.Y`, else the minimum; `latest` is the
 * maximum. A malformed version is a 400, one outside the range a 406. The version used is echoed.
 */
import type { IncomingHttpHeaders } from 'node:http';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { Type } from '@fastify/type-provider-typebox';
import { ApiError } from './errors.ts';

export interface MicroversionRange {
  service: 'compute' | 'volume';
  major: number;
  /** Minor versions served, inclusive. */
  min: number;
  max: number;
  /** A header that carries the bare version (Nova's legacy header), lower case. */
  legacyHeader?: string;
}

export const COMPUTE_VERSIONS: MicroversionRange = { service: 'compute', major: 2, min: 1, max: 104, legacyHeader: 'x-openstack-nova-api-version' };
/** Like Cinder 2023.1 "Antelope". */
export const VOLUME_VERSIONS: MicroversionRange = { service: 'volume', major: 3, min: 0, max: 70 };

declare module 'fastify' {
  interface FastifyRequest {
    /** The negotiated minor version (2.N for compute, 3.N for volume). */
    microversion: number;
  }
}

export function formatVersion(range: MicroversionRange, minor: number): string {
  return `${range.major}.${minor}`;
}

function header(headers: IncomingHttpHeaders, name: string): string | undefined {
  const v = headers[name];
  return Array.isArray(v) ? v.join(',') : v;
}

/** The version string the request asks for, or null when it asks for none. */
export function requestedVersion(range: MicroversionRange, headers: IncomingHttpHeaders): string | null {
  for (const entry of (header(headers, 'openstack-api-version') ?? '').split(',')) {
    const [service, ...version] = entry.trim().split(/\s+/);
    // everything after the service name: "compute 2.1 2.2" is a malformed version, not 2.1
    if (service?.toLowerCase() === range.service && version.length > 0) return version.join(' ');
  }
  const legacy = range.legacyHeader && header(headers, range.legacyHeader)?.trim();
  return legacy || null;
}

/** The minor version to serve; throws a 400 for a malformed version and a 406 for one not served. */
export function negotiate(range: MicroversionRange, headers: IncomingHttpHeaders): number {
  const requested = requestedVersion(range, headers);
  if (requested === null) return range.min;
  if (requested.toLowerCase() === 'latest') return range.max;
  const m = /^([1-9]\d*)\.([1-9]\d*|0)$/.exec(requested);
  if (!m) throw new ApiError(400, `API Version String ${requested} is of invalid format. Must be of format MajorNum.MinorNum.`);
  const minor = Number(m[2]);
  if (Number(m[1]) !== range.major || minor < range.min || minor > range.max) {
    throw new ApiError(
      406,
      `Version ${requested} is not supported by the API. Minimum is ${formatVersion(range, range.min)} and maximum is ${formatVersion(range, range.max)}.`,
    );
  }
  return minor;
}

/**
 * Serves every route of `app` (an encapsulated plugin) at the negotiated version: documents the
 * headers in the route schemas, stores the version on the request and echoes it (with Vary).
 */
export function useMicroversions(app: FastifyInstance, range: MicroversionRange): void {
  const example = `${range.service} ${formatVersion(range, range.max)}`;
  const headers = Type.Object({
    'openstack-api-version': Type.Optional(Type.String({ description: `e.g. "${example}" or "${range.service} latest"` })),
    ...(range.legacyHeader ? { [range.legacyHeader]: Type.Optional(Type.String({ description: 'legacy form: "2.N"' })) } : {}),
  });
  app.addHook('onRoute', (route) => {
    route.schema = { ...route.schema, headers: route.schema?.headers ?? headers };
  });
  app.addHook('onRequest', microversionHook(range));
}

function microversionHook(range: MicroversionRange) {
  return async (request: FastifyRequest, reply: FastifyReply): Promise<void> => {
    request.microversion = negotiate(range, request.headers);
    const version = formatVersion(range, request.microversion);
    reply.header('OpenStack-API-Version', `${range.service} ${version}`);
    if (range.legacyHeader) {
      reply.header('X-OpenStack-Nova-API-Version', version);
      reply.header('Vary', 'OpenStack-API-Version, X-OpenStack-Nova-API-Version');
    } else {
      reply.header('Vary', 'OpenStack-API-Version');
    }
  };
}
