/**
 * The power workflows (start, stop, reboot) and BootServer alone, with fake activities: each takes the
 * task, runs its host step on the instance's queue and sets the vm_state it leads to; a failed host
 * step gives the instance back in the vm_state it had. BootServer undoes everything of a failed build,
 * newest first, and leaves the server in error. Real stack: test/server-api.test.ts.
 */
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { FakeWorkers, startWorkflowEnvironment } from '../support/workflow-env.ts';
import { tetherFakes, type TetherFakes } from '../support/fakes.ts';

let env: TestWorkflowEnvironment;
let workers: FakeWorkers;
const HOST = `host-${randomUUID().slice(0, 8)}`;

beforeAll(async () => {
  env = await startWorkflowEnvironment();
  workers = await new FakeWorkers(env, [HOST]).start(tetherFakes().names);
}, 60_000);

afterAll(async () => {
  await workers?.stop();
  await env?.teardown();
});

async function run(type: string, fakes: TetherFakes, args: Record<string, unknown>) {
  return workers.run(type, `${type}-${randomUUID()}`, fakes, { instanceUuid: workers.instanceUuid, host: HOST, ...args });
}

describe('power workflows with fake activities', () => {
  it('stop powers the domain off and leaves the server stopped; a failed power-off gives it back active', async () => {
    const ok = tetherFakes();
    await run('stopServer', ok, { vmState: 'active' });
    expect(ok.calls).toEqual(['beginInstanceTask', 'powerOffDomain', 'finishInstanceTask']);
    expect(ok.inputOf('beginInstanceTask')).toMatchObject({ task: 'powering-off', allowedVmStates: ['active', 'error'] });
    expect(ok.inputOf('finishInstanceTask')).toMatchObject({ vmState: 'stopped' });

    const failing = tetherFakes().failAt('powerOffDomain');
    expect((await run('stopServer', failing, { vmState: 'active' })).failure).toBeTruthy();
    expect(failing.inputOf('finishInstanceTask')).toMatchObject({ vmState: 'active' });
  });

  it('start powers the domain on and leaves the server active; a failure leaves it stopped', async () => {
    const ok = tetherFakes();
    await run('startServer', ok, { vmState: 'stopped' });
    expect(ok.calls).toEqual(['beginInstanceTask', 'powerOnDomain', 'finishInstanceTask']);
    expect(ok.inputOf('beginInstanceTask')).toMatchObject({ task: 'powering-on' });
    expect(ok.inputOf('finishInstanceTask')).toMatchObject({ vmState: 'active' });

    const failing = tetherFakes().failAt('powerOnDomain');
    expect((await run('startServer', failing, { vmState: 'stopped' })).failure).toBeTruthy();
    expect(failing.inputOf('finishInstanceTask')).toMatchObject({ vmState: 'stopped' });
  });

  it('reboot takes rebooting or rebooting_hard and passes the type to the host', async () => {
    const soft = tetherFakes();
    await run('rebootServer', soft, { vmState: 'active', type: 'SOFT' });
    expect(soft.inputOf('beginInstanceTask')).toMatchObject({ task: 'rebooting', allowedVmStates: ['active'] });
    expect(soft.inputOf('rebootDomain')).toMatchObject({ type: 'SOFT' });

    const hard = tetherFakes();
    await run('rebootServer', hard, { vmState: 'stopped', type: 'HARD' });
    expect(hard.inputOf('beginInstanceTask')).toMatchObject({ task: 'rebooting_hard' });
    expect(hard.inputOf('finishInstanceTask')).toMatchObject({ vmState: 'active' });
  });
});

describe('bootServer with fake activities', () => {
  const volumes = [{ bdmUuid: 'b1', volumeId: 'v1', deviceName: '/dev/vda', attachmentId: null, deleteOnTermination: false }];

  it('defines the domain, connects the boot volume and marks the server active', async () => {
    const ok = tetherFakes({ volumes });
    const { result } = await run('bootServer', ok, { domainName: 'd' });
    expect(result).toMatchObject({ devices: { v1: '/dev/sdc' } });
    expect(ok.calls).toEqual([
      'volumeBdmsOf',
      'spawnDomain',
      'getHostConnector',
      'assignDeviceName',
      'reserveVolume',
      'initializeConnection',
      'attachDisk',
      'completeAttachment',
      'markBdmAttached',
      'markInstanceActive',
    ]);
  });

  it('a failed disk attach undoes everything, newest first, and leaves the server in error', async () => {
    const failing = tetherFakes({ volumes }).failAt('attachDisk');
    expect((await run('bootServer', failing, { domainName: 'd' })).failure).toBeTruthy();
    expect(failing.calls.slice(failing.calls.indexOf('attachDisk'))).toEqual([
      'attachDisk',
      'detachDisk',
      'deleteAttachment',
      'destroyDomain',
      'destroyBdm',
      'markInstanceError',
    ]);
  });
});
