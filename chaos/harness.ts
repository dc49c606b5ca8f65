/**
 * What every chaos scenario uses: the HTTP API as a client calls it, waiting for workflows with a
 * deadline, what the three stores say about one (instance, volume) pair, the invariant checker, and
 * the pause points of faults/pause.ts.
 */
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { WorkflowNotFoundError } from '@temporalio/client';
import type { Instance, Volume } from '../src/domain/types.ts';
import { attachWorkflowId, detachWorkflowId } from '../src/domain/steps.ts';
import { liveBdm } from '../src/db/block-device-mappings.ts';
import { diskBySerial } from '../src/host/domain-disks.ts';
import { formatDisagreements, inspectInvariants, type Disagreement } from '../src/checker/invariants.ts';
import { claimedPrefix, pausePointFile } from '../faults/pause.ts';
import type { ChaosStack } from './stack.ts';
import type { Random } from './random.ts';
import type { CaseResult } from './report.ts';

export interface Harness {
  stack: ChaosStack;
  rnd: Random;
  seed: number;
  log: (line: string) => void;
  /** Servers (running domains on the stack's host) the scenarios share. */
  servers: Instance[];
  /** Deadline for workflows to close after a fault. */
  deadlineMs: number;
}

// ---- HTTP ------------------------------------------------------------------------------------

export interface HttpAnswer {
  status: number;
  text: string;
  json: unknown;
  ms: number;
  /** The Retry-After header (a 503's or a 429's), when there is one. */
  retryAfter?: string;
}

export interface HttpFailure {
  status: 0;
  error: string;
  timedOut: boolean;
  ms: number;
}

export async function http(
  h: Pick<Harness, 'stack'>,
  method: string,
  urlPath: string,
  o: { body?: unknown; rawBody?: string | Buffer; headers?: Record<string, string>; timeoutMs?: number } = {},
): Promise<HttpAnswer | HttpFailure> {
  const t0 = Date.now();
  const headers: Record<string, string> = { accept: 'application/json', ...o.headers };
  let body: string | Buffer | undefined;
  if (o.rawBody !== undefined) body = o.rawBody;
  else if (o.body !== undefined) {
    body = JSON.stringify(o.body);
    headers['content-type'] ??= 'application/json';
  }
  try {
    const res = await fetch(`${h.stack.apiUrl}${urlPath}`, {
      method,
      headers,
      ...(body !== undefined ? { body } : {}),
      signal: AbortSignal.timeout(o.timeoutMs ?? 30_000),
    });
    const text = await res.text();
    let json: unknown = null;
    try {
      json = text ? JSON.parse(text) : null;
    } catch {
      json = null;
    }
    const retryAfter = res.headers.get('retry-after');
    return { status: res.status, text, json, ms: Date.now() - t0, ...(retryAfter !== null ? { retryAfter } : {}) };
  } catch (err) {
    const e = err as Error & { cause?: Error };
    const timedOut = e.name === 'TimeoutError' || e.name === 'AbortError';
    return { status: 0, error: `${e.message}${e.cause ? ` (${e.cause.message})` : ''}`, timedOut, ms: Date.now() - t0 };
  }
}

export const COMPUTE_MICROVERSION = { 'OpenStack-API-Version': 'compute 2.79' };

/** POST os-volume_attachments (what `openstack server add volume` sends). */
export function apiAttach(h: Harness, server: Instance, volume: Volume, device?: string): Promise<HttpAnswer | HttpFailure> {
  return http(h, 'POST', `/v2.1/servers/${server.uuid}/os-volume_attachments`, {
    headers: COMPUTE_MICROVERSION,
    body: { volumeAttachment: { volumeId: volume.id, ...(device ? { device } : {}) } },
    timeoutMs: 120_000,
  });
}

export function apiDetach(h: Harness, server: Instance, volume: Volume): Promise<HttpAnswer | HttpFailure> {
  return http(h, 'DELETE', `/v2.1/servers/${server.uuid}/os-volume_attachments/${volume.id}`, { headers: COMPUTE_MICROVERSION, timeoutMs: 60_000 });
}

