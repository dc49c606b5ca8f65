/**
 * The Temporal cluster of the cluster mode (stack/temporal-cluster.ts) on its own: two nodes of the
 * real server v1.29.1 on the suite's PostgreSQL (databases of their own), mTLS from certificates made
 * at start. A client without a certificate is refused; workflows in flight when one node is SIGKILLed
 * all complete on the other; the killed node comes back and serves again.
 */
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { inject } from 'vitest';
import { Client, Connection } from '@temporalio/client';
import { bundleWorkflowCode, DefaultLogger, NativeConnection, Runtime, Worker } from '@temporalio/worker';
import { needs } from './support/skips.ts';
import { temporalServerBinaries } from '../stack/temporal-binaries.ts';
import { clusterTlsConfig, startTemporalCluster, type TemporalCluster } from '../stack/temporal-cluster.ts';

const { server } = temporalServerBinaries();
const missing = fs.existsSync(server) ? null : `no temporal-server at ${server} (\`npm run setup\` builds it: scripts/build-temporal.sh server)`;
const workflowsPath = path.join(path.dirname(fileURLToPath(import.meta.url)), 'fixtures', 'cluster', 'workflows.ts');

describe('a Temporal cluster of two nodes on PostgreSQL with mTLS', needs('temporal-server', missing), () => {
  let cluster: TemporalCluster;
  let dataDir: string;
  let worker: Worker | undefined;
  let workerDone: Promise<void> | undefined;
  const connections: Array<{ close(): Promise<void> }> = [];

  beforeAll(async () => {
    Runtime.install({ logger: new DefaultLogger('ERROR') });
    dataDir = await fsp.mkdtemp(path.join(os.tmpdir(), 'tether-cluster-test-'));
    const url = new URL(inject('databaseAdminUrl'));
    url.pathname = `/temporal_${randomBytes(4).toString('hex')}`;
    cluster = await startTemporalCluster({ dataDir, databaseUrl: url.toString() });
  }, 240_000);

  afterAll(async () => {
    worker?.shutdown();
    await workerDone?.catch(() => undefined);
    for (const c of connections) await c.close().catch(() => undefined);
    await cluster?.stop();
    if (dataDir) await fsp.rm(dataDir, { recursive: true, force: true });
  }, 60_000);

  it('made its certificates into the data folder, keys readable by the owner only', async () => {
    for (const key of [cluster.tls.keyFile, path.join(dataDir, 'certs', 'server.key'), path.join(dataDir, 'certs', 'ca.key')]) {
      expect(((await fsp.stat(key)).mode & 0o777).toString(8)).toBe('600');
    }
    expect(cluster.frontends).toHaveLength(2);
    expect(cluster.processes.map((p) => p.name)).toEqual(['temporal-1', 'temporal-2']);
    expect(cluster.processes.map((p) => p.address)).toEqual(cluster.frontends);
  });

  it('refuses a client without a certificate, and plaintext; serves one with the cluster certificate', async () => {
    const { serverRootCACertificate, serverNameOverride } = clusterTlsConfig(cluster.tls);
    for (const address of cluster.frontends) {
      await expect(
        Connection.connect({ address, tls: { serverRootCACertificate, serverNameOverride }, connectTimeout: 2_000 }).then(async (c) => {
          connections.push(c);
          await c.workflowService.getSystemInfo({});
        }),
      ).rejects.toThrow();
      await expect(
        Connection.connect({ address, connectTimeout: 2_000 }).then(async (c) => {
          connections.push(c);
          await c.workflowService.getSystemInfo({});
        }),
      ).rejects.toThrow();
      const ok = await Connection.connect({ address, tls: clusterTlsConfig(cluster.tls) });
      connections.push(ok);
      const info = await ok.workflowService.getSystemInfo({});
      expect(info.serverVersion).toBe('1.29.1');
    }
  });

  it('completes every workflow in flight when one node is SIGKILLed, and the node serves again after a restart', async () => {
    // Worker and client on node 2; node 1 (which owns some of the shards) dies mid-run.
    const address = cluster.frontends[1]!;
    const workerConnection = await NativeConnection.connect({ address, tls: clusterTlsConfig(cluster.tls) });
    connections.push(workerConnection);
    const taskQueue = `cluster-test-${randomBytes(4).toString('hex')}`;
    let stepsRun = 0;
    worker = await Worker.create({
      connection: workerConnection,
      namespace: cluster.namespace,
      taskQueue,
      workflowBundle: await bundleWorkflowCode({ workflowsPath, logger: new DefaultLogger('ERROR') }),
      activities: {
        async step(n: number) {
          await new Promise((r) => setTimeout(r, 100));
          stepsRun++;
          return n;
        },
      },
    });
    workerDone = worker.run();
    const connection = await Connection.connect({ address, tls: clusterTlsConfig(cluster.tls) });
    connections.push(connection);
    const client = new Client({ connection, namespace: cluster.namespace });

    const count = 8;
    const stepsEach = 12;
    const handles = await Promise.all(
      Array.from({ length: count }, (_, i) => client.workflow.start('steps', { taskQueue, workflowId: `${taskQueue}-${i}`, args: [stepsEach] })),
    );
    const deadline = Date.now() + 30_000;
    while (stepsRun < count && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    expect(stepsRun).toBeGreaterThanOrEqual(count);
    const killedPid = cluster.processes[0]!.pid;
    cluster.kill('temporal-1', 'SIGKILL');
    const expected = (stepsEach * (stepsEach - 1)) / 2;
    const results = await Promise.all(handles.map((h) => h.result()));
    expect(results).toEqual(Array(count).fill(expected));
    expect(cluster.running('temporal-1')).toBe(false);

    await cluster.restart('temporal-1');
    expect(cluster.processes[0]!.pid).not.toBe(killedPid);
    const again = await Connection.connect({ address: cluster.frontends[0]!, tls: clusterTlsConfig(cluster.tls) });
    connections.push(again);
    const after = await new Client({ connection: again, namespace: cluster.namespace }).workflow.execute('steps', {
      taskQueue,
      workflowId: `${taskQueue}-after`,
      args: [3],
    });
    expect(after).toBe(3);
  }, 150_000);
});
