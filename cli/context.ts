/** Connections the CLI needs, opened on first use, with errors that say what to do. */
import type { Client } from '@temporalio/client';
import { loadConfig, type TetherConfig } from '../src/config.ts';
import { createDatabase, type Database } from '../src/db/database.ts';
import { createConfiguredBlockStorage, type ConfiguredBlockStorage } from '../src/blockstorage/index.ts';
import { connectClient } from '../src/temporal/client.ts';
import { startTracingFromEnv, type Tracing } from '../src/tracing/tracing.ts';
import { TetherService } from '../src/service/tether-service.ts';
import { cliCaller } from '../src/auth/caller.ts';

export class CliContext {
  readonly config: TetherConfig = loadConfig();
  private db: Database | undefined;
  private client: Client | undefined;
  private service: TetherService | undefined;
  private tracing: Tracing | undefined;
  /** --project / TETHER_PROJECT_ID: act as a member of this project; unset: an operator (admin). */
  projectId: string | undefined;

  /** The service as the CLI's caller sees it (src/auth/policy.ts applies, as on the API). */
  async tether(): Promise<TetherService> {
    if (this.service) return this.service;
    this.db = createDatabase(this.config.databaseUrl, { max: 4, applicationName: 'tether-cli' });
    try {
      await this.db.query('SELECT 1 FROM instances LIMIT 1');
    } catch (err) {
      throw new Error(`Cannot use the database at ${redactUrl(this.config.databaseUrl)}: ${(err as Error).message}. Is the stack running (npm start)?`);
    }
    // With OTEL_EXPORTER_OTLP_ENDPOINT set, the workflows this command starts are traced (service tether-cli).
    this.tracing = startTracingFromEnv('cli');
    try {
      this.client = await connectClient(this.config);
    } catch (err) {
      throw new Error(`Cannot reach Temporal at ${this.config.temporalAddress}: ${(err as Error).message}. Is the stack running (npm start)?`);
    }
    this.service = new TetherService(
      { db: this.db, client: this.client, blockStorage: createConfiguredBlockStorage(this.config, this.db), config: this.config },
      cliCaller(this.projectId),
    );
    return this.service;
  }

  /** The raw connections, for commands that look past the service layer (tether check). */
  async stores(): Promise<{ db: Database; client: Client; blockStorage: ConfiguredBlockStorage }> {
    await this.tether();
    return { db: this.db!, client: this.client!, blockStorage: createConfiguredBlockStorage(this.config, this.db!) };
  }

  async close(): Promise<void> {
    await this.client?.connection.close().catch(() => undefined);
    await this.db?.end().catch(() => undefined);
    await this.tracing?.shutdown().catch(() => undefined);
  }
}

function redactUrl(url: string): string {
  return url.replace(/\/\/([^:@/]+):[^@/]*@/, '//$1:***@');
}
