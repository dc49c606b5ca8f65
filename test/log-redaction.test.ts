/**
 * Secrets stay out of logs.
 *
 * 1. The construction: whatever shape a connection_info, connector, config or error takes in a log
 *    call, tether's logger censors the secrets (src/logger.ts).
 * 2. The real processes: a control-plane worker, a compute agent and the API server run as child
 *    processes (their own task queue and host name, on this test stack's database and Temporal) with
 *    TETHER_LOG_LEVEL=debug and the payload codec on; a full attach (one failed and rolled back, one
 *    that succeeds) and a detach go through the HTTP API with a connection_info that carries CHAP and
 *    cephx secrets; no log line of any process, no API answer contains any of them.
 *
 * How the secrets get in: the embedded volume service builds `file` connection_info without
 * credentials, so the control-plane child is started with a test-only preload (written by this file
 * to a temp folder, never part of tether) that adds them to what LocalVolumeService.updateAttachment
 * returns — the one place a real Cinder would hand them over. Everything after that is tether's code.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { pathToFileURL } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { Client } from '@temporalio/client';
import { projectRoot } from '../src/config.ts';
import { CENSOR, createLogger, scrubSecrets } from '../src/logger.ts';
import { codecDataConverter } from '../src/security/codec-config.ts';
import { findFreePort } from '../stack/free-port.ts';
import { bdmConnectionInfo, liveBdm } from '../src/db/block-device-mappings.ts';
import { attachWorkflowId, detachWorkflowId } from '../src/domain/steps.ts';
import { TetherService } from '../src/service/tether-service.ts';
import { startTestStack, type TestStack } from './support/test-stack.ts';

vi.setConfig({ testTimeout: 300_000, hookTimeout: 300_000 });

const secret = (label: string) => `${label}-${randomBytes(12).toString('hex')}`;

/** A logger whose JSON lines land in an array. */
function capturedLogger(level = 'trace') {
  const lines: string[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      lines.push(...chunk.toString().split('\n').filter(Boolean));
      done();
    },
  });
  return { log: createLogger('redaction-test', level, sink), lines };
}

