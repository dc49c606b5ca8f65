/**
 * /os-services: Nova's compute services, one per compute host (admin). What matters to tether is
 * `forced_down`: an operator's word that a host is gone, after which a detach of its servers' volumes
 * fences the host instead of waiting for it (src/service: the force detach). From 2.53 a service is
 * named by its UUID (PUT /os-services/{id}); before, by host and binary (PUT /os-services/force-down,
 * /disable, /enable, /disable-log-reason).
 */
import { Type, type FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import type { TetherService } from '../../service/tether-service.ts';
import { COMPUTE_BINARY } from '../../service/tether-service.ts';
import { serviceState, type ComputeHostRecord } from '../../domain/compute-hosts.ts';
import { ApiError } from '../errors.ts';
import { FAULTS, pathParams, type ScopeOptions } from '../schemas/common.ts';
import { tetherFor } from '../authentication.ts';

const Service = Type.Object({}, { additionalProperties: true, description: "Nova's compute service" });

function serviceView(h: ComputeHostRecord, microversion: number, zone: string) {
  return {
    id: microversion >= 53 ? h.serviceUuid : h.serviceId,
    binary: COMPUTE_BINARY,
    host: h.host,
    zone,
    status: h.disabled ? 'disabled' : 'enabled',
    state: serviceState(h),
    updated_at: h.lastSeenAt ?? h.updatedAt,
    disabled_reason: h.disabledReason,
    ...(microversion >= 11 ? { forced_down: h.forcedDown } : {}),
  };
}

/** Nova's legacy actions (below 2.53): the service named by host and binary in the body. */
const LegacyBody = Type.Object({
  host: Type.String({ minLength: 1, maxLength: 255 }),
  binary: Type.String({ minLength: 1, maxLength: 255 }),
  forced_down: Type.Optional(Type.Boolean()),
  disabled_reason: Type.Optional(Type.String({ maxLength: 255 })),
});

export const computeServiceRoutes: FastifyPluginAsyncTypebox<{ service: TetherService; availabilityZone: string } & ScopeOptions> = async (
  app,
  { service, availabilityZone, ...scope },
) => {
  const tags = ['compute'];

  app.get(
    '/os-services',
    {
      schema: {
        summary: 'List compute services (admin): state, status, forced_down',
        tags,
        params: pathParams(scope, {}),
        querystring: Type.Object({ host: Type.Optional(Type.String()), binary: Type.Optional(Type.String()) }),
        response: { 200: Type.Object({ services: Type.Array(Service) }), ...FAULTS },
      },
    },
    async (request) => {
      const services = await tetherFor(service, request).listComputeServices(request.query);
      return { services: services.map((h) => serviceView(h, request.microversion, availabilityZone)) };
    },
  );

  app.put(
    '/os-services/:service_id',
    {
      schema: {
        summary: 'Update a compute service (2.53: by UUID; before, the actions force-down, disable, enable, disable-log-reason)',
        tags,
        params: pathParams(scope, { service_id: Type.String() }),
        body: Type.Object({
          status: Type.Optional(Type.Union([Type.Literal('enabled'), Type.Literal('disabled')])),
          disabled_reason: Type.Optional(Type.String({ minLength: 1, maxLength: 255 })),
          forced_down: Type.Optional(Type.Boolean()),
          host: Type.Optional(Type.String()),
          binary: Type.Optional(Type.String()),
        }),
        response: { 200: Type.Object({ service: Service }), ...FAULTS },
      },
    },
    async (request) => {
      const tether = tetherFor(service, request);
      const id = request.params.service_id;
      const body = request.body;
      if (request.microversion >= 53) {
        if (body.status === undefined && body.forced_down === undefined) throw new ApiError(400, "At least one of 'status' or 'forced_down' must be specified.");
        if (body.disabled_reason !== undefined && body.status !== 'disabled') throw new ApiError(400, "Specifying 'disabled_reason' with status 'enabled' is invalid.");
        const updated = await tether.updateComputeService(
          { serviceUuid: id },
          {
            ...(body.forced_down !== undefined ? { forcedDown: body.forced_down } : {}),
            ...(body.status !== undefined ? { disabled: body.status === 'disabled', disabledReason: body.disabled_reason ?? null } : {}),
          },
        );
        return { service: serviceView(updated, request.microversion, availabilityZone) };
      }
      const legacy = { host: body.host, binary: body.binary, forced_down: body.forced_down, disabled_reason: body.disabled_reason };
      if (!legacy.host || !legacy.binary) throw new ApiError(400, "Invalid input: 'host' and 'binary' are required.");
      if (legacy.binary !== COMPUTE_BINARY) throw new ApiError(404, `Service ${legacy.host}/${legacy.binary} could not be found.`);
      switch (id) {
        case 'force-down': {
          if (request.microversion < 11) throw new ApiError(404, 'Unknown action force-down at this microversion (2.11).');
          if (legacy.forced_down === undefined) throw new ApiError(400, "Invalid input: 'forced_down' is required.");
          const h = await tether.updateComputeService({ host: legacy.host }, { forcedDown: legacy.forced_down });
          return { service: { host: h.host, binary: COMPUTE_BINARY, forced_down: h.forcedDown } };
        }
        case 'enable':
        case 'disable':
        case 'disable-log-reason': {
          const disabled = id !== 'enable';
          const h = await tether.updateComputeService({ host: legacy.host }, { disabled, ...(id === 'disable-log-reason' ? { disabledReason: legacy.disabled_reason ?? null } : {}) });
          return { service: { host: h.host, binary: COMPUTE_BINARY, status: h.disabled ? 'disabled' : 'enabled', ...(id === 'disable-log-reason' ? { disabled_reason: h.disabledReason } : {}) } };
        }
        default:
          throw new ApiError(404, `Unknown action ${id}.`);
      }
    },
  );
};
