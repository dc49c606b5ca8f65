/**
 * Structured logs (pino) with storage secrets redacted wherever they may appear: connection_info
 * data, connectors' CHAP fields, auth headers.
 */
import { pino, type Logger } from 'pino';

export const REDACTED_PATHS = [
  '*.auth_password',
  '*.auth_username',
  '*.secret',
  '*.keyring',
  '*.password',
  '*.data.auth_password',
  '*.data.secret',
  '*.connection_info.data',
  'connectionInfo.data',
  'temporalApiKey',
  '*.temporalApiKey',
  'req.headers.authorization',
  'req.headers["x-auth-token"]',
];

export function createLogger(name: string, level = process.env.TETHER_LOG_LEVEL ?? 'info'): Logger {
  return pino({ name, level, redact: { paths: REDACTED_PATHS, censor: '[redacted]' } });
}