export function describeAnswer(a: HttpAnswer | HttpFailure): string {
  if (a.status === 0) return `no answer (${(a as HttpFailure).error})`;
  return `${a.status} ${(a as HttpAnswer).text.slice(0, 200)}`;
}

// ---- workflows ---------------------------------------------------------------------------------

export type WorkflowEnd = 'COMPLETED' | 'FAILED' | 'TERMINATED' | 'TIMED_OUT' | 'CANCELLED' | 'CONTINUED_AS_NEW' | 'NOT_STARTED' | 'RUNNING';

/** Polls until every workflow id is closed (or was never started), or the deadline passes (then RUNNING). */
export async function waitClosed(h: Harness, ids: string[], deadlineMs = h.deadlineMs): Promise<Record<string, WorkflowEnd>> {
  const deadline = Date.now() + deadlineMs;
  const ends: Record<string, WorkflowEnd> = {};
  for (const id of ids) {
    for (;;) {
      try {
        const d = await h.stack.client.workflow.getHandle(id).describe();
        if (d.status.name !== 'RUNNING') {
          ends[id] = d.status.name as WorkflowEnd;
          break;
        }
      } catch (err) {
        if (err instanceof WorkflowNotFoundError) {
          ends[id] = 'NOT_STARTED';
          break;
        }
        // Temporal is down or restarting: keep asking until the deadline
      }
      if (Date.now() > deadline) {
        ends[id] = 'RUNNING';
        break;
      }
      await sleep(200);
    }
  }
  return ends;
}

/** The TetherState search attribute (`rolled-back`, `failed`, …) of a closed workflow. */
export async function tetherState(h: Harness, id: string): Promise<string | null> {
  try {
    const d = await h.stack.client.workflow.getHandle(id).describe();
    const v = d.searchAttributes?.['TetherState'];
    return Array.isArray(v) ? String(v[0]) : null;
  } catch {
    return null;
  }
}

export async function progressOf(h: Harness, id: string): Promise<{ currentStep: string | null; steps: Array<{ step: string; status: string }> } | null> {
  try {
    return await h.stack.client.workflow.getHandle(id).query<{ currentStep: string | null; steps: Array<{ step: string; status: string }> }>('progress');
  } catch {
    return null;
  }
}

// ---- the stores --------------------------------------------------------------------------------

export interface PairState {
  bdm: string | null;
  volumeStatus: string;
  attachments: string[];
  inConfig: boolean;
  inLive: boolean;
  /** The domain runs (a live XML exists): false when QEMU is gone or the domain was never started. */
  domainActive: boolean;
}

export async function pairState(h: Harness, instanceUuid: string, volumeId: string): Promise<PairState> {
  const bdm = await liveBdm(h.stack.db, instanceUuid, volumeId);
  const volume = await h.stack.blockStorage.getVolume(volumeId);
  const info = await h.stack.libvirt.lookupDomain(instanceUuid);
  const inConfig = info ? diskBySerial(await h.stack.libvirt.getXml(instanceUuid, { inactive: true }), volumeId) !== null : false;
  const inLive = info?.active ? diskBySerial(await h.stack.libvirt.getXml(instanceUuid), volumeId) !== null : false;
  return {
    bdm: bdm?.attachStatus ?? null,
    volumeStatus: volume.status,
    attachments: volume.attachments.filter((a) => a.serverId === instanceUuid).map((a) => a.status),
    inConfig,
    inLive,
    domainActive: info?.active ?? false,
  };
}

/**
 * `attached` (everywhere), `absent` (nowhere), or `in-between: …` naming what disagrees. A domain
 * that does not run (its QEMU killed) has no live XML: there, attached means in the persistent config.
 * `volumeShared`: the volume may be attached to another instance too (multiattach, or the other side of a race).
 */
