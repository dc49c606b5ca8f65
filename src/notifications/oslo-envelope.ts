/**
 * oslo.messaging's notification message (what Nova puts on the bus), in its 2.0 envelope:
 * `{"oslo.version": "2.0", "oslo.message": "<the message as a JSON string>"}`, sent to the topic
 * exchange `nova` with routing key `<topic>.<priority>` (versioned_notifications.info / .error).
 */
import type { OutboxNotification } from './outbox.ts';

export interface OsloNotificationMessage {
  message_id: string;
  publisher_id: string;
  event_type: string;
  priority: string;
  payload: unknown;
  /** Python's str(datetime) in UTC, as oslo.messaging writes it: `2026-11-25 20:30:00.123000`. */
  timestamp: string;
}

export function osloMessage(n: OutboxNotification): OsloNotificationMessage {
  return {
    message_id: n.messageId,
    publisher_id: n.publisherId,
    event_type: n.eventType,
    priority: n.priority,
    payload: n.payload,
    timestamp: `${n.createdAt.toISOString().slice(0, 10)} ${n.createdAt.toISOString().slice(11, 23)}000`,
  };
}

export function osloEnvelope(n: OutboxNotification): { 'oslo.version': '2.0'; 'oslo.message': string } {
  return { 'oslo.version': '2.0', 'oslo.message': JSON.stringify(osloMessage(n)) };
}

export function routingKey(topic: string, n: Pick<OutboxNotification, 'priority'>): string {
  return `${topic}.${n.priority.toLowerCase()}`;
}
