/** Schema pieces shared by the compute and block-storage APIs. */
import { Type, type Static, type TObject, type TProperties, type TSchema } from '@fastify/type-provider-typebox';

/**
 * `{"type": [T, "null"]}` rather than `anyOf`: with fastify's type coercion, `anyOf: [string, null]`
 * would turn a null into "" (the first branch wins), while a type list leaves matching values alone.
 */
export const Nullable = <T extends TSchema & { type: string }>(schema: T) => Type.Unsafe<Static<T> | null>({ ...schema, type: [schema.type, 'null'] });

export const Link = Type.Object({ rel: Type.String(), href: Type.String(), type: Type.Optional(Type.String()) });
export const Links = Type.Array(Link);

/** `{"itemNotFound": {"code": 404, "message": "..."}}` and the other Nova/Cinder fault names. */
export const Fault = Type.Record(Type.String(), Type.Object({ code: Type.Integer(), message: Type.String() }), {
  description: 'Nova-style fault: badRequest, itemNotFound, conflictingRequest, forbidden, computeFault, ...',
});

/** Error replies every API route can give. */
export const FAULTS = { 400: Fault, 403: Fault, 404: Fault, 406: Fault, 409: Fault, 500: Fault, 503: Fault } as const;

export const VersionDocument = Type.Object({
  id: Type.String(),
  status: Type.String(),
  version: Type.String(),
  min_version: Type.String(),
  updated: Type.String(),
  links: Links,
  'media-types': Type.Array(Type.Object({ base: Type.String(), type: Type.String() })),
});

/**
 * Every route is served both without and with a project id in the path (`/v2.1/servers` and
 * `/v2.1/{project_id}/servers`), as clients build URLs either way.
 */
export interface ScopeOptions {
  projectScoped: boolean;
}

export const ProjectId = Type.String({ description: 'Accepted and ignored: tether runs without Keystone.' });

/**
 * Path parameters of a route, with `project_id` when the route is the project-scoped variant.
 * Typed as the common part: handlers never read `project_id`.
 */
export function pathParams<T extends TProperties>(scope: ScopeOptions, properties: T): TObject<T> {
  return scope.projectScoped ? (Type.Object({ project_id: ProjectId, ...properties }) as unknown as TObject<T>) : Type.Object(properties);
}

/** An empty reply (Nova's and Cinder's 202 to a DELETE). */
export const NoBody = Type.Unsafe<undefined>({ type: 'null', description: 'no body' });
