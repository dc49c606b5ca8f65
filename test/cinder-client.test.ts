/**
 * The Cinder client against a tiny local HTTP stub: microversion negotiation, error mapping,
 * idempotency rules, the service role, Keystone tokens (cached, renewed, retried after a 401) and
 * that connection_info never reaches the logs. The real Cinder is exercised by test/cinder.test.ts.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { CinderBlockStorage } from '../src/blockstorage/cinder/cinder-block-storage.ts';
import { loadCinderConfig } from '../src/blockstorage/cinder/config.ts';
import { CinderAuthError, CinderUnavailableError, CinderVersionError, OVER_QUOTA_TYPE } from '../src/blockstorage/cinder/errors.ts';
import { KeystoneAuth } from '../src/blockstorage/cinder/auth.ts';
import { createConfiguredBlockStorage, createBlockStorage } from '../src/blockstorage/index.ts';
import { TetherError } from '../src/errors.ts';
import { findFreePort } from '../stack/free-port.ts';
import type { Database } from '../src/db/database.ts';
import type { HostConnector } from '../src/domain/types.ts';

const PROJECT = '0123456789abcdef0123456789abcdef';
const VOL = '6131efb0-f42e-488e-ba01-4b8aac40f654';
const VM = '11111111-2222-4333-8444-555555555555';
const ATT = 'e2ebbf23-750b-469c-9a30-193c51412042';

interface Seen {
  method: string;
  url: string;
  headers: http.IncomingHttpHeaders;
  body: unknown;
}
interface Reply {
  status: number;
  json?: unknown;
  text?: string;
  headers?: Record<string, string>;
  delayMs?: number;
}
type Route = (req: Seen) => Reply | undefined;

let server: http.Server;
let base: string;
let routes: Route[] = [];
let seen: Seen[] = [];

const VERSIONS = { versions: [{ id: 'v3.0', status: 'CURRENT', version: '3.70', min_version: '3.0' }] };
const versionsRoute: Route = (r) => (r.method === 'GET' && /\/v3\/$/.test(r.url) ? { status: 200, json: VERSIONS } : undefined);

function on(method: string, path: string | RegExp, reply: Reply | ((r: Seen) => Reply)): void {
  routes.push((r) => {
    const p = r.url.replace(/^\/v3\/[0-9a-f]{32}/, '');
    if (r.method !== method || (typeof path === 'string' ? p !== path : !path.test(p))) return undefined;
    return typeof reply === 'function' ? reply(r) : reply;
  });
}

beforeAll(async () => {
  server = http.createServer((req, res) => {
    let raw = '';
    req.on('data', (d: Buffer) => (raw += d.toString()));
    req.on('end', () => {
      const s: Seen = { method: req.method!, url: req.url!, headers: req.headers, body: raw ? JSON.parse(raw) : undefined };
      seen.push(s);
      const reply = [...routes].reverse().reduce<Reply | undefined>((found, route) => found ?? route(s), undefined) ?? { status: 404, text: '<html><title>404 Not Found</title></html>' };
      const send = () => {
        res.writeHead(reply.status, { 'Content-Type': reply.json !== undefined ? 'application/json' : 'text/html', 'x-openstack-request-id': 'req-stub', ...reply.headers });
        res.end(reply.json !== undefined ? JSON.stringify(reply.json) : (reply.text ?? ''));
      };
      if (reply.delayMs) setTimeout(send, reply.delayMs);
      else send();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(async () => {
  server.closeAllConnections();
  await new Promise((resolve) => server.close(resolve));
});

afterEach(() => {
  routes = [];
  seen = [];
});

function noauthEnv(extra: Record<string, string> = {}) {
  return { CINDER_AUTH: 'noauth', CINDER_ENDPOINT: `${base}/v3/${PROJECT}`, CINDER_PROJECT_ID: PROJECT, CINDER_TIMEOUT_MS: '2000', CINDER_WAIT_TIMEOUT_MS: '2000', ...extra };
}

/** No attachments unless a test says otherwise. */
const noAttachmentsRoute: Route = (r) => (r.method === 'GET' && /\/attachments\?/.test(r.url) ? { status: 200, json: { attachments: [] } } : undefined);

