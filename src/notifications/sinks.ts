/**
 * Where published notifications go (TETHER_NOTIFICATIONS): `log` (one structured log line each, the
 * default), `none` (nowhere: rows are only marked published), or an AMQP URL (RabbitMQ, the way
 * oslo.messaging's notifier sends them; src/notifications/amqp-sink.ts).
 */
import type { Logger } from 'pino';
import type { OutboxNotification } from './outbox.ts';
import { osloMessage } from './oslo-envelope.ts';
import { AmqpSink } from './amqp-sink.ts';
import type { NotificationSettings } from '../config.ts';

export interface NotificationSink {
  readonly name: string;
  /** Connects, if the sink needs to, before rows are claimed (so no row lock waits on a connect). */
  prepare?(): Promise<void>;
  /** Delivers every notification of the batch or throws (the batch then stays unpublished). */
  publish(batch: OutboxNotification[]): Promise<void>;
  close(): Promise<void>;
}

export class LogSink implements NotificationSink {
  readonly name = 'log';
  constructor(private readonly log: Logger) {}

  async publish(batch: OutboxNotification[]): Promise<void> {
    for (const n of batch) this.log.info({ notification: osloMessage(n) }, n.eventType);
  }

  async close(): Promise<void> {}
}

export class NoSink implements NotificationSink {
  readonly name = 'none';
  async publish(): Promise<void> {}
  async close(): Promise<void> {}
}

export function createNotificationSink(settings: NotificationSettings, log: Logger): NotificationSink {
  if (settings.sink === 'log') return new LogSink(log);
  if (settings.sink === 'none') return new NoSink();
  return new AmqpSink({ url: settings.sink, exchange: settings.exchange, topic: settings.topic, log });
}
