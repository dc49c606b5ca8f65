/**
 * The `tether` CLI end to end, as a user runs it: a separate process talking to the stack
 * (here the in-process test stack: its database, Temporal, workers and compute host).
 */
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { startTestStack, type TestStack } from './support/test-stack.ts';
import { runTetherCli, type CliRun } from './support/tether-cli.ts';

// Each CLI run is a new Node process (~2 s of start-up on these machines): allow for several per test.
vi.setConfig({ testTimeout: 240_000 });
let stack: TestStack;

beforeAll(async () => {
  stack = await startTestStack();
});

afterAll(async () => {
  await stack?.stop();
});

function tether(...args: string[]): Promise<CliRun> {
  return runTetherCli(stack.env, args);
}

describe('tether CLI', () => {
  it('server create, volume create, attach (each step, then the device), attachments, history, detach', async () => {
    const created = await tether('server', 'create', 'cli-vm');
    expect(created.code).toBe(0);
    expect(created.stdout).toMatch(/^cli-vm [0-9a-f-]{36} active on test-host-/);
    expect((await tether('volume', 'create', 'cli-vol', '--size', '1')).stdout).toMatch(/^cli-vol [0-9a-f-]{36} available 1 GiB/);

    const attached = await tether('attach', 'cli-vm', 'cli-vol');
    expect(attached.code).toBe(0);
    expect(attached.stdout).toContain('✓ Create the block device mapping with a reserved device name');
    expect(attached.stdout).toContain('✓ Attach the disk to the libvirt domain');
    expect(attached.stdout.trim().split('\n').at(-1)).toBe('attached /dev/sdb');

    const listed = await tether('attachments', 'cli-vm');
    expect(listed.stdout).toMatch(/\/dev\/sdb\s+attached/);

    const again = await tether('attach', 'cli-vm', 'cli-vol');
    expect(again.code).toBe(2);
    expect(again.stderr).toMatch(/^error: Invalid volume: volume [0-9a-f-]{36} already attached to instance [0-9a-f-]{36}\. \(VolumeAlreadyAttached\)/);

    const history = await tether('history', 'cli-vm', 'cli-vol');
    expect(history.stdout).toMatch(/^attach attach-/);
    expect(history.stdout).toContain('status COMPLETED (attached)');

    const detached = await tether('detach', 'cli-vm', 'cli-vol');
    expect(detached.code).toBe(0);
    expect(detached.stdout).toContain('✓ Detach the disk from the libvirt domain and confirm it left');
    expect(detached.stdout.trim().split('\n').at(-1)).toBe('detached');
    expect((await tether('volume', 'list')).stdout).toMatch(/cli-vol\s+available/);

    const check = await tether('check');
    expect(check).toMatchObject({ code: 0 });
    expect(check.stdout).toContain('no disagreements');
  });

  it('a failed attach exits non-zero with the reason; retry completes it; operations --failed lists it', async () => {
    await tether('server', 'create', 'cli-vm-2');
    await tether('volume', 'create', 'cli-vol-2', '--size', '1');
    stack.faults.inject('attachDisk', 'before', { times: 1 });
    const failed = await tether('attach', 'cli-vm-2', 'cli-vol-2');
    stack.faults.clear();
    expect(failed.code).toBe(1);
    expect(failed.stdout).toContain('↺ Destroy the block device mapping');
    expect(failed.stderr).toMatch(/failed at step attachDisk: Injected fault before step attachDisk \(everything was rolled back\)/);

    const ops = await tether('operations', '--failed');
    expect(ops.stdout).toMatch(/attach\s+FAILED\s+rolled-back/);

    const retried = await tether('retry', 'cli-vm-2', 'cli-vol-2');
    expect(retried.code).toBe(0);
    expect(retried.stdout.trim().split('\n').at(-1)).toBe('attached /dev/sdb');
  });

  it('bad input: unknown server, bad device path — clear messages, exit 2', async () => {
    await tether('volume', 'create', 'cli-vol-3', '--size', '1');
    const unknown = await tether('attach', 'no-such-vm', 'cli-vol-3');
    expect(unknown).toMatchObject({ code: 2, stderr: 'error: Instance no-such-vm could not be found. (InstanceNotFound)\n' });
    await tether('server', 'create', 'cli-vm-3');
    const badDevice = await tether('attach', 'cli-vm-3', 'cli-vol-3', '--device', 'sdb');
    expect(badDevice).toMatchObject({ code: 2, stderr: 'error: The supplied device path (sdb) is invalid. (InvalidDevicePath)\n' });
    const help = await tether('attach', '--help');
    expect(help.stdout).toContain('Usage: tether attach [options] <server> <volume>');
  });
});
