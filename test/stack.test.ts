/**
 * The embedded stack's building blocks: Temporal dev server (persistence across restarts,
 * search attributes), ensureSearchAttributes against the shared server, embedded PostgreSQL
 * (persistence across restarts).
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, inject, it } from 'vitest';
import { Connection } from '@temporalio/client';
import { msToTs } from '@temporalio/common';
import pg from 'pg';
import { loadConfig } from '../src/config.ts';
import { findFreePort } from '../stack/free-port.ts';
import { SEARCH_ATTRIBUTES, ensureSearchAttributes, startTemporalDevServer } from '../stack/temporal-dev-server.ts';
import type { TemporalDevServer } from '../stack/temporal-dev-server.ts';
import { startEmbeddedPostgres } from '../stack/embedded-postgres.ts';
import { isLibvirtAvailable } from '../stack/libvirtd.ts';

const KEYWORD = 2; // temporal.api.enums.v1.IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD

const tempDirs: string[] = [];
function tempDir(prefix: string): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  fs.chmodSync(dir, 0o755); // embedded PostgreSQL runs as `postgres` when we are root
  tempDirs.push(dir);
  return dir;
}
const cleanups: (() => Promise<void>)[] = [];
afterAll(async () => {
  for (const fn of cleanups.reverse()) await fn().catch(() => undefined);
  for (const dir of tempDirs) fs.rmSync(dir, { recursive: true, force: true });
});

async function withConnection<T>(address: string, fn: (c: Connection) => Promise<T>): Promise<T> {
  const connection = await Connection.connect({ address });
  try {
    return await fn(connection);
  } finally {
    await connection.close();
  }
}

async function customAttributes(connection: Connection, namespace: string): Promise<Record<string, number>> {
  const res = await connection.operatorService.listSearchAttributes({ namespace });
  return Object.fromEntries(Object.entries(res.customAttributes ?? {}).map(([k, v]) => [k, Number(v)]));
}

describe('Temporal dev server', () => {
  it('has the search attributes and keeps namespaces across a restart on the same db file', async () => {
    const { temporalBinary } = loadConfig();
    const dir = tempDir('tether-stack-temporal-');
    const dbFile = path.join(dir, 'temporal.db');
    const logFile = path.join(dir, 'temporal.log');
    const port = await findFreePort();
    const expected = Object.fromEntries(Object.keys(SEARCH_ATTRIBUTES).map((k) => [k, KEYWORD]));

    let server: TemporalDevServer = await startTemporalDevServer({ binary: temporalBinary, port, dbFile, logFile, namespace: 'tether-persist' });
    cleanups.push(() => server.stop());
    await withConnection(server.address, async (c) => {
      expect(await customAttributes(c, 'tether-persist')).toMatchObject(expected);
      expect(await customAttributes(c, 'default')).toMatchObject(expected);
      await c.workflowService.registerNamespace({ namespace: 'tether-registered', workflowExecutionRetentionPeriod: msToTs('1 day') });
    });
    await server.stop();
    expect(fs.existsSync(dbFile)).toBe(true);

    // Same file, no --namespace this time: both namespaces must come from the file.
    server = await startTemporalDevServer({ binary: temporalBinary, port: await findFreePort(), dbFile, logFile });
    await withConnection(server.address, async (c) => {
      for (const namespace of ['tether-persist', 'tether-registered']) {
        const res = await c.workflowService.describeNamespace({ namespace });
        expect(res.namespaceInfo?.name).toBe(namespace);
      }
      expect(await customAttributes(c, 'tether-persist')).toMatchObject(expected);
    });
    await server.stop();
  });

  it('fails clearly when the binary is missing', async () => {
    await expect(startTemporalDevServer({ binary: '/nonexistent/temporal', port: await findFreePort() })).rejects.toThrow(
      /run scripts\/build-temporal\.sh/,
    );
  });

  it('ensureSearchAttributes adds missing ones to a namespace, idempotently', async () => {
    const address = inject('temporalAddress');
    await withConnection(address, async (c) => {
      const namespace = `tether-sa-${process.pid}-${Date.now()}`;
      await c.workflowService.registerNamespace({ namespace, workflowExecutionRetentionPeriod: msToTs('1 day') });
      // A just-registered namespace can take a moment to reach the frontend's cache.
      await expect
        .poll(async () => ensureSearchAttributes(c, namespace).then(() => true, (err: Error) => err.message), { timeout: 30_000, interval: 250 })
        .toBe(true);
      await ensureSearchAttributes(c, namespace); // second call: nothing to do
      expect(await customAttributes(c, namespace)).toMatchObject(Object.fromEntries(Object.keys(SEARCH_ATTRIBUTES).map((k) => [k, KEYWORD])));
    });
  });
});

describe('embedded PostgreSQL', () => {
  it('answers, stops, and keeps its data across a restart on the same directory', async () => {
    const dir = tempDir('tether-stack-pg-');
    const dataDir = path.join(dir, 'pg');
    const port = await findFreePort();

    let db = await startEmbeddedPostgres({ dataDir, port, database: 'tether_stack' });
    cleanups.push(() => db.stop());
    expect(db.url).toBe(`postgres://postgres:tether@127.0.0.1:${port}/tether_stack`);
    let client = new pg.Client({ connectionString: db.url });
    await client.connect();
    expect((await client.query('select 1 as one')).rows).toEqual([{ one: 1 }]);
    await client.query('create table survivor (id int primary key, note text)');
    await client.query(`insert into survivor values (1, 'still here')`);
    await client.end();
    await db.stop();
    await expect(
      (async () => {
        const c = new pg.Client({ connectionString: db.url, connectionTimeoutMillis: 2_000 });
        try {
          await c.connect();
        } finally {
          await c.end().catch(() => undefined);
        }
      })(),
    ).rejects.toThrow();

    db = await startEmbeddedPostgres({ dataDir, port, database: 'tether_stack' });
    expect(db.timings.initMs).toBe(0); // not initialised again
    client = new pg.Client({ connectionString: db.url });
    await client.connect();
    expect((await client.query('select note from survivor where id = 1')).rows).toEqual([{ note: 'still here' }]);
    await client.end();
    await db.stop();
  });

  it('gives tests a server where they may create databases', async () => {
    const client = new pg.Client({ connectionString: inject('databaseAdminUrl') });
    await client.connect();
    try {
      const name = `tether_stack_${process.pid}_${Date.now()}`;
      await client.query(`create database ${name}`);
      await client.query(`drop database ${name}`);
    } finally {
      await client.end();
    }
  });
});

describe('libvirt', () => {
  it('reports availability without throwing', async () => {
    // The test driver needs no daemon; it only needs virsh (libvirt-clients).
    expect(typeof (await isLibvirtAvailable('test:///default'))).toBe('boolean');
    expect(await isLibvirtAvailable('qemu+tcp://192.0.2.1/system')).toBe(false);
  });
});
