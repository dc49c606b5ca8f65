/**
 * `npm run nova:kills` — the same kill at the same step, in a real Nova and in tether (docs/nova.md).
 *
 * One Cinder (loop devices) serves both; Nova 26 runs from Debian's packages (test/support/nova.ts)
 * with pause points inside nova-compute (test/support/python/tether_nova_pause.py); tether runs as
 * separate processes (chaos/stack.ts) on that Cinder, with its own pause points (src/fault-pause.ts:
 * the same files, the same protocol). For each point of the attach and the detach, on each system:
 *
 *   1. a new volume (a detach case attaches it first, normally);
 *   2. the point is armed and the request sent through the system's API (POST / DELETE
 *      os-volume_attachments at 2.79), as a client sends it;
 *   3. when the call that does the step reaches the point, it stands still (exactly there), and the
 *      process holding it gets SIGKILL: nova-compute in Nova (every point is inside it); in tether the
 *      process that runs the step — the compute agent (host steps) or the control-plane worker;
 *   4. that process is started again (Nova: until its Service.start returned; tether: its ready line);
 *   5. the system settles: tether until the operation's workflow closed; Nova (which has nothing that
 *      resumes an operation) until the API answered and the pair's state stood still for 10 s;
 *   6. what it left is read: the BDM, the Cinder volume and its attachment, the disk in the domain's
 *      persistent and live XML (classified attached / absent / in-between), and tether's invariant
 *      checker over the system's host (for Nova pointed at Nova's database, chaos/nova-side.ts);
 *   7. whether the pair is usable afterwards without an operator: detach (when anything is left)
 *      and attach and detach again, each through the API, each to a consistent end.
 *
 *   --only=REGEX      only points whose name ("attach reserveDeviceName after") matches
 *   --systems=a,b     nova, tether (default both)
 *   --out=FILE        the results (default docs/nova/kills.json, then `npm run docs` renders the table in
 *                     docs/nova.md from it: region nova-kills, chaos/nova-kills-report.ts)
 *   --no-docs         write bench-results/nova-kills.json only
 *   --report=FILE     only print the table of a results file
 *   --keep            keep the stacks' folders (logs) afterwards
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { DefaultLogger, Runtime } from '@temporalio/worker';
import { projectRoot } from '../src/config.ts';
import { CinderBlockStorage } from '../src/blockstorage/cinder/cinder-block-storage.ts';
import { LibvirtConnection } from '../src/libvirt/binding.ts';
import type { Instance } from '../src/domain/types.ts';
import { cinderAvailability, startCinder, type CinderHandle } from '../test/support/cinder.ts';
import { novaAvailability, startNova, type NovaHandle } from '../test/support/nova.ts';
import {
  apiAttach,
  apiDetach,
  attachWorkflowId,
  check,
  classify,
  detachWorkflowId,
  describeAnswer,
  pairState,
  PausePoint,
  waitClosed,
  type Harness,
  type HttpAnswer,
  type HttpFailure,
  type PairState,
} from './harness.ts';
import { checkNova, novaPairState } from './nova-side.ts';
import { killTable, type KillOutcome, type KillPoint, type KillResults, type Op, type SystemName } from './nova-kills-report.ts';
import { writeDocs } from '../scripts/generate-docs.ts';
import type { Disagreement } from '../src/checker/invariants.ts';
import { Random } from './random.ts';
import { ChaosStack } from './stack.ts';

/** The points, in the order of the operations (the issue's: before/after the reservation, the libvirt call, before completion). */
export const KILL_POINTS: KillPoint[] = [
  { op: 'attach', step: 'reserveDeviceName', phase: 'before', what: 'before the device name is reserved on the host (Nova: entering reserve_block_device_name)' },
  { op: 'attach', step: 'reserveDeviceName', phase: 'after', what: 'after the reservation, before its answer (Nova: BDM written, RPC reply not sent)' },
  { op: 'attach', step: 'initializeConnection', phase: 'after', what: 'connection initialized at Cinder, nothing plugged (Nova: attachment_update returned)' },
  { op: 'attach', step: 'attachDisk', phase: 'before', what: 'just before the libvirt attach call (Nova: Guest.attach_device)' },
  { op: 'attach', step: 'attachDisk', phase: 'after', what: 'just after the libvirt attach call: disk plugged, not recorded' },
  { op: 'attach', step: 'completeAttachment', phase: 'before', what: 'before the attachment is completed at Cinder (in-use)' },
  { op: 'detach', step: 'detachDisk', phase: 'before', what: 'before the libvirt detach (Nova: entering LibvirtDriver.detach_volume)' },
  { op: 'detach', step: 'detachDisk', phase: 'after', what: 'just after the disk left the domain, nothing recorded' },
  { op: 'detach', step: 'deleteAttachment', phase: 'before', what: 'before the Cinder attachment is deleted' },
  { op: 'detach', step: 'destroyBdm', phase: 'before', what: 'before the BDM is deleted (Nova: BlockDeviceMapping.destroy, through the conductor)' },
];