describe('the logger censors secrets by construction', () => {
  const chapPassword = secret('chap-password');
  const chapUser = secret('chap-user');
  const discovery = secret('discovery-password');
  const cephKey = secret('ceph-key');
  const keyring = secret('keyring');
  const apiKey = secret('api-key');
  const codecKey = randomBytes(32).toString('base64');
  const token = secret('token');
  const all = [chapPassword, chapUser, discovery, cephKey, keyring, apiKey, codecKey, token];

  const iscsi = () => ({
    driver_volume_type: 'iscsi',
    data: {
      target_iqn: 'iqn.2010-10.org.openstack:volume-1',
      target_portal: '10.0.0.2:3260',
      auth_method: 'CHAP',
      auth_username: chapUser,
      auth_password: chapPassword,
      discovery_auth_method: 'CHAP',
      discovery_auth_password: discovery,
    },
  });
  const rbd = () => ({ driver_volume_type: 'rbd', data: { name: 'volumes/volume-1', auth_enabled: true, auth_username: 'cinder', key: cephKey, keyring } });

  it('in every shape a connection_info, connector, config or error may be logged in', async () => {
    const { log, lines } = capturedLogger();
    const logged = { bdm: { uuid: 'b-1', connectionInfo: iscsi() } };
    log.info({ connectionInfo: iscsi() }, 'top level, camelCase');
    log.info({ connection_info: rbd() }, 'top level, snake_case');
    log.debug(logged, 'nested one level');
    log.debug({ operation: { step: 'attachDisk', bdms: [{ connection_info: iscsi() }, { connectionInfo: rbd() }] } }, 'in an array, deeper');
    log.info({ a: { b: { c: { d: { e: { connection_info: iscsi() } } } } } }, 'five levels down');
    log.info({ connector: { host: 'compute-1', auth_password: chapPassword, auth_username: chapUser } }, 'a connector with CHAP fields');
    log.info({ data: iscsi().data }, 'bare connection data');
    log.info({ row: { connection_info: JSON.stringify(iscsi()) } }, 'connection_info as JSON text');
    log.info({ config: { temporalApiKey: apiKey, codecKeys: codecKey, codecToken: token }, temporalApiKey: apiKey }, 'configuration');
    log.info({ headers: { authorization: `Bearer ${token}`, 'x-auth-token': token, cookie: `s=${token}` } }, 'headers');
    log.error({ err: Object.assign(new Error('attach failed'), { connectionInfo: iscsi(), auth_password: chapPassword }) }, 'an error carrying connection info');
    log.child({ connection_info: rbd(), volume: 'v-1' }).warn('a child logger bound to connection info');
    log.child({ request: { password: chapPassword } }).info('a child binding with a password');

    expect(lines).toHaveLength(13);
    const text = lines.join('\n');
    expect(all.filter((s) => text.includes(s))).toEqual([]);
    expect(text.split(CENSOR).length - 1).toBeGreaterThanOrEqual(20);
    // …while what is not secret stays readable
    const parsed = lines.map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(parsed[0]).toMatchObject({ connectionInfo: { driver_volume_type: 'iscsi', data: CENSOR }, msg: 'top level, camelCase' });
    expect(parsed[2]).toMatchObject({ bdm: { uuid: 'b-1', connectionInfo: { driver_volume_type: 'iscsi', data: CENSOR } } });
    expect(parsed[5]).toMatchObject({ connector: { host: 'compute-1', auth_password: CENSOR } });
    expect(parsed[10]).toMatchObject({ err: { message: 'attach failed', connectionInfo: { data: CENSOR }, auth_password: CENSOR } });
    expect(parsed[11]).toMatchObject({ volume: 'v-1', connection_info: { driver_volume_type: 'rbd', data: CENSOR } });
    // the caller's objects are not changed
    expect(logged.bdm.connectionInfo.data.auth_password).toBe(chapPassword);
  });

  it('scrubSecrets shares what it does not change and leaves non-plain objects to their serializers', () => {
    const plain = { a: 1, b: { c: [1, 2] } };
    expect(scrubSecrets(plain)).toBe(plain);
    const date = new Date();
    expect(scrubSecrets({ when: date })).toEqual({ when: date });
    expect(scrubSecrets({ list: [{ password: 'x' }], keep: plain })).toEqual({ list: [{ password: CENSOR }], keep: plain });
  });

  it('cannot censor a secret pasted into the message text: a code rule, not a logger feature', () => {
    const { log, lines } = capturedLogger();
    log.info(`connection ${JSON.stringify(iscsi())}`);
    expect(lines[0]).toContain(chapPassword); // why tether never formats connection_info into messages
  });
});

// ---- the real processes ----

interface Child {
  name: string;
  process: ChildProcess;
  output: string[];
}

const secrets = {
  chapUser: secret('chap-user'),
  chapPassword: secret('chap-password'),
  discoveryPassword: secret('discovery-password'),
  cephKey: secret('ceph-key'),
  keyring: secret('keyring'),
};
const codecKey = randomBytes(32).toString('base64');
const codecToken = secret('codec-token');

let stack: TestStack;
let preloadDir: string;
const children: Child[] = [];
let env: Record<string, string>;
let api: string;
let client: Client;
let service: TetherService;
const responses: string[] = [];

function startChild(name: string, script: string, extraEnv: Record<string, string> = {}, preload = false): Child {
  const args = ['--import', 'tsx', ...(preload ? ['--import', pathToFileURL(path.join(preloadDir, 'secret-connection-info.mjs')).href] : []), path.join(projectRoot, 'workers', script)];
  const child = spawn(process.execPath, args, { cwd: projectRoot, env: { ...process.env, ...env, ...extraEnv }, stdio: ['ignore', 'pipe', 'pipe'] });
  const c: Child = { name, process: child, output: [] };
  child.stdout!.on('data', (d: Buffer) => c.output.push(d.toString()));
  child.stderr!.on('data', (d: Buffer) => c.output.push(d.toString()));
  children.push(c);
  return c;
}

