/**
 * The API process: the Nova-compatible HTTP API (src/api) on TETHER_API_HOST:TETHER_API_PORT
 * (default 127.0.0.1:8774). It starts workflows through the Temporal client and runs no worker.
 * Run alone with `node --import tsx workers/api-server.ts`.
 */
import { fileURLToPath } from 'node:url';
import { buildApiServer } from '../src/api/server.ts';
import { TetherService } from '../src/service/tether-service.ts';
import { connectClient } from '../src/temporal/client.ts';
import { loadAuthConfig } from '../src/auth/auth-config.ts';
import { createAuthenticator } from '../src/auth/authentication.ts';

async function main(): Promise<void> {
  const { runProcess } = await import('./process.ts');
  await runProcess('api', async (ctx) => {
    const client = await ctx.waitFor('Temporal', () => connectClient(ctx.config));
    try {
      const blockStorage = ctx.blockStorage();
      const service = new TetherService({ db: ctx.db(), client, blockStorage, config: ctx.config });
      const auth = await createAuthenticator(loadAuthConfig(), ctx.db());
      const app = await buildApiServer({
        service, db: ctx.db(), client, config: ctx.config, logger: ctx.log, blockStorageApi: blockStorage.kind === 'local',
        auth, ...(process.env.CINDER_ENDPOINT ? { cinderEndpoint: process.env.CINDER_ENDPOINT } : {}),
      });
      const closed = new Promise<void>((resolve) => ctx.onShutdown(async () => resolve(await app.close())));
      const url = await app.listen({ host: ctx.config.apiHost, port: ctx.config.apiPort });
      ctx.log.info({ url, auth: auth.mode, ...(auth.mode === 'keystone' ? { identity: `${url}/identity/v3` } : {}), compute: `${url}/v2.1`, blockStorage: blockStorage.kind === 'local' ? `${url}/v3` : `cinder (${process.env.CINDER_ENDPOINT ?? 'from the Keystone catalog'})` }, 'API listening');
      await closed;
    } finally {
      await client.connection.close();
    }
  });
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) void main();
