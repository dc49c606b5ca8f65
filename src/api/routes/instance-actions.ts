/**
 * /servers/{server_id}/os-instance-actions: Nova's instance actions, read from the workflow runs on
 * the server (src/service/instance-actions.ts). The list, newest first, from 2.58 with `limit`,
 * `marker` (a request id), `changes-since` and (2.66) `changes-before` on `updated_at`, and a `next`
 * link when a page is full; show by request id with the events the caller may see. From 2.21 a
 * deleted server's actions are still shown.
 */
import { Type, type FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import type { FastifyRequest } from 'fastify';
import type { TetherService } from '../../service/tether-service.ts';
import type { InstanceAction } from '../../domain/instance-actions.ts';
import { allowed } from '../../auth/policy.ts';
import { ApiError } from '../errors.ts';
import { FAULTS, pathParams, type ScopeOptions } from '../schemas/common.ts';
import { tetherFor } from '../authentication.ts';
import { baseUrl } from '../views/links.ts';
import { actionEventView, eventVisibility, instanceActionView } from '../views/instance-action.ts';

const InstanceActionBody = Type.Object({}, { additionalProperties: true, description: "Nova's instance action" });

/** Nova's max_limit: the largest page. */
const MAX_LIMIT = 1000;

/** A query parameter Nova takes once (its single_param): a repeated one is a 400. */
function single(query: Record<string, unknown>, name: string): string | undefined {
  const v = query[name];
  if (v === undefined) return undefined;
  if (Array.isArray(v)) {
    if (v.length !== 1) throw new ApiError(400, `Invalid input for query parameters ${name}. Value: ${JSON.stringify(v)}. ${JSON.stringify(v)} is too long`);
    return String(v[0]);
  }
  return String(v);
}

/** An ISO 8601 date-time (a value without a zone is UTC, as Nova's parse_isotime reads it). */
function dateTime(name: string, raw: string): number {
  const ok = /^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?$/i.test(raw.trim());
  const withZone = /(Z|[+-]\d{2}:?\d{2})$/i.test(raw.trim()) ? raw.trim() : `${raw.trim()}Z`;
  const t = ok ? Date.parse(withZone.replace(' ', 'T')) : NaN;
  if (Number.isNaN(t)) throw new ApiError(400, `Invalid input for query parameters ${name}. Value: ${raw}. '${raw}' is not a 'date-time'`);
  return t;
}

interface Page {
  limit: number | undefined;
  marker: string | undefined;
  since: number | undefined;
  before: number | undefined;
}

/** The list's query from 2.58 (Nova's index_query_v258 / v266: additional properties refused). */
function pageOf(query: Record<string, unknown>, microversion: number): Page {
  if (microversion < 58) return { limit: undefined, marker: undefined, since: undefined, before: undefined };
  const allowed = ['limit', 'marker', 'changes-since', ...(microversion >= 66 ? ['changes-before'] : [])];
  const extra = Object.keys(query).filter((k) => !allowed.includes(k));
  if (extra.length > 0) {
    throw new ApiError(400, `Invalid input for query parameters ${extra[0]}. Value: ${String(query[extra[0]!])}. Additional properties are not allowed ('${extra.join("', '")}' ${extra.length > 1 ? 'were' : 'was'} unexpected)`);
  }
  const rawLimit = single(query, 'limit');
  let limit: number | undefined;
  if (rawLimit !== undefined) {
    if (!/^\d+$/.test(rawLimit.trim())) throw new ApiError(400, `Invalid input for query parameters limit. Value: ${rawLimit}. '${rawLimit}' does not match '^[0-9]*$'`);
    limit = Math.min(MAX_LIMIT, Number(rawLimit.trim()));
  }
  const rawSince = single(query, 'changes-since');
  const rawBefore = single(query, 'changes-before');
  const since = rawSince === undefined ? undefined : dateTime('changes-since', rawSince);
  const before = rawBefore === undefined ? undefined : dateTime('changes-before', rawBefore);
  if (since !== undefined && before !== undefined && before < since) {
    throw new ApiError(400, 'The value of changes-since must be less than or equal to changes-before.');
  }
  return { limit, marker: single(query, 'marker'), since, before };
}

/** Nova's actions_get: filtered on updated_at, then the page after the marker. */
function paginate(actions: InstanceAction[], page: Page): InstanceAction[] {
  let list = actions.filter((a) => {
    const updated = Date.parse(a.updatedAt);
    return (page.since === undefined || updated >= page.since) && (page.before === undefined || updated <= page.before);
  });
  if (page.marker !== undefined) {
    // the marker is looked up among all the server's actions, as Nova does
    if (!actions.some((a) => a.requestId === page.marker)) throw new ApiError(400, `Marker ${page.marker} could not be found.`);
    const at = list.findIndex((a) => a.requestId === page.marker);
    const after = at >= 0 ? at + 1 : list.findIndex((a) => a.startTime < actions.find((b) => b.requestId === page.marker)!.startTime);
    list = after < 0 ? [] : list.slice(after);
  }
  return page.limit === undefined ? list : list.slice(0, page.limit);
}

/** Nova's collection links: `next` when the page is as long as the limit asked for. */
function nextLinks(request: FastifyRequest, serverId: string, page: Page, shown: InstanceAction[]) {
  if (page.limit === undefined || page.limit === 0 || shown.length !== page.limit) return [];
  const url = new URL(request.url, baseUrl(request));
  url.searchParams.set('marker', shown[shown.length - 1]!.requestId);
  const prefix = url.pathname.replace(/\/servers\/[^/]+\/os-instance-actions\/?$/, '');
  return [{ rel: 'next', href: `${baseUrl(request)}${prefix}/servers/${serverId}/os-instance-actions?${url.searchParams.toString()}` }];
}

export const instanceActionRoutes: FastifyPluginAsyncTypebox<{ service: TetherService } & ScopeOptions> = async (app, { service, ...scope }) => {
  const tags = ['compute'];
  const base = '/servers/:server_id/os-instance-actions';

  app.get(
    base,
    {
      schema: {
        summary: "List a server's actions (each workflow run on it), newest first",
        tags,
        params: pathParams(scope, { server_id: Type.String() }),
        querystring: Type.Object({}, { additionalProperties: true }),
        response: { 200: Type.Object({ instanceActions: Type.Array(InstanceActionBody), links: Type.Optional(Type.Array(InstanceActionBody)) }), ...FAULTS },
      },
    },
    async (request) => {
      const mv = request.microversion;
      const page = pageOf(request.query as Record<string, unknown>, mv);
      const { actions } = await tetherFor(service, request).listInstanceActions(request.params.server_id, { includeDeleted: mv >= 21 });
      const shown = paginate(actions, page);
      const links = mv >= 58 ? nextLinks(request, request.params.server_id, page, shown) : [];
      return { instanceActions: shown.map((a) => instanceActionView(a, mv)), ...(links.length > 0 ? { links } : {}) };
    },
  );

  app.get(
    `${base}/:request_id`,
    {
      schema: {
        summary: 'Show one action by its request id, with its events (one per step: start, finish, result, and why a step failed)',
        tags,
        params: pathParams(scope, { server_id: Type.String(), request_id: Type.String() }),
        response: { 200: Type.Object({ instanceAction: InstanceActionBody }), ...FAULTS },
      },
    },
    async (request) => {
      const mv = request.microversion;
      const tether = tetherFor(service, request);
      const { instance, action, events } = await tether.showInstanceAction(request.params.server_id, request.params.request_id, { includeDeleted: mv >= 21 });
      const show = eventVisibility(mv, { events: allowed(request.caller, 'instance_actions:events'), details: allowed(request.caller, 'instance_actions:events:details') });
      const projectId = action.projectId ?? instance.projectId;
      return {
        instanceAction: {
          ...instanceActionView(action, mv),
          ...(show ? { events: events.map((e) => actionEventView(e, projectId, show)) } : {}),
        },
      };
    },
  );
};
