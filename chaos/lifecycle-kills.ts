/**
 * Kills during the other sagas that move volumes: shelve, shelve-offload, unshelve, delete, migrate
 * (to a second compute agent on the same libvirtd) and extend. Each case gets a fresh server with
 * one volume attached, brought to the state the saga starts from (shelved, offloaded), then starts
 * the saga, pauses it at one fault point (activities: the instance-task steps, the domain steps of
 * activities/host/domains.ts, the volume steps), SIGKILLs the process running that step (or
 * Temporal, or PostgreSQL), restarts it, and requires:
 *   - the workflow closed (COMPLETED or FAILED, never still running);
 *   - the instance out of its task (task_state empty) in the state the saga's end names: shelve
 *     → shelved, offload → shelved_offloaded without a host, unshelve → active, delete → deleted,
 *     migrate → on the target host, extend → the volume's new size; a FAILED saga → where it began;
 *   - the volume consistent with it: attached everywhere on a running server, reserved for an
 *     offloaded one, available after a delete;
 *   - the invariant checker clean; and tether still works (the server is deleted afterwards).
 * Phases: before (paused at the step's `before` check), during (paused at its `after` check: the
 * step's effect is done, Temporal does not know; with only a `before` check: released, then killed
 * 0–30 ms later).
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { Instance, Volume } from '../src/domain/types.ts';
import { extendWorkflowId } from '../src/domain/steps.ts';
import { getInstance } from '../src/db/instances.ts';
import { attachAndWait, check, classify, newVolume, pairState, PausePoint, result, retrying, tetherState, waitClosed, type Harness } from './harness.ts';
import type { CaseResult } from './report.ts';
import type { Target } from './stack.ts';

export type LifecycleSaga = 'shelve' | 'shelve-offload' | 'unshelve' | 'delete' | 'migrate' | 'extend';
type Runner = 'control-plane' | 'compute-agent' | 'compute-agent-b';
type LifecycleTarget = Target | 'compute-agent-b';

interface SagaStep {
  step: string;
  checks: ReadonlyArray<'before' | 'after'>;
  runner: Runner;
}

const B = ['before'] as const;
const BA = ['before', 'after'] as const;

/** The fault points each saga passes, in order (workflows/server-lifecycle.ts, workflows/extend-volume.ts). */
export const LIFECYCLE_STEPS: Record<LifecycleSaga, readonly SagaStep[]> = {
  shelve: [
    { step: 'beginInstanceTask', checks: B, runner: 'control-plane' },
    { step: 'stopDomain', checks: BA, runner: 'compute-agent' },
    { step: 'finishInstanceTask', checks: BA, runner: 'control-plane' },
  ],
  'shelve-offload': [
    { step: 'reReserveAttachment', checks: B, runner: 'control-plane' },
    { step: 'destroyDomain', checks: BA, runner: 'compute-agent' },
    { step: 'finishInstanceTask', checks: BA, runner: 'control-plane' },
  ],
  unshelve: [
    { step: 'setInstanceHost', checks: BA, runner: 'control-plane' },
    { step: 'spawnDomain', checks: BA, runner: 'compute-agent' },
    { step: 'initializeConnection', checks: BA, runner: 'control-plane' },
    { step: 'attachDisk', checks: BA, runner: 'compute-agent' },
    { step: 'completeAttachment', checks: BA, runner: 'control-plane' },
    { step: 'finishInstanceTask', checks: BA, runner: 'control-plane' },
  ],
  delete: [
    { step: 'destroyDomain', checks: BA, runner: 'compute-agent' },
    { step: 'deleteAttachment', checks: B, runner: 'control-plane' },
    { step: 'destroyBdm', checks: B, runner: 'control-plane' },
    { step: 'markInstanceDeleted', checks: BA, runner: 'control-plane' },
  ],
  migrate: [
    { step: 'exportDomain', checks: B, runner: 'compute-agent' },
    { step: 'destroyDomain', checks: BA, runner: 'compute-agent' },
    { step: 'setInstanceHost', checks: BA, runner: 'control-plane' },
    { step: 'importDomain', checks: BA, runner: 'compute-agent-b' },
    { step: 'finishInstanceTask', checks: BA, runner: 'control-plane' },
  ],
  extend: [
    { step: 'validateExtend', checks: B, runner: 'control-plane' },
    { step: 'beginExtending', checks: BA, runner: 'control-plane' },
    { step: 'growVolume', checks: BA, runner: 'control-plane' },
    { step: 'resizeDisk', checks: BA, runner: 'compute-agent' },
    { step: 'finishExtending', checks: BA, runner: 'control-plane' },
    { step: 'recordVolumeSize', checks: B, runner: 'control-plane' },
  ],
};

