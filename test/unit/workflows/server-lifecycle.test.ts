/**
 * The server workflows alone, with fake activities: each one's failure path gives the instance
 * back (its task_state cleared, its vm_state as before where Nova does so), and a move whose target
 * cannot take the domain puts it back on its source. Real-stack tests: test/server-lifecycle.test.ts,
 * test/multi-host.test.ts.
 */
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ApplicationFailure } from '@temporalio/common';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { FakeWorkers, startWorkflowEnvironment } from '../support/workflow-env.ts';
import { tetherFakes, type FakeWorld, type TetherFakes } from '../support/fakes.ts';

let env: TestWorkflowEnvironment;
let workers: FakeWorkers;
const SOURCE = `src-${randomUUID().slice(0, 8)}`;
const TARGET = `dst-${randomUUID().slice(0, 8)}`;

beforeAll(async () => {
  env = await startWorkflowEnvironment();
  workers = await new FakeWorkers(env, [SOURCE, TARGET]).start(tetherFakes().names);
}, 60_000);

afterAll(async () => {
  await workers?.stop();
  await env?.teardown();
});

/** Runs workflow `type` with `fakes`; resolves to its result or its failure. */
async function run(type: string, fakes: TetherFakes, args: Record<string, unknown>) {
  return workers.run(type, `${type}-${randomUUID()}`, fakes, { instanceUuid: workers.instanceUuid, ...args });
}

function fakes(world: FakeWorld = {}): TetherFakes {
  return tetherFakes(world);
}

describe('server workflows with fake activities', () => {
  it('createServer: a domain that cannot be spawned marks the instance error', async () => {
    const ok = fakes();
    expect((await run('createServer', ok, { domainName: 'd', host: SOURCE })).result).toEqual({ state: 'running' });
    expect(ok.calls).toEqual(['spawnDomain', 'markInstanceActive']);

    const failing = fakes().failAt('spawnDomain');
    expect((await run('createServer', failing, { domainName: 'd', host: SOURCE })).failure).toBeTruthy();
    expect(failing.calls).toEqual(['spawnDomain', 'markInstanceError']);
  });

  it('shelve: a domain that cannot be stopped gives the instance back in its vm_state', async () => {
    const f = fakes().failAt('stopDomain');
    expect((await run('shelveServer', f, { host: SOURCE, vmState: 'active' })).failure).toBeTruthy();
    expect(f.calls).toEqual(['beginInstanceTask', 'stopDomain', 'finishInstanceTask']);
    expect(f.inputOf('finishInstanceTask')).toMatchObject({ vmState: 'active' });
  });

  it('a refused task (wrong vm_state, another task) changes nothing', async () => {
    const f = fakes().failAt('beginInstanceTask', { type: 'InstanceInvalidState' });
    const { failure } = await run('shelveServer', f, { host: SOURCE, vmState: 'active' });
    // the activity's failure, as the service turns it into a 409
    expect((failure!.cause as ApplicationFailure).type).toBe('InstanceInvalidState');
    expect(f.calls).toEqual(['beginInstanceTask']);
  });

  it('shelve-offload: each volume stays reserved; a domain that cannot be removed leaves the instance shelved', async () => {
    const volumes = [{ bdmUuid: 'b1', volumeId: 'v1', deviceName: '/dev/sdb', attachmentId: 'a1', deleteOnTermination: false }];
    const f = fakes({ volumes }).failAt('destroyDomain');
    expect((await run('shelveOffloadServer', f, { host: SOURCE })).failure).toBeTruthy();
    expect(f.calls).toEqual(['beginInstanceTask', 'volumeBdmsOf', 'reReserveAttachment', 'destroyDomain', 'finishInstanceTask']);
    expect(f.inputOf('finishInstanceTask')).toMatchObject({ vmState: 'shelved' });
  });

  it('unshelve: connects every volume (a reservation made while offloaded gets its attachment); a failure fails the task', async () => {
    const volumes = [
      { bdmUuid: 'b1', volumeId: 'v1', deviceName: null, attachmentId: 'a1', deleteOnTermination: false },
      { bdmUuid: 'b2', volumeId: 'v2', deviceName: null, attachmentId: null, deleteOnTermination: false },
    ];
    const ok = fakes({ volumes });
    expect((await run('unshelveServer', ok, { host: TARGET })).result).toEqual({ devices: { v1: '/dev/sdc', v2: '/dev/sdc' } });
    expect(ok.calls.filter((c) => c === 'reserveVolume')).toHaveLength(1);
    expect(ok.calls.filter((c) => c === 'attachDisk')).toHaveLength(2);
    expect(ok.calls.at(-1)).toBe('finishInstanceTask');

    const failing = fakes({ volumes }).failAt('attachDisk');
    expect((await run('unshelveServer', failing, { host: TARGET })).failure).toBeTruthy();
    expect(failing.calls.at(-1)).toBe('attachDisk');
  });

  it('delete: every attachment and BDM go, delete_on_termination volumes too; a domain that cannot be destroyed stops it first', async () => {
    const volumes = [
      { bdmUuid: 'b1', volumeId: 'v1', deviceName: '/dev/sdb', attachmentId: 'a1', deleteOnTermination: true },
      { bdmUuid: 'b2', volumeId: 'v2', deviceName: '/dev/sdc', attachmentId: 'a2', deleteOnTermination: false },
    ];
    const ok = fakes({ volumes });
    expect((await run('deleteServer', ok, { host: SOURCE })).result).toEqual({ deletedVolumes: ['v1'] });
    expect(ok.calls).toEqual([
      'beginInstanceTask',
      'awaitInstanceOperations',
      'destroyDomain',
      'volumeBdmsOf',
      'deleteAttachment',
      'destroyBdm',
      'deleteVolume',
      'deleteAttachment',
      'destroyBdm',
      'markInstanceDeleted',
    ]);

    const failing = fakes({ volumes }).failAt('destroyDomain');
    expect((await run('deleteServer', failing, { host: SOURCE })).failure).toBeTruthy();
    expect(failing.calls).toEqual(['beginInstanceTask', 'awaitInstanceOperations', 'destroyDomain']);
  });

  it('migrate: a target that cannot take the domain puts it back on its source, in its vm_state', async () => {
    const ok = fakes();
    expect((await run('migrateServer', ok, { host: SOURCE, targetHost: TARGET, vmState: 'active' })).result).toEqual({ host: TARGET });

    const f = fakes().failAt('importDomain', { times: 1 });
    expect((await run('migrateServer', f, { host: SOURCE, targetHost: TARGET, vmState: 'active' })).failure).toBeTruthy();
    expect(f.calls).toEqual([
      'beginInstanceTask',
      'awaitInstanceOperations',
      'exportDomain',
      'destroyDomain',
      'setInstanceHost',
      'importDomain',
      'setInstanceHost',
      'importDomain',
      'finishInstanceTask',
    ]);
    expect(f.log.filter((c) => c.name === 'setInstanceHost').map((c) => (c.input as { host: string }).host)).toEqual([TARGET, SOURCE]);
    expect(f.inputOf('finishInstanceTask')).toMatchObject({ vmState: 'active' });

    const gone = fakes({ noDomain: true });
    expect((await run('migrateServer', gone, { host: SOURCE, targetHost: TARGET, vmState: 'active' })).failure!.message).toMatch(/is not defined on/);
    expect(gone.calls).toEqual(['beginInstanceTask', 'awaitInstanceOperations', 'exportDomain', 'finishInstanceTask']);
  });
});
