/**
 * Replays recorded workflow histories against today's workflow code: a change that would break
 * workflows already running in production (non-determinism) fails here.
 * Re-record after an intended, versioned change: RECORD_HISTORIES=1 npx vitest run test/replay.test.ts
 * (it writes <scenario>.json; keep the earlier recordings under another name, as
 * <scenario>.before-local-activities.json, attach-*.before-connector-with-device-name.json and
 * *.before-operation-generation.json are: runs started before a patched() change must go on replaying).
 */
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { Worker } from '@temporalio/worker';
import { execFileSync } from 'node:child_process';
import { loadConfig } from '../src/config.ts';
import { workflowsPath } from '../workers/control-plane.ts';
import { workflowInterceptorModules } from '../src/temporal/workflow-interceptor-modules.ts';
import { startTestStack } from './support/test-stack.ts';
import { runningServer, volume } from './support/fixtures.ts';

const dir = fileURLToPath(new URL('./histories/', import.meta.url));
const recording = process.env.RECORD_HISTORIES === '1';
/** RECORD_HISTORIES=servers records only the server power and boot workflows' histories. */
const recordingServers = process.env.RECORD_HISTORIES === 'servers';

// Recording is a mode of this file (RECORD_HISTORIES=1), not a skipped test: each mode registers only its own block.
if (!recording && !recordingServers) describe('recorded histories replay on the current workflow code', () => {
  const files = readdirSync(dir).filter((f) => f.endsWith('.json'));
  it('has recorded histories to replay', () => {
    expect(files.length).toBeGreaterThanOrEqual(5);
  });
  it.each(files)('%s', async (file) => {
    const history: unknown = JSON.parse(readFileSync(path.join(dir, file), 'utf8'));
    // with the interceptor modules the workers bundle: what they add to commands (activity summaries) must replay too
    await Worker.runReplayHistory({ workflowsPath, interceptors: { workflowModules: workflowInterceptorModules() } }, history, file);
  });
});

if (recording) describe('record histories', () => {
  it('records one history per kind of run', async () => {
    const stack = await startTestStack({ detachUnplugWaitMs: 1_000 });
    try {
      // The Temporal CLI writes histories in the JSON form that replay reads (and the UI downloads).
      const save = async (name: string, handle: { workflowId: string }) => {
        const json = execFileSync(loadConfig().temporalBinary, ['workflow', 'show', '--address', stack.temporalAddress, '--workflow-id', handle.workflowId, '--output', 'json']);
        writeFileSync(path.join(dir, `${name}.json`), json);
      };
      const vm = await runningServer(stack, 'replay-vm');
      const ok = await volume(stack, 'replay-ok');
      const attached = await stack.service.attachVolume({ server: vm.uuid, volume: ok.id, tag: 'data' });
      await stack.service.awaitAttach(attached.handle);
      await save('attach-succeeded', attached.handle);

      const detached = await stack.service.detachVolume({ server: vm.uuid, volume: ok.id });
      await stack.service.awaitDetach(detached.handle);
      await save('detach-succeeded', detached.handle);

      const bad = await volume(stack, 'replay-fail');
      stack.faults.inject('attachDisk', 'after', { times: 1 });
      const failed = await stack.service.attachVolume({ server: vm.uuid, volume: bad.id });
      await stack.service.awaitAttach(failed.handle).catch(() => undefined);
      stack.faults.clear();
      await save('attach-rolled-back', failed.handle);

      await stack.service.awaitAttach((await stack.service.attachVolume({ server: vm.uuid, volume: bad.id })).handle);
      stack.faults.inject('detachDisk', 'after', { times: 1 });
      const detachFailed = await stack.service.detachVolume({ server: vm.uuid, volume: bad.id });
      await stack.service.awaitDetach(detachFailed.handle).catch(() => undefined);
      stack.faults.clear();
      await save('detach-rolled-back', detachFailed.handle);

      // force detach: a host that answers, and a host forced down (fenced at once; the agent cleans up)
      const forced = await volume(stack, 'replay-forced');
      await stack.service.awaitAttach((await stack.service.attachVolume({ server: vm.uuid, volume: forced.id })).handle);
      const answered = await stack.service.forceDetachVolume({ server: vm.uuid, volume: forced.id, hostWaitSeconds: 30 });
      await stack.service.awaitForceDetach(answered.handle);
      await save('force-detach-host-answered', answered.handle);
      await stack.service.awaitAttach((await stack.service.attachVolume({ server: vm.uuid, volume: forced.id })).handle);
      await stack.service.updateComputeService({ host: stack.host }, { forcedDown: true });
      const fenced = await stack.service.detachVolume({ server: vm.uuid, volume: forced.id });
      await stack.service.awaitForceDetach(fenced.handle);
      await stack.service.updateComputeService({ host: stack.host }, { forcedDown: false });
      await save('force-detach-fenced', fenced.handle);
      // extend: tether's own os-extend of an in-use volume, its rollback, and a volume-extended event
      const grown = await volume(stack, 'replay-extend');
      await stack.service.awaitAttach((await stack.service.attachVolume({ server: vm.uuid, volume: grown.id })).handle);
      const extended = await stack.service.extendVolume({ volume: grown.id, newSize: 2, inUse: true });
      await stack.service.awaitExtend(extended.started!.handle);
      await save('extend-succeeded', extended.started!.handle);
      stack.faults.inject('resizeDisk', 'before', { times: 1 });
      const extendFailed = await stack.service.extendVolume({ volume: grown.id, newSize: 3, inUse: true });
      await stack.service.awaitExtend(extendFailed.started!.handle).catch(() => undefined);
      stack.faults.clear();
      await save('extend-rolled-back', extendFailed.started!.handle);
      const event = await stack.service.serverExternalEvent({ name: 'volume-extended', serverUuid: vm.uuid, tag: grown.id });
      await stack.service.awaitExtend(event.handle!);
      await save('extend-event', event.handle!);

      await stack.service.shelveServer(vm.uuid);
      await stack.service.shelveOffloadServer(vm.uuid);
      const shelved = await volume(stack, 'replay-shelved');
      const offloadedAttach = await stack.service.attachVolume({ server: vm.uuid, volume: shelved.id });
      await stack.service.awaitAttach(offloadedAttach.handle);
      await save('attach-shelved-offloaded', offloadedAttach.handle);
      await stack.service.unshelveServer(vm.uuid);
      await save('unshelve', stack.client.workflow.getHandle(`unshelveServer-${vm.uuid}`));
      await stack.service.deleteServer(vm.uuid);
      await save('delete-server', stack.client.workflow.getHandle(`deleteServer-${vm.uuid}`));
    } finally {
      await stack.stop();
    }
  }, 300_000);
});

