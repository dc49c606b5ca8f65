/**
 * The codec server: lets the Temporal UI (and `temporal --codec-endpoint`) show encrypted payloads.
 *
 *   POST /decode, POST /encode   body and answer: `{ "payloads": [{ "metadata": {k: base64}, "data": base64 }] }`
 *                                (Temporal's proto-JSON for payloads)
 *   OPTIONS (CORS preflight)     answered for the configured UI origins only; needs no token
 *
 * Both POSTs need `Authorization: Bearer <TETHER_CODEC_TOKEN>` (401 otherwise, and always when no
 * token is configured): decode hands out plaintext, and encode would let anyone forge payloads that
 * the workers accept as authentic. Payloads are never logged; errors say what is wrong, not what was in it.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import Fastify, { type FastifyBaseLogger, type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import type { Payload, PayloadCodec } from '@temporalio/common';
import { PayloadDecryptionError } from './aes-gcm-codec.ts';

export interface JsonPayload {
  metadata?: Record<string, string> | null;
  data?: string | null;
}

export interface CodecServerOptions {
  /** Undefined: no keys configured, payloads pass through unchanged (nothing is encrypted). */
  codec: PayloadCodec | undefined;
  /** TETHER_CODEC_TOKEN; undefined refuses every request. */
  token: string | undefined;
  /** Origins (scheme://host:port) of the Temporal UI that may call from a browser. */
  corsOrigins: readonly string[];
  logger?: FastifyBaseLogger;
  /** Largest request body; the UI sends a whole history's payloads at once. */
  bodyLimit?: number;
}

const PASS_THROUGH: PayloadCodec = { encode: async (p) => p, decode: async (p) => p };

export function payloadFromJson(json: JsonPayload): Payload {
  return {
    metadata: Object.fromEntries(Object.entries(json.metadata ?? {}).map(([k, v]) => [k, Buffer.from(v, 'base64')])),
    data: Buffer.from(json.data ?? '', 'base64'),
  };
}

export function payloadToJson(payload: Payload): JsonPayload {
  return {
    metadata: Object.fromEntries(Object.entries(payload.metadata ?? {}).map(([k, v]) => [k, Buffer.from(v).toString('base64')])),
    data: Buffer.from(payload.data ?? new Uint8Array()).toString('base64'),
  };
}

const digest = (s: string) => createHash('sha256').update(s).digest();

/** Constant-time check of `Authorization: Bearer <token>`. */
export function bearerMatches(header: string | undefined, token: string | undefined): boolean {
  if (!token || !header) return false;
  const m = /^Bearer\s+(.+)$/i.exec(header.trim());
  if (!m) return false;
  return timingSafeEqual(digest(m[1]!), digest(token));
}

const bodySchema = {
  type: 'object',
  required: ['payloads'],
  properties: {
    payloads: {
      type: 'array',
      items: {
        type: 'object',
        properties: {
          metadata: { type: ['object', 'null'], additionalProperties: { type: 'string' } },
          data: { type: ['string', 'null'] },
        },
      },
    },
  },
} as const;

export async function buildCodecServer(o: CodecServerOptions): Promise<FastifyInstance> {
  const codec = o.codec ?? PASS_THROUGH;
  const origins = new Set(o.corsOrigins.map((x) => x.replace(/\/+$/, '')));
  const app = Fastify({
    ...(o.logger ? { loggerInstance: o.logger } : { logger: false }),
    bodyLimit: o.bodyLimit ?? 32 * 1024 * 1024,
  });

  app.addHook('onRequest', async (request, reply) => {
    const origin = request.headers.origin;
    reply.header('Vary', 'Origin');
    if (origin && origins.has(origin)) {
      reply.header('Access-Control-Allow-Origin', origin);
      reply.header('Access-Control-Allow-Credentials', 'true');
    }
    if (request.method === 'OPTIONS') {
      if (!origin || !origins.has(origin)) return reply.code(403).send({ error: 'origin not allowed' });
      reply.header('Access-Control-Allow-Methods', 'POST, OPTIONS');
      reply.header('Access-Control-Allow-Headers', 'authorization, content-type, x-namespace');
      reply.header('Access-Control-Max-Age', '600');
      return reply.code(204).send();
    }
    if (!bearerMatches(request.headers.authorization, o.token)) {
      reply.header('WWW-Authenticate', 'Bearer realm="tether-codec"');
      return reply.code(401).send({ error: 'unauthorized: send Authorization: Bearer <TETHER_CODEC_TOKEN>' });
    }
  });

  const handle = (direction: 'encode' | 'decode') => async (request: FastifyRequest, reply: FastifyReply) => {
    const { payloads } = request.body as { payloads: JsonPayload[] };
    try {
      const input = payloads.map(payloadFromJson);
      const output = direction === 'encode' ? await codec.encode(input) : await codec.decode(input);
      return { payloads: output.map(payloadToJson) };
    } catch (err) {
      if (err instanceof PayloadDecryptionError) return reply.code(400).send({ error: err.message });
      request.log.error({ err }, `${direction} failed`);
      return reply.code(500).send({ error: `${direction} failed` });
    }
  };
  // Browsers preflight these; fastify needs a route for OPTIONS to reach the hook above.
  app.options('/encode', async () => undefined);
  app.options('/decode', async () => undefined);
  app.post('/encode', { schema: { body: bodySchema } }, handle('encode'));
  app.post('/decode', { schema: { body: bodySchema } }, handle('decode'));
  await app.ready();
  return app;
}
