/**
 * Publishes notifications to RabbitMQ as oslo.messaging's rabbit driver does: the topic exchange
 * (`nova`), routing key `<topic>.<priority>`, and a queue of that name bound to it (oslo declares it
 * so that nothing is lost before a consumer comes). Exchange and queue are used as they are when they
 * exist (oslo declares them non-durable unless amqp_durable_queues is set) and declared non-durable
 * otherwise. Publisher confirms: a batch counts as delivered only when the broker has confirmed it.
 */
import amqp from 'amqplib';
import type { ChannelModel, ConfirmChannel } from 'amqplib';
import type { Logger } from 'pino';
import type { OutboxNotification } from './outbox.ts';
import { osloEnvelope, routingKey } from './oslo-envelope.ts';
import type { NotificationSink } from './sinks.ts';

/** The URL without its password, for logs and errors. */
export function redactAmqpUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return 'amqp://(unparseable URL)';
  }
}

export class AmqpSink implements NotificationSink {
  readonly name: string;
  private connection: ChannelModel | undefined;
  private channel: ConfirmChannel | undefined;

  constructor(private readonly o: { url: string; exchange: string; topic: string; log: Logger }) {
    this.name = redactAmqpUrl(o.url);
  }

  async prepare(): Promise<void> {
    await this.open();
  }

  async publish(batch: OutboxNotification[]): Promise<void> {
    const channel = await this.open();
    try {
      for (const n of batch) {
        channel.publish(this.o.exchange, routingKey(this.o.topic, n), Buffer.from(JSON.stringify(osloEnvelope(n))), {
          contentType: 'application/json',
          contentEncoding: 'utf-8',
          messageId: n.messageId,
          timestamp: Math.floor(n.createdAt.getTime() / 1000),
          persistent: true,
        });
      }
      await channel.waitForConfirms();
    } catch (err) {
      await this.close();
      throw err;
    }
  }

  async close(): Promise<void> {
    const connection = this.connection;
    this.connection = undefined;
    this.channel = undefined;
    await connection?.close().catch(() => undefined);
  }

  private async open(): Promise<ConfirmChannel> {
    if (this.channel) return this.channel;
    const connection = await amqp.connect(this.o.url, { timeout: 10_000 }).catch((err: Error) => {
      throw new Error(`cannot connect to ${this.name}: ${err.message}`);
    });
    connection.on('error', (err: Error) => this.o.log.warn({ err: err.message, broker: this.name }, 'AMQP connection error'));
    connection.on('close', () => {
      if (this.connection === connection) {
        this.connection = undefined;
        this.channel = undefined;
      }
    });
    try {
      const { exchange, topic } = this.o;
      await this.ensure(connection, (ch) => ch.checkExchange(exchange), (ch) => ch.assertExchange(exchange, 'topic', { durable: false }));
      for (const priority of ['info', 'error']) {
        const queue = `${topic}.${priority}`;
        await this.ensure(connection, (ch) => ch.checkQueue(queue), async (ch) => {
          await ch.assertQueue(queue, { durable: false });
        });
        await this.ensure(connection, (ch) => ch.bindQueue(queue, exchange, queue));
      }
      const channel = await connection.createConfirmChannel();
      channel.on('error', (err: Error) => this.o.log.warn({ err: err.message, broker: this.name }, 'AMQP channel error'));
      this.connection = connection;
      this.channel = channel;
      this.o.log.info({ broker: this.name, exchange, topic }, 'publishing notifications to AMQP');
      return channel;
    } catch (err) {
      await connection.close().catch(() => undefined);
      throw err;
    }
  }

  /** Runs `check` on a throw-away channel (a failed check closes it); `declare` on another when the check fails. */
  private async ensure(
    connection: ChannelModel,
    check: (ch: amqp.Channel) => Promise<unknown>,
    declare?: (ch: amqp.Channel) => Promise<unknown>,
  ): Promise<void> {
    for (const step of declare ? [check, declare] : [check]) {
      const ch = await connection.createChannel();
      ch.on('error', () => undefined);
      try {
        await step(ch);
        await ch.close().catch(() => undefined);
        return;
      } catch (err) {
        if (step !== check || !declare) throw err;
      }
    }
  }
}
