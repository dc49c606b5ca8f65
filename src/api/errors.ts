/**
 * Errors as Nova and Cinder answer them: `{"<faultName>": {"code": N, "message": "..."}}`.
 * TetherErrors keep their status and message; request validation is a 400 with the validator's
 * message; a dependency that did not answer or is full is a 503 saying which (./dependency-failures.ts);
 * anything else is a 500 whose details stay in the log (never a stack trace in a reply).
 */
import type { FastifyError, FastifyInstance } from 'fastify';
import { TetherError } from '../errors.ts';
import { dependencyFailure } from './dependency-failures.ts';

/** An error of the HTTP layer itself (microversions, request fields that depend on one). */
export class ApiError extends Error {
  override readonly name = 'ApiError';
  constructor(
    readonly statusCode: number,
    message: string,
  ) {
    super(message);
  }
}

/** Nova's wsgi.Fault names (Cinder uses the same); any other code is a computeFault. */
const FAULT_NAMES: Record<number, string> = {
  400: 'badRequest',
  401: 'unauthorized',
  403: 'forbidden',
  404: 'itemNotFound',
  405: 'badMethod',
  409: 'conflictingRequest',
  413: 'overLimit',
  415: 'badMediaType',
  429: 'overLimit',
  501: 'notImplemented',
  503: 'serviceUnavailable',
};

export type FaultBody = Record<string, { code: number; message: string }>;

export function faultBody(code: number, message: string): FaultBody {
  return { [FAULT_NAMES[code] ?? 'computeFault']: { code, message } };
}

/** "Invalid input for field/attribute volumeAttachment.device: must be string,null." (the first problem found). */
function validationMessage(err: FastifyError): string {
  const first = err.validation?.[0];
  if (!first) return err.message;
  const field = first.instancePath.split('/').filter(Boolean).join('.') || err.validationContext || 'request';
  const unexpected = first.params['additionalProperty'];
  return `Invalid input for field/attribute ${field}: ${first.message ?? 'is invalid'}${typeof unexpected === 'string' ? ` ('${unexpected}' was unexpected)` : ''}.`;
}

function describe(err: FastifyError | Error): { code: number; message: string; expected: boolean; retryAfterSeconds?: number } {
  if (err instanceof TetherError) return { code: err.status, message: err.message, expected: true, ...(err.retryAfterSeconds !== undefined ? { retryAfterSeconds: err.retryAfterSeconds } : {}) };
  if (err instanceof ApiError) return { code: err.statusCode, message: err.message, expected: true };
  const fastifyError = err as FastifyError;
  if (fastifyError.validation) return { code: 400, message: validationMessage(fastifyError), expected: true };
  const status = fastifyError.statusCode;
  if (status !== undefined && status >= 400 && status < 500) return { code: status, message: err.message, expected: true };
  const dependency = dependencyFailure(err);
  if (dependency) return { code: 503, message: dependency.message, expected: true, retryAfterSeconds: dependency.retryAfterSeconds };
  return { code: 500, message: '', expected: false };
}

export function installErrorHandlers(app: FastifyInstance): void {
  app.setErrorHandler((err: FastifyError | Error, request, reply) => {
    const { code, message, expected, retryAfterSeconds } = describe(err);
    if (!expected) {
      request.log.error({ err }, 'unexpected error');
      return reply.code(500).send(faultBody(500, `Unexpected API Error. Details are in the tether API log (request ${request.id}).`));
    }
    if (code >= 500) request.log.error({ err }, 'request failed');
    if (retryAfterSeconds !== undefined) void reply.header('retry-after', String(retryAfterSeconds));
    return reply.code(code).send(faultBody(code, message));
  });
  app.setNotFoundHandler((request, reply) => reply.code(404).send(faultBody(404, 'The resource could not be found.')));
}