export interface LifecycleKillCase {
  saga: LifecycleSaga;
  step: SagaStep;
  phase: 'before' | 'during';
  target: LifecycleTarget;
}

export function lifecycleCaseName(c: LifecycleKillCase): string {
  return `kill ${c.saga} ${c.step.step} ${c.phase} ${c.target}`;
}

/** Every saga × step × before/during × (the process running the step, Temporal, PostgreSQL). */
export function lifecycleMatrix(): LifecycleKillCase[] {
  const cases: LifecycleKillCase[] = [];
  for (const [saga, steps] of Object.entries(LIFECYCLE_STEPS) as Array<[LifecycleSaga, readonly SagaStep[]]>) {
    for (const step of steps) {
      for (const phase of ['before', 'during'] as const) {
        for (const target of [step.runner, 'temporal', 'postgres'] as const) cases.push({ saga, step, phase, target });
      }
    }
  }
  return cases;
}

function workflowIdOf(saga: LifecycleSaga, server: Instance, volume: Volume): string {
  const action = { shelve: 'shelveServer', 'shelve-offload': 'shelveOffloadServer', unshelve: 'unshelveServer', delete: 'deleteServer', migrate: 'migrateServer', extend: '' }[saga];
  return saga === 'extend' ? extendWorkflowId(server.uuid, volume.id) : `${action}-${server.uuid}`;
}

/** Starts the saga (not waiting for it); its promise never rejects (the runner reads the workflow). */
function startSaga(h: Harness, saga: LifecycleSaga, server: Instance, volume: Volume): Promise<string> {
  const s = h.stack.service;
  const run = async (): Promise<unknown> => {
    switch (saga) {
      case 'shelve': return s.shelveServer(server.uuid);
      case 'shelve-offload': return s.shelveOffloadServer(server.uuid);
      case 'unshelve': return s.unshelveServer(server.uuid, h.stack.host);
      case 'delete': return s.deleteServer(server.uuid);
      case 'migrate': return s.migrateServer(server.uuid, h.stack.hostB);
      case 'extend': {
        const { started } = await s.extendVolume({ volume: volume.id, newSize: 2, inUse: true });
        return started ? s.awaitExtend(started.handle) : undefined;
      }
    }
  };
  return run().then(() => 'ok', (err: Error) => `${err.name}: ${err.message.slice(0, 200)}`);
}

/** What a case with a real guest adds (chaos/guest-kills.ts): the bus, data written first, the guest's view checked at the end. */
export interface LifecycleHooks {
  device?: string;
  /** After the volume was attached (before the server is brought to the saga's start). */
  prepare?: (server: Instance, volume: Volume) => Promise<void>;
  /** After convergence, on a server that still exists: problems with the guest's data. */
  verify?: (server: Instance, volume: Volume) => Promise<string[]>;
}

