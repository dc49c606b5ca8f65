/**
 * Nova's server actions: POST /servers/{id}/action (os-start, os-stop, reboot, shelve, shelveOffload,
 * unshelve, migrate) and DELETE /servers/{id}. Each answers once the service took the instance's
 * task_state (202, or 204 for the delete) and its workflow runs on; a state that does not allow the
 * action is Nova's 409 ("Cannot 'stop' instance … while it is in vm_state stopped"). The body of each
 * action is checked as Nova's schema for it does, per microversion.
 */
import { Type, type FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import type { ServerActionRequest, TetherService } from '../../service/tether-service.ts';
import { FAULTS, NoBody, pathParams, type ScopeOptions } from '../schemas/common.ts';
import { ApiError } from '../errors.ts';
import { tetherFor } from '../authentication.ts';

const HANDLED = ['os-start', 'os-stop', 'reboot', 'shelve', 'shelveOffload', 'unshelve', 'migrate'] as const;

function invalid(message: string): ApiError {
  return new ApiError(400, `Invalid input for field/attribute ${message}`);
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function onlyKeys(value: Record<string, unknown>, field: string, allowed: string[]): void {
  const extra = Object.keys(value).find((k) => !allowed.includes(k));
  if (extra !== undefined) throw invalid(`${field}. Value: ${JSON.stringify(value)}. Additional properties are not allowed ('${extra}' was unexpected)`);
}

/** The service request for one action body, checked like Nova's schema of that action at `microversion`. */
export function parseServerAction(body: unknown, microversion: number): ServerActionRequest {
  if (!isObject(body) || Object.keys(body).length === 0) throw new ApiError(400, 'Malformed request body');
  const keys = Object.keys(body);
  const name = keys.find((k) => (HANDLED as readonly string[]).includes(k));
  if (name === undefined) throw new ApiError(400, `There is no such action: ${keys[0]}`);
  if (keys.length > 1) throw invalid(`. Value: ${JSON.stringify(body)}. Additional properties are not allowed ('${keys.find((k) => k !== name)}' was unexpected)`);
  const value = body[name];
  switch (name) {
    case 'os-start':
      return { action: 'start' };
    case 'os-stop':
      return { action: 'stop' };
    case 'shelve':
      return { action: 'shelve' };
    case 'shelveOffload':
      return { action: 'shelveOffload' };
    case 'reboot': {
      if (!isObject(value)) throw invalid(`reboot. Value: ${JSON.stringify(value)}. ${JSON.stringify(value)} is not of type 'object'`);
      onlyKeys(value, 'reboot', ['type']);
      const type = value.type;
      if (typeof type !== 'string' || !['HARD', 'Hard', 'hard', 'SOFT', 'Soft', 'soft'].includes(type)) {
        throw invalid(type === undefined ? `reboot. Value: ${JSON.stringify(value)}. 'type' is a required property` : `type. Value: ${String(type)}. ${JSON.stringify(type)} is not one of ['HARD', 'Hard', 'hard', 'SOFT', 'Soft', 'soft']`);
      }
      return { action: 'reboot', type: type.toUpperCase() as 'SOFT' | 'HARD' };
    }
    case 'unshelve': {
      // below 2.77 any value is accepted and ignored; 2.77: null or {availability_zone}; 2.91: null or {availability_zone?, host?}
      if (microversion < 77 || value === null) return { action: 'unshelve' };
      if (!isObject(value)) throw invalid(`unshelve. Value: ${JSON.stringify(value)}. ${JSON.stringify(value)} is not of type 'object', 'null'`);
      onlyKeys(value, 'unshelve', microversion >= 91 ? ['availability_zone', 'host'] : ['availability_zone']);
      if (microversion < 91 && value.availability_zone === undefined) throw invalid(`unshelve. Value: ${JSON.stringify(value)}. 'availability_zone' is a required property`);
      if (value.host !== undefined && typeof value.host !== 'string') throw invalid(`host. Value: ${JSON.stringify(value.host)}. ${JSON.stringify(value.host)} is not of type 'string'`);
      return { action: 'unshelve', ...(typeof value.host === 'string' ? { host: value.host } : {}) };
    }
    case 'migrate': {
      // the host from 2.56; before it the body's value is ignored
      if (microversion < 56 || value === null) return { action: 'migrate' };
      if (!isObject(value)) throw invalid(`migrate. Value: ${JSON.stringify(value)}. ${JSON.stringify(value)} is not of type 'object', 'null'`);
      onlyKeys(value, 'migrate', ['host']);
      if (value.host === undefined || value.host === null) return { action: 'migrate' };
      if (typeof value.host !== 'string' || value.host.length < 1 || value.host.length > 255) throw invalid(`host. Value: ${JSON.stringify(value.host)}. is not a valid host name`);
      return { action: 'migrate', host: value.host };
    }
  }
  throw new ApiError(400, `There is no such action: ${name}`);
}

export const serverActionRoutes: FastifyPluginAsyncTypebox<{ service: TetherService } & ScopeOptions> = async (app, { service, ...scope }) => {
  const tags = ['compute'];

  app.post(
    '/servers/:server_id/action',
    {
      schema: {
        summary: 'Server action: os-start, os-stop, reboot (SOFT/HARD), shelve, shelveOffload, unshelve, migrate (202; the workflow runs on)',
        tags,
        params: pathParams(scope, { server_id: Type.String() }),
        body: Type.Unknown(),
        response: { 202: NoBody, ...FAULTS },
      },
    },
    async (request, reply) => {
      const action = parseServerAction(request.body, request.microversion);
      await tetherFor(service, request).beginServerAction({ id: request.params.server_id }, action);
      return reply.code(202).send();
    },
  );

  app.delete(
    '/servers/:server_id',
    {
      schema: {
        summary: 'Delete a server (204; its volumes are detached, those marked delete_on_termination deleted)',
        tags,
        params: pathParams(scope, { server_id: Type.String() }),
        response: { 204: NoBody, ...FAULTS },
      },
    },
    async (request, reply) => {
      await tetherFor(service, request).beginServerAction({ id: request.params.server_id }, { action: 'delete' });
      return reply.code(204).send();
    },
  );
};