export function classify(s: PairState, o: { volumeShared?: boolean } = {}): 'attached' | 'absent' | string {
  const attached = s.bdm === 'attached' && s.attachments.length === 1 && s.attachments[0] === 'attached' && s.inConfig && (s.inLive || !s.domainActive)
    && s.volumeStatus === 'in-use';
  const absent = s.bdm === null && s.attachments.length === 0 && !s.inConfig && !s.inLive && (o.volumeShared || s.volumeStatus === 'available');
  if (attached) return 'attached';
  if (absent) return 'absent';
  return `in-between: bdm=${s.bdm ?? 'none'} volume=${s.volumeStatus} attachments=[${s.attachments.join(',')}] disk config=${s.inConfig} live=${s.inLive}${s.domainActive ? '' : ' (domain not running)'}`;
}

/** Retries while a store is unreachable (a part was just restarted). */
export async function retrying<T>(fn: () => Promise<T>, timeoutMs = 60_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await fn();
    } catch (err) {
      if (Date.now() > deadline) throw err;
      await sleep(500);
    }
  }
}

export interface CheckOutcome {
  disagreements: Disagreement[];
  inFlight: Disagreement[];
  text: string;
}

/** The invariant checker on the stack's host, asked again while findings are still in flight (up to `timeoutMs`). */
export async function check(h: Harness, timeoutMs = 30_000, host = h.stack.host): Promise<CheckOutcome> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const report = await retrying(() =>
      inspectInvariants({
        db: h.stack.db,
        blockStorage: h.stack.blockStorage,
        libvirt: h.stack.libvirt,
        client: h.stack.client,
        controlTaskQueue: h.stack.controlTaskQueue,
        host,
      }),
    );
    if (report.inFlight.length === 0 || Date.now() > deadline) {
      return {
        disagreements: report.disagreements,
        inFlight: report.inFlight,
        text: formatDisagreements([...report.disagreements, ...report.inFlight]),
      };
    }
    await sleep(1000);
  }
}

/** Workflows of this stack still running. */
export async function runningWorkflows(h: Harness): Promise<string[]> {
  const ids: string[] = [];
  for await (const w of h.stack.client.workflow.list({ query: `TaskQueue = '${h.stack.controlTaskQueue}' AND ExecutionStatus = 'Running'` })) ids.push(w.workflowId);
  return ids;
}

// ---- pause points ------------------------------------------------------------------------------

export class PausePoint {
  private claimedFile: string | undefined;

  constructor(
    private readonly dir: string,
    readonly step: string,
    readonly phase: 'before' | 'after',
  ) {}

  async arm(maxMs = 120_000): Promise<void> {
    await fsp.writeFile(pausePointFile(this.dir, this.step, this.phase), JSON.stringify({ maxMs }));
  }

  /** Waits until an activity holds the point; false when `until` says to stop waiting first. */
  async waitClaimed(timeoutMs: number, until?: () => boolean): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    const prefix = claimedPrefix(this.step, this.phase);
    while (Date.now() < deadline) {
      const found = fs.readdirSync(this.dir).find((f) => f.startsWith(prefix));
      if (found) {
        this.claimedFile = path.join(this.dir, found);
        return true;
      }
      if (until?.()) return false;
      await sleep(5);
    }
    return false;
  }

  get claimedByPid(): number | undefined {
    return this.claimedFile ? Number(this.claimedFile.slice(this.claimedFile.lastIndexOf('.') + 1)) : undefined;
  }

  /** Lets the paused activity go on (no-op when nothing holds it) and disarms the point. */
  async release(): Promise<void> {
    await fsp.rm(pausePointFile(this.dir, this.step, this.phase), { force: true });
    if (this.claimedFile) await fsp.rm(this.claimedFile, { force: true });
  }
}

