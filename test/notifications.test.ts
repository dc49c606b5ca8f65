/**
 * Nova-style notifications: written to the outbox in the transaction of the state change they report
 * (real Temporal, PostgreSQL, libvirt), once per event however often an activity runs, and published
 * from there: to a log, to RabbitMQ in oslo.messaging's envelope, by several publishers without overlap.
 */
import { execFile } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { promisify } from 'node:util';
import { Writable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MockActivityEnvironment } from '@temporalio/testing';
import amqp from 'amqplib';
import { pino } from 'pino';
import { startTestStack, type TestStack } from './support/test-stack.ts';
import { runningServer, volume } from './support/fixtures.ts';
import type { Instance } from '../src/domain/types.ts';
import { createDatabaseActivities } from '../activities/database.ts';
import { createHostActivities } from '../activities/host.ts';
import { recordVolumeEvent, deletePublishedOlderThan, type OutboxNotification } from '../src/notifications/outbox.ts';
import { NotificationPublisher } from '../src/notifications/publisher.ts';
import { LogSink, NoSink, type NotificationSink } from '../src/notifications/sinks.ts';
import { AmqpSink } from '../src/notifications/amqp-sink.ts';
import { loadNotificationSettings, projectRoot } from '../src/config.ts';
import { tcpMissing } from './support/probes.ts';
import { skipTest } from './support/skips.ts';

let stack: TestStack;
let vm: Instance;
const quiet = pino({ level: 'silent' });

beforeAll(async () => {
  stack = await startTestStack();
  vm = await runningServer(stack, 'vm-notify');
});

afterAll(async () => {
  await stack?.stop();
});

interface Row {
  seq: string;
  message_id: string;
  event_type: string;
  priority: string;
  publisher_id: string;
  payload: { 'nova_object.name': string; 'nova_object.data': Record<string, unknown> & { fault: null | { 'nova_object.data': Record<string, string> } } };
  operation: string;
  published_at: Date | null;
}

async function rowsOf(volumeId: string): Promise<Row[]> {
  return (await stack.db.query<Row>('SELECT * FROM notifications_outbox WHERE volume_id = $1 ORDER BY seq', [volumeId])).rows;
}

async function operationOf(handle: { workflowId: string; describe(): Promise<{ runId: string }> }): Promise<string> {
  return `${handle.workflowId}/${(await handle.describe()).runId}`;
}

