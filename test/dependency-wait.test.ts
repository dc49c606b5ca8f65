/**
 * A process that starts while PostgreSQL or Temporal is down waits for them (src/process/dependency-wait.ts,
 * TETHER_STARTUP_WAIT_SECONDS) instead of exiting — found by the chaos storm (docs/chaos.md).
 *   - the errors real clients (pg, node-pg-migrate, Temporal client and worker connections, libvirt)
 *     give for a peer that is not there are recognised as "unreachable";
 *     one that is there but refuses (an unknown database) is not, and ends the wait at once;
 *   - migrations whose connection is terminated fail with that (retryable) error, and do not crash
 *     the process with an unhandled 'error' event (node-pg-migrate's own client has no listener);
 *   - the real API process, started with PostgreSQL and Temporal behind ports where nothing listens
 *     yet, comes up once they appear (TCP relays to the test's real servers open 2 s later);
 *     with TETHER_STARTUP_WAIT_SECONDS=0 it exits with code 1 as before.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { Connection } from '@temporalio/client';
import { PG_MIGRATE_LOCK_ID } from 'node-pg-migrate';
import { NativeConnection } from '@temporalio/worker';
import { afterEach, describe, expect, inject, it } from 'vitest';
import { projectRoot } from '../src/config.ts';
import { migrate } from '../src/db/migrate.ts';
import { LibvirtConnection } from '../src/libvirt/binding.ts';
import { findFreePort } from '../stack/free-port.ts';
import { isUnreachable, waitForDependency } from '../src/process/dependency-wait.ts';

async function errorOf(fn: () => Promise<unknown>): Promise<unknown> {
  try {
    await fn();
  } catch (err) {
    return err;
  }
  throw new Error('expected a failure');
}

/** A TCP relay from `port` to `target` (host:port), opened when called. */
function relay(port: number, target: string): Promise<net.Server> {
  const [host, targetPort] = [target.slice(0, target.lastIndexOf(':')), Number(target.slice(target.lastIndexOf(':') + 1))];
  const server = net.createServer((inbound) => {
    const outbound = net.connect(targetPort, host);
    inbound.pipe(outbound).pipe(inbound);
    inbound.on('error', () => outbound.destroy());
    outbound.on('error', () => inbound.destroy());
  });
  return new Promise((resolve) => server.listen(port, '127.0.0.1', () => resolve(server)));
}

const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  for (const fn of cleanups.splice(0).reverse()) await fn();
});

describe('which errors mean "not reachable yet"', () => {
  it('PostgreSQL, the Temporal client and the Temporal worker connection to a closed port are unreachable', async () => {
    const port = await findFreePort();
    const pgErr = await errorOf(async () => {
      const c = new pg.Client({ connectionString: `postgres://postgres@127.0.0.1:${port}/postgres` });
      await c.connect();
    });
    const migrateErr = await errorOf(() => migrate(`postgres://postgres@127.0.0.1:${port}/postgres`));
    const nativeErr = await errorOf(() => NativeConnection.connect({ address: `127.0.0.1:${port}` }));
    const clientErr = await errorOf(() => Connection.connect({ address: `127.0.0.1:${port}`, connectTimeout: 2_000 }));
    expect(isUnreachable(pgErr)).toBe(true);
    expect(isUnreachable(migrateErr)).toBe(true);
    expect(isUnreachable(nativeErr)).toBe(true);
    expect(isUnreachable(clientErr)).toBe(true);
  });

  it('libvirt with no daemon behind its socket is unreachable', async () => {
    const err = await errorOf(() => LibvirtConnection.open(`qemu+unix:///system?socket=${os.tmpdir()}/tether-no-libvirtd-${process.pid}.sock`));
    expect(String((err as Error).message)).toMatch(/Failed to connect socket/);
    expect(isUnreachable(err)).toBe(true);
  });

  it('a PostgreSQL that answers with a refusal (unknown database) is not, and is not retried', async () => {
    const admin = new URL(inject('databaseAdminUrl'));
    admin.pathname = '/tether_no_such_database';
    let calls = 0;
    const err = await errorOf(() => waitForDependency('PostgreSQL', () => (calls++, migrate(admin.toString())), { timeoutMs: 30_000 }));
    expect(isUnreachable(err)).toBe(false);
    expect((err as { code?: string }).code).toBe('3D000');
    expect(calls).toBe(1);
  });

  it('gives up after the timeout with the last error', async () => {
    const port = await findFreePort();
    let calls = 0;
    const t0 = Date.now();
    const err = await errorOf(() => waitForDependency('PostgreSQL', () => (calls++, migrate(`postgres://postgres@127.0.0.1:${port}/postgres`)), { timeoutMs: 1_500, initialDelayMs: 100 }));
    expect(isUnreachable(err)).toBe(true);
    expect(calls).toBeGreaterThanOrEqual(3);
    expect(Date.now() - t0).toBeLessThan(5_000);
  });
});