async function stopChild(c: Child): Promise<void> {
  if (c.process.exitCode !== null || c.process.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => c.process.once('exit', () => resolve()));
  c.process.kill('SIGTERM');
  const timer = setTimeout(() => c.process.kill('SIGKILL'), 20_000);
  await exited;
  clearTimeout(timer);
}

async function http(method: string, url: string, body?: unknown): Promise<{ status: number; json: any }> {
  const res = await fetch(`${api}${url}`, {
    method,
    headers: body === undefined ? {} : { 'content-type': 'application/json' },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  const text = await res.text();
  responses.push(text);
  return { status: res.status, json: text ? JSON.parse(text) : null };
}

async function waitForHealth(deadlineMs: number): Promise<void> {
  const deadline = Date.now() + deadlineMs;
  let last = '';
  while (Date.now() < deadline) {
    if (children.some((c) => c.process.exitCode !== null)) {
      last = `${children.filter((c) => c.process.exitCode !== null).map((c) => c.name).join(', ')} exited`;
      break;
    }
    try {
      const res = await fetch(`${api}/healthz`);
      if (res.ok) return;
      last = `${res.status} ${await res.text()}`;
    } catch (err) {
      last = (err as Error).message;
    }
    await sleep(500);
  }
  const logs = children.map((c) => `--- ${c.name}\n${c.output.join('').slice(-3000)}`).join('\n');
  throw new Error(`the API did not become healthy (last: ${last})\n${logs}`);
}

beforeAll(async () => {
  stack = await startTestStack();
  preloadDir = mkdtempSync(path.join(os.tmpdir(), 'tether-log-redaction-'));
  const volumeServiceModule = pathToFileURL(path.join(projectRoot, 'src/blockstorage/local-volume-service.ts')).href;
  // Test-only: the credentials a Cinder backend would return with an iSCSI/RBD export.
  writeFileSync(
    path.join(preloadDir, 'secret-connection-info.mjs'),
    `import { isMainThread } from 'node:worker_threads';
// (the workflow sandbox's worker thread runs --import modules too, before tsx can load .ts there)
if (isMainThread) {
  const { LocalVolumeService } = await import(${JSON.stringify(volumeServiceModule)});
  const original = LocalVolumeService.prototype.updateAttachment;
  LocalVolumeService.prototype.updateAttachment = async function (...args) {
    const info = await original.apply(this, args);
    return { ...info, data: { ...info.data, auth_method: 'CHAP', auth_username: ${JSON.stringify(secrets.chapUser)},
      auth_password: ${JSON.stringify(secrets.chapPassword)}, discovery_auth_method: 'CHAP',
      discovery_auth_password: ${JSON.stringify(secrets.discoveryPassword)}, key: ${JSON.stringify(secrets.cephKey)},
      keyring: ${JSON.stringify(secrets.keyring)} } };
  };
}
`,
  );
  const port = await findFreePort();
  api = `http://127.0.0.1:${port}`;
  env = {
    ...stack.env,
    // the children's own queue and host: the stack's in-process workers never see their work
    TETHER_CONTROL_TASK_QUEUE: `child-control-${stack.id}`,
    TETHER_COMPUTE_HOST: `child-host-${stack.id}`,
    TETHER_API_HOST: '127.0.0.1',
    TETHER_API_PORT: String(port),
    TETHER_LOG_LEVEL: 'debug',
    TETHER_CODEC_KEYS: `log-test:${codecKey}`,
    TETHER_CODEC_TOKEN: codecToken,
    TEMPORAL_NAMESPACE: 'default',
  };
  startChild('control-plane', 'control-plane.ts', {}, true);
  // the first attachDisk fails after plugging the disk: a rollback (detachDisk) runs too
  startChild('compute-agent', 'compute-agent.ts', { TETHER_FAULTS: 'attachDisk:after:1' });
  startChild('api-server', 'api-server.ts');
  client = new Client({ connection: stack.client.connection, namespace: 'default', dataConverter: codecDataConverter(env) });
  service = new TetherService({
    db: stack.db,
    client,
    blockStorage: stack.blockStorage,
    config: { controlTaskQueue: env.TETHER_CONTROL_TASK_QUEUE!, computeHost: env.TETHER_COMPUTE_HOST!, availabilityZone: 'nova', defaultDiskBus: 'scsi' },
  });
  await waitForHealth(240_000);
});

afterAll(async () => {
  for (const c of [...children].reverse()) await stopChild(c);
  await stack?.stop();
  if (preloadDir) rmSync(preloadDir, { recursive: true, force: true });
});

describe('a control plane, a compute agent and the API at debug level', () => {
  it('attach (failed and rolled back, then done) and detach through the API: no secret in any log line or answer', async () => {
    // a server on the children's host (the API has no server create; the CLI uses this service call)
    const { instance, handle } = await service.createServer({ name: 'vm-log-redaction' });
    await handle.result();

    const created = await http('POST', '/v3/volumes', { volume: { size: 1, name: 'vol-log-redaction' } });
    expect(created.status).toBe(202);
    const volumeId = created.json.volume.id as string;

    // 1. attach whose attachDisk fails after the disk went in: rolled back
    const first = await http('POST', `/v2.1/servers/${instance.uuid}/os-volume_attachments`, { volumeAttachment: { volumeId } });
    expect(first.status).toBe(200);
    await expect(client.workflow.getHandle(attachWorkflowId(instance.uuid, volumeId)).result()).rejects.toThrow();
    expect((await http('GET', `/v3/volumes/${volumeId}`)).json.volume.status).toBe('available');

    // 2. the same attach again: done
    const second = await http('POST', `/v2.1/servers/${instance.uuid}/os-volume_attachments`, { volumeAttachment: { volumeId } });
    expect(second.status).toBe(200);
    await client.workflow.getHandle(attachWorkflowId(instance.uuid, volumeId)).result();
    expect((await http('GET', `/v3/volumes/${volumeId}`)).json.volume.status).toBe('in-use');
    await http('GET', `/v2.1/servers/${instance.uuid}/os-volume_attachments`);
    await http('GET', `/v2.1/servers/${instance.uuid}/os-volume_attachments/${volumeId}`);

    // the secrets really flowed: tether stored them on the BDM (where the compute agent reads them)
    const bdm = await liveBdm(stack.db, instance.uuid, volumeId);
    const stored = await bdmConnectionInfo(stack.db, bdm!.uuid);
    expect(stored?.data).toMatchObject({ auth_password: secrets.chapPassword, key: secrets.cephKey, keyring: secrets.keyring });

    // 3. detach
    expect((await http('DELETE', `/v2.1/servers/${instance.uuid}/os-volume_attachments/${volumeId}`)).status).toBe(202);
    await client.workflow.getHandle(detachWorkflowId(instance.uuid, volumeId)).result();
    expect((await http('GET', `/v3/volumes/${volumeId}`)).json.volume.status).toBe('available');

    for (const c of [...children].reverse()) await stopChild(c);
    const logs = Object.fromEntries(children.map((c) => [c.name, c.output.join('')]));
    // the logs are real: every process logged, the API logged each request, the failed attach was reported
    for (const name of ['control-plane', 'compute-agent', 'api-server']) expect(logs[name]!.length, name).toBeGreaterThan(0);
    expect(logs['api-server']).toContain('request completed');
    expect(logs['api-server']).toContain('os-volume_attachments');
    expect(logs['compute-agent']).toContain('Injected fault after step attachDisk');

    const values = { ...secrets, codecKey, codecToken };
    const leaks = Object.entries(logs).flatMap(([name, text]) =>
      Object.entries(values)
        .filter(([, v]) => text.includes(v))
        .map(([k]) => `${name}: ${k}`),
    );
    expect(leaks).toEqual([]);
    const answers = responses.join('\n');
    expect(Object.entries(values).filter(([, v]) => answers.includes(v))).toEqual([]);
  });
});
