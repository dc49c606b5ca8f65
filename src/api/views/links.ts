/** Absolute links, built from the request's Host header (the SDK uses a version's self link as its base URL). */
import type { FastifyRequest } from 'fastify';

export function baseUrl(request: FastifyRequest): string {
  return `${request.protocol}://${request.host}`;
}

/** Nova and Cinder's `self` and `bookmark` links of a resource. */
export function resourceLinks(base: string, version: string, path: string) {
  return [
    { rel: 'self', href: `${base}/${version}/${path}` },
    { rel: 'bookmark', href: `${base}/${path}` },
  ];
}

/** Nova's timestamps: seconds precision, `Z`. */
export function novaTime(iso: string): string {
  return iso.replace(/\.\d+Z$/, 'Z');
}

/** Cinder's timestamps (and Nova's OS-SRV-USG:launched_at): microseconds, no zone. */
export function cinderTime(iso: string): string {
  return iso.replace(/(\.\d{3})?Z$/, (_m, ms: string | undefined) => `${ms ?? '.000'}000`);
}