export function pointName(p: KillPoint): string {
  return `${p.op} ${p.step} ${p.phase}`;
}

// ---- one system, as the runner sees it ----

interface Subject {
  name: SystemName;
  pauseDir: string;
  serverId: string;
  attach(volumeId: string): Promise<HttpAnswer | HttpFailure>;
  detach(volumeId: string): Promise<HttpAnswer | HttpFailure>;
  pair(volumeId: string): Promise<PairState>;
  /** Kills the process that holds the pause (pid), restarts it; returns its name. */
  killAndRestart(pid: number | undefined, release: () => Promise<void>): Promise<string>;
  /** Waits until the operation on the volume has settled (see the header). */
  settle(op: Op, volumeId: string, request: Promise<unknown>): Promise<void>;
  /** The invariant checker's findings about this volume on this system's server (or the server alone). */
  findings(volumeId: string): Promise<string[]>;
}

const about = (serverId: string, volumeId: string) => (d: Disagreement) =>
  d.volumeId === volumeId || (d.volumeId === undefined && d.instanceUuid === serverId);

const NOVA_SETTLE_QUIET_MS = 10_000;
const SETTLE_MAX_MS = 240_000;

function novaSubject(nova: NovaHandle, server: string, blockStorage: CinderBlockStorage, libvirt: LibvirtConnection, tether: ChaosStack, pauseDir: string): Subject {
  const call = async (method: string, p: string, body?: unknown): Promise<HttpAnswer | HttpFailure> => {
    const t0 = Date.now();
    try {
      const r = await nova.api(method, p, { microversion: '2.79', ...(body ? { body } : {}), timeoutMs: 180_000 });
      return { status: r.status, text: typeof r.body === 'string' ? r.body : JSON.stringify(r.body ?? ''), json: r.body ?? null, ms: Date.now() - t0 };
    } catch (err) {
      return { status: 0, error: (err as Error).message, timedOut: (err as Error).name === 'TimeoutError', ms: Date.now() - t0 };
    }
  };
  const pair = (volumeId: string) => novaPairState(nova, blockStorage, libvirt, server, volumeId);
  return {
    name: 'nova',
    pauseDir,
    serverId: server,
    attach: (volumeId) => call('POST', `/servers/${server}/os-volume_attachments`, { volumeAttachment: { volumeId } }),
    detach: (volumeId) => call('DELETE', `/servers/${server}/os-volume_attachments/${volumeId}`),
    pair,
    async killAndRestart(pid, release) {
      const compute = nova.pid('compute');
      if (pid !== compute) throw new Error(`the pause is held by pid ${pid}, not nova-compute (${compute})`);
      await nova.killCompute();
      await release();
      await nova.restartCompute();
      return 'nova-compute';
    },
    async settle(_op, volumeId, request) {
      await request;
      // nothing in Nova resumes an interrupted attach or detach: settled = the stores stand still
      const deadline = Date.now() + SETTLE_MAX_MS;
      let last = JSON.stringify(await pair(volumeId));
      let since = Date.now();
      while (Date.now() - since < NOVA_SETTLE_QUIET_MS && Date.now() < deadline) {
        await sleep(1000);
        const now = JSON.stringify(await pair(volumeId));
        if (now !== last) {
          last = now;
          since = Date.now();
        }
      }
    },
    async findings(volumeId) {
      const r = await checkNova(nova, { blockStorage, libvirt, client: tether.client });
      return r.disagreements.filter(about(server, volumeId)).map((d) => `${d.kind}: ${d.detail}`);
    },
  };
}