function client(extra: Record<string, string> = {}, log?: { debug(obj: object, msg: string): void }) {
  routes.unshift(versionsRoute, noAttachmentsRoute);
  return new CinderBlockStorage(loadCinderConfig(noauthEnv(extra)), log ? { log } : {});
}

const volumeDoc = (over: Record<string, unknown> = {}) => ({
  volume: {
    id: VOL,
    name: 'data',
    status: 'available',
    size: 1,
    availability_zone: 'nova',
    multiattach: false,
    encrypted: false,
    bootable: 'false',
    created_at: '2026-11-25T17:44:00.000000',
    attachments: [],
    'os-vol-tenant-attr:tenant_id': PROJECT,
    ...over,
  },
});

const connector: HostConnector = { ip: '10.0.0.1', host: 'h1', initiator: 'iqn.1993-08.org.debian:01:abc', multipath: false, platform: 'x86_64', os_type: 'linux', do_local_attach: false };

describe('configuration', () => {
  it('selects the block storage by TETHER_BLOCK_STORAGE and explains what is missing', () => {
    const db = {} as Database;
    const cfg = { volumeDir: '/tmp/x', availabilityZone: 'nova' };
    expect(createConfiguredBlockStorage(cfg, db, { env: {} }).kind).toBe('local');
    expect(createConfiguredBlockStorage(cfg, db, { env: { TETHER_BLOCK_STORAGE: 'cinder', ...noauthEnv() } }).kind).toBe('cinder');
    expect(() => createConfiguredBlockStorage(cfg, db, { env: { TETHER_BLOCK_STORAGE: 'ceph' } })).toThrow(/TETHER_BLOCK_STORAGE must be local or cinder/);
    expect(() => loadCinderConfig({ CINDER_AUTH: 'noauth', CINDER_ENDPOINT: base })).toThrow(/CINDER_PROJECT_ID must be set/);
    expect(() => loadCinderConfig({ CINDER_AUTH: 'noauth', CINDER_ENDPOINT: base, CINDER_PROJECT_ID: 'tether' })).toThrow(/32 hex characters/);
    expect(() => loadCinderConfig({ CINDER_AUTH: 'keystone', OS_AUTH_URL: base, OS_USERNAME: 'u', OS_PROJECT_NAME: 'demo' })).toThrow(/OS_PASSWORD must be set/);
    expect(loadCinderConfig({ OS_AUTH_URL: base, OS_USERNAME: 'u', OS_PASSWORD: 'p', OS_PROJECT_NAME: 'demo' }).auth).toMatchObject({
      kind: 'keystone',
      credentials: { userDomainName: 'Default', projectDomainName: 'Default' },
      interface: 'public',
    });
  });

  it('the local-only factory refuses to run when Cinder is configured', () => {
    const before = process.env.TETHER_BLOCK_STORAGE;
    process.env.TETHER_BLOCK_STORAGE = 'cinder';
    try {
      expect(() => createBlockStorage({ volumeDir: '/tmp/x', availabilityZone: 'nova' }, {} as Database)).toThrow(/createConfiguredBlockStorage/);
    } finally {
      if (before === undefined) delete process.env.TETHER_BLOCK_STORAGE;
      else process.env.TETHER_BLOCK_STORAGE = before;
    }
  });
});

