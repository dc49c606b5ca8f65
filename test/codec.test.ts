/**
 * Encrypted payloads: the AES-GCM codec (round trip, key rotation, unknown key, tampering), its
 * configuration, the codec server (auth, CORS, the UI's JSON format), and a real attach whose raw
 * Temporal history holds only ciphertext — plus, with the codec off, the proof that connection_info
 * never reaches history at all.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { defaultPayloadConverter, type Payload } from '@temporalio/common';
import type { Client } from '@temporalio/client';
import proto from '@temporalio/proto';
import { AesGcmCodec, ENCRYPTED_ENCODING, KEY_ID_METADATA, PayloadDecryptionError } from '../src/security/aes-gcm-codec.ts';
import { codecDataConverter, codecFromEnv, loadCodecServerSettings, parseCodecKeys } from '../src/security/codec-config.ts';
import { buildCodecServer, payloadFromJson, payloadToJson } from '../src/security/codec-server.ts';
import { valueFromRawPayload } from '../src/security/decode.ts';
import { bdmConnectionInfo } from '../src/db/block-device-mappings.ts';
import { startTestStack, type TestStack } from './support/test-stack.ts';
import { runningServer, volume } from './support/fixtures.ts';

const key = () => randomBytes(32);
const b64 = (k: Uint8Array) => Buffer.from(k).toString('base64');
const json = (value: unknown): Payload => defaultPayloadConverter.toPayload(value);
const fromPayload = (p: Payload): unknown => defaultPayloadConverter.fromPayload(p);
const utf8 = (b: Uint8Array | null | undefined) => Buffer.from(b ?? []).toString('utf8');

describe('AesGcmCodec', () => {
  const k1 = { id: 'k1', key: key() };
  const k2 = { id: 'k2', key: key() };

  it('round-trips payloads; the encoded form is binary/encrypted, tagged with the current key id, and hides the value', async () => {
    const codec = new AesGcmCodec([k1]);
    const values = [{ volume: 'data-1', auth_password: 'hunter2' }, 'a string', 42, null, [1, 2, 3]];
    const encoded = await codec.encode(values.map(json));
    for (const p of encoded) {
      expect(utf8(p.metadata?.encoding)).toBe(ENCRYPTED_ENCODING);
      expect(utf8(p.metadata?.[KEY_ID_METADATA])).toBe('k1');
      expect(Object.keys(p.metadata ?? {}).sort()).toEqual(['encoding', KEY_ID_METADATA].sort());
    }
    expect(Buffer.from(encoded[0]!.data!).includes('hunter2')).toBe(false);
    expect(Buffer.from(encoded[0]!.data!).includes('json/plain')).toBe(false); // the original metadata is inside too
    expect((await codec.decode(encoded)).map(fromPayload)).toEqual(values);
  });

  it('uses a fresh IV per payload: the same value twice gives two different ciphertexts', async () => {
    const codec = new AesGcmCodec([k1]);
    const [a, b] = await codec.encode([json('same'), json('same')]);
    expect(Buffer.from(a!.data!).equals(Buffer.from(b!.data!))).toBe(false);
    expect(Buffer.from(a!.data!).subarray(0, 12).equals(Buffer.from(b!.data!).subarray(0, 12))).toBe(false);
  });

  it('rotation: encrypts with the first key, still decrypts what the older key encrypted', async () => {
    const before = new AesGcmCodec([k1]);
    const old = await before.encode([json({ step: 'written before the rotation' })]);
    const after = new AesGcmCodec([k2, k1]);
    expect(after.currentKeyId).toBe('k2');
    expect((await after.decode(old)).map(fromPayload)).toEqual([{ step: 'written before the rotation' }]);
    const fresh = await after.encode([json('new')]);
    expect(utf8(fresh[0]!.metadata?.[KEY_ID_METADATA])).toBe('k2');
  });

  it('an unknown key id fails clearly, naming the id and the known ones (never a key)', async () => {
    const encoded = await new AesGcmCodec([k1]).encode([json('x')]);
    const err = await new AesGcmCodec([k2]).decode(encoded).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(PayloadDecryptionError);
    expect((err as Error).message).toBe(
      'Payload was encrypted with key id "k1", which is not among the configured keys (k2): add that key to TETHER_CODEC_KEYS (after the current one) to read it',
    );
  });

  it('tampering fails authentication: a flipped bit in the ciphertext, the tag or the IV; a swapped key id; truncation', async () => {
    const codec = new AesGcmCodec([k1, { id: 'k1-copy', key: key() }]);
    const [p] = await codec.encode([json({ device: '/dev/sdb' })]);
    const flip = (at: number) => {
      const data = Buffer.from(p!.data!);
      data[at]! ^= 0x01;
      return { ...p!, data };
    };
    for (const altered of [flip(20), flip(p!.data!.length - 1), flip(0)]) {
      await expect(codec.decode([altered])).rejects.toThrow(/Encrypted payload \(key id "k1"\) failed authentication: it was altered/);
    }
    const swapped = { ...p!, metadata: { ...p!.metadata, [KEY_ID_METADATA]: Buffer.from('k1-copy') } };
    await expect(codec.decode([swapped])).rejects.toThrow(/key id "k1-copy"\) failed authentication/);
    await expect(codec.decode([{ ...p!, data: p!.data!.subarray(0, 20) }])).rejects.toThrow(/is truncated: 20 bytes/);
    const noKeyId = { ...p!, metadata: { encoding: p!.metadata!.encoding! } };
    await expect(codec.decode([noKeyId])).rejects.toThrow(/has no encryption-key-id metadata/);
  });

  it('passes through payloads that were never encrypted (histories from before the codec was turned on)', async () => {
    const plain = json({ written: 'in dev mode' });
    expect(await new AesGcmCodec([k1]).decode([plain])).toEqual([plain]);
  });
});

describe('codec configuration (TETHER_CODEC_KEYS)', () => {
  it('parses id:base64 entries, the first being current; unset or empty means off', () => {
    const a = key();
    const b = key();
    const keys = parseCodecKeys(` new:${b64(b)} , old:${b64(a)}`)!;
    expect(keys.map((k) => k.id)).toEqual(['new', 'old']);
    expect(Buffer.from(keys[0]!.key).equals(b)).toBe(true);
    expect(parseCodecKeys(undefined)).toBeUndefined();
    expect(parseCodecKeys('  ')).toBeUndefined();
    expect(codecFromEnv({})).toBeUndefined();
    expect(codecDataConverter({})).toEqual({});
    const env = { TETHER_CODEC_KEYS: `k:${b64(a)}` };
    const converter = codecDataConverter(env);
    expect(converter.payloadCodecs).toHaveLength(1);
    expect(codecFromEnv(env)).toBe(converter.payloadCodecs![0]); // one codec per process and configuration
  });

  it('refuses bad entries with messages that name the entry but never echo key material', () => {
    const secret = b64(key());
    const short = b64(randomBytes(16));
    const cases: Array<[string, RegExp]> = [
      [`k1:${secret},`, /entry 2 is empty/],
      [secret, /entry 1 has no ':'/],
      [`:${secret}`, /entry 1: key id must be/],
      [`k1:${secret},k1:${secret}`, /entry 2: key id "k1" appears twice/],
      [`k1:${short}`, /entry 1 \(id "k1"\): the key must be 32 bytes \(AES-256\), got 16/],
      [`k1:not base64!`, /entry 1 \(id "k1"\): the key is not base64/],
    ];
    for (const [raw, message] of cases) {
      let err: Error | undefined;
      try {
        parseCodecKeys(raw);
      } catch (e) {
        err = e as Error;
      }
      expect(err?.message).toMatch(message);
      expect(err?.message).not.toContain(secret);
      expect(err?.message).not.toContain(short);
    }
  });

  it('codec server settings: port 8888 on loopback, the dev UI as CORS origin by default', () => {
    expect(loadCodecServerSettings({})).toMatchObject({
      host: '127.0.0.1',
      port: 8888,
      token: undefined,
      keys: undefined,
      corsOrigins: ['http://localhost:8233', 'http://127.0.0.1:8233'],
    });
    expect(loadCodecServerSettings({ TETHER_CODEC_PORT: '9999', TETHER_CODEC_CORS_ORIGINS: 'https://ui.example/, http://localhost:8080' })).toMatchObject({
      port: 9999,
      corsOrigins: ['https://ui.example', 'http://localhost:8080'],
    });
    expect(() => loadCodecServerSettings({ TETHER_CODEC_PORT: 'x' })).toThrow(/TETHER_CODEC_PORT must be a port number/);
  });
});

describe('the codec server', () => {
  const token = randomBytes(24).toString('hex');
  const codec = new AesGcmCodec([{ id: 'k1', key: key() }]);
  const ui = 'http://localhost:8233';
  let app: Awaited<ReturnType<typeof buildCodecServer>>;

  beforeAll(async () => {
    app = await buildCodecServer({ codec, token, corsOrigins: [ui] });
  });
  afterAll(async () => {
    await app?.close();
  });

  const post = (url: string, body: unknown, headers: Record<string, string> = {}) =>
    app.inject({ method: 'POST', url, payload: body as object, headers: { 'content-type': 'application/json', ...headers } });

  it('decodes what the workers encoded, in the JSON format the UI sends, for a caller with the token', async () => {
    const encoded = await codec.encode([json({ device: '/dev/sdb' }), json('two')]);
    const res = await post('/decode', { payloads: encoded.map(payloadToJson) }, { authorization: `Bearer ${token}`, origin: ui, 'x-namespace': 'default' });
    expect(res.statusCode).toBe(200);
    expect(res.headers['access-control-allow-origin']).toBe(ui);
    const { payloads } = res.json() as { payloads: Array<{ metadata: Record<string, string>; data: string }> };
    expect(payloads.map((p) => fromPayload(payloadFromJson(p)))).toEqual([{ device: '/dev/sdb' }, 'two']);
    expect(Buffer.from(payloads[0]!.metadata.encoding!, 'base64').toString()).toBe('json/plain');
  });

  it('encodes for a caller with the token (what the UI does for a signal or reset input)', async () => {
    const res = await post('/encode', { payloads: [payloadToJson(json('from the UI'))] }, { authorization: `Bearer ${token}` });
    expect(res.statusCode).toBe(200);
    const [p] = (res.json() as { payloads: Array<{ metadata: Record<string, string>; data: string }> }).payloads;
    expect(Buffer.from(p!.metadata.encoding!, 'base64').toString()).toBe(ENCRYPTED_ENCODING);
    expect((await codec.decode([payloadFromJson(p!)])).map(fromPayload)).toEqual(['from the UI']);
  });

  it('refuses without the token, with a wrong one, or with another scheme: 401 and nothing decoded', async () => {
    const encoded = (await codec.encode([json('secret value')])).map(payloadToJson);
    for (const headers of [{} as Record<string, string>, { authorization: 'Bearer wrong' }, { authorization: `Basic ${token}` }, { authorization: token }]) {
      for (const url of ['/decode', '/encode']) {
        const res = await post(url, { payloads: encoded }, headers);
        expect(res.statusCode).toBe(401);
        expect(res.headers['www-authenticate']).toMatch(/^Bearer/);
        expect(res.body).not.toContain('secret value');
      }
    }
  });

  it('refuses everything when no token is configured', async () => {
    const open = await buildCodecServer({ codec, token: undefined, corsOrigins: [ui] });
    try {
      const res = await open.inject({ method: 'POST', url: '/decode', payload: { payloads: [] }, headers: { authorization: 'Bearer ' } });
      expect(res.statusCode).toBe(401);
    } finally {
      await open.close();
    }
  });

  it('answers the CORS preflight of the UI origin (no token needed) and no other origin', async () => {
    const ok = await app.inject({
      method: 'OPTIONS',
      url: '/decode',
      headers: { origin: ui, 'access-control-request-method': 'POST', 'access-control-request-headers': 'authorization,content-type,x-namespace' },
    });
    expect(ok.statusCode).toBe(204);
    expect(ok.headers['access-control-allow-origin']).toBe(ui);
    expect(String(ok.headers['access-control-allow-headers'])).toMatch(/authorization/);
    expect(String(ok.headers['access-control-allow-methods'])).toMatch(/POST/);
    const evil = await app.inject({ method: 'OPTIONS', url: '/decode', headers: { origin: 'https://evil.example', 'access-control-request-method': 'POST' } });
    expect(evil.statusCode).toBe(403);
    expect(evil.headers['access-control-allow-origin']).toBeUndefined();
  });

  it('says clearly why a payload cannot be decoded (400), and rejects malformed bodies', async () => {
    const foreign = (await new AesGcmCodec([{ id: 'other', key: key() }]).encode([json('x')])).map(payloadToJson);
    const res = await post('/decode', { payloads: foreign }, { authorization: `Bearer ${token}` });
    expect(res.statusCode).toBe(400);
    expect(res.json()).toEqual({ error: expect.stringMatching(/key id "other", which is not among the configured keys \(k1\)/) });
    expect((await post('/decode', { nope: 1 }, { authorization: `Bearer ${token}` })).statusCode).toBe(400);
  });
});

// ---- integration: a real attach on a stack whose clients and workers use the codec ----

/** The raw history, exactly as Temporal stores and serves it (no codec, no converter). */
async function rawHistory(client: Client, workflowId: string, runId?: string): Promise<proto.temporal.api.history.v1.IHistory> {
  const events: proto.temporal.api.history.v1.IHistoryEvent[] = [];
  let nextPageToken: Uint8Array | undefined;
  do {
    const page = await client.workflowService.getWorkflowExecutionHistory({
      namespace: 'default',
      execution: { workflowId, ...(runId ? { runId } : {}) },
      ...(nextPageToken ? { nextPageToken } : {}),
    });
    events.push(...(page.history?.events ?? []));
    nextPageToken = page.nextPageToken && page.nextPageToken.length > 0 ? page.nextPageToken : undefined;
  } while (nextPageToken);
  return { events };
}