describe('the outbox is written with the state change', () => {
  it('an attach writes volume_attach.start then .end, with the instance, the volume and no secret', async () => {
    const v = await volume(stack, 'n-attach');
    const started = await stack.service.attachVolume({ server: vm.uuid, volume: v.id });
    await stack.service.awaitAttach(started.handle);
    const rows = await rowsOf(v.id);
    expect(rows.map((r) => r.event_type)).toEqual(['instance.volume_attach.start', 'instance.volume_attach.end']);
    const operation = await operationOf(started.handle);
    for (const r of rows) {
      expect(r).toMatchObject({ priority: 'INFO', publisher_id: `nova-compute:${stack.host}`, operation, published_at: null });
      expect(r.payload['nova_object.name']).toBe('InstanceActionVolumePayload');
      expect(r.payload['nova_object.data']).toMatchObject({ uuid: vm.uuid, display_name: 'vm-notify', volume_id: v.id, host: stack.host, fault: null });
      expect(JSON.stringify(r.payload)).not.toMatch(/connection_info|auth_password|secret/i);
    }
    expect(new Set(rows.map((r) => r.message_id)).size).toBe(2);
  });

  it('an attach failing at attachDisk writes .start then .error with the fault, after the rollback', async () => {
    const v = await volume(stack, 'n-attach-fail');
    stack.faults.inject('attachDisk', 'after', { times: 1 });
    try {
      const started = await stack.service.attachVolume({ server: vm.uuid, volume: v.id });
      await expect(stack.service.awaitAttach(started.handle)).rejects.toThrow(/rolled back/);
    } finally {
      stack.faults.clear();
    }
    const rows = await rowsOf(v.id);
    expect(rows.map((r) => [r.event_type, r.priority])).toEqual([
      ['instance.volume_attach.start', 'INFO'],
      ['instance.volume_attach.error', 'ERROR'],
    ]);
    expect(rows[1]!.payload['nova_object.data'].fault?.['nova_object.data']).toMatchObject({
      exception: 'InjectedFault',
      exception_message: 'Injected fault after step attachDisk',
      function_name: 'attachDisk',
    });
    // the error is written by the BDM's compensation: the BDM is gone in the same transaction
    const { rows: bdms } = await stack.db.query('SELECT 1 FROM block_device_mappings WHERE volume_id = $1 AND deleted_at IS NULL', [v.id]);
    expect(bdms).toHaveLength(0);
  });

  it('a detach writes volume_detach.start then .end; a failed detach writes .start then .error', async () => {
    const v = await volume(stack, 'n-detach');
    const attach = await stack.service.attachVolume({ server: vm.uuid, volume: v.id });
    await stack.service.awaitAttach(attach.handle);

    stack.faults.inject('detachDisk', 'before', { times: 1 });
    try {
      const failed = await stack.service.detachVolume({ server: vm.uuid, volume: v.id });
      await expect(stack.service.awaitDetach(failed.handle)).rejects.toThrow(/stays attached/);
    } finally {
      stack.faults.clear();
    }
    const detach = await stack.service.detachVolume({ server: vm.uuid, volume: v.id });
    await stack.service.awaitDetach(detach.handle);

    const rows = await rowsOf(v.id);
    expect(rows.map((r) => r.event_type)).toEqual([
      'instance.volume_attach.start',
      'instance.volume_attach.end',
      'instance.volume_detach.start',
      'instance.volume_detach.error',
      'instance.volume_detach.start',
      'instance.volume_detach.end',
    ]);
    expect(rows[3]!.payload['nova_object.data'].fault?.['nova_object.data']).toMatchObject({ exception: 'InjectedFault', function_name: 'detachDisk' });
    // two runs of one workflow id: each run's events under its own operation
    expect(rows[2]!.operation).not.toBe(rows[4]!.operation);
    expect(rows[5]!.operation).toBe(await operationOf(detach.handle));
  });

  it('an activity that runs again after its commit writes no second row', async () => {
    const v = await volume(stack, 'n-retry');
    const db = createDatabaseActivities({ db: stack.db, blockStorage: stack.blockStorage, faults: stack.faults });
    const host = createHostActivities({ db: stack.db, libvirt: stack.libvirt, host: stack.host, faults: stack.faults });
    const attachRun = new MockActivityEnvironment({ workflowType: 'attachVolume', workflowExecution: { workflowId: `attach-${vm.uuid}-${v.id}`, runId: randomUUID() } });
    const bdmUuid = randomUUID();
    const request = { instanceUuid: vm.uuid, volumeId: v.id, device: null, tag: null, deleteOnTermination: false, diskBus: null, deviceType: null, bdmUuid, operationId: `attach-${vm.uuid}-${v.id}` };
    for (let i = 0; i < 2; i++) await attachRun.run(host.reserveDeviceName, request);
    for (let i = 0; i < 2; i++) await attachRun.run(db.markBdmAttached, { bdmUuid });
    const detachRun = new MockActivityEnvironment({ workflowType: 'detachVolume', workflowExecution: { workflowId: `detach-${vm.uuid}-${v.id}`, runId: randomUUID() } });
    for (let i = 0; i < 2; i++) await detachRun.run(db.setBdmAttachStatus, { bdmUuid, attachStatus: 'detaching' as const });
    const destroyed: boolean[] = [];
    for (let i = 0; i < 2; i++) destroyed.push(((await detachRun.run(db.destroyBdm, { bdmUuid })) as { destroyed: boolean }).destroyed);
    expect(destroyed).toEqual([true, false]);
    expect((await rowsOf(v.id)).map((r) => r.event_type)).toEqual([
      'instance.volume_attach.start',
      'instance.volume_attach.end',
      'instance.volume_detach.start',
      'instance.volume_detach.end',
    ]);
    // and the database itself refuses a second row of one event of one operation
    const again = await recordVolumeEvent(stack.db, { eventType: 'instance.volume_attach.start', operation: (await rowsOf(v.id))[0]!.operation, instanceUuid: vm.uuid, volumeId: v.id });
    expect(again).toBe(false);
    expect(await rowsOf(v.id)).toHaveLength(4);
  });

  it('activities called outside a workflow (no operation) write nothing', async () => {
    const v = await volume(stack, 'n-direct');
    expect(await recordVolumeEvent(stack.db, { eventType: 'instance.volume_attach.start', operation: null, instanceUuid: vm.uuid, volumeId: v.id })).toBe(false);
    expect(await rowsOf(v.id)).toEqual([]);
  });
});

/** A sink that keeps what it was given. */
class RecordingSink implements NotificationSink {
  readonly name = 'recording';
  readonly delivered: OutboxNotification[] = [];
  constructor(private readonly beforeFirst?: () => Promise<void>) {}
  async publish(batch: OutboxNotification[]): Promise<void> {
    if (this.delivered.length === 0 && this.beforeFirst) await this.beforeFirst();
    this.delivered.push(...batch);
  }
  async close(): Promise<void> {}
}

async function unpublishedCount(): Promise<number> {
  const { rows } = await stack.db.query<{ n: string }>('SELECT count(*) AS n FROM notifications_outbox WHERE published_at IS NULL');
  return Number(rows[0]!.n);
}