describe('migrations when PostgreSQL goes away under them', () => {
  it('a terminated connection is an error to retry on, not a crash', async () => {
    const admin = new pg.Client({ connectionString: inject('databaseAdminUrl') });
    await admin.connect();
    cleanups.push(() => admin.end());
    const dbName = `tether_migrate_lost_${process.pid}`;
    await admin.query(`DROP DATABASE IF EXISTS ${dbName}`);
    await admin.query(`CREATE DATABASE ${dbName}`);
    const url = new URL(inject('databaseAdminUrl'));
    url.pathname = `/${dbName}`;
    // Hold node-pg-migrate's advisory lock, so that migrate() sits in `pg_advisory_lock` on its connection.
    const holder = new pg.Client({ connectionString: url.toString() });
    await holder.connect();
    await holder.query('SELECT pg_advisory_lock($1)', [PG_MIGRATE_LOCK_ID]);
    const running = migrate(url.toString()).then(() => null, (err: unknown) => err);
    let pid: number | undefined;
    const deadline = Date.now() + 30_000;
    while (pid === undefined && Date.now() < deadline) {
      const { rows } = await admin.query<{ pid: number }>(`SELECT pid FROM pg_stat_activity WHERE datname = $1 AND application_name = 'tether-migrate' AND wait_event_type = 'Lock'`, [dbName]);
      pid = rows[0]?.pid;
      if (pid === undefined) await new Promise((r) => setTimeout(r, 50));
    }
    expect(pid).toBeDefined();
    await admin.query('SELECT pg_terminate_backend($1)', [pid]);
    const err = await running;
    expect(err).toBeInstanceOf(Error);
    expect(isUnreachable(err)).toBe(true);
    // and once the lock is free, the same call succeeds
    await holder.end();
    expect((await migrate(url.toString())).length).toBeGreaterThan(0);
    await admin.query(`DROP DATABASE ${dbName} WITH (FORCE)`);
  });
});

describe('the API process started before PostgreSQL and Temporal answer', () => {
  async function startApi(extraEnv: Record<string, string>) {
    const [pgPort, temporalPort, apiPort] = [await findFreePort(), await findFreePort(), await findFreePort()];
    const adminUrl = new URL(inject('databaseAdminUrl'));
    const databaseUrl = new URL(adminUrl);
    databaseUrl.host = `127.0.0.1:${pgPort}`;
    const child: ChildProcess = spawn(process.execPath, ['--import', 'tsx', path.join(projectRoot, 'workers', 'api-server.ts')], {
      cwd: projectRoot,
      env: {
        ...process.env,
        DATABASE_URL: databaseUrl.toString(),
        TEMPORAL_ADDRESS: `127.0.0.1:${temporalPort}`,
        TETHER_API_HOST: '127.0.0.1',
        TETHER_API_PORT: String(apiPort),
        TETHER_CONTROL_TASK_QUEUE: 'tether-dependency-wait-test',
        ...extraEnv,
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    cleanups.push(() => child.exitCode === null && child.signalCode === null && child.kill('SIGKILL'));
    let output = '';
    child.stdout!.on('data', (c: Buffer) => (output += c.toString()));
    child.stderr!.on('data', (c: Buffer) => (output += c.toString()));
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    return { child, exited, output: () => output, pgPort, temporalPort, adminTarget: `${adminUrl.hostname}:${adminUrl.port || 5432}` };
  }

  it('waits, then serves once both appear', async () => {
    const api = await startApi({ TETHER_STARTUP_WAIT_SECONDS: '60' });
    // Nothing listens until the process has tried and said it retries; then relays to the real servers open.
    const tried = Date.now() + 60_000;
    while (!/PostgreSQL not reachable yet; retrying/.test(api.output())) {
      if (api.child.exitCode !== null || Date.now() > tried) throw new Error(`no retry seen:\n${api.output()}`);
      await new Promise((r) => setTimeout(r, 100));
    }
    const relays = await Promise.all([relay(api.pgPort, api.adminTarget), relay(api.temporalPort, inject('temporalAddress'))]);
    cleanups.push(() => relays.forEach((s) => s.close()));
    const deadline = Date.now() + 60_000;
    while (!api.output().includes('"msg":"API listening"')) {
      if (api.child.exitCode !== null || Date.now() > deadline) throw new Error(`the API did not come up:\n${api.output()}`);
      await new Promise((r) => setTimeout(r, 100));
    }
    expect(api.child.exitCode).toBeNull();
  }, 120_000);

  it('with TETHER_STARTUP_WAIT_SECONDS=0 it exits with code 1 at once', async () => {
    const api = await startApi({ TETHER_STARTUP_WAIT_SECONDS: '0' });
    expect(await api.exited).toBe(1);
    expect(api.output()).toMatch(/ECONNREFUSED/);
  }, 60_000);
});