describe('microversions', () => {
  it('reads GET /v3/ once and sends "OpenStack-API-Version: volume 3.44" on every call', async () => {
    const c = client();
    on('GET', `/volumes/${VOL}`, { status: 200, json: volumeDoc() });
    expect(await c.check()).toEqual({ max: '3.70', min: '3.0' });
    await c.getVolume(VOL);
    await c.getVolume(VOL);
    expect(seen.filter((s) => s.url.endsWith('/v3/'))).toHaveLength(1);
    const calls = seen.filter((s) => s.url.includes('/volumes/'));
    expect(calls.map((s) => s.headers['openstack-api-version'])).toEqual(['volume 3.44', 'volume 3.44']);
    expect(calls[0]!.headers['x-auth-token']).toBe(`tether:${PROJECT}`);
  });

  it('refuses a Cinder older than 3.44 with a clear message', async () => {
    routes.push((r) => (r.url.endsWith('/v3/') ? { status: 200, json: { versions: [{ id: 'v3.0', version: '3.27', min_version: '3.0' }] } } : undefined));
    const c = new CinderBlockStorage(loadCinderConfig(noauthEnv()));
    const err = await c.getVolume(VOL).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(CinderVersionError);
    expect((err as Error).message).toMatch(/supports volume API microversions up to 3\.27; tether needs 3\.44/);
    expect(seen.some((s) => s.url.includes('/volumes/'))).toBe(false);
  });

  it('appends the project id to an endpoint given without it, and substitutes placeholders', async () => {
    for (const endpoint of [`${base}/v3`, `${base}/v3/%(project_id)s`, `${base}/v3/$(project_id)s/`]) {
      seen = [];
      routes = [];
      const c = client({ CINDER_ENDPOINT: endpoint });
      on('GET', `/volumes/${VOL}`, { status: 200, json: volumeDoc() });
      await c.getVolume(VOL);
      expect(seen.at(-1)!.url).toBe(`/v3/${PROJECT}/volumes/${VOL}`);
    }
  });
});