/** `count` rows, each its own operation, on the test's instance. */
async function plantRows(count: number): Promise<void> {
  const volumeId = randomUUID();
  for (let i = 0; i < count; i++) {
    await recordVolumeEvent(stack.db, { eventType: 'instance.volume_attach.start', operation: `planted-${randomUUID()}`, instanceUuid: vm.uuid, volumeId });
  }
}

function publisher(sink: NotificationSink, batchSize = 100): NotificationPublisher {
  return new NotificationPublisher({ db: stack.db, databaseUrl: stack.databaseUrl, sink, log: quiet, retentionMs: 7 * 86_400_000, batchSize });
}

async function drain(p: NotificationPublisher): Promise<void> {
  p.wake();
  await p.idle();
}

describe('the publisher', () => {
  it('two publishers at once never deliver the same row, and together deliver every row', async () => {
    await drain(publisher(new NoSink()));
    await plantRows(300);
    // each publisher holds its first batch (rows locked) until the other has claimed one too
    let aClaimed!: () => void;
    let bClaimed!: () => void;
    const aHas = new Promise<void>((r) => (aClaimed = r));
    const bHas = new Promise<void>((r) => (bClaimed = r));
    const a = new RecordingSink(async () => {
      aClaimed();
      await bHas;
    });
    const b = new RecordingSink(async () => {
      bClaimed();
      await aHas;
    });
    await Promise.all([drain(publisher(a, 40)), drain(publisher(b, 40))]);
    const ids = [...a.delivered, ...b.delivered].map((n) => n.messageId);
    expect(a.delivered.length).toBeGreaterThan(0);
    expect(b.delivered.length).toBeGreaterThan(0);
    expect(ids).toHaveLength(300);
    expect(new Set(ids).size).toBe(300);
    expect(await unpublishedCount()).toBe(0);
  });

  it('the log sink writes one structured line per notification', async () => {
    await plantRows(3);
    const lines: string[] = [];
    const log = pino({ level: 'info' }, new Writable({ write: (chunk, _enc, cb) => (lines.push(...String(chunk).trim().split('\n')), cb()) }));
    await drain(publisher(new LogSink(log)));
    expect(lines).toHaveLength(3);
    for (const line of lines.map((l) => JSON.parse(l))) {
      expect(line.msg).toBe('instance.volume_attach.start');
      expect(line.notification).toMatchObject({ event_type: 'instance.volume_attach.start', priority: 'INFO', publisher_id: `nova-compute:${stack.host}` });
      expect(line.notification.message_id).toMatch(/^[0-9a-f-]{36}$/);
    }
  });

  it('wakes on LISTEN/NOTIFY when a row is written', async () => {
    const sink = new RecordingSink();
    const p = new NotificationPublisher({ db: stack.db, databaseUrl: stack.databaseUrl, sink, log: quiet, retentionMs: 86_400_000, pollIntervalMs: 3_600_000 });
    await p.start();
    try {
      await drain(p);
      const before = sink.delivered.length;
      await plantRows(1);
      await expect.poll(() => sink.delivered.length, { timeout: 10_000 }).toBe(before + 1);
    } finally {
      await p.stop();
    }
  });

  it('retention deletes published rows older than the limit, and never an unpublished one', async () => {
    await plantRows(2);
    await stack.db.query(`UPDATE notifications_outbox SET created_at = now() - interval '30 days' WHERE published_at IS NULL`);
    await stack.db.query(`UPDATE notifications_outbox SET published_at = now() - interval '8 days' WHERE published_at IS NOT NULL`);
    const published = Number((await stack.db.query<{ n: string }>('SELECT count(*) AS n FROM notifications_outbox WHERE published_at IS NOT NULL')).rows[0]!.n);
    expect(await deletePublishedOlderThan(stack.db, 7 * 86_400_000)).toBe(published);
    expect(await unpublishedCount()).toBe(2);
    await drain(publisher(new NoSink()));
    expect(await deletePublishedOlderThan(stack.db, 7 * 86_400_000)).toBe(0);
  });

  it('defaults: the log sink, 7 days of retention, exchange nova, topic versioned_notifications', () => {
    const saved = { ...process.env };
    for (const k of Object.keys(process.env)) if (k.startsWith('TETHER_NOTIFICATIONS')) delete process.env[k];
    try {
      expect(loadNotificationSettings()).toEqual({ sink: 'log', retentionMs: 7 * 86_400_000, exchange: 'nova', topic: 'versioned_notifications' });
      process.env.TETHER_NOTIFICATIONS = 'kafka://x';
      expect(() => loadNotificationSettings()).toThrow(/TETHER_NOTIFICATIONS must be/);
      process.env.TETHER_NOTIFICATIONS = 'none';
      process.env.TETHER_NOTIFICATIONS_RETENTION = '12h';
      expect(loadNotificationSettings()).toMatchObject({ sink: 'none', retentionMs: 12 * 3_600_000 });
    } finally {
      process.env = saved;
    }
  });
});

