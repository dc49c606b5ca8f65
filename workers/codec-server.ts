/**
 * The codec server process (src/security/codec-server.ts) for the Temporal UI and the temporal CLI:
 * listens on TETHER_CODEC_HOST:TETHER_CODEC_PORT (127.0.0.1:8888), decrypts with TETHER_CODEC_KEYS,
 * answers only requests with `Authorization: Bearer $TETHER_CODEC_TOKEN`.
 * It needs neither the database nor Temporal. Run with `node --import tsx workers/codec-server.ts`.
 */
import { fileURLToPath } from 'node:url';
import { createLogger } from '../src/logger.ts';
import { AesGcmCodec } from '../src/security/aes-gcm-codec.ts';
import { loadCodecServerSettings } from '../src/security/codec-config.ts';
import { buildCodecServer } from '../src/security/codec-server.ts';

async function main(): Promise<void> {
  const log = createLogger('codec-server', process.env.TETHER_LOG_LEVEL || 'info');
  try {
    const settings = loadCodecServerSettings();
    if (!settings.keys) log.warn('TETHER_CODEC_KEYS is not set: payloads are not encrypted, so /decode and /encode return them unchanged');
    if (!settings.token) log.warn('TETHER_CODEC_TOKEN is not set: every request will be refused (401)');
    const app = await buildCodecServer({
      codec: settings.keys ? new AesGcmCodec(settings.keys) : undefined,
      token: settings.token,
      corsOrigins: settings.corsOrigins,
      logger: log,
    });
    let stopping = false;
    const stop = (signal: string) => {
      if (stopping) process.exit(130);
      stopping = true;
      log.info({ signal }, 'shutting down');
      void app.close();
    };
    process.on('SIGINT', () => stop('SIGINT'));
    process.on('SIGTERM', () => stop('SIGTERM'));
    const url = await app.listen({ host: settings.host, port: settings.port });
    log.info({ url, keyIds: settings.keys?.map((k) => k.id) ?? [], corsOrigins: settings.corsOrigins }, 'codec server listening');
  } catch (err) {
    log.fatal({ err }, 'codec server failed');
    process.exitCode = 1;
  }
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) void main();