function tetherSubject(h: Harness, server: Instance): Subject {
  const stack = h.stack;
  const volume = (id: string) => ({ id }) as Parameters<typeof apiAttach>[2];
  return {
    name: 'tether',
    pauseDir: stack.pauseDir,
    serverId: server.uuid,
    attach: (volumeId) => apiAttach(h, server, volume(volumeId)),
    detach: (volumeId) => apiDetach(h, server, volume(volumeId)),
    pair: (volumeId) => pairState(h, server.uuid, volumeId),
    async killAndRestart(pid, release) {
      const target = pid === stack.workers['compute-agent'].pid ? 'compute-agent' : pid === stack.workers['control-plane'].pid ? 'control-plane' : undefined;
      if (!target) throw new Error(`the pause is held by pid ${pid}, neither the compute agent nor the control-plane worker`);
      await stack.kill(target);
      await release();
      await stack.restart(target);
      return target === 'compute-agent' ? 'compute agent' : 'control-plane worker';
    },
    async settle(op, volumeId, request) {
      const id = op === 'attach' ? attachWorkflowId(server.uuid, volumeId) : detachWorkflowId(server.uuid, volumeId);
      await waitClosed(h, [id], SETTLE_MAX_MS);
      await request;
      await stack.settled();
    },
    async findings(volumeId) {
      const r = await check(h);
      return [...r.disagreements, ...r.inFlight].filter(about(server.uuid, volumeId)).map((d) => `${d.kind}: ${d.detail}`);
    },
  };
}

// ---- one case ----

async function waitState(s: Subject, volumeId: string, want: 'attached' | 'absent', timeoutMs = 120_000): Promise<string> {
  const deadline = Date.now() + timeoutMs;
  let state = '';
  while (Date.now() < deadline) {
    state = classify(await s.pair(volumeId));
    if (state === want) return state;
    await sleep(250);
  }
  return state;
}

const short = (a: HttpAnswer | HttpFailure) => describeAnswer(a).replace(/\s+/g, ' ').slice(0, 160);

/** Detach (when anything is left), attach, detach — each through the API, each to a consistent end. */
async function afterwards(s: Subject, volumeId: string, state: string): Promise<{ usable: boolean; steps: string[] }> {
  const steps: string[] = [];
  const plan: Op[] = state === 'absent' ? ['attach', 'detach'] : ['detach', 'attach', 'detach'];
  for (const op of plan) {
    const answer = await (op === 'attach' ? s.attach(volumeId) : s.detach(volumeId));
    const accepted = answer.status === 200 || answer.status === 202;
    const end = accepted ? await waitState(s, volumeId, op === 'attach' ? 'attached' : 'absent') : classify(await s.pair(volumeId));
    steps.push(`${op}: ${accepted ? answer.status : short(answer)} → ${end}`);
    if (!accepted || end !== (op === 'attach' ? 'attached' : 'absent')) return { usable: false, steps };
  }
  return { usable: true, steps };
}