describe('volumes', () => {
  it('maps the volume view: bootable strings, UTC times, attached attachments', async () => {
    const c = client();
    on('GET', `/volumes/${VOL}`, {
      status: 200,
      json: volumeDoc({
        status: 'in-use',
        bootable: 'true',
        attachments: [{ id: VOL, attachment_id: ATT, volume_id: VOL, server_id: VM, host_name: 'h1', device: '/dev/sdb', attached_at: '2026-11-25T17:44:08.000000' }],
      }),
    });
    expect(await c.getVolume(VOL)).toEqual({
      id: VOL,
      name: 'data',
      projectId: PROJECT,
      size: 1,
      status: 'in-use',
      availabilityZone: 'nova',
      multiattach: false,
      bootable: true,
      encrypted: false,
      createdAt: '2026-11-25T17:44:00.000Z',
      attachments: [{ id: VOL, attachmentId: ATT, volumeId: VOL, serverId: VM, hostName: 'h1', device: '/dev/sdb', attachedAt: '2026-11-25T17:44:08.000Z', status: 'attached' }],
      description: null,
      metadata: {},
      updatedAt: null,
      migrationStatus: null,
    });
  });

  it("passes description, metadata and the migration status (admins see os-vol-mig-status-attr:migstat) through: Nova's swap rule reads it", async () => {
    const c = client();
    on('GET', `/volumes/${VOL}`, {
      status: 200,
      json: volumeDoc({ description: 'd', metadata: { k: 'v' }, updated_at: '2026-11-25T17:45:00.000000', 'os-vol-mig-status-attr:migstat': 'migrating' }),
    });
    expect(await c.getVolume(VOL)).toMatchObject({ description: 'd', metadata: { k: 'v' }, updatedAt: '2026-11-25T17:45:00.000Z', migrationStatus: 'migrating' });
  });

  it('attachments[] holds every live attachment: the attached ones of the view, reserved ones from GET /attachments (all pages)', async () => {
    const c = client();
    const VM2 = '22222222-2222-4333-8444-555555555555';
    on('GET', `/volumes/${VOL}`, {
      status: 200,
      json: volumeDoc({
        status: 'in-use',
        multiattach: true,
        attachments: [{ id: VOL, attachment_id: ATT, volume_id: VOL, server_id: VM, host_name: 'h1', device: '/dev/sdb', attached_at: '2026-11-25T17:44:08.000000' }],
      }),
    });
    const pages: Record<string, unknown[]> = {
      '': [{ id: ATT, status: 'attached', instance: VM, volume_id: VOL }],
      [ATT]: [{ id: 'att-2', status: 'reserved', instance: VM2, volume_id: VOL }, { id: 'att-3', status: 'detached', instance: VM2, volume_id: VOL }],
      'att-3': [],
    };
    on('GET', /^\/attachments\?/, (r) => ({ status: 200, json: { attachments: pages[new URL(r.url, base).searchParams.get('marker') ?? ''] } }));
    const v = await c.getVolume(VOL);
    expect(v.attachments.map((a) => [a.attachmentId, a.serverId, a.status, a.device])).toEqual([
      [ATT, VM, 'attached', '/dev/sdb'],
      ['att-2', VM2, 'reserved', null],
    ]);
    expect(seen.filter((x) => x.url.includes('/attachments?')).map((x) => new URL(x.url, base).searchParams.get('marker'))).toEqual([null, ATT, 'att-3']);
  });

  it('an attachment deleted between two pages (its id the marker: Cinder answers 404) makes the listing start over', async () => {
    const c = client();
    on('GET', `/volumes/${VOL}`, { status: 200, json: volumeDoc({ status: 'detaching', multiattach: true }) });
    let markerGone = false;
    on('GET', /^\/attachments\?/, (r) => {
      const marker = new URL(r.url, base).searchParams.get('marker');
      if (marker === null) return { status: 200, json: { attachments: markerGone ? [] : [{ id: ATT, status: 'attached', instance: VM, volume_id: VOL }] } };
      // the detach finished meanwhile: the marker names an attachment that no longer exists
      markerGone = true;
      return { status: 404, json: { itemNotFound: { code: 404, message: `Marker ${marker} could not be found.` } } };
    });
    const v = await c.getVolume(VOL);
    expect(v.attachments).toEqual([]);
    expect(seen.filter((x) => x.url.includes('/attachments?')).map((x) => new URL(x.url, base).searchParams.get('marker'))).toEqual([null, ATT, null]);
  });

  it('an available volume costs one request (no attachment listing)', async () => {
    const c = client();
    on('GET', `/volumes/${VOL}`, { status: 200, json: volumeDoc() });
    await c.getVolume(VOL);
    expect(seen.filter((x) => !x.url.endsWith('/v3/')).map((x) => x.url)).toEqual([`/v3/${PROJECT}/volumes/${VOL}`]);
  });

  it('404 → VolumeNotFound, also for an HTML answer', async () => {
    const c = client();
    on('GET', `/volumes/${VOL}`, { status: 404, json: { itemNotFound: { code: 404, message: `Volume ${VOL} could not be found.` } } });
    await expect(c.getVolume(VOL)).rejects.toMatchObject({ type: 'VolumeNotFound', status: 404, message: `Volume ${VOL} could not be found.` });
    await expect(c.getVolume('no/such')).rejects.toMatchObject({ type: 'VolumeNotFound' });
  });

  it('413 over quota → a business error that says so', async () => {
    const c = client();
    on('POST', '/volumes', { status: 413, json: { overLimit: { code: 413, message: "VolumeLimitExceeded: Maximum number of volumes allowed (0) exceeded for quota 'volumes'.", retryAfter: '0' } } });
    const err = await c.createVolume({ name: 'q', size: 1, projectId: PROJECT }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(TetherError);
    expect(err).toMatchObject({ type: OVER_QUOTA_TYPE, message: expect.stringMatching(/^Quota exceeded: VolumeLimitExceeded/) });
  });

  it('createVolume waits for available and asks for the multiattach volume type', async () => {
    const c = client({ CINDER_MULTIATTACH_VOLUME_TYPE: 'shared' });
    let polls = 0;
    on('POST', '/volumes', { status: 202, json: volumeDoc({ status: 'creating' }) });
    on('GET', `/volumes/${VOL}`, () => ({ status: 200, json: volumeDoc({ status: ++polls < 3 ? 'creating' : 'available', multiattach: true }) }));
    const v = await c.createVolume({ name: 'm', size: 2, projectId: PROJECT, multiattach: true });
    expect(v).toMatchObject({ status: 'available', multiattach: true });
    expect(seen.find((s) => s.method === 'POST')!.body).toEqual({ volume: { size: 2, name: 'm', volume_type: 'shared' } });
  });

  it('deleteVolume waits until the volume is gone; a retry during deleting waits too; in-use is refused', async () => {
    const c = client();
    let gets = 0;
    on('DELETE', `/volumes/${VOL}`, { status: 202 });
    on('GET', `/volumes/${VOL}`, () => (++gets < 3 ? { status: 200, json: volumeDoc({ status: 'deleting' }) } : { status: 404, json: { itemNotFound: { message: 'gone' } } }));
    await c.deleteVolume(VOL);
    expect(gets).toBe(3);

    gets = 0;
    on('DELETE', `/volumes/${VOL}`, { status: 400, json: { badRequest: { code: 400, message: 'Invalid volume: Volume status must be available or error…' } } });
    await c.deleteVolume(VOL);

    on('GET', `/volumes/${VOL}`, { status: 200, json: volumeDoc({ status: 'in-use' }) });
    await expect(c.deleteVolume(VOL)).rejects.toMatchObject({ type: 'VolumeNotAvailable', message: expect.stringMatching(/current status is: in-use/) });
  });
});

describe('encryption', () => {
  it('GET /volumes/{id}/encryption gives the metadata; a plain or back-end volume is null; the key is refused (no Barbican)', async () => {
    const c = client();
    const KEY_ID = '3c1cbe24-6fd3-4c2f-8e24-3b1a7b6b8c01';
    let answer: Record<string, unknown> = { encryption_key_id: KEY_ID, provider: 'luks', cipher: 'aes-xts-plain64', key_size: 256, control_location: 'front-end' };
    on('GET', `/volumes/${VOL}/encryption`, () => ({ status: 200, json: answer }));
    const encryption = await c.getVolumeEncryption(VOL);
    expect(encryption).toEqual({ provider: 'luks', cipher: 'aes-xts-plain64', keySize: 256, controlLocation: 'front-end', encryptionKeyId: KEY_ID });
    await expect(c.getEncryptionKey(VOL, encryption!)).rejects.toThrow(/not supported: no key manager \(Barbican\) configured/);
    answer = { ...answer, provider: 'nova.volume.encryptors.luks.LuksEncryptor' };
    expect(await c.getVolumeEncryption(VOL)).toMatchObject({ provider: 'luks' });
    answer = { ...answer, control_location: 'back-end' };
    expect(await c.getVolumeEncryption(VOL)).toBeNull();
    answer = { encryption_key_id: null };
    expect(await c.getVolumeEncryption(VOL)).toBeNull();
    answer = { encryption_key_id: KEY_ID, provider: 'plain', control_location: 'front-end' };
    await expect(c.getVolumeEncryption(VOL)).rejects.toThrow(/encryption provider 'plain'; tether attaches front-end LUKS only/);
  });

  it('createVolume passes a volume type through (an encrypted type is Cinder\'s)', async () => {
    const c = client();
    on('POST', '/volumes', { status: 202, json: volumeDoc({ status: 'available' }) });
    on('GET', `/volumes/${VOL}`, { status: 200, json: volumeDoc({ status: 'available', encrypted: true }) });
    await c.createVolume({ name: 'e', size: 1, projectId: PROJECT, volumeType: 'LUKS' });
    expect(seen.find((s) => s.method === 'POST')!.body).toEqual({ volume: { size: 1, name: 'e', volume_type: 'LUKS' } });
  });
});

describe('attachments', () => {
  it('createAttachment reuses the attachment this instance already holds (no second reserve)', async () => {
    const c = client();
    on('GET', /^\/attachments\?/, { status: 200, json: { attachments: [{ id: ATT, status: 'attaching', instance: VM, volume_id: VOL }] } });
    expect(await c.createAttachment(VOL, VM)).toEqual({ attachmentId: ATT, status: 'attaching' });
    expect(seen.filter((s) => s.method === 'POST')).toEqual([]);
    const query = new URL(seen.find((x) => x.url.includes('/attachments?'))!.url, base).searchParams;
    expect(Object.fromEntries(query)).toEqual({ volume_id: VOL, instance_id: VM });
  });

  it('createAttachment reserves when there is none; a refusal is VolumeNotAvailable with Cinder\'s words', async () => {
    const c = client();
    on('GET', /^\/attachments\?/, { status: 200, json: { attachments: [] } });
    on('POST', '/attachments', { status: 200, json: { attachment: { id: ATT, status: 'reserved', instance: VM, volume_id: VOL } } });
    expect(await c.createAttachment(VOL, VM)).toEqual({ attachmentId: ATT, status: 'reserved' });
    expect(seen.at(-1)!.body).toEqual({ attachment: { volume_uuid: VOL, instance_uuid: VM } });

    const msg = `Invalid volume: Volume ${VOL} status must be available or downloading to reserve, but the current status is in-use.`;
    on('POST', '/attachments', { status: 400, json: { badRequest: { code: 400, message: msg } } });
    await expect(c.createAttachment(VOL, VM)).rejects.toMatchObject({ type: 'VolumeNotAvailable', status: 400, message: msg });
    on('POST', '/attachments', { status: 400, json: { badRequest: { code: 400, message: 'Invalid volume: volume is already attached to instance x' } } });
    await expect(c.createAttachment(VOL, VM)).rejects.toMatchObject({ type: 'VolumeAlreadyAttached' });
    on('POST', '/attachments', { status: 404, json: { itemNotFound: { code: 404, message: `Volume ${VOL} could not be found.` } } });
    await expect(c.createAttachment(VOL, VM)).rejects.toMatchObject({ type: 'VolumeNotFound' });
  });

  it('updateAttachment rebuilds {driver_volume_type, data} and never logs connection_info', async () => {
    const lines: string[] = [];
    const c = client({}, { debug: (obj, msg) => lines.push(`${msg} ${JSON.stringify(obj)}`) });
    on('PUT', `/attachments/${ATT}`, {
      status: 200,
      json: {
        attachment: {
          id: ATT,
          status: 'attaching',
          instance: VM,
          volume_id: VOL,
          connection_info: { driver_volume_type: 'iscsi', target_iqn: 'iqn.x', target_portal: '10.0.0.9:3260', auth_password: 's3cret-chap', access_mode: 'rw', attachment_id: ATT },
        },
      },
    });
    on('GET', `/volumes/${VOL}`, { status: 200, json: volumeDoc({ multiattach: true }) });
    const info = await c.updateAttachment(ATT, { ...connector, mountpoint: '/dev/sdb' });
    expect(info).toEqual({
      driver_volume_type: 'iscsi',
      data: { target_iqn: 'iqn.x', target_portal: '10.0.0.9:3260', auth_password: 's3cret-chap', access_mode: 'rw' },
      multiattach: true,
    });
    expect(seen.find((s) => s.method === 'PUT')!.body).toEqual({ attachment: { connector: { ...connector, mountpoint: '/dev/sdb' } } });
    expect(lines.some((l) => l.includes(`PUT`) && l.includes('200'))).toBe(true);
    expect(lines.join('\n')).not.toMatch(/s3cret-chap|target_iqn/);
  });

  it('update/complete of an attachment that is gone → VolumeNotAvailable; complete sends os-complete', async () => {
    const c = client();
    on('POST', `/attachments/${ATT}/action`, { status: 204 });
    await c.completeAttachment(ATT);
    expect(seen.at(-1)!.body).toEqual({ 'os-complete': null });
    const gone = { status: 404, json: { itemNotFound: { code: 404, message: `Volume attachment could not be found with filter: attachment_id = ${ATT}.` } } };
    on('POST', `/attachments/${ATT}/action`, gone);
    on('PUT', `/attachments/${ATT}`, gone);
    await expect(c.completeAttachment(ATT)).rejects.toMatchObject({ type: 'VolumeNotAvailable', message: `Volume attachment ${ATT} could not be found.` });
    await expect(c.updateAttachment(ATT, connector)).rejects.toMatchObject({ type: 'VolumeNotAvailable' });
  });

  it('deleteAttachment carries the service role; 404 means already gone', async () => {
    const c = client();
    on('DELETE', `/attachments/${ATT}`, { status: 200, json: { attachments: [] } });
    await c.deleteAttachment(ATT);
    expect(seen.at(-1)!.headers['x-service-roles']).toBe('service');
    on('DELETE', `/attachments/${ATT}`, { status: 404, json: { itemNotFound: { code: 404, message: 'gone' } } });
    await c.deleteAttachment(ATT);

    const off = client({ CINDER_SERVICE_TOKEN: 'off' });
    await off.deleteAttachment(ATT);
    expect(seen.at(-1)!.headers['x-service-roles']).toBeUndefined();
  });

  it('beginDetaching is idempotent (already detaching = done) and refuses other states with the status', async () => {
    const c = client();
    const refusal = { status: 400, json: { badRequest: { code: 400, message: "Invalid volume: Unable to detach volume. Volume status must be 'in-use' and attach_status must be 'attached' to detach." } } };
    on('POST', `/volumes/${VOL}/action`, refusal);
    on('GET', `/volumes/${VOL}`, { status: 200, json: volumeDoc({ status: 'detaching' }) });
    await c.beginDetaching(VOL);
    on('GET', `/volumes/${VOL}`, { status: 200, json: volumeDoc({ status: 'available' }) });
    await expect(c.beginDetaching(VOL)).rejects.toMatchObject({ type: 'VolumeNotAvailable', message: expect.stringMatching(/current status is: available/) });
    on('POST', `/volumes/${VOL}/action`, { status: 202 });
    await c.rollDetaching(VOL);
    expect(seen.at(-1)!.body).toEqual({ 'os-roll_detaching': null });
  });
});

describe('transient failures stay retryable (plain errors, not TetherErrors)', () => {
  it('5xx, 429, timeouts and a refused connection', async () => {
    const c = client({ CINDER_TIMEOUT_MS: '300' });
    on('GET', `/volumes/${VOL}`, { status: 503, text: 'busy' });
    const e503 = await c.getVolume(VOL).catch((e: unknown) => e);
    expect(e503).toBeInstanceOf(CinderUnavailableError);
    expect(e503).not.toBeInstanceOf(TetherError);
    expect((e503 as Error).message).toMatch(/Cinder answered 503 to GET \/volumes\/.* \(req-stub\)/);
    on('GET', `/volumes/${VOL}`, { status: 500, json: { computeFault: { code: 500, message: 'The server has either erred' } } });
    await expect(c.getVolume(VOL)).rejects.toBeInstanceOf(CinderUnavailableError);
    on('GET', `/volumes/${VOL}`, { status: 429, text: '' });
    await expect(c.getVolume(VOL)).rejects.toBeInstanceOf(CinderUnavailableError);
    on('GET', `/volumes/${VOL}`, { status: 200, json: volumeDoc(), delayMs: 1_000 });
    await expect(c.getVolume(VOL)).rejects.toThrow(/no answer within 300 ms/);
    on('GET', `/volumes/${VOL}`, { status: 403, json: { forbidden: { message: 'Policy does not allow' } } });
    await expect(c.getVolume(VOL)).rejects.toBeInstanceOf(CinderAuthError);

    const closedPort = await findFreePort(); // nothing listens there
    const refused = new CinderBlockStorage(loadCinderConfig(noauthEnv({ CINDER_ENDPOINT: `http://127.0.0.1:${closedPort}/v3/${PROJECT}` })));
    const err = await refused.getVolume(VOL).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(CinderUnavailableError);
    expect((err as Error).message).toMatch(/ECONNREFUSED/);
  });
});

describe('keystone', () => {
  let now = Date.parse('2026-11-25T12:00:00Z');
  const tokenRoute = (lifetimeMs: number) => (r: Seen): Reply => {
    const body = r.body as { auth: { identity: { password: { user: { name: string } } } } };
    const name = body.auth.identity.password.user.name;
    return {
      status: 201,
      headers: { 'X-Subject-Token': `tok-${name}-${seen.filter((s) => s.url === '/identity/v3/auth/tokens').length}` },
      json: {
        token: {
          issued_at: new Date(now).toISOString(),
          expires_at: new Date(now + lifetimeMs).toISOString(),
          project: { id: PROJECT, name: 'demo' },
          catalog: [
            { type: 'compute', endpoints: [{ interface: 'public', region_id: 'RegionOne', url: `${base}/compute` }] },
            { type: 'block-storage', endpoints: [
              { interface: 'internal', region_id: 'RegionOne', url: `${base}/internal/v3/${PROJECT}` },
              { interface: 'public', region_id: 'RegionOne', url: `${base}/v3/${PROJECT}` },
            ] },
          ],
        },
      },
    };
  };
  const env = () => ({
    CINDER_AUTH: 'keystone',
    CINDER_TIMEOUT_MS: '2000',
    OS_AUTH_URL: `${base}/identity`,
    OS_USERNAME: 'tether',
    OS_PASSWORD: 'pw-user',
    OS_PROJECT_NAME: 'demo',
    OS_REGION_NAME: 'RegionOne',
  });

  it('one token for concurrent calls, the catalog endpoint, renewal before expiry, one retry after a 401', async () => {
    routes.push(versionsRoute);
    on('POST', '/identity/v3/auth/tokens', tokenRoute(3_600_000));
    let rejectNext = false;
    on('GET', `/volumes/${VOL}`, () => (rejectNext ? ((rejectNext = false), { status: 401, json: { unauthorized: { message: 'expired' } } }) : { status: 200, json: volumeDoc() }));
    const c = new CinderBlockStorage(loadCinderConfig(env()), { now: () => now });
    const session = (c.auth as KeystoneAuth).user;

    await Promise.all([c.getVolume(VOL), c.getVolume(VOL), c.getVolume(VOL)]);
    expect(session.issued).toBe(1);
    expect(seen.filter((s) => s.url.includes('/volumes/')).every((s) => s.headers['x-auth-token'] === 'tok-tether-1')).toBe(true);
    const tokenRequest = seen.find((s) => s.url === '/identity/v3/auth/tokens')!;
    expect(tokenRequest.body).toEqual({
      auth: {
        identity: { methods: ['password'], password: { user: { name: 'tether', password: 'pw-user', domain: { name: 'Default' } } } },
        scope: { project: { name: 'demo', domain: { name: 'Default' } } },
      },
    });

    now += 3_600_000 - 4 * 60_000; // 4 minutes left: renewed ahead of expiry
    await c.getVolume(VOL);
    expect(session.issued).toBe(2);

    rejectNext = true; // Cinder says the token is no longer valid: a new one, one retry
    await c.getVolume(VOL);
    expect(session.issued).toBe(3);
  });

  it('the service token comes from the OS_SERVICE_* user when set, and the password never appears in errors', async () => {
    routes.push(versionsRoute);
    on('POST', '/identity/v3/auth/tokens', tokenRoute(3_600_000));
    on('DELETE', `/attachments/${ATT}`, { status: 200, json: {} });
    const c = new CinderBlockStorage(
      loadCinderConfig({ ...env(), CINDER_ENDPOINT: `${base}/v3/%(project_id)s`, OS_SERVICE_USERNAME: 'svc', OS_SERVICE_PASSWORD: 'pw-svc', OS_SERVICE_PROJECT_NAME: 'service' }),
    );
    await c.deleteAttachment(ATT);
    const del = seen.find((s) => s.method === 'DELETE')!;
    expect(del.headers['x-auth-token']).toMatch(/^tok-tether-/);
    expect(del.headers['x-service-token']).toMatch(/^tok-svc-/);

    routes = [];
    on('POST', '/identity/v3/auth/tokens', { status: 401, json: { error: { message: 'The request you have made requires authentication.' } } });
    const bad = new CinderBlockStorage(loadCinderConfig({ ...env(), CINDER_ENDPOINT: `${base}/v3/%(project_id)s` }));
    const err = await bad.getVolume(VOL).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(CinderAuthError);
    expect((err as Error).message).toMatch(/refused the credentials of user tether/);
    expect((err as Error).message).not.toContain('pw-user');
  });
});