describe('publishing to RabbitMQ', () => {
  const url = process.env.TETHER_TEST_AMQP_URL ?? 'amqp://guest:guest@127.0.0.1:5672';

  it('delivers oslo.messaging envelopes to the nova exchange and marks the rows published', async (ctx) => {
    const broker = new URL(url);
    const down = await tcpMissing(broker.hostname, Number(broker.port || 5672));
    const probe = down ? new Error(down) : await amqp.connect(url, { timeout: 30_000 }).catch((err: Error) => err);
    if (probe instanceof Error) {
      skipTest(ctx, 'rabbitmq', `no RabbitMQ answers at ${url.replace(/:[^:@/]*@/, ':***@')} (${probe.message}); \`npm test\` starts one (scripts/test-deps/rabbitmq.sh), or set TETHER_TEST_AMQP_URL`);
    }
    // a topic of its own, so the oslo-style queues the sink declares can be removed afterwards
    const topic = `tether_test_${randomBytes(4).toString('hex')}`;
    const sink = new AmqpSink({ url, exchange: 'nova', topic, log: quiet });
    const channel = await probe.createChannel();
    try {
      await sink.publish([]); // connects and declares the exchange and oslo's queues
      const { queue } = await channel.assertQueue('', { exclusive: true, autoDelete: true });
      await channel.bindQueue(queue, 'nova', `${topic}.*`);
      const received: amqp.ConsumeMessage[] = [];
      await channel.consume(queue, (m) => m && received.push(m), { noAck: true });

      // an attach that fails leaves an INFO and an ERROR notification in the outbox
      const v = await volume(stack, 'n-amqp');
      stack.faults.inject('completeAttachment', 'before', { times: 1 });
      try {
        const started = await stack.service.attachVolume({ server: vm.uuid, volume: v.id });
        await expect(stack.service.awaitAttach(started.handle)).rejects.toThrow(/rolled back/);
      } finally {
        stack.faults.clear();
      }
      const expected = await rowsOf(v.id);
      expect(expected.map((r) => r.event_type)).toEqual(['instance.volume_attach.start', 'instance.volume_attach.error']);
      const pending = await unpublishedCount();

      await drain(publisher(sink));
      await expect.poll(() => received.length, { timeout: 10_000 }).toBe(pending);
      expect(await unpublishedCount()).toBe(0);
      for (const r of await rowsOf(v.id)) expect(r.published_at).toBeInstanceOf(Date);

      const byId = new Map(received.map((m) => [m.properties.messageId as string, m]));
      expect(byId.size).toBe(received.length);
      for (const row of expected) {
        const m = byId.get(row.message_id)!;
        expect(m.fields.exchange).toBe('nova');
        expect(m.fields.routingKey).toBe(`${topic}.${row.priority.toLowerCase()}`);
        const envelope = JSON.parse(m.content.toString());
        expect(Object.keys(envelope).sort()).toEqual(['oslo.message', 'oslo.version']);
        expect(envelope['oslo.version']).toBe('2.0');
        const message = JSON.parse(envelope['oslo.message']);
        expect(message).toMatchObject({
          message_id: row.message_id,
          event_type: row.event_type,
          priority: row.priority,
          publisher_id: `nova-compute:${stack.host}`,
          payload: row.payload,
        });
        expect(message.timestamp).toMatch(/^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6}$/);
      }
      // oslo's own queue for the topic got them too (nothing is lost before a consumer binds)
      expect((await channel.checkQueue(`${topic}.error`)).messageCount).toBe(1);
    } finally {
      await sink.close();
      await channel.deleteQueue(`${topic}.info`).catch(() => undefined);
      await channel.deleteQueue(`${topic}.error`).catch(() => undefined);
      await probe.close().catch(() => undefined);
    }
  });
});

describe('tether notifications', () => {
  it('lists the newest outbox rows, newest first, as JSON or a table', async () => {
    const run = (...args: string[]) =>
      promisify(execFile)(process.execPath, ['bin/tether.js', 'notifications', ...args], { cwd: projectRoot, env: { ...process.env, ...stack.env } });
    const newest = (await stack.db.query<{ message_id: string }>('SELECT message_id FROM notifications_outbox ORDER BY seq DESC LIMIT 2')).rows;
    const listed = JSON.parse((await run('--json', '--limit', '2')).stdout) as Array<{ messageId: string; eventType: string }>;
    expect(listed.map((n) => n.messageId)).toEqual(newest.map((r) => r.message_id));
    const text = (await run('--limit', '1')).stdout;
    expect(text).toMatch(/^Created\s+Event\s+Priority/);
    expect(text).toContain(newest[0]!.message_id);
  });
});