async function runCase(s: Subject, point: KillPoint, cinder: CinderHandle, log: (line: string) => void): Promise<KillOutcome> {
  const notes: string[] = [];
  const name = pointName(point);
  const created = await cinder.api<{ volume: { id: string } }>('POST', '/volumes', { volume: { size: 1, name: `kill-${s.name}-${point.step}-${point.phase}` } });
  if (created.status !== 202) throw new Error(`creating a volume: ${created.status} ${JSON.stringify(created.body)}`);
  const volumeId = created.body.volume.id;
  for (const deadline = Date.now() + 60_000; ; ) {
    const v = await cinder.api<{ volume: { status: string } }>('GET', `/volumes/${volumeId}`);
    if (v.body.volume.status === 'available') break;
    if (Date.now() > deadline) throw new Error(`volume ${volumeId}: ${v.body.volume.status}`);
    await sleep(100);
  }
  if (point.op === 'detach') {
    const a = await s.attach(volumeId);
    if (a.status !== 200 || (await waitState(s, volumeId, 'attached')) !== 'attached') throw new Error(`${s.name}: the attach before the detach case failed: ${short(a)}`);
  }

  const pause = new PausePoint(s.pauseDir, point.step, point.phase);
  await pause.arm(300_000);
  let answer: HttpAnswer | HttpFailure | undefined;
  const request = (point.op === 'attach' ? s.attach(volumeId) : s.detach(volumeId)).then((a) => (answer = a));
  // an attach's API answers 200 at the reservation, before the later points: only a refusal ends the wait
  const triggered = await pause.waitClaimed(180_000, () => answer !== undefined && (answer.status === 0 || answer.status >= 400));
  let killed: string | null = null;
  const killedAt = Date.now();
  if (triggered) {
    killed = await s.killAndRestart(pause.claimedByPid, () => pause.release());
    log(`    ${s.name}: held at ${name}, killed ${killed} and restarted it (${Math.round((Date.now() - killedAt) / 1000)} s)`);
  } else {
    await pause.release();
    notes.push(`the point was never reached${answer ? ` (API: ${short(answer)})` : ''}`);
  }
  await s.settle(point.op, volumeId, request);
  const settleMs = Date.now() - killedAt;
  const stores = await s.pair(volumeId);
  const state = classify(stores);
  const findings = await s.findings(volumeId);
  const after = await afterwards(s, volumeId, state);
  // leave nothing behind: detached and deleted when possible (the Cinder's stop removes the rest)
  if (classify(await s.pair(volumeId)) !== 'absent') notes.push('still attached or in-between after the afterwards steps; left for the end of the run');
  else await cinder.api('DELETE', `/volumes/${volumeId}`);
  return { system: s.name, point: name, triggered, killed, answer: answer ? short(answer) : 'no answer', state, stores, findings, settleMs, afterwards: after, notes };
}

// ---- the table ----

// ---- main ----

function arg(name: string): string | undefined {
  return process.argv.slice(2).find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3);
}

