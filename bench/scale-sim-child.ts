/**
 * A process of the scale simulation (bench/scale-sim.ts), driven over IPC:
 *   - `hosts`: many simulated compute hosts in one process. Each is the real ComputeAgent (its own
 *     Temporal connection, its own database pool and LISTEN connection, one activity-only Worker per
 *     `instance-<uuid>` queue, the real host activities) on a SimulatedHypervisor instead of libvirt.
 *   - `control`: the real control-plane worker (workers/control-plane.ts's createControlPlaneWorker)
 *     with the embedded volume service.
 * Answers `stats` (RSS, heap, CPU so far, queues served) and `idle-cpu` (CPU over a window).
 */
import { Client, Connection } from '@temporalio/client';
import { DefaultLogger, NativeConnection, Runtime, type Worker } from '@temporalio/worker';
import { createDatabase, type Database } from '../src/db/database.ts';
import { LocalVolumeService } from '../src/blockstorage/local-volume-service.ts';
import { ComputeAgent } from '../workers/compute-agent.ts';
import { createControlPlaneWorker } from '../workers/control-plane.ts';
import { SimulatedHypervisor } from './sim-hypervisor.ts';
import { AGENT_RUNTIME_OPTIONS } from '../workers/compute-agent.ts';
import { tlsConfig, type SimChildConfig, type SimChildStats, type SimEndpoint, type SimParentMessage } from './scale-sim-config.ts';

function nativeConnect(endpoint: SimEndpoint): Promise<NativeConnection> {
  const tls = tlsConfig(endpoint.tls);
  return NativeConnection.connect({ address: endpoint.address, ...(tls ? { tls } : {}) });
}

async function main(): Promise<void> {
  const config = await new Promise<SimChildConfig>((resolve) => {
    process.once('message', (m: SimParentMessage) => {
      if (m.type === 'config') resolve(m.config);
    });
  });
  // the hosts' process runs compute agents: their runtime, as workers/compute-agent.ts installs it
  Runtime.install({ logger: new DefaultLogger('ERROR'), ...(config.role === 'hosts' ? AGENT_RUNTIME_OPTIONS : {}) });
  let stop: () => Promise<void>;
  let queues: () => number = () => 0;
  const hypervisor = new SimulatedHypervisor();

  if (config.role === 'hosts') {
    const agents: Array<{ agent: ComputeAgent; connection: NativeConnection; db: Database }> = [];
    // A few hosts at a time, each retried: on a loaded machine a connection can time out at start.
    let next = 0;
    const startHost = async (h: (typeof config.hosts)[number]) => {
      for (let attempt = 1; ; attempt++) {
        const connection = await nativeConnect(h.endpoint);
        const db = createDatabase(config.databaseUrl, { max: config.poolMax, applicationName: `tether-agent-${h.name}` });
        const agent = new ComputeAgent({ connection, namespace: config.namespace, host: h.name, db, databaseUrl: config.databaseUrl, libvirt: hypervisor.asLibvirt() });
        try {
          await agent.start();
          agents.push({ agent, connection, db });
          return;
        } catch (err) {
          console.error(`host ${h.name}: start failed (attempt ${attempt}):`, err);
          await agent.stop().catch(() => undefined);
          await connection.close().catch(() => undefined);
          await db.end().catch(() => undefined);
          if (attempt >= 3) throw err;
        }
      }
    };
    await Promise.all(
      Array.from({ length: Math.min(5, config.hosts.length) }, async () => {
        while (next < config.hosts.length) await startHost(config.hosts[next++]!);
      }),
    );
    // servedQueues() lists the host queue first: count the instance queues only
    queues = () => agents.reduce((n, a) => n + a.agent.servedQueues().length - 1, 0);
    stop = async () => {
      await Promise.all(agents.map((a) => a.agent.stop()));
      await Promise.all(agents.map(async (a) => {
        await a.connection.close().catch(() => undefined);
        await a.db.end().catch(() => undefined);
      }));
    };
  } else {
    const connection = await nativeConnect(config.endpoint);
    const tls = tlsConfig(config.endpoint.tls);
    const clientConnection = await Connection.connect({ address: config.endpoint.address, ...(tls ? { tls } : {}) });
    const client = new Client({ connection: clientConnection, namespace: config.namespace });
    const db = createDatabase(config.databaseUrl, { applicationName: 'tether-control-plane' });
    const blockStorage = new LocalVolumeService(db, { volumeDir: config.volumeDir, availabilityZone: 'nova' });
    const worker: Worker = await createControlPlaneWorker({ connection, client, namespace: config.namespace, taskQueue: config.taskQueue, db, blockStorage });
    const done = worker.run();
    stop = async () => {
      worker.shutdown();
      await done;
      await clientConnection.close();
      await connection.close();
      await db.end();
    };
  }

  const stats = (): SimChildStats => {
    const cpu = process.cpuUsage();
    return {
      rssKb: Math.round(process.memoryUsage.rss() / 1024),
      heapUsedMb: Math.round(process.memoryUsage().heapUsed / 1024 / 102.4) / 10,
      cpuMs: (cpu.user + cpu.system) / 1000,
      queues: queues(),
      hypervisorCalls: hypervisor.calls,
    };
  };

  process.on('message', (m: SimParentMessage) => {
    if (m.type === 'stats') process.send!({ type: 'stats', id: m.id, stats: stats() });
    else if (m.type === 'idle-cpu') {
      const before = process.cpuUsage();
      setTimeout(() => {
        const d = process.cpuUsage(before);
        process.send!({ type: 'idle-cpu', id: m.id, cpuMs: (d.user + d.system) / 1000, stats: stats() });
      }, m.ms);
    } else if (m.type === 'stop') {
      void (async () => {
        await stop().catch((err: unknown) => console.error(`scale-sim child ${config.role}: stop failed`, err));
        process.exit(0);
      })();
    }
  });
  process.on('disconnect', () => process.exit(0));
  process.send!({ type: 'ready', pid: process.pid });
}

main().catch((err: unknown) => {
  console.error('scale-sim child failed:', err);
  process.exit(1);
});
