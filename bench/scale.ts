/**
 * The per-instance task queues at scale: one compute agent (its own process, its own host name)
 * hosting 1, 100 and 1000 instances. Instances are rows in the database with host = the agent's
 * name and no domain: the agent only needs the rows to start a worker per `instance-<uuid>` queue.
 * For each size: the agent's RSS and its CPU at idle (process.cpuUsage over 10 s), the dev server's
 * RSS and CPU over the same 10 s, and the poll RPCs the frontend answered in that window (from the
 * dev server's Prometheus metrics). Then the time an instance's queue takes to start serving after
 * the instance appears: insert the row, start a probe workflow whose one activity runs on
 * `instance-<uuid>`, and wait for it to finish.
 */
import { randomUUID } from 'node:crypto';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { NativeConnection, Worker } from '@temporalio/worker';
import type { BenchStack, ChildHandle } from './stack.ts';
import { startChild, waitFor } from './stack.ts';
import { diff, pendingPolls, pollRequests, scrape } from './metrics.ts';
import { sample } from './procs.ts';
import { median } from './stats.ts';

export interface ScalePoint {
  instances: number;
  /** from the first row inserted until the agent serves every queue */
  allServingMs: number;
  agentRssMb: number;
  agentHeapMb: number;
  agentIdleCpuPct: number;
  devServerRssMb: number;
  devServerIdleCpuPct: number;
  /** poll RPCs answered by the frontend during the 10 s window, per operation (whole server: every worker) */
  pollRpcsIn10s: Record<string, number>;
  /** long polls held open by the frontend at the end of the window (namespace default: all tether workers) */
  pendingPolls: Record<string, number>;
  /** row inserted → first activity on the new instance's queue completed (median of `probes`) */
  timeToServeMs: number;
  timeToServeSamples: number[];
  /**
   * A burst at the largest size: one probe workflow per hosted instance, all started at once, each
   * running one host activity (getHostConnector) on its own instance's queue of this agent; ms from the
   * first start until the last one finished. The host-queue half of "1000 attaches to 1000 different
   * instances": the instances here have no domain, so no disk is attached.
   */
  drain?: { workflows: number; ms: number; errors: number };
}

export interface ScaleResult {
  /** Set when the part ran alone (`--only=scale`) and was merged into an earlier run's results. */
  run?: { date: string; commit: string; command: string; loadStart: number; loadEnd: number };
  /** an A/B variant of the agent process (bench/run.ts AGENT_VARIANTS): its name and environment */
  variant?: { name: string; description: string; env: Record<string, string> };
  host: string;
  points: ScalePoint[];
  idleWindowMs: number;
}

const probeWorkflows = fileURLToPath(new URL('./workflows/probe.ts', import.meta.url));

async function insertInstances(stack: BenchStack, host: string, count: number, offset: number): Promise<string[]> {
  const uuids = Array.from({ length: count }, () => randomUUID());
  // one statement: the trigger still sends one NOTIFY per row
  await stack.db.query(
    `INSERT INTO instances (uuid, name, project_id, host, vm_state, availability_zone, root_device_name, default_disk_bus)
     SELECT u, 'scale-' || ($3::int + ord), 'bench', $2, 'active', 'nova', '/dev/sda', 'scsi'
     FROM unnest($1::uuid[]) WITH ORDINALITY AS t(u, ord)`,
    [uuids, host, offset],
  );
  return uuids;
}