if (recording || recordingServers) describe('record the server workflows\' histories', () => {
  it('records stop, start, soft and hard reboot, a boot from a volume and a failed one', async () => {
    const stack = await startTestStack();
    try {
      const save = async (name: string, workflowId: string) => {
        const json = execFileSync(loadConfig().temporalBinary, ['workflow', 'show', '--address', stack.temporalAddress, '--workflow-id', workflowId, '--output', 'json']);
        writeFileSync(path.join(dir, `${name}.json`), json);
      };
      const vm = await runningServer(stack, 'replay-power');
      for (const [action, name] of [
        [{ action: 'stop' }, 'stop-server'],
        [{ action: 'start' }, 'start-server'],
        [{ action: 'reboot', type: 'SOFT' }, 'reboot-server-soft'],
        [{ action: 'reboot', type: 'HARD' }, 'reboot-server-hard'],
      ] as const) {
        const started = await stack.service.beginServerAction(vm.uuid, action);
        await stack.service.awaitServerAction(started);
        await save(name, started.workflowId);
      }
      const boot = await volume(stack, 'replay-boot');
      const booted = await stack.service.bootServer({ name: 'replay-boot', flavorRef: 'tether.tiny', volumes: [{ volumeId: boot.id, bootIndex: 0, deleteOnTermination: false }] });
      await stack.service.awaitBuild(booted.handle);
      await save('boot-server', booted.handle.workflowId);

      const bad = await volume(stack, 'replay-boot-fail');
      stack.faults.inject('attachDisk', 'after', { times: 1 });
      const failed = await stack.service.bootServer({ name: 'replay-boot-fail', flavorRef: 'tether.tiny', volumes: [{ volumeId: bad.id, bootIndex: 0, deleteOnTermination: false }] });
      await stack.service.awaitBuild(failed.handle).catch(() => undefined);
      stack.faults.clear();
      await save('boot-server-rolled-back', failed.handle.workflowId);
    } finally {
      await stack.stop();
    }
  }, 300_000);
});
