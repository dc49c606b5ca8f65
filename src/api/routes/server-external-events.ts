/**
 * POST /os-server-external-events: what other services (Cinder after it extended an attached volume,
 * Neutron) tell Nova about a server. Nova's rules: service-or-admin policy; the event names each
 * microversion accepts; a per-event code (200 accepted, 404 unknown server, 400 a missing tag, 422 a
 * server with no host) and 200 overall when every event was accepted, else 207 (never 404 since Nova
 * Ussuri, bug 1855752). `volume-extended` (tag = the volume) grows that volume's disk under the
 * server (the ExtendVolume saga); the others have nothing to act on in tether and are dropped.
 */
import { Type, type FastifyPluginAsyncTypebox, type Static } from '@fastify/type-provider-typebox';
import type { TetherService } from '../../service/tether-service.ts';
import { ApiError } from '../errors.ts';
import { FAULTS, pathParams, type ScopeOptions } from '../schemas/common.ts';
import { ExternalEvent, ExternalEventResult, ExternalEvents } from '../schemas/compute.ts';
import { tetherFor } from '../authentication.ts';

/** The event names Nova's schema takes, by the microversion that added them. */
const EVENT_NAMES: Array<[minor: number, name: string]> = [
  [0, 'network-changed'],
  [0, 'network-vif-plugged'],
  [0, 'network-vif-unplugged'],
  [0, 'network-vif-deleted'],
  [51, 'volume-extended'],
  [76, 'power-update'],
  [82, 'accelerator-request-bound'],
];

export function eventNamesAt(microversion: number): string[] {
  return EVENT_NAMES.filter(([minor]) => minor <= microversion).map(([, name]) => name);
}

export const serverExternalEventRoutes: FastifyPluginAsyncTypebox<{ service: TetherService } & ScopeOptions> = async (app, { service, ...scope }) => {
  app.post(
    '/os-server-external-events',
    {
      schema: {
        summary: 'External events for servers (service or admin): `volume-extended` (2.51) grows the volume `tag` under its running server',
        tags: ['compute'],
        params: pathParams(scope, {}),
        body: ExternalEvents,
        response: { 200: Type.Object({ events: Type.Array(ExternalEventResult) }), 207: Type.Object({ events: Type.Array(ExternalEventResult) }), ...FAULTS },
      },
    },
    async (request, reply) => {
      const names = eventNamesAt(request.microversion);
      request.body.events.forEach((e, i) => {
        if (!names.includes(e.name)) {
          throw new ApiError(400, `Invalid input for field/attribute events[${i}].name. Value: ${e.name}. '${e.name}' is not one of ${JSON.stringify(names)}`);
        }
      });
      const tether = tetherFor(service, request);
      const results: Array<Static<typeof ExternalEventResult>> = [];
      for (const event of request.body.events as Array<Static<typeof ExternalEvent>>) {
        const { code } = await tether.serverExternalEvent({ name: event.name, serverUuid: event.server_uuid, tag: event.tag ?? null });
        results.push({ ...event, status: code === 200 ? 'completed' : 'failed', code });
      }
      return reply.code(results.every((r) => r.code === 200) ? 200 : 207).send({ events: results });
    },
  );
};