/** Every Payload in a history event tree, with where it sits. */
function payloadsIn(value: unknown, path = ''): Array<{ path: string; payload: Payload }> {
  if (value === null || typeof value !== 'object' || value instanceof Uint8Array) return [];
  const o = value as Record<string, unknown>;
  const isPayload = 'metadata' in o && o.metadata !== null && typeof o.metadata === 'object' && Object.values(o.metadata as object).every((v) => v instanceof Uint8Array);
  if (isPayload && ('data' in o || Object.keys(o.metadata as object).length > 0)) return [{ path, payload: o as Payload }];
  return Object.entries(o).flatMap(([k, v]) => payloadsIn(v, path ? `${path}.${k}` : k));
}

const historyBytes = (h: proto.temporal.api.history.v1.IHistory) => Buffer.from(proto.temporal.api.history.v1.History.encode(h).finish());

/** Search attributes are indexed by the server, so Temporal keeps them readable by design. */
const isSearchAttribute = (path: string) => /(^|\.)searchAttributes\./.test(path);

/**
 * The SDK's own bookkeeping in markers, written by Temporal's core and never run through codecs: a
 * local activity's `data` (sequence number, activity type, attempt, times) and a patch marker's id.
 * The local activity's *result* is a payload like any other, and encrypted.
 */
