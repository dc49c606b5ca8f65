/**
 * The API's limits over a real stack: Nova's 112 KiB body limit (413), a per-token rate limit
 * (429 with Retry-After; each token its own budget, per address without a token), stalled clients
 * disconnected, and a 500 that shows no internals.
 */
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { startTestStack, type TestStack } from './support/test-stack.ts';
import { buildApi, keystoneAuthenticator, login, writeIdentityFile, type IdentityFixture } from './support/identity.ts';
import type { ApiServer } from '../src/api/server.ts';
import { NOAUTH } from '../src/auth/authentication.ts';
import { loadApiLimits, parseRateLimit } from '../src/api/limits.ts';
import { TetherService } from '../src/service/tether-service.ts';
import { createDatabase } from '../src/db/database.ts';
import { buildApiServer } from '../src/api/server.ts';
import { runningServer } from './support/fixtures.ts';

vi.setConfig({ testTimeout: 60_000 });

let stack: TestStack;
let identity: IdentityFixture;

beforeAll(async () => {
  stack = await startTestStack();
  identity = await writeIdentityFile();
});

afterAll(async () => {
  await identity?.dispose();
  await stack?.stop();
});

describe('configuration', () => {
  it('TETHER_RATE_LIMIT and the other limits parse or are refused with the reason', () => {
    expect(parseRateLimit('100/10s')).toEqual({ max: 100, windowMs: 10_000 });
    expect(parseRateLimit('600/m')).toEqual({ max: 600, windowMs: 60_000 });
    expect(parseRateLimit('off')).toBeNull();
    expect(() => parseRateLimit('100 per second')).toThrow(/TETHER_RATE_LIMIT must be/);
    expect(() => parseRateLimit('0/1s')).toThrow(/TETHER_RATE_LIMIT/);
    expect(loadApiLimits({})).toEqual({ bodyLimit: 114_688, requestTimeoutMs: 30_000, connectionTimeoutMs: 120_000, rateLimit: { max: 1000, windowMs: 10_000 } });
    expect(() => loadApiLimits({ TETHER_API_BODY_LIMIT: '-1' })).toThrow(/TETHER_API_BODY_LIMIT/);
  });
});

describe('request body limit', () => {
  let api: ApiServer;
  beforeAll(async () => {
    api = await buildApi(stack, NOAUTH);
  });
  afterAll(async () => api?.close());

  it("a body over Nova's 112 KiB is a 413 with a Nova body; nothing changed", async () => {
    const vm = await runningServer(stack, 'vm-big-body');
    const volumesBefore = (await stack.blockStorage.listVolumes()).length;
    const big = JSON.stringify({ volume: { size: 1, name: 'big', description: 'x'.repeat(115 * 1024) } });
    const r = await api.inject({ method: 'POST', url: '/v3/volumes', headers: { 'content-type': 'application/json' }, payload: big });
    expect(r.statusCode).toBe(413);
    expect(r.json()).toEqual({ overLimit: { code: 413, message: expect.stringMatching(/too large/i) } });
    const attach = await api.inject({
      method: 'POST',
      url: `/v2.1/servers/${vm.uuid}/os-volume_attachments`,
      headers: { 'content-type': 'application/json' },
      payload: JSON.stringify({ volumeAttachment: { volumeId: 'x'.repeat(120 * 1024) } }),
    });
    expect(attach.statusCode).toBe(413);
    expect((await stack.blockStorage.listVolumes()).length).toBe(volumesBefore);
    // just under the limit reaches validation (a 400 about the field, not a 413)
    const under = JSON.stringify({ volumeAttachment: { volumeId: vm.uuid, bogus: 'x'.repeat(100 * 1024) } });
    const r2 = await api.inject({ method: 'POST', url: `/v2.1/servers/${vm.uuid}/os-volume_attachments`, headers: { 'content-type': 'application/json' }, payload: under });
    expect(r2.statusCode).toBe(400);
    expect(r2.json().badRequest.message).toMatch(/'bogus' was unexpected/);
  });
});