export async function runScale(
  stack: BenchStack,
  sizes: number[],
  options: { idleWindowMs: number; probes: number; log: (s: string) => void; agentEnv?: Record<string, string>; name?: string },
): Promise<ScaleResult> {
  const host = `bench-scale-${options.name ?? 'shipped'}-${stack.id}`;
  const agent: ChildHandle = await startChild(
    stack.childConfig('agent', host, { hostActivities: 'shipped' }),
    path.join(stack.logDir, `scale-agent-${options.name ?? 'shipped'}.log`),
    options.agentEnv,
  );
  const probeQueue = `bench-probe-${options.name ?? 'shipped'}-${stack.id}`;
  const probeConnection = await NativeConnection.connect({ address: stack.temporal.address });
  const probeWorker = await Worker.create({
    connection: probeConnection,
    namespace: 'default',
    taskQueue: probeQueue,
    workflowsPath: probeWorkflows,
  });
  const probeRun = probeWorker.run();
  const points: ScalePoint[] = [];
  let have = 0;
  const hosted: string[] = [];
  try {
    for (const size of sizes) {
      const t0 = performance.now();
      if (size > have) hosted.push(...(await insertInstances(stack, host, size - have, have)));
      have = Math.max(have, size);
      await waitFor(`${size} queues served by the scale agent`, async () => ((await agent.stats()).queues ?? 0) >= have + 1, 300_000, 100);
      const allServingMs = Math.round(performance.now() - t0);
      await sleep(3_000); // let the new pollers settle (first polls, sync after the last NOTIFY)
      const serverBefore = sample(stack.temporal.pid);
      const pollsBefore = pollRequests(await scrape(stack.metricsUrl));
      const idle = await agent.idleCpu(options.idleWindowMs);
      const metricsAfter = await scrape(stack.metricsUrl);
      const pollsAfter = pollRequests(metricsAfter);
      const serverAfter = sample(stack.temporal.pid);
      const serverCpuPct = serverBefore && serverAfter ? ((serverAfter.cpuSec - serverBefore.cpuSec) / (options.idleWindowMs / 1000)) * 100 : Number.NaN;

      const samples: number[] = [];
      for (let p = 0; p < options.probes; p++) {
        const t1 = performance.now();
        const [uuid] = await insertInstances(stack, host, 1, have);
        hosted.push(uuid!);
        have++;
        await stack.client.workflow.execute('probeInstanceQueue', { taskQueue: probeQueue, workflowId: `probe-${uuid}`, args: [uuid] });
        samples.push(Math.round(performance.now() - t1));
      }
      const point: ScalePoint = {
        instances: size,
        allServingMs,
        agentRssMb: Math.round(idle.stats.rssKb / 102.4) / 10,
        agentHeapMb: idle.stats.heapUsedMb,
        agentIdleCpuPct: Math.round((idle.cpuMs / options.idleWindowMs) * 1000) / 10,
        devServerRssMb: serverAfter ? Math.round(serverAfter.rssKb / 102.4) / 10 : Number.NaN,
        devServerIdleCpuPct: Math.round(serverCpuPct * 10) / 10,
        pollRpcsIn10s: diff(pollsAfter, pollsBefore),
        pendingPolls: pendingPolls(metricsAfter),
        timeToServeMs: median(samples),
        timeToServeSamples: samples,
      };
      if (size === Math.max(...sizes)) {
        const burst = hosted.slice(0, size);
        let errors = 0;
        let firstError: string | undefined;
        const failed = (err: unknown) => {
          errors++;
          const e = err as Error & { cause?: Error };
          firstError ??= `${e.message}${e.cause ? `: ${e.cause.message}` : ''}`;
        };
        const t2 = performance.now();
        // every start first (short calls, 50 at a time), then the results, 50 long polls at a time:
        // 1000 result long polls at once would queue the starts behind them on the client's connection
        const handles: Array<Awaited<ReturnType<typeof stack.client.workflow.start>>> = [];
        const pool = async (n: number, items: number, fn: (i: number) => Promise<void>) => {
          let next = 0;
          await Promise.all(Array.from({ length: n }, async () => {
            while (next < items) await fn(next++);
          }));
        };
        await pool(50, burst.length, async (i) => {
          const uuid = burst[i]!;
          await stack.client.workflow
            .start('probeInstanceQueue', { taskQueue: probeQueue, workflowId: `drain-${uuid}`, args: [uuid] })
            .then((h) => void handles.push(h), failed);
        });
        await pool(50, handles.length, async (i) => {
          await handles[i]!.result().catch(failed);
        });
        if (firstError) options.log(`  ! burst: ${errors} errors, the first: ${firstError}`);
        point.drain = { workflows: burst.length, ms: Math.round(performance.now() - t2), errors };
      }
      points.push(point);
      options.log(
        `  ${size} instances: agent RSS ${point.agentRssMb} MB, idle CPU ${point.agentIdleCpuPct}%, dev server RSS ${point.devServerRssMb} MB / CPU ${point.devServerIdleCpuPct}%, ` +
          `polls ${JSON.stringify(point.pollRpcsIn10s)} (open ${JSON.stringify(point.pendingPolls)}), all queues served after ${allServingMs} ms, time to serve p50 ${point.timeToServeMs} ms` +
          (point.drain ? `; ${point.drain.workflows} host steps on ${point.drain.workflows} instance queues at once drained in ${point.drain.ms} ms (${point.drain.errors} errors)` : ''),
      );
    }
  } finally {
    await agent.stop();
    probeWorker.shutdown();
    await probeRun;
    await probeConnection.close();
    // the rows stay (the database is dropped at the end); mark them deleted so nothing resyncs them
    await stack.db.query(`UPDATE instances SET deleted_at = now() WHERE host = $1`, [host]).catch(() => undefined);
  }
  return { host, points, idleWindowMs: options.idleWindowMs };
}
