/**
 * Configuration of payload encryption and of the codec server, read from the environment *at call
 * time* (not once at start-up), so that every Client and Worker built after a change sees it.
 *
 *   TETHER_CODEC_KEYS          comma-separated `id:base64key` (32-byte AES-256 keys); the first one
 *                              encrypts, all of them decrypt. Unset or empty: the codec is off and
 *                              payloads are stored as plain JSON (dev mode).
 *   TETHER_CODEC_TOKEN         bearer token the codec server demands on /encode and /decode.
 *   TETHER_CODEC_HOST / _PORT  where workers/codec-server.ts listens (127.0.0.1:8888).
 *   TETHER_CODEC_CORS_ORIGINS  comma-separated origins of the Temporal UI allowed to call it
 *                              (default: the dev server's UI, http://localhost:<ui port> and 127.0.0.1).
 *
 * Errors name the variable and the entry, never the key material.
 */
import type { DataConverter } from '@temporalio/common';
import { AesGcmCodec, type CodecKey } from './aes-gcm-codec.ts';
import { fileURLToPath } from 'node:url';

type Env = Record<string, string | undefined>;

const KEY_ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
const BASE64 = /^[A-Za-z0-9+/_-]+={0,2}$/;

function optional(env: Env, name: string): string | undefined {
  const v = env[name]?.trim();
  return v === undefined || v === '' ? undefined : v;
}

/** Parses `id:base64key,…`; undefined when the variable is unset or empty (codec off). */
export function parseCodecKeys(raw: string | undefined, variable = 'TETHER_CODEC_KEYS'): CodecKey[] | undefined {
  if (raw === undefined || raw.trim() === '') return undefined;
  const keys: CodecKey[] = [];
  const entries = raw.split(',').map((e) => e.trim());
  entries.forEach((entry, i) => {
    const where = `${variable}: entry ${i + 1}`;
    if (entry === '') throw new Error(`${where} is empty (want id:base64key, comma-separated)`);
    const colon = entry.indexOf(':');
    if (colon < 0) throw new Error(`${where} has no ':' (want id:base64key)`);
    const id = entry.slice(0, colon).trim();
    const material = entry.slice(colon + 1).trim();
    if (!KEY_ID.test(id)) throw new Error(`${where}: key id must be 1-64 characters of letters, digits, '.', '_' or '-', starting with a letter or digit`);
    if (keys.some((k) => k.id === id)) throw new Error(`${where}: key id "${id}" appears twice`);
    if (!BASE64.test(material)) throw new Error(`${where} (id "${id}"): the key is not base64`);
    const key = Buffer.from(material.replace(/-/g, '+').replace(/_/g, '/'), 'base64');
    if (key.length !== 32) throw new Error(`${where} (id "${id}"): the key must be 32 bytes (AES-256), got ${key.length}; make one with \`openssl rand -base64 32\``);
    keys.push({ id, key });
  });
  return keys;
}

export interface CodecServerSettings {
  keys: CodecKey[] | undefined;
  token: string | undefined;
  host: string;
  port: number;
  corsOrigins: string[];
  namespace: string;
}

function port(env: Env, name: string, fallback: number): number {
  const raw = optional(env, name);
  if (raw === undefined) return fallback;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 0 || n > 65535) throw new Error(`${name} must be a port number, got ${JSON.stringify(raw)}`);
  return n;
}

/** Everything the codec server process needs. */
export function loadCodecServerSettings(env: Env = process.env): CodecServerSettings {
  const uiPort = port(env, 'TETHER_TEMPORAL_UI_PORT', 8233);
  const origins = optional(env, 'TETHER_CODEC_CORS_ORIGINS');
  return {
    keys: parseCodecKeys(env.TETHER_CODEC_KEYS),
    token: optional(env, 'TETHER_CODEC_TOKEN'),
    host: optional(env, 'TETHER_CODEC_HOST') ?? '127.0.0.1',
    port: port(env, 'TETHER_CODEC_PORT', 8888),
    corsOrigins: origins
      ? origins.split(',').map((o) => o.trim().replace(/\/+$/, '')).filter(Boolean)
      : [`http://localhost:${uiPort}`, `http://127.0.0.1:${uiPort}`],
    namespace: optional(env, 'TEMPORAL_NAMESPACE') ?? 'default',
  };
}

/** One codec per distinct TETHER_CODEC_KEYS value: every client and worker of a process share it. */
const codecs = new Map<string, AesGcmCodec>();

/** The payload codec configured now, or undefined when TETHER_CODEC_KEYS is unset (dev mode). */
export function codecFromEnv(env: Env = process.env): AesGcmCodec | undefined {
  const raw = env.TETHER_CODEC_KEYS;
  const keys = parseCodecKeys(raw);
  if (!keys) return undefined;
  let codec = codecs.get(raw!);
  if (!codec) {
    codec = new AesGcmCodec(keys);
    codecs.set(raw!, codec);
  }
  return codec;
}

/**
 * Failure converter module used with the codec: failure messages and stack traces go into an
 * encoded (hence encrypted) payload instead of plain-text history fields.
 */
export const encryptedFailuresConverterPath = fileURLToPath(new URL('./failure-converter.cjs', import.meta.url));

/**
 * The data converter for `new Client({ dataConverter })` and `Worker.create({ dataConverter })`:
 * the AES-GCM codec when keys are configured, Temporal's defaults otherwise. Payload codecs run
 * outside the workflow sandbox, so workers take the codec object itself (no module path needed);
 * the failure converter is loaded by path (and bundled with the workflows: a pre-built bundle must
 * be made with `failureConverterPath` from here too).
 */
export function codecDataConverter(env: Env = process.env): DataConverter {
  const codec = codecFromEnv(env);
  return codec ? { payloadCodecs: [codec], failureConverterPath: encryptedFailuresConverterPath } : {};
}