describe('rate limit', () => {
  it('per token: the sixth request of a token in the window is a 429 with Retry-After; another token and /healthz are unaffected', async () => {
    const api = await buildApi(stack, await keystoneAuthenticator(stack, identity.file), { rateLimit: { max: 5, windowMs: 60_000 } });
    try {
      const alice = await login(api, 'alice'); // logins count for the address: 1
      const bob = await login(api, 'bob'); // 2
      for (let i = 0; i < 5; i++) expect((await api.inject({ url: '/v2.1/servers', headers: { 'x-auth-token': alice } })).statusCode).toBe(200);
      const limited = await api.inject({ url: '/v2.1/servers', headers: { 'x-auth-token': alice } });
      expect(limited.statusCode).toBe(429);
      expect(limited.json()).toEqual({ overLimit: { code: 429, message: expect.stringMatching(/^Rate limit exceeded: at most 5 requests per 60 s; retry in /) } });
      expect(Number(limited.headers['retry-after'])).toBeGreaterThan(0);
      expect(Number(limited.headers['retry-after'])).toBeLessThanOrEqual(60);
      expect((await api.inject({ url: '/v2.1/servers', headers: { 'x-auth-token': bob } })).statusCode).toBe(200);
      // without a token: the address's budget (2 logins used) — 3 more, then 429
      const anonymous = [];
      for (let i = 0; i < 4; i++) anonymous.push((await api.inject({ url: '/v2.1' })).statusCode);
      expect(anonymous).toEqual([200, 200, 200, 429]);
      for (let i = 0; i < 8; i++) expect((await api.inject({ url: '/healthz' })).statusCode).not.toBe(429);
    } finally {
      await api.close();
    }
  });
});

describe('timeouts', () => {
  it('a client that stops sending in the middle of its request is disconnected after TETHER_API_CONNECTION_TIMEOUT_MS', async () => {
    const api = await buildApi(stack, NOAUTH, { connectionTimeoutMs: 1000 });
    try {
      await api.listen({ host: '127.0.0.1', port: 0 });
      const { port } = api.server.address() as net.AddressInfo;
      const volumesBefore = (await stack.blockStorage.listVolumes()).length;
      const socket = net.connect(port, '127.0.0.1');
      const closed = new Promise<number>((resolve) => socket.on('close', () => resolve(Date.now())));
      await new Promise<void>((resolve) => socket.once('connect', () => resolve()));
      const t0 = Date.now();
      socket.write('POST /v3/volumes HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"volume":');
      const at = await closed;
      expect(at - t0).toBeGreaterThanOrEqual(900);
      expect(at - t0).toBeLessThan(10_000);
      expect((await stack.blockStorage.listVolumes()).length).toBe(volumesBefore);
    } finally {
      await api.close();
    }
  });
});

describe('errors', () => {
  it('a database that does not answer is a 503 naming it, and nothing of the cause (no stack, no address, no driver message); 4xx keep their message', async () => {
    const broken = createDatabase('postgres://tether:secret-pw@127.0.0.1:1/nowhere', { max: 1 });
    const service = new TetherService({ db: broken, client: stack.client, blockStorage: stack.blockStorage, config: { controlTaskQueue: stack.controlTaskQueue, computeHost: stack.host, availabilityZone: 'nova', defaultDiskBus: 'scsi' } });
    const api = await buildApiServer({ service, db: broken, client: stack.client, config: { controlTaskQueue: stack.controlTaskQueue, computeHost: stack.host }, limits: { bodyLimit: 114_688, requestTimeoutMs: 30_000, connectionTimeoutMs: 120_000, rateLimit: null } });
    try {
      const r = await api.inject({ url: '/v2.1/servers' });
      expect(r.statusCode).toBe(503);
      expect(Object.keys(r.json())).toEqual(['serviceUnavailable']);
      expect(r.json().serviceUnavailable.message).toBe('A service tether depends on (its database, Temporal or the block storage) did not answer the tether API. The request was not carried out: ask again once it is back.');
      expect(r.headers['retry-after']).toBe('5');
      for (const leak of ['ECONNREFUSED', '127.0.0.1:1', 'secret-pw', ' at ', '.ts:']) expect(r.body).not.toContain(leak);
      const bad = await api.inject({ method: 'POST', url: '/v3/volumes', payload: { volume: { size: 'big' } } });
      expect(bad.statusCode).toBe(400);
      expect(bad.body).not.toContain(' at ');
    } finally {
      await api.close();
      await broken.end();
    }
  });
});