const isMarkerBookkeeping = (path: string) => /markerRecordedEventAttributes\.details\.(data|patch-data)\./.test(path);

function withCodecKeys(value: string | undefined): () => void {
  const before = process.env.TETHER_CODEC_KEYS;
  if (value === undefined) delete process.env.TETHER_CODEC_KEYS;
  else process.env.TETHER_CODEC_KEYS = value;
  return () => {
    if (before === undefined) delete process.env.TETHER_CODEC_KEYS;
    else process.env.TETHER_CODEC_KEYS = before;
  };
}

describe('an attach with the codec on', () => {
  const current = { id: 'k2', key: key() };
  const previous = { id: 'k1', key: key() };
  let stack: TestStack;
  let restore: () => void;

  beforeAll(async () => {
    // Read by codecDataConverter() when the stack creates its client and workers.
    restore = withCodecKeys(`${current.id}:${b64(current.key)},${previous.id}:${b64(previous.key)}`);
    stack = await startTestStack();
  });
  afterAll(async () => {
    await stack?.stop();
    restore?.();
  });

  it('works end to end, and its raw history holds only encrypted payloads and none of the values in plain text', async () => {
    const vm = await runningServer(stack, 'vm-codec-confidential');
    const v = await volume(stack, 'vol-codec-confidential');
    const tag = 'tag-codec-confidential';
    const started = await stack.service.attachVolume({ server: vm.uuid, volume: v.id, tag });
    expect(started.reservation.device).toBe('/dev/sdb'); // the update's result was decrypted by the client
    const result = await stack.service.awaitAttach(started.handle);
    expect(result).toMatchObject({ device: '/dev/sdb', tag, hostAttached: true });
    expect((await stack.service.attachProgress(started.handle)).state).toBe('attached'); // queries decode too

    const connectionInfo = await bdmConnectionInfo(stack.db, result.bdmUuid);
    const filePath = String(connectionInfo?.data.path);
    expect(filePath).toContain(stack.volumeDir);

    const histories = [await rawHistory(stack.client, started.workflowId), await rawHistory(stack.client, `create-server-${vm.uuid}`).catch(() => null)];
    const attachHistory = histories[0]!;
    const payloads = payloadsIn(attachHistory.events);
    const plain = payloads.filter((p) => !isSearchAttribute(p.path) && !isMarkerBookkeeping(p.path) && utf8(p.payload.metadata?.encoding) !== ENCRYPTED_ENCODING);
    expect(plain.map((p) => p.path)).toEqual([]);
    const encrypted = payloads.filter((p) => utf8(p.payload.metadata?.encoding) === ENCRYPTED_ENCODING);
    // the local activities' results among them
    expect(encrypted.filter((p) => /markerRecordedEventAttributes\.details\.result\./.test(p.path)).length).toBeGreaterThanOrEqual(5);
    // input, the reservation update, every activity's input and result, every local activity's result
    // (their inputs are not recorded), the workflow result
    expect(encrypted.length).toBeGreaterThanOrEqual(12);
    expect(new Set(encrypted.map((p) => utf8(p.payload.metadata?.[KEY_ID_METADATA])))).toEqual(new Set(['k2']));

    // tether itself still reads everything (through the client's codec): the steps of `tether history`
    expect((await stack.service.operationHistory(vm.uuid, v.id)).steps.map((s) => s.step)).toContain('attachDisk');

    const raw = Buffer.concat(histories.filter((h) => h !== null).map((h) => historyBytes(h!)));
    const mustNotAppear = [
      v.name!,
      vm.libvirtDomain!,
      tag,
      '/dev/sdb',
      filePath,
      result.bdmUuid,
      result.attachmentId,
      `iqn.2026-11.org.tether:${stack.host}`,
      // JSON field names of the workflow's and activities' inputs and results
      '"deviceName"',
      '"attachmentId"',
      '"bdmUuid"',
      '"deleteOnTermination"',
      '"driverVolumeType"',
    ];
    expect(mustNotAppear.filter((s) => raw.includes(s))).toEqual([]);
  });

  it('rotation on real history: a codec that knows only the old key cannot read it and says which key it needs', async () => {
    const vm = await runningServer(stack, 'vm-codec-rotation');
    const v = await volume(stack, 'vol-codec-rotation');
    const started = await stack.service.attachVolume({ server: vm.uuid, volume: v.id });
    await stack.service.awaitAttach(started.handle);
    const history = await rawHistory(stack.client, started.workflowId);
    const input = history.events![0]!.workflowExecutionStartedEventAttributes!.input!.payloads! as Payload[];
    await expect(new AesGcmCodec([previous]).decode(input)).rejects.toThrow(/encrypted with key id "k2", which is not among the configured keys \(k1\)/);
    const [request] = (await new AesGcmCodec([previous, current]).decode(input)).map(fromPayload);
    expect(request).toMatchObject({ instanceUuid: vm.uuid, volumeId: v.id });
    // what a reader of raw history inside tether should use (src/security/decode.ts)
    expect(await valueFromRawPayload(started.handle.client, input[0]!)).toMatchObject({ instanceUuid: vm.uuid, volumeId: v.id });

    // …and the codec server decodes the same bytes for the UI.
    const token = randomBytes(16).toString('hex');
    const app = await buildCodecServer({ codec: codecFromEnv()!, token, corsOrigins: [] });
    try {
      const res = await app.inject({ method: 'POST', url: '/decode', payload: { payloads: input.map(payloadToJson) }, headers: { authorization: `Bearer ${token}` } });
      expect(res.statusCode).toBe(200);
      expect(fromPayload(payloadFromJson((res.json() as { payloads: never[] }).payloads[0]!))).toMatchObject({ volumeId: v.id });
    } finally {
      await app.close();
    }
  });

  // TetherService.retryAttach re-reads the failed run's input from raw history, through the client's codecs.
  it('failure messages are encrypted in history too; `tether retry` re-reads the failed request from (encrypted) history', async () => {
    const vm = await runningServer(stack, 'vm-codec-retry');
    const v = await volume(stack, 'vol-codec-retry');
    stack.faults.inject('attachDisk', 'before', { times: 1 });
    try {
      const started = await stack.service.attachVolume({ server: vm.uuid, volume: v.id, tag: 'retry-me' });
      // the client decodes and decrypts the failure: its message is readable here…
      await expect(stack.service.awaitAttach(started.handle)).rejects.toThrow(/failed at step attachDisk/);
      // …while history holds the failure messages and stack traces only inside encrypted payloads
      const history = await rawHistory(stack.client, started.workflowId);
      const raw = historyBytes(history);
      expect(['Injected fault', 'attachDisk failed', 'failed at step', 'at async', '.ts:'].filter((s) => raw.includes(s))).toEqual([]);
      const failures = (history.events ?? []).flatMap((e) => [e.activityTaskFailedEventAttributes?.failure, e.workflowExecutionFailedEventAttributes?.failure]).filter((f) => f);
      expect(failures.length).toBeGreaterThan(0);
      for (const f of failures) {
        expect(f!.message).toBe('Encoded failure');
        expect(utf8(f!.encodedAttributes?.metadata?.encoding)).toBe(ENCRYPTED_ENCODING);
      }
    } finally {
      stack.faults.clear();
    }
    const retried = await stack.service.retryAttach(vm.uuid, v.id);
    expect((await stack.service.awaitAttach(retried.handle)).tag).toBe('retry-me');
  });
});