/** Pause points each step's activity offers (the FaultInjector.check calls in activities/). */
export const CHECK_POINTS: Record<string, ReadonlyArray<'before' | 'after'>> = {
  validate: ['before', 'after'],
  reserveDeviceName: ['before', 'after'],
  reserveVolume: ['before', 'after'],
  getHostConnector: ['before'],
  initializeConnection: ['before', 'after'],
  attachDisk: ['before', 'after'],
  completeAttachment: ['before', 'after'],
  validateDetach: ['before'],
  beginDetaching: ['before'],
  detachDisk: ['before', 'after'],
  deleteAttachment: ['before'],
  destroyBdm: ['before'],
};

export { attachWorkflowId, detachWorkflowId };

// ---- results -----------------------------------------------------------------------------------

export function result(h: Harness, scenario: string, run: number, r: Omit<CaseResult, 'scenario' | 'run' | 'seed'>): CaseResult {
  return { scenario, run, seed: h.seed, ...r };
}

/** Volumes named after the scenario, so a leftover is easy to trace back. */
export async function newVolume(h: Harness, name: string, o: { multiattach?: boolean } = {}): Promise<Volume> {
  return retrying(() => h.stack.service.createVolume({ name, size: 1, multiattach: o.multiattach ?? false }));
}

/** Attach through the service (not a fault case) and wait for the result. */
export async function attachAndWait(h: Harness, server: Instance, volume: Volume, device?: string): Promise<void> {
  const started = await h.stack.service.attachVolume({ server: server.uuid, volume: volume.id, device: device ?? null });
  await h.stack.service.awaitAttach(started.handle);
}

export async function detachAndWait(h: Harness, server: Instance, volume: Volume): Promise<void> {
  const { handle } = await h.stack.service.detachVolume({ server: server.uuid, volume: volume.id });
  await h.stack.service.awaitDetach(handle);
}

/** After a case: detach what it left attached (tether must still work), then delete its volumes. Returns problems. */
export async function tidy(h: Harness, pairs: Array<{ server: Instance; volume: Volume }>): Promise<string[]> {
  const problems: string[] = [];
  for (const { server, volume } of pairs) {
    try {
      const s = await retrying(() => pairState(h, server.uuid, volume.id));
      if (s.bdm !== null) await detachAndWait(h, server, volume);
    } catch (err) {
      problems.push(`after recovery, detaching ${volume.id} from ${server.uuid} failed: ${(err as Error).message}`);
    }
  }
  for (const volume of new Set(pairs.map((p) => p.volume))) {
    await h.stack.service.deleteVolume(volume.id).catch(() => undefined);
  }
  return problems;
}

// ---- convergence -------------------------------------------------------------------------------

/** What the pair looks like at the end, named from the operation's side. */
export function outcomeOf(op: 'attach' | 'detach', state: string): string {
  if (op === 'attach') return state === 'attached' ? 'attached' : state === 'absent' ? 'rolled-back' : state;
  return state === 'absent' ? 'detached' : state === 'attached' ? 'kept-attached' : state;
}

/** Where the pair must be for each way the workflow ended (a forward fault: either end is fine if the stores agree). */
export const EXPECTED_BY_END: Record<'attach' | 'detach', Partial<Record<WorkflowEnd, 'attached' | 'absent'>>> = {
  attach: { COMPLETED: 'attached', FAILED: 'absent', NOT_STARTED: 'absent' },
  detach: { COMPLETED: 'absent', FAILED: 'attached', NOT_STARTED: 'attached' },
};

