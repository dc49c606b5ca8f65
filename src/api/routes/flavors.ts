/**
 * GET /flavors, /flavors/detail and /flavors/{flavor_id}: the fixed sizes of src/domain/flavors.ts,
 * with Nova's filters (minRam, minDisk, is_public; name from 2.102), sorting by flavorid, limit and
 * marker; unknown query parameters are a 400 from 2.75 (list) and 2.102 (show), as in Nova.
 */
import { Type, type FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import type { FastifyRequest } from 'fastify';
import type { TetherService } from '../../service/tether-service.ts';
import { FAULTS, pathParams, type ScopeOptions } from '../schemas/common.ts';
import { FLAVORS, findFlavor, type Flavor } from '../../domain/flavors.ts';
import { ApiError } from '../errors.ts';
import { baseUrl } from '../views/links.ts';
import { flavorBrief, flavorDetail } from '../views/flavor.ts';

const LIST_PARAMS = ['limit', 'marker', 'is_public', 'minRam', 'minDisk', 'sort_key', 'sort_dir'];
const SORT_KEYS = ['created_at', 'description', 'disabled', 'ephemeral_gb', 'flavorid', 'id', 'is_public', 'memory_mb', 'name', 'root_gb', 'rxtx_factor', 'swap', 'updated_at', 'vcpu_weight', 'vcpus'];

type Query = Record<string, string | string[] | undefined>;

/** Nova takes the last of a repeated parameter (multi_params). */
function last(v: string | string[] | undefined): string | undefined {
  return Array.isArray(v) ? v[v.length - 1] : v;
}

function refuseUnknown(query: Query, allowed: string[]): void {
  const unknown = Object.keys(query).find((k) => !allowed.includes(k));
  if (unknown !== undefined) throw new ApiError(400, `Invalid input for query parameters: Additional properties are not allowed ('${unknown}' was unexpected).`);
}

function intFilter(query: Query, name: 'minRam' | 'minDisk'): number | null {
  const raw = last(query[name]);
  if (raw === undefined) return null;
  if (!/^-?\d+$/.test(raw.trim())) throw new ApiError(400, `Invalid ${name} filter [${raw}]`);
  return Number(raw);
}

/** The flavors a list request asks for, Nova's _get_flavors. */
export function selectFlavors(query: Query, microversion: number): Flavor[] {
  if (microversion >= 75) refuseUnknown(query, microversion >= 102 ? [...LIST_PARAMS, 'name'] : LIST_PARAMS);
  const sortKey = last(query.sort_key) ?? 'flavorid';
  const sortDir = last(query.sort_dir) ?? 'asc';
  const allowedKeys = microversion >= 102 ? SORT_KEYS.filter((k) => k !== 'rxtx_factor') : SORT_KEYS;
  if (!allowedKeys.includes(sortKey)) throw new ApiError(400, `Invalid input for query parameters sort_key. Value: ${sortKey}. '${sortKey}' is not one of ${JSON.stringify(allowedKeys)}`);
  if (sortDir !== 'asc' && sortDir !== 'desc') throw new ApiError(400, `Invalid input for query parameters sort_dir. Value: ${sortDir}. '${sortDir}' is not one of ['asc', 'desc']`);
  const isPublic = last(query.is_public);
  if (isPublic !== undefined && !['true', 'false', 'none', '1', '0', 't', 'f', 'yes', 'no', 'on', 'off', 'y', 'n'].includes(isPublic.toLowerCase())) {
    throw new ApiError(400, `Invalid is_public filter [${isPublic}]`);
  }
  const minRam = intFilter(query, 'minRam');
  const minDisk = intFilter(query, 'minDisk');
  const name = last(query.name);
  const value = (f: Flavor): string | number => {
    switch (sortKey) {
      case 'memory_mb': return f.ram;
      case 'root_gb': return f.disk;
      case 'ephemeral_gb': return f.ephemeral;
      case 'vcpus': return f.vcpus;
      case 'swap': return f.swap;
      case 'name': return f.name;
      case 'description': return f.description;
      default: return f.id;
    }
  };
  let flavors = FLAVORS.filter(
    (f) =>
      (minRam === null || f.ram >= minRam) &&
      (minDisk === null || f.disk >= minDisk) &&
      (microversion < 102 || name === undefined || f.name === name) &&
      // every tether flavor is public: is_public=false (admins) lists none
      !(isPublic !== undefined && ['false', '0', 'f', 'no', 'off', 'n'].includes(isPublic.toLowerCase())),
  ).sort((a, b) => {
    const [x, y] = [value(a), value(b)];
    const c = x < y ? -1 : x > y ? 1 : a.id.localeCompare(b.id);
    return sortDir === 'asc' ? c : -c;
  });
  const marker = last(query.marker);
  if (marker !== undefined) {
    const at = flavors.findIndex((f) => f.id === marker);
    if (at < 0) throw new ApiError(400, `marker [${marker}] not found`);
    flavors = flavors.slice(at + 1);
  }
  const limitRaw = last(query.limit);
  if (limitRaw !== undefined) {
    if (!/^\d+$/.test(limitRaw)) throw new ApiError(400, `Invalid input for query parameters limit. Value: ${limitRaw}. '${limitRaw}' does not match '^[0-9]*$'`);
    flavors = flavors.slice(0, Number(limitRaw));
  }
  return flavors;
}

export const flavorRoutes: FastifyPluginAsyncTypebox<{ service: TetherService } & ScopeOptions> = async (app, { service, ...scope }) => {
  const tags = ['compute'];
  const project = (request: FastifyRequest): string | null => (scope.projectScoped ? service.as(request.caller).caller.projectId : null);
  const any = Type.Record(Type.String(), Type.Unknown());
  const list = { 200: Type.Object({ flavors: Type.Array(any) }), ...FAULTS };
  const query = Type.Record(Type.String(), Type.Union([Type.String(), Type.Array(Type.String())]));

  app.get(
    '/flavors',
    { schema: { summary: 'List flavors (id, name, links)', tags, params: pathParams(scope, {}), querystring: query, response: list } },
    async (request) => ({
      flavors: selectFlavors(request.query, request.microversion).map((f) => flavorBrief(f, baseUrl(request), project(request), request.microversion)),
    }),
  );

  app.get(
    '/flavors/detail',
    { schema: { summary: 'List flavors with details', tags, params: pathParams(scope, {}), querystring: query, response: list } },
    async (request) => ({
      flavors: selectFlavors(request.query, request.microversion).map((f) => flavorDetail(f, baseUrl(request), project(request), request.microversion)),
    }),
  );

  // the openstack CLI reads each flavor's extra specs below 2.61 (where they are not in the flavor)
  app.get(
    '/flavors/:flavor_id/os-extra_specs',
    { schema: { summary: "A flavor's extra specs (tether's flavors have none)", tags, params: pathParams(scope, { flavor_id: Type.String() }), response: { 200: Type.Object({ extra_specs: Type.Record(Type.String(), Type.String()) }), ...FAULTS } } },
    async (request) => {
      if (!findFlavor(request.params.flavor_id)) throw new ApiError(404, `Flavor ${request.params.flavor_id} could not be found.`);
      return { extra_specs: {} };
    },
  );

  app.get(
    '/flavors/:flavor_id/os-extra_specs/:key',
    { schema: { summary: 'One extra spec of a flavor (none exist)', tags, params: pathParams(scope, { flavor_id: Type.String(), key: Type.String() }), response: { ...FAULTS } } },
    async (request) => {
      if (!findFlavor(request.params.flavor_id)) throw new ApiError(404, `Flavor ${request.params.flavor_id} could not be found.`);
      throw new ApiError(404, `Flavor ${request.params.flavor_id} has no extra specs with key ${request.params.key}.`);
    },
  );

  app.get(
    '/flavors/:flavor_id',
    { schema: { summary: 'Show a flavor', tags, params: pathParams(scope, { flavor_id: Type.String() }), querystring: query, response: { 200: Type.Object({ flavor: any }), ...FAULTS } } },
    async (request) => {
      if (request.microversion >= 102) refuseUnknown(request.query, []);
      const flavor = findFlavor(request.params.flavor_id);
      if (!flavor) throw new ApiError(404, `Flavor ${request.params.flavor_id} could not be found.`);
      return { flavor: flavorDetail(flavor, baseUrl(request), project(request), request.microversion) };
    },
  );
};
