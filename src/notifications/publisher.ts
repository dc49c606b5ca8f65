/**
 * The outbox publisher (run by the control-plane worker): claims unpublished rows in batches with
 * FOR UPDATE SKIP LOCKED, hands them to the sink and marks them published in the same transaction,
 * so several control-plane replicas share the work without sharing a row. Delivery is at least once
 * (a crash between the broker's confirm and the commit sends a batch again, with the same message_id,
 * on which consumers deduplicate). Woken by LISTEN tether_notifications, and by a periodic poll that
 * also deletes published rows older than the retention.
 */
import pg from 'pg';
import type { Logger } from 'pino';
import { withTransaction, type Database } from '../db/database.ts';
import { claimUnpublished, deletePublishedOlderThan, markPublished } from './outbox.ts';
import { createNotificationSink, type NotificationSink } from './sinks.ts';
import { loadNotificationSettings } from '../config.ts';

export interface NotificationPublisherOptions {
  db: Database;
  /** For the LISTEN connection (a pool connection cannot hold a LISTEN). */
  databaseUrl: string;
  sink: NotificationSink;
  log: Logger;
  retentionMs: number;
  batchSize?: number;
  pollIntervalMs?: number;
}

const RETENTION_SWEEP_MS = 60_000;

export class NotificationPublisher {
  private listener: pg.Client | undefined;
  private timer: NodeJS.Timeout | undefined;
  private draining: Promise<void> | undefined;
  private again = false;
  private stopped = false;
  private lastSweep = 0;
  private failing = false;
  private connecting = false;
  readonly batchSize: number;

  constructor(private readonly o: NotificationPublisherOptions) {
    this.batchSize = o.batchSize ?? 100;
  }

  async start(): Promise<void> {
    await this.listen();
    this.timer = setInterval(() => this.poll(), this.o.pollIntervalMs ?? 5_000);
    this.timer.unref();
    this.o.log.info({ sink: this.o.sink.name }, 'notification publisher started');
    this.wake();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    await this.listener?.end().catch(() => undefined);
    this.listener = undefined;
    await this.draining;
    await this.o.sink.close();
  }

  /** Publishes until no unclaimed row is left; a wake during a drain runs another one after it. */
  wake(): void {
    if (this.stopped) return;
    if (this.draining) {
      this.again = true;
      return;
    }
    this.draining = (async () => {
      do {
        this.again = false;
        await this.drain();
      } while (this.again && !this.stopped);
    })().finally(() => {
      this.draining = undefined;
    });
  }

  /** Resolves when no drain is running (tests). */
  async idle(): Promise<void> {
    while (this.draining) await this.draining;
  }

  /** One batch: claim, deliver, mark published, commit. Returns how many rows it published. */
  async publishBatch(): Promise<number> {
    await this.o.sink.prepare?.();
    return withTransaction(this.o.db, async (tx) => {
      const batch = await claimUnpublished(tx, this.batchSize);
      if (batch.length === 0) return 0;
      await this.o.sink.publish(batch);
      await markPublished(tx, batch.map((n) => n.seq));
      return batch.length;
    });
  }

  private async drain(): Promise<void> {
    try {
      while (!this.stopped && (await this.publishBatch()) === this.batchSize);
      if (this.failing) this.o.log.info({ sink: this.o.sink.name }, 'notifications flow again');
      this.failing = false;
    } catch (err) {
      // The batch stays unpublished; the next poll tries again.
      if (!this.failing) this.o.log.warn({ err: (err as Error).message, sink: this.o.sink.name }, 'cannot publish notifications; retrying');
      this.failing = true;
    }
  }

  private poll(): void {
    if (!this.listener) void this.listen();
    this.wake();
    if (Date.now() - this.lastSweep >= RETENTION_SWEEP_MS) {
      this.lastSweep = Date.now();
      deletePublishedOlderThan(this.o.db, this.o.retentionMs).then(
        (deleted) => deleted > 0 && this.o.log.debug({ deleted }, 'old published notifications deleted'),
        (err: Error) => this.o.log.warn({ err: err.message }, 'cannot delete old notifications'),
      );
    }
  }

  private async listen(): Promise<void> {
    if (this.stopped || this.connecting) return;
    this.connecting = true;
    const client = new pg.Client({ connectionString: this.o.databaseUrl, application_name: 'tether-notifications' });
    try {
      client.on('error', () => {
        if (this.listener === client) this.listener = undefined;
        void client.end().catch(() => undefined);
      });
      client.on('notification', () => this.wake());
      await client.connect();
      await client.query('LISTEN tether_notifications');
      if (this.stopped) {
        await client.end();
        return;
      }
      this.listener = client;
    } catch (err) {
      await client.end().catch(() => undefined);
      this.o.log.warn({ err: (err as Error).message }, 'cannot listen for notifications; relying on the periodic poll');
    } finally {
      this.connecting = false;
    }
  }
}

/** The control-plane worker's publisher, configured by TETHER_NOTIFICATIONS* (src/config.ts). */
export async function startNotificationPublisherFromEnv(o: { db: Database; databaseUrl: string; log: Logger }): Promise<NotificationPublisher> {
  const settings = loadNotificationSettings();
  const log = o.log.child({ component: 'notifications' });
  const publisher = new NotificationPublisher({ ...o, log, sink: createNotificationSink(settings, log), retentionMs: settings.retentionMs });
  await publisher.start();
  return publisher;
}