export interface ConvergeRequest {
  op: 'attach' | 'detach';
  server: Instance;
  volume: Volume;
  /** The workflow the case watches (the attach's or the detach's id). */
  watchedId: string;
  /** The API request the case sent (awaited, not required to succeed). */
  request: Promise<unknown>;
  /** Its answer once it came. */
  answer: () => HttpAnswer | HttpFailure | undefined;
  /** When the fault ended or struck: time to converge counts from here. */
  since: number;
  /**
   * `by-end` (default): attached or absent as the workflow's end says; `rolled-back`: the workflow
   * FAILED with TetherState rolled-back and the pair is where it was before the operation.
   */
  expect?: 'by-end' | 'rolled-back';
  /** Also fail when a FAILED workflow's TetherState says its rollback did not finish (default true). */
  requireRollbackFinished?: boolean;
  /** How the still-running problem reads after the deadline, e.g. `after the link healed`. */
  runningAfter?: string;
  /** After convergence, before the tidy-up: more problems (e.g. the guest's data). */
  verify?: (state: string) => Promise<string[]>;
  /** Once the workflow closed, before the stores are read: waits for what must follow the fault (a power-state sync); returns problems. */
  settle?: () => Promise<string[]>;
  notes: string[];
}

/**
 * The end of every fault case: wait for the watched workflow, settle the stack, read the three
 * stores and the checker, require them to agree with how the workflow ended, tidy the pair up
 * (tether must still work) and return the case's verdict fields.
 */
export async function convergePair(h: Harness, r: ConvergeRequest): Promise<Omit<CaseResult, 'scenario' | 'run' | 'seed' | 'triggered'>> {
  const { op, server, volume, watchedId, notes } = r;
  // The answer first: until the API has answered, "no such workflow" may only mean "not started yet"
  // (a case that sends the request and converges at once would read the stores mid-operation).
  await r.request;
  const ends = await waitClosed(h, [watchedId]);
  const end = ends[watchedId]!;
  await h.stack.settled();
  const settleProblems = r.settle ? await r.settle() : [];
  const state = classify(await retrying(() => pairState(h, server.uuid, volume.id)));
  const checked = await check(h);
  const tState = end === 'FAILED' || end === 'COMPLETED' ? await tetherState(h, watchedId) : null;
  const convergeMs = end === 'RUNNING' ? null : Date.now() - r.since;
  const answer = r.answer();
  notes.push(`workflow ${end}${tState && (end === 'FAILED' || r.expect === 'rolled-back') ? ` (${tState})` : ''}; API answered ${answer ? describeAnswer(answer) : 'nothing'}`);

  const problems: string[] = [...settleProblems];
  if (end === 'RUNNING') problems.push(`workflow ${watchedId} still running ${r.runningAfter ?? `after ${h.deadlineMs / 1000} s`}`);
  else if (r.expect === 'rolled-back') {
    const before = op === 'attach' ? 'absent' : 'attached';
    if (end !== 'FAILED') problems.push(`workflow ended ${end}, expected FAILED (rolled back)`);
    if (end === 'FAILED' && tState !== 'rolled-back') problems.push(`the rollback did not finish (TetherState=${tState})`);
    if (state !== before) problems.push(`after the rollback the stores say ${state}, expected ${before} as before the ${op}`);
  } else {
    const expected = EXPECTED_BY_END[op][end];
    if (expected === undefined) problems.push(`workflow ended ${end}`);
    else if (state !== expected) problems.push(`workflow ${end} but the stores say ${state}`);
    if ((r.requireRollbackFinished ?? true) && end === 'FAILED' && tState === 'failed') problems.push('the rollback did not finish (TetherState=failed)');
  }
  if (checked.disagreements.length > 0 || checked.inFlight.length > 0) problems.push(`checker:\n${checked.text}`);
  const leaked = checked.disagreements.length + checked.inFlight.length + (state.startsWith('in-between') ? 1 : 0) + (end === 'RUNNING' ? 1 : 0);

  if (r.verify) {
    try {
      problems.push(...(await r.verify(state)));
    } catch (err) {
      problems.push(`the guest's data could not be verified: ${(err as Error).message}`);
    }
  }
  problems.push(...(await tidy(h, [{ server, volume }])));

  return {
    passed: problems.length === 0,
    converged: end !== 'RUNNING' && checked.disagreements.length === 0 && checked.inFlight.length === 0,
    outcome: outcomeOf(op, state),
    leaked,
    convergeMs,
    notes,
    ...(problems.length ? { failure: problems.join('; ') } : {}),
  };
}