export async function runLifecycleKill(h: Harness, c: LifecycleKillCase, run: number, hooks: LifecycleHooks = {}): Promise<CaseResult> {
  const scenario = `${hooks.verify ? `guest ${hooks.device ? 'virtio' : 'scsi'} ` : ''}${lifecycleCaseName(c)}`;
  const notes: string[] = [];
  const why = h.stack.cannotKill(c.target) ?? (c.saga === 'migrate' ? h.stack.cannotKill('compute-agent-b') : undefined);
  if (why) return result(h, scenario, run, { passed: false, skipped: true, converged: false, outcome: 'skipped', leaked: 0, convergeMs: null, notes: [why] });

  // A server of its own, one volume attached, brought to where the saga starts.
  const { instance, handle } = await h.stack.service.createServer({ name: `chaos-${c.saga}-${c.step.step}`.slice(0, 60) });
  await handle.result();
  const server = await h.stack.service.resolveServer(instance.uuid);
  const volume = await newVolume(h, `chaos-${c.saga}-${c.step.step}-${c.phase}-${c.target}`.slice(0, 60));
  await attachAndWait(h, server, volume, hooks.device);
  await hooks.prepare?.(server, volume);
  if (c.saga === 'shelve-offload' || c.saga === 'unshelve') await h.stack.service.shelveServer(server.uuid);
  if (c.saga === 'unshelve') await h.stack.service.shelveOffloadServer(server.uuid);
  const startState = (await getInstance(h.stack.db, server.uuid))!;
  const watchedId = workflowIdOf(c.saga, server, volume);

  const pauseAt: 'before' | 'after' = c.phase === 'before' ? 'before' : c.step.checks.includes('after') ? 'after' : 'before';
  const thenDelayMs = c.phase === 'during' && pauseAt === 'before' ? h.rnd.int(0, 30) : undefined;
  const point = new PausePoint(h.stack.pauseDir, c.step.step, pauseAt);
  await point.arm();
  let answer: string | undefined;
  const request = startSaga(h, c.saga, server, volume).then((a) => (answer = a));

  let killedAt = 0;
  let triggered = false;
  try {
    triggered = await point.waitClaimed(90_000, () => answer !== undefined);
    if (!triggered) notes.push(`the ${c.step.step} ${pauseAt} point was never reached (${answer ?? 'still running'}); killed anyway`);
    if (triggered && thenDelayMs !== undefined) {
      await point.release();
      await sleep(thenDelayMs);
    }
    const releaseAfterRestart = h.rnd.bool();
    const heldBy = point.claimedByPid;
    killedAt = Date.now();
    await h.stack.kill(c.target);
    notes.push(`killed ${c.target}${heldBy ? ` (step held in pid ${heldBy})` : ''}, release ${releaseAfterRestart ? 'after' : 'before'} restart`);
    if (!releaseAfterRestart) await point.release();
    await h.stack.restart(c.target);
    if (releaseAfterRestart) await point.release();
  } finally {
    await point.release();
  }

  const end = (await waitClosed(h, [watchedId]))[watchedId]!;
  await request;
  await h.stack.settled();
  const convergeMs = end === 'RUNNING' ? null : Date.now() - killedAt;
  // null once deleted (getInstance skips deleted rows)
  const found = await retrying(() => getInstance(h.stack.db, server.uuid));
  const after = found ?? { ...startState, vmState: 'deleted' as const, taskState: null, host: null };
  const pair = await retrying(() => pairState(h, server.uuid, volume.id));
  const onA = await check(h);
  // a moved server's side: the checker on the second agent's host too
  const onB = c.saga === 'migrate' ? await check(h, 30_000, h.stack.hostB) : { disagreements: [], inFlight: [], text: '' };
  const checked = { disagreements: [...onA.disagreements, ...onB.disagreements], inFlight: [...onA.inFlight, ...onB.inFlight], text: [onA.text, onB.text].filter(Boolean).join('\n') };
  notes.push(`workflow ${end}${c.saga === 'extend' && end !== 'RUNNING' ? ` (${await tetherState(h, watchedId)})` : ''}; the caller saw ${answer ?? 'nothing'}; instance ${after.vmState}${after.taskState ? `/${after.taskState}` : ''} on ${after.host ?? 'no host'}`);

  const problems: string[] = [];
  if (end === 'RUNNING') problems.push(`workflow ${watchedId} still running after ${h.deadlineMs / 1000} s`);
  else if (end !== 'COMPLETED' && end !== 'FAILED') problems.push(`workflow ended ${end}`);
  if (after.taskState) problems.push(`the instance is still in task ${after.taskState}`);
  const done = end === 'COMPLETED';
  const expectState = (vm: string, host: string | null) => {
    if (after.vmState !== vm || after.host !== host) problems.push(`instance ${after.vmState} on ${after.host ?? 'no host'}, expected ${vm} on ${host ?? 'no host'} (workflow ${end})`);
  };
  const attachedEverywhere = () => {
    const state = classify(pair);
    if (state !== 'attached') problems.push(`the volume is ${state}, expected attached everywhere`);
  };
  let outcome: string = end === 'COMPLETED' ? 'done' : end === 'FAILED' ? 'undone' : end.toLowerCase();
  switch (c.saga) {
    case 'shelve':
      expectState(done ? 'shelved' : startState.vmState, startState.host);
      if (!done) attachedEverywhere();
      else if (!(pair.bdm === 'attached' && pair.inConfig && pair.volumeStatus === 'in-use')) problems.push(`shelved with the volume ${JSON.stringify(pair)}`);
      break;
    case 'shelve-offload':
      expectState(done ? 'shelved_offloaded' : 'shelved', done ? null : startState.host);
      if (done && (pair.attachments.join() !== 'reserved' || pair.inConfig)) problems.push(`offloaded with the volume ${JSON.stringify(pair)} (expected reserved, no domain)`);
      break;
    case 'unshelve':
      if (done) {
        expectState('active', h.stack.host);
        attachedEverywhere();
      }
      break;
    case 'delete':
      if (done) {
        if (found !== null) problems.push('the instance is not marked deleted');
        if (pair.bdm !== null || pair.attachments.length > 0 || pair.volumeStatus !== 'available' || pair.inConfig) problems.push(`deleted, but the volume says ${JSON.stringify(pair)}`);
        outcome = 'deleted';
      }
      break;
    case 'migrate':
      expectState(startState.vmState, done ? h.stack.hostB : startState.host);
      attachedEverywhere();
      outcome = done ? 'moved' : 'stayed';
      break;
    case 'extend': {
      attachedEverywhere();
      const size = (await h.stack.blockStorage.getVolume(volume.id)).size;
      if (size !== (done ? 2 : 1)) problems.push(`the volume is ${size} GiB after an extend that ended ${end}`);
      outcome = done ? 'extended' : 'rolled-back';
      break;
    }
  }
  if (checked.disagreements.length > 0 || checked.inFlight.length > 0) problems.push(`checker:\n${checked.text}`);
  const leaked = checked.disagreements.length + checked.inFlight.length + (end === 'RUNNING' ? 1 : 0);
  if (hooks.verify && found !== null && end !== 'RUNNING') {
    try {
      problems.push(...(await hooks.verify(server, volume)));
    } catch (err) {
      problems.push(`the guest's data could not be verified: ${(err as Error).message}`);
    }
  }

  // tether still works: the server (and its volume) go.
  try {
    if (found !== null) await retrying(() => h.stack.service.deleteServer(server.uuid), 120_000);
    await h.stack.service.deleteVolume(volume.id).catch(() => undefined);
  } catch (err) {
    problems.push(`after recovery, deleting the server failed: ${(err as Error).message}`);
  }

  return result(h, scenario, run, {
    passed: problems.length === 0,
    converged: end !== 'RUNNING' && checked.disagreements.length === 0 && checked.inFlight.length === 0,
    outcome,
    leaked,
    convergeMs,
    triggered,
    notes,
    ...(problems.length ? { failure: problems.join('; ') } : {}),
  });
}