async function main(): Promise<void> {
  const log = (line: string) => process.stdout.write(`${line}\n`);
  const report = arg('report');
  if (report) {
    const results = JSON.parse(fs.readFileSync(report, 'utf8')) as KillResults;
    log(`${killTable(results)}`);
    return;
  }
  const only = arg('only') ? new RegExp(arg('only')!, 'i') : undefined;
  const systems = new Set((arg('systems') ?? 'nova,tether').split(',') as SystemName[]);
  const noDocs = process.argv.includes('--no-docs');
  const keep = process.argv.includes('--keep');
  const out = path.resolve(arg('out') ?? path.join(projectRoot, noDocs ? 'bench-results' : 'docs/nova', noDocs ? 'nova-kills.json' : 'kills.json'));
  const points = KILL_POINTS.filter((p) => !only || only.test(pointName(p)));

  for (const a of [await cinderAvailability('single'), await novaAvailability()]) {
    if (!a.available) {
      log(`cannot run: ${a.reason}`);
      process.exit(1);
    }
  }
  Runtime.install({ logger: new DefaultLogger('ERROR') });
  const t0 = Date.now();
  log(`nova:kills — ${points.length} points × ${[...systems].join(' and ')}; starting Cinder, Nova and tether…`);
  const cinder = await startCinder({ mode: 'single', driver: 'loop' });
  const id = randomBytes(3).toString('hex');
  const novaPause = path.join(cinder.stateDir, 'nova-pause');
  fs.mkdirSync(novaPause);
  const blockStorage = new CinderBlockStorage(cinder.config());
  const stack = new ChaosStack({ id, log, keep, blockStorage: { env: cinder.env, client: blockStorage } });
  let nova: NovaHandle | undefined;
  let libvirt: LibvirtConnection | undefined;
  let stopping = false;
  const stopAll = async () => {
    if (stopping) return;
    stopping = true;
    log('stopping Nova, tether and Cinder…');
    await libvirt?.close().catch(() => undefined);
    await Promise.allSettled([nova?.stop(), stack.stop()]);
    await cinder.stop();
  };
  for (const signal of ['SIGINT', 'SIGTERM'] as const) process.once(signal, () => void stopAll().finally(() => process.exit(130)));
  try {
    [nova] = await Promise.all([startNova({ cinder, pauseDir: novaPause }), stack.start()]);
    libvirt = await LibvirtConnection.open(process.env.LIBVIRT_URI ?? 'qemu:///system');
    const { instance, handle } = await stack.service.createServer({ name: 'kills-vm' });
    await handle.result();
    const novaServer = await nova.createServer('kills-vm');
    const h: Harness = { stack, rnd: new Random(1), seed: 1, log, servers: [instance], deadlineMs: SETTLE_MAX_MS };
    const subjects: Subject[] = [];
    if (systems.has('nova')) subjects.push(novaSubject(nova, novaServer.id, blockStorage, libvirt, stack, novaPause));
    if (systems.has('tether')) subjects.push(tetherSubject(h, instance));
    log(`  ✓ ready after ${Math.round((Date.now() - t0) / 1000)} s (Nova server ${novaServer.id}, tether server ${instance.uuid})`);

    const results: KillResults = {
      meta: {
        date: new Date().toISOString(),
        commit: execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: projectRoot }).toString().trim(),
        nova: execFileSync('dpkg-query', ['-W', '-f=${Version}', 'nova-common']).toString(),
        cinder: execFileSync('dpkg-query', ['-W', '-f=${Version}', 'cinder-common']).toString(),
        libvirt: `libvirt ${execFileSync('dpkg-query', ['-W', '-f=${Version}', 'libvirt-daemon']).toString()}`,
        rpcResponseTimeoutS: 60,
        settleQuietS: NOVA_SETTLE_QUIET_MS / 1000,
      },
      points: points.map((p) => ({ ...p, name: pointName(p) })),
      outcomes: [],
    };
    for (const point of points) {
      log(`[${Math.round((Date.now() - t0) / 1000)} s] ${pointName(point)}: ${point.what}`);
      // both systems at once: their servers, volumes and pause folders are their own
      const outcomes = await Promise.all(
        subjects.map((s) =>
          runCase(s, point, cinder, log).catch((err: unknown): KillOutcome => ({
            system: s.name,
            point: pointName(point),
            triggered: false,
            killed: null,
            answer: 'no answer',
            state: 'error',
            stores: { bdm: null, volumeStatus: 'unknown', attachments: [], inConfig: false, inLive: false, domainActive: false },
            findings: [],
            settleMs: 0,
            afterwards: { usable: false, steps: [] },
            notes: [`the case failed: ${(err as Error).stack ?? String(err)}`],
          })),
        ),
      );
      for (const o of outcomes) {
        results.outcomes.push(o);
        log(`    ${o.system.padEnd(6)} ${o.state}; API ${o.answer}; ${o.findings.length ? `checker: ${o.findings.join(' | ')}` : 'checker clean'}; afterwards ${o.afterwards.usable ? 'usable' : `NOT usable: ${o.afterwards.steps.join(', ')}`}${o.notes.length ? `; ${o.notes.join('; ')}` : ''}`);
      }
    }
    fs.mkdirSync(path.dirname(out), { recursive: true });
    fs.writeFileSync(out, `${JSON.stringify(results, null, 1)}\n`);
    log(`wrote ${path.relative(projectRoot, out)}`);
    if (!noDocs) log(`npm run docs: rewrote ${writeDocs().join(', ') || 'nothing'}`);
    log(`\n${killTable(results)}\n\ndone in ${Math.round((Date.now() - t0) / 1000)} s`);
  } finally {
    await stopAll();
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
