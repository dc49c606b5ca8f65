/**
 * The benchmark's Nova column: a real Nova 26 (Debian's packages, test/support/nova.ts) and tether on
 * the same Cinder (loop devices, test/support/python/tether_loop_driver.py) and the same libvirt,
 * measured in alternating rounds (bench/load.ts runInterleaved), so that the drift of what they share
 * falls on both alike.
 *
 * Both are driven the same way, as a client drives them, over HTTP: POST os-volume_attachments (the
 * answer is the "reservation" time), then Cinder's GET volume every POLL_MS until `in-use` (attach
 * done); DELETE os-volume_attachments/{volume} (202), then Cinder until `available` and the API's GET
 * of the attachment until 404 (detach done: the next attach of the volume may go). tether runs as
 * `npm start` runs it: the API server (workers/api-server.ts), a control-plane worker and the compute
 * agent in processes of their own, with TETHER_BLOCK_STORAGE=cinder. Each client owns one volume,
 * which attaches to tether's server n in tether's rounds and to Nova's server n in Nova's.
 *
 * CPU per cycle counts, for each, its own processes and what both share (Cinder, libvirtd, virtlogd,
 * the QEMU domains, the driver that generates the load).
 */
import { spawn, execFile, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { setTimeout as sleep } from 'node:timers/promises';
import { projectRoot } from '../src/config.ts';
import { findFreePort } from '../stack/free-port.ts';
import type { Instance, Volume } from '../src/domain/types.ts';
import type { CycleTiming } from './direct-baseline.ts';
import { runInterleaved, type CellResult, type CycleFn } from './load.ts';
import { pidFromFile, withDescendants, type ProcGroup } from './procs.ts';
import { LIBVIRT_URI, waitFor, type BenchStack } from './stack.ts';

const run = promisify(execFile);

/** How often the client asks Cinder (and the API) whether an operation is done. */
export const POLL_MS = 25;

export interface NovaPartSpec {
  instances: number;
  concurrency: number[];
  cycles: Record<number, number>;
  rounds: number;
  runningDomains: boolean;
}

export interface NovaPartResult {
  instances: number;
  pollMs: number;
  nova: string;
  /** Modes 'nova' and 'tether', per concurrency. */
  cells: CellResult[];
  /** Which process groups are whose (for CPU per cycle: own + shared). */
  groups: { nova: string[]; tether: string[]; shared: string[] };
  /** Resident memory (MiB) of Nova's and Placement's processes once started. */
  novaRssMiB?: Record<string, number>;
  skipped?: string;
  /** Set when the part ran alone (`npm run bench -- --only=nova`) and was merged into the committed results. */
  run?: { date: string; commit: string; command: string; loadStart?: number; loadEnd?: number };
}

export const NOVA_GROUPS = { nova: ['Nova (api, conductor, scheduler, compute)', 'Placement'], tether: ['Temporal dev server', 'PostgreSQL', 'node: tether API server', 'node: tether control-plane worker (Cinder)', 'node: compute agent'], shared: ['Cinder', 'libvirtd', 'virtlogd', 'QEMU domains', 'node: bench driver (load)'] };

interface Api {
  request(method: string, p: string, body?: unknown): Promise<{ status: number; text: string }>;
}

function httpApi(base: string, headers: Record<string, string>): Api {
  return {
    async request(method, p, body) {
      const res = await fetch(`${base}/v2.1${p}`, {
        method,
        headers: { Accept: 'application/json', 'OpenStack-API-Version': 'compute 2.79', ...headers, ...(body ? { 'Content-Type': 'application/json' } : {}) },
        ...(body ? { body: JSON.stringify(body) } : {}),
        signal: AbortSignal.timeout(120_000),
      });
      return { status: res.status, text: await res.text() };
    },
  };
}

/** One attach+detach cycle through an API, timed as a client sees it (see the header). */
async function clientCycle(api: Api, volumeStatus: (id: string) => Promise<string>, serverId: string, volumeId: string): Promise<CycleTiming> {
  const attachments = `/servers/${serverId}/os-volume_attachments`;
  const until = async (what: string, ok: () => Promise<boolean>) => {
    const deadline = Date.now() + 120_000;
    while (!(await ok())) {
      if (Date.now() > deadline) throw new Error(`${what} not within 120 s`);
      await sleep(POLL_MS);
    }
  };
  const t0 = performance.now();
  const posted = await api.request('POST', attachments, { volumeAttachment: { volumeId } });
  if (posted.status !== 200) throw new Error(`attach: ${posted.status} ${posted.text.slice(0, 200)}`);
  const t1 = performance.now();
  try {
    await until(`volume ${volumeId} in-use`, async () => {
      const s = await volumeStatus(volumeId);
      if (s.startsWith('error')) throw new Error(`volume ${volumeId} went to ${s}`);
      return s === 'in-use';
    });
    const t2 = performance.now();
    const deleted = await api.request('DELETE', `${attachments}/${volumeId}`);
    if (deleted.status !== 202) throw new Error(`detach: ${deleted.status} ${deleted.text.slice(0, 200)}`);
    await until(`volume ${volumeId} available`, async () => (await volumeStatus(volumeId)) === 'available');
    await until(`attachment of ${volumeId} gone`, async () => (await api.request('GET', `${attachments}/${volumeId}`)).status === 404);
    const t3 = performance.now();
    return { reservationMs: t1 - t0, attachMs: t2 - t0, detachMs: t3 - t2, totalMs: t3 - t0 };
  } catch (err) {
    // leave the pair detached for the next cycle when it can be done
    await until('clean-up', async () => (await volumeStatus(volumeId)) !== 'attaching' && (await volumeStatus(volumeId)) !== 'reserved').catch(() => undefined);
    await api.request('DELETE', `${attachments}/${volumeId}`).catch(() => undefined);
    await until('clean-up', async () => (await volumeStatus(volumeId)) === 'available').catch(() => undefined);
    throw err;
  }
}

/** tether's API server as `npm start` runs it (workers/api-server.ts), for the Cinder control queue. */
async function startApiServer(stack: BenchStack, env: Record<string, string>, queue: string): Promise<{ url: string; child: ChildProcess; stop(): Promise<void> }> {
  const port = await findFreePort();
  const logFile = path.join(stack.logDir, 'api-server-nova-part.log');
  const out = fs.createWriteStream(logFile, { flags: 'a' });
  const inherited = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('TETHER_') && !k.startsWith('CINDER_') && k !== 'DATABASE_URL'));
  const child = spawn(process.execPath, ['--import', 'tsx', path.join(projectRoot, 'workers', 'api-server.ts')], {
    cwd: projectRoot,
    env: {
      ...inherited,
      DATABASE_URL: stack.databaseUrl,
      TEMPORAL_ADDRESS: stack.temporal.address,
      TEMPORAL_NAMESPACE: 'default',
      TETHER_CONTROL_TASK_QUEUE: queue,
      TETHER_COMPUTE_HOST: stack.host,
      TETHER_API_HOST: '127.0.0.1',
      TETHER_API_PORT: String(port),
      TETHER_LOG_LEVEL: 'warn',
      LIBVIRT_URI,
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  child.stdout!.pipe(out);
  child.stderr!.pipe(out);
  const url = `http://127.0.0.1:${port}`;
  await waitFor('tether API server', async () => {
    if (child.exitCode !== null) throw new Error(`the API server exited (${child.exitCode}); see ${logFile}`);
    return fetch(`${url}/healthz`, { signal: AbortSignal.timeout(5_000) }).then((r) => r.ok, () => false);
  }, 180_000, 250);
  return {
    url,
    child,
    async stop() {
      if (child.exitCode !== null) return;
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
      await exited;
      clearTimeout(timer);
    },
  };
}

export async function runNovaPart(stack: BenchStack, spec: NovaPartSpec, log: (line: string) => void, elapsed: () => string): Promise<NovaPartResult> {
  const out: NovaPartResult = { instances: spec.instances, pollMs: POLL_MS, nova: '', cells: [], groups: NOVA_GROUPS };
  const { cinderAvailability, startCinder } = await import('../test/support/cinder.ts');
  const { novaAvailability, startNova } = await import('../test/support/nova.ts');
  const { CinderBlockStorage } = await import('../src/blockstorage/cinder/cinder-block-storage.ts');
  for (const a of [await cinderAvailability('single'), await novaAvailability()]) {
    if (!a.available) {
      out.skipped = a.reason;
      log(`  ! Nova part skipped: ${a.reason}`);
      return out;
    }
  }
  out.nova = (await run('dpkg-query', ['-W', '-f=${Version}', 'nova-common'])).stdout;
  log(`[${elapsed()}] Nova part: starting a Cinder (loop devices) and Nova ${out.nova} beside tether…`);
  const cinder = await startCinder({ mode: 'single', driver: 'loop' });
  const cleanups: Array<() => Promise<unknown>> = [() => cinder.stop()];
  try {
    const nova = await startNova({ cinder });
    cleanups.unshift(() => nova.stop());
    out.novaRssMiB = nova.rssMiB();
    const blockStorage = new CinderBlockStorage(cinder.config());
    const queue = `${stack.controlTaskQueue}-nova-part`;
    const control = await stack.startVariantControl({ workflows: 'shipped', blockStorageEnv: cinder.env }, queue, blockStorage);
    cleanups.unshift(() => control.child.stop());
    const api = await startApiServer(stack, cinder.env, queue);
    cleanups.unshift(() => api.stop());

    const instances = await stack.ensureInstances(spec.instances);
    const novaServers: Array<{ id: string; domainName: string }> = [];
    for (let i = 0; i < spec.instances; i++) {
      const server = await nova.createServer(`bench-nova-${i}`);
      // the same as tether's bench domains: paused unless --running-domains (Nova ignores a pause it did not make)
      if (!spec.runningDomains) await run('virsh', ['-c', LIBVIRT_URI, 'suspend', server.id]);
      novaServers.push(server);
    }
    const novaOf = new Map(instances.map((inst, i) => [inst.uuid, novaServers[i]!.id]));
    const maxC = Math.max(...spec.concurrency);
    const volumes: Volume[] = [];
    for (let i = 0; i < maxC; i++) volumes.push(await control.service.createVolume({ name: `bench-nova-v${i}`, size: 1 }));
    for (const v of volumes) await waitFor(`Cinder volume ${v.id} available`, async () => (await blockStorage.getVolume(v.id)).status === 'available', 60_000, 100);
    log(`[${elapsed()}] Nova part ready: ${spec.instances} servers each (Nova's boot from a volume), ${volumes.length} volumes; Nova ${Object.entries(out.novaRssMiB).map(([k, v]) => `${k} ${v}`).join(', ')} MiB`);

    const volumeStatus = async (id: string) => {
      const r = await cinder.api<{ volume: { status: string } }>('GET', `/volumes/${id}`);
      return r.status === 200 ? r.body.volume.status : `http ${r.status}`;
    };
    const tetherApi = httpApi(api.url, {});
    const novaApi = httpApi(nova.url, { 'X-Auth-Token': nova.token });
    const modes: Array<[string, CycleFn]> = [
      ['nova', (i: Instance, v: Volume) => clientCycle(novaApi, volumeStatus, novaOf.get(i.uuid)!, v.id)],
      ['tether', (i: Instance, v: Volume) => clientCycle(tetherApi, volumeStatus, i.uuid, v.id)],
    ];
    const novaPids = () => (['api', 'conductor', 'scheduler', 'compute'] as const).flatMap((s) => { const p = nova.pid(s); return p ? withDescendants(p) : []; });
    const base = stack.procGroups().filter((g) => ['Temporal dev server', 'libvirtd', 'virtlogd', 'node: compute agent'].includes(g.name) || g.name.startsWith('PostgreSQL'));
    const groups: ProcGroup[] = [
      ...base.map((g) => (g.name.startsWith('PostgreSQL') ? { ...g, name: 'PostgreSQL' } : g)),
      { name: 'node: tether API server', pids: () => (api.child.pid ? [api.child.pid] : []) },
      { name: 'node: tether control-plane worker (Cinder)', pids: () => [control.child.pid] },
      { name: 'Nova (api, conductor, scheduler, compute)', pids: novaPids },
      { name: 'Placement', pids: () => { const p = nova.pid('placement'); return p ? withDescendants(p) : []; } },
      { name: 'Cinder', pids: () => cinder.pids() },
      {
        name: 'QEMU domains',
        pids: () => [...instances.map((i) => pidFromFile(`/run/libvirt/qemu/${i.libvirtDomain}.pid`)), ...novaServers.map((s) => pidFromFile(`/run/libvirt/qemu/${s.domainName}.pid`))].filter((p): p is number => p !== undefined),
      },
      { name: 'node: bench driver (load)', pids: () => [process.pid] },
    ];
    for (const c of spec.concurrency) {
      const cells = await runInterleaved({ concurrency: c, instances, volumes, cycles: spec.cycles[c]! }, modes, spec.rounds, groups);
      for (const r of cells) {
        out.cells.push(r);
        log(
          `[${elapsed()}] nova part ${r.mode.padEnd(6)} concurrency ${String(c).padStart(2)} (${spec.rounds} alternating rounds): attach p50 ${r.attach.p50} ms, detach p50 ${r.detach.p50} ms, ` +
            `${r.throughput} cycles/s, CPU ${ownCpu(out, r)} + shared ${sharedCpu(out, r)} ms/cycle${r.errors ? `, ${r.errors} errors (${r.firstError})` : ''} [other load ${r.machine.otherCores} cores]`,
        );
      }
    }
    for (const v of volumes) await blockStorage.deleteVolume?.(v.id).catch(() => undefined);
  } catch (err) {
    out.skipped = `the Nova part failed: ${(err as Error).message.split('\n')[0]}`;
    log(`  ! ${out.skipped}`);
  } finally {
    for (const fn of cleanups) await fn().catch((e: unknown) => log(`  ! Nova part clean-up: ${(e as Error).message}`));
  }
  return out;
}

/** CPU ms per cycle of the mode's own processes (Nova's and Placement's, or tether's). */
export function ownCpu(part: Pick<NovaPartResult, 'groups'>, r: CellResult): number {
  const own = r.mode === 'nova' ? part.groups.nova : part.groups.tether;
  return own.reduce((s, g) => s + (r.cpuMsPerCycle.byGroup[g] ?? 0), 0);
}

/** CPU ms per cycle of what both use (Cinder, libvirt, QEMU, the load driver). */
export function sharedCpu(part: Pick<NovaPartResult, 'groups'>, r: CellResult): number {
  return part.groups.shared.reduce((s, g) => s + (r.cpuMsPerCycle.byGroup[g] ?? 0), 0);
}