describe('an attach with the codec off (dev mode)', () => {
  let stack: TestStack;
  let restore: () => void;

  beforeAll(async () => {
    restore = withCodecKeys(undefined);
    stack = await startTestStack();
  });
  afterAll(async () => {
    await stack?.stop();
    restore?.();
  });

  it('keeps payloads readable, yet the BDM connection_info (the volume file path) never enters history', async () => {
    const vm = await runningServer(stack, 'vm-codec-off');
    const v = await volume(stack, 'vol-codec-off');
    const started = await stack.service.attachVolume({ server: vm.uuid, volume: v.id });
    const result = await stack.service.awaitAttach(started.handle);
    const connectionInfo = await bdmConnectionInfo(stack.db, result.bdmUuid);
    expect(connectionInfo?.driver_volume_type).toBe('file');
    const filePath = String(connectionInfo?.data.path);

    const history = await rawHistory(stack.client, started.workflowId);
    const raw = historyBytes(history);
    // the search works: plain values are there in dev mode…
    expect(raw.includes('/dev/sdb')).toBe(true);
    expect(raw.includes(result.attachmentId)).toBe(true);
    expect(payloadsIn(history.events).every((p) => utf8(p.payload.metadata?.encoding) !== ENCRYPTED_ENCODING)).toBe(true);
    // …but nothing of connection_info is
    expect(filePath.length).toBeGreaterThan(10);
    for (const s of [filePath, `volume-${v.id}`, '"access_mode"', '"connection_info"', '"connectionInfo"']) expect(raw.includes(s), s).toBe(false);
  });
});
