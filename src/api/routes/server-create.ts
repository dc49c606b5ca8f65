/**
 * POST /servers: Nova's server create for what tether offers (src/service: bootServer): a flavor of
 * GET /flavors (flavorRef required, an unknown one is Nova's 400 "Invalid flavorRef provided."), no
 * image (imageRef absent or "", as Nova allows with a boot volume; absent without one is tether's
 * diskless server), block_device_mapping_v2 entries of existing volumes (source and destination type
 * volume; the one with boot_index 0 is the boot volume), networks "none" or "auto" (tether has no
 * network service: the server has no addresses). Answers 202 with Nova's create body (id, links,
 * OS-DCF:diskConfig, security_groups; no adminPass: tether sets no password in a guest) and Location.
 */
import { randomBytes } from 'node:crypto';
import { Type, type FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import type { BootServerRequest, TetherService } from '../../service/tether-service.ts';
import { FAULTS, pathParams, type ScopeOptions } from '../schemas/common.ts';
import { ApiError } from '../errors.ts';
import { tetherFor } from '../authentication.ts';
import { baseUrl, resourceLinks } from '../views/links.ts';
import { novaBoolean } from '../schemas/compute.ts';

const SERVER_KEYS: [string, number][] = [
  ['name', 1], ['imageRef', 1], ['flavorRef', 1], ['adminPass', 1], ['metadata', 1], ['networks', 1], ['OS-DCF:diskConfig', 1],
  ['accessIPv4', 1], ['accessIPv6', 1], ['availability_zone', 1], ['block_device_mapping', 1], ['block_device_mapping_v2', 1],
  ['config_drive', 1], ['key_name', 1], ['min_count', 1], ['max_count', 1], ['return_reservation_id', 1], ['security_groups', 1],
  ['user_data', 1], ['description', 19], ['tags', 52], ['trusted_image_certificates', 63], ['host', 74], ['hypervisor_hostname', 74], ['hostname', 90],
];
const BDM_KEYS = ['uuid', 'source_type', 'destination_type', 'boot_index', 'delete_on_termination', 'device_name', 'volume_size', 'disk_bus', 'device_type', 'guest_format', 'no_device', 'connection_info', 'snapshot_id', 'volume_id', 'image_id', 'tag', 'volume_type'];
const UUID = /^[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}$/i;

function bad(message: string): ApiError {
  return new ApiError(400, message);
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function unexpected(field: string, value: Record<string, unknown>, allowed: string[]): void {
  const extra = Object.keys(value).find((k) => !allowed.includes(k));
  if (extra !== undefined) throw bad(`Invalid input for field/attribute ${field}. Value: ${JSON.stringify(value).slice(0, 200)}. Additional properties are not allowed ('${extra}' was unexpected)`);
}

/** Nova's common.get_id_from_href: a flavorRef may be an id or a link ending in it. */
function idFromHref(ref: string): string {
  const tail = ref.split('?')[0]!.replace(/\/+$/, '').split('/').pop();
  return tail ?? ref;
}

/** A block_device_mapping_v2 entry tether can serve: an existing volume. */
function volumeOf(entry: unknown, index: number, microversion: number): BootServerRequest['volumes'][number] {
  const field = `block_device_mapping_v2/${index}`;
  if (!isObject(entry)) throw bad(`Invalid input for field/attribute ${field}. Value: ${JSON.stringify(entry)}. ${JSON.stringify(entry)} is not of type 'object'`);
  unexpected(field, entry, BDM_KEYS.filter((k) => (k === 'tag' ? microversion >= 42 : k === 'volume_type' ? microversion >= 67 : true)));
  const source = entry.source_type ?? 'volume';
  const destination = entry.destination_type ?? 'volume';
  if (source !== 'volume' || destination !== 'volume') {
    throw bad(`Block Device Mapping is Invalid: tether boots from existing volumes only (source_type and destination_type volume), not source_type ${String(source)} and destination_type ${String(destination)}.`);
  }
  const id = entry.uuid ?? entry.volume_id;
  if (typeof id !== 'string' || !UUID.test(id)) throw bad(`Block Device Mapping is Invalid: a volume must be given by its uuid (got ${JSON.stringify(id ?? null)}).`);
  let bootIndex: number | null = null;
  if (entry.boot_index !== undefined && entry.boot_index !== null && entry.boot_index !== 'none') {
    const n = typeof entry.boot_index === 'number' ? entry.boot_index : typeof entry.boot_index === 'string' && /^-?\d+$/.test(entry.boot_index) ? Number(entry.boot_index) : NaN;
    if (!Number.isInteger(n)) throw bad(`Invalid input for field/attribute boot_index. Value: ${JSON.stringify(entry.boot_index)}. is not a valid integer`);
    bootIndex = n < 0 ? null : n;
  }
  const dot = entry.delete_on_termination;
  if (dot !== undefined && typeof dot !== 'boolean' && !(typeof dot === 'string' && ['true', 'false', '1', '0', 'yes', 'no', 'on', 'off'].includes(dot.toLowerCase()))) {
    throw bad(`Invalid input for field/attribute delete_on_termination. Value: ${JSON.stringify(dot)}. is not a valid boolean`);
  }
  if (entry.tag !== undefined && entry.tag !== null && (typeof entry.tag !== 'string' || entry.tag.length > 60 || /[,/]/.test(entry.tag))) {
    throw bad(`Invalid input for field/attribute tag. Value: ${JSON.stringify(entry.tag)}. is not valid`);
  }
  return {
    volumeId: id.toLowerCase(),
    bootIndex,
    deleteOnTermination: dot === undefined ? false : novaBoolean(dot as boolean | string),
    ...(typeof entry.tag === 'string' ? { tag: entry.tag } : {}),
  };
}

/** The service request of a POST /servers body at `microversion`, checked like Nova's schema for it. */
export function parseCreateServer(body: unknown, microversion: number): { request: BootServerRequest; securityGroups: unknown; reservationId: boolean } {
  if (!isObject(body) || !isObject(body.server)) throw bad(`Invalid input for field/attribute server. Value: ${JSON.stringify(isObject(body) ? body.server ?? null : body)}. 'server' is a required property`);
  unexpected('', body, ['server', 'os:scheduler_hints', 'OS-SCH-HNT:scheduler_hints']);
  const server = body.server;
  unexpected('server', server, SERVER_KEYS.filter(([, from]) => microversion >= from).map(([k]) => k));
  const name = server.name;
  if (typeof name !== 'string' || name.length < 1 || name.length > 255 || name.trim() !== name) {
    throw bad(name === undefined ? "Invalid input for field/attribute server. Value: {...}. 'name' is a required property" : `Invalid input for field/attribute name. Value: ${JSON.stringify(name)}. is not a valid name`);
  }
  const flavorRef = server.flavorRef;
  if (flavorRef === undefined) throw bad("Invalid input for field/attribute server. Value: {...}. 'flavorRef' is a required property");
  if ((typeof flavorRef !== 'string' && typeof flavorRef !== 'number') || String(flavorRef).length === 0) throw bad(`Invalid input for field/attribute flavorRef. Value: ${JSON.stringify(flavorRef)}. is not valid`);
  const imageRef = server.imageRef;
  if (imageRef !== undefined && imageRef !== null && imageRef !== '') {
    throw bad(typeof imageRef === 'string' ? `Image ${imageRef} could not be found.` : `Invalid input for field/attribute imageRef. Value: ${JSON.stringify(imageRef)}. is not valid`);
  }
  if (server.block_device_mapping !== undefined) throw bad('Block Device Mapping is Invalid: tether takes block_device_mapping_v2 only.');
  const networks = server.networks;
  if (microversion >= 37 && networks === undefined) throw bad("Invalid input for field/attribute server. Value: {...}. 'networks' is a required property");
  if (networks !== undefined) {
    if (typeof networks === 'string') {
      if (microversion < 37 || (networks !== 'none' && networks !== 'auto')) throw bad(`Invalid input for field/attribute networks. Value: ${networks}. '${networks}' is not one of ['none', 'auto']`);
    } else if (!Array.isArray(networks)) {
      throw bad(`Invalid input for field/attribute networks. Value: ${JSON.stringify(networks)}. is not valid`);
    } else if (networks.length > 0) {
      throw bad('Bad networks format: tether has no network service; networks must be "none", "auto" or [].');
    }
  }
  const bdms = server.block_device_mapping_v2;
  if (bdms !== undefined && !Array.isArray(bdms)) throw bad(`Invalid input for field/attribute block_device_mapping_v2. Value: ${JSON.stringify(bdms)}. is not of type 'array'`);
  const volumes = (bdms ?? []).map((e, i) => volumeOf(e, i, microversion));
  for (const key of ['min_count', 'max_count'] as const) {
    const v = server[key];
    if (v === undefined) continue;
    const n = typeof v === 'number' ? v : typeof v === 'string' && /^\d+$/.test(v) ? Number(v) : NaN;
    if (!Number.isInteger(n) || n < 1) throw bad(`Invalid input for field/attribute ${key}. Value: ${JSON.stringify(v)}. is not a positive integer`);
    if (n !== 1) throw bad(`tether creates one server per request (${key} ${n}).`);
  }
  if (server.key_name !== undefined && server.key_name !== null) throw bad('Invalid key_name provided.');
  if (microversion >= 63 && server.trusted_image_certificates !== undefined && server.trusted_image_certificates !== null) {
    throw bad('Image certificate validation is not supported when booting from volume');
  }
  const az = server.availability_zone;
  let availabilityZone: string | undefined;
  let host: string | undefined;
  if (typeof az === 'string' && az !== '') {
    // Nova's "zone:host" (admins)
    const [zone, forced] = az.split(':');
    if (zone) availabilityZone = zone;
    if (forced) host = forced;
  }
  if (microversion >= 74 && typeof server.host === 'string') host = server.host;
  const request: BootServerRequest = {
    name,
    flavorRef: idFromHref(String(flavorRef)),
    volumes,
    ...(availabilityZone !== undefined ? { availabilityZone } : {}),
    ...(host !== undefined ? { host } : {}),
  };
  const hints = body['os:scheduler_hints'] ?? body['OS-SCH-HNT:scheduler_hints'];
  if (hints !== undefined && !isObject(hints)) throw bad(`Invalid input for field/attribute os:scheduler_hints. Value: ${JSON.stringify(hints)}. is not of type 'object'`);
  if (hints !== undefined) request.schedulerHints = hints;
  const reservationId = server.return_reservation_id === true || (typeof server.return_reservation_id === 'string' && novaBoolean(server.return_reservation_id));
  return { request, securityGroups: server.security_groups ?? [{ name: 'default' }], reservationId };
}

export const serverCreateRoutes: FastifyPluginAsyncTypebox<{ service: TetherService } & ScopeOptions> = async (app, { service, ...scope }) => {
  app.post(
    '/servers',
    {
      schema: {
        summary: 'Create a server: a flavor, no image, volumes of block_device_mapping_v2 (boot_index 0: the boot volume) or none (diskless); networks "none"/"auto"',
        tags: ['compute'],
        params: pathParams(scope, {}),
        body: Type.Unknown(),
        response: { 202: Type.Record(Type.String(), Type.Unknown()), ...FAULTS },
      },
    },
    async (request, reply) => {
      const { request: spec, securityGroups, reservationId } = parseCreateServer(request.body, request.microversion);
      const { instance } = await tetherFor(service, request).bootServer(spec);
      if (reservationId) return reply.code(202).send({ reservation_id: `r-${randomBytes(4).toString('hex')}` });
      const links = resourceLinks(baseUrl(request), 'v2.1', `${instance.projectId}/servers/${instance.uuid}`);
      reply.header('Location', links[0]!.href);
      return reply.code(202).send({ server: { id: instance.uuid, links, 'OS-DCF:diskConfig': 'MANUAL', security_groups: securityGroups } });
    },
  );
};
