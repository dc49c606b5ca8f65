/**
 * Force detach from a host that is gone (Nova bug 1909120), safe against CVE-2023-2088, on the real
 * stack: a compute-agent process stopped (SIGSTOP) or killed, `tether detach --force` through the CLI,
 * the volume released only once the host is fenced, and the agent, when it comes back, removes the
 * disk before it serves its instances again. A host forced down through Nova's os-services API: a
 * plain DELETE fences at once. A host that answers detaches the disk itself and is not fenced. A late
 * host step of an older operation is refused by its generation.
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MockActivityEnvironment } from '@temporalio/testing';
import { ApplicationFailure } from '@temporalio/common';
import { startTestStack, type TestStack } from './support/test-stack.ts';
import { runningServer, volume } from './support/fixtures.ts';
import { startAgentProcess, type AgentProcess } from './support/agent-process.ts';
import { projectRoot } from '../src/config.ts';
import { diskElements } from '../src/host/domain-disks.ts';
import { inspectInvariants } from '../src/checker/invariants.ts';
import { createHostActivities } from '../activities/host.ts';
import { currentGeneration } from '../src/db/operation-generations.ts';
import { buildApiServer, type ApiServer } from '../src/api/server.ts';
import { FaultInjector } from '../faults/injector.ts';
import type { Instance } from '../src/domain/types.ts';

let stack: TestStack;
let api: ApiServer;
const agents: AgentProcess[] = [];

beforeAll(async () => {
  stack = await startTestStack({ detachUnplugWaitMs: 1_500 });
  api = await buildApiServer({ service: stack.service, db: stack.db, client: stack.client, config: { controlTaskQueue: stack.controlTaskQueue, computeHost: stack.host } });
}, 120_000);

afterAll(async () => {
  await api?.close();
  for (const agent of agents) await agent.stop().catch(() => undefined);
  await stack?.stop();
});

async function tether(...args: string[]): Promise<string> {
  const { stdout } = await promisify(execFile)(process.execPath, ['bin/tether.js', ...args], { cwd: projectRoot, env: { ...process.env, ...stack.env } });
  return stdout;
}

async function agentFor(host: string): Promise<AgentProcess> {
  const agent = await startAgentProcess(stack, host);
  agents.push(agent);
  return agent;
}

async function serverOn(host: string, name: string): Promise<Instance> {
  const { instance, handle } = await stack.service.createServer({ name, host });
  await handle.result();
  return instance;
}

async function attach(server: string, volumeId: string) {
  return stack.service.awaitAttach((await stack.service.attachVolume({ server, volume: volumeId })).handle);
}

/** The volume's disks in the domain: [config, live] serials. */
async function disksOf(instanceUuid: string, volumeId: string): Promise<{ config: number; live: number }> {
  const count = (xml: string) => diskElements(xml).filter((d) => d.serial === volumeId).length;
  return { config: count(await stack.libvirt.getXml(instanceUuid, { inactive: true })), live: count(await stack.libvirt.getXml(instanceUuid)) };
}

async function until<T>(what: string, read: () => Promise<T>, done: (v: T) => boolean, timeoutMs = 90_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await read();
    if (done(v)) return v;
    if (Date.now() > deadline) throw new Error(`${what}: still ${JSON.stringify(v)} after ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
}

/** The host's fence as PostgreSQL has it. */
async function fenceOf(host: string) {
  const { rows } = await stack.db.query<{ fenced: boolean; fenced_at: Date | null; cleaned_at: Date | null; fence_epoch: string }>(
    'SELECT fenced, fenced_at, cleaned_at, fence_epoch FROM compute_hosts WHERE host = $1',
    [host],
  );
  return rows[0] ?? null;
}

/** When the volume's attachment to the instance was deleted (the embedded volume service keeps the row). */
async function attachmentDeletedAt(volumeId: string, instanceUuid: string): Promise<Date | null> {
  const { rows } = await stack.db.query<{ deleted_at: Date | null }>(
    'SELECT deleted_at FROM volume_attachments WHERE volume_id = $1 AND instance_uuid = $2 ORDER BY created_at DESC LIMIT 1',
    [volumeId, instanceUuid],
  );
  return rows[0]?.deleted_at ?? null;
}

/** Samples (volume status, host fenced) until `done` settles: the volume must never be available while the host is unfenced and the disk still there. */
async function watchRelease(volumeId: string, host: string, done: Promise<unknown>): Promise<Array<{ status: string; fenced: boolean }>> {
  const seen: Array<{ status: string; fenced: boolean }> = [];
  let finished = false;
  void done.finally(() => (finished = true)).catch(() => undefined);
  while (!finished) {
    const { rows } = await stack.db.query<{ status: string; fenced: boolean | null }>(
      'SELECT v.status, (SELECT fenced FROM compute_hosts WHERE host = $2) AS fenced FROM volumes v WHERE v.id = $1',
      [volumeId, host],
    );
    seen.push({ status: rows[0]!.status, fenced: rows[0]!.fenced ?? false });
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  return seen;
}

describe('force detach from a host that is gone', () => {
  it('an agent stopped with SIGSTOP: the volume is available only after the host is fenced; continued, the agent removes the disk before it serves again', async () => {
    const agent = await agentFor(`${stack.host}-stopped`);
    const vm = await serverOn(agent.host, 'fd-stopped');
    const v = await volume(stack, 'fd-stopped');
    await attach(vm.uuid, v.id);
    expect(await disksOf(vm.uuid, v.id)).toEqual({ config: 1, live: 1 });

    agent.child.kill('SIGSTOP');
    const cli = tether('detach', vm.uuid, v.id, '--force', '--host-wait', '4', '--json');
    const seen = await watchRelease(v.id, agent.host, cli);
    const out = JSON.parse(await cli) as { hostDetached: boolean; fenceEpoch: number | null; host: string };
    expect(out).toMatchObject({ hostDetached: false, host: agent.host });
    expect(out.fenceEpoch).toBeGreaterThan(0);
    // never released before the fence: every sample with the volume available has the host fenced
    expect(seen.filter((s) => s.status === 'available' && !s.fenced)).toEqual([]);
    const fence = await fenceOf(agent.host);
    expect(fence).toMatchObject({ fenced: true });
    expect((await attachmentDeletedAt(v.id, vm.uuid))!.getTime()).toBeGreaterThanOrEqual(fence!.fenced_at!.getTime());
    expect((await stack.blockStorage.getVolume(v.id)).status).toBe('available');
    // the stopped host still has the disk: nobody touched its libvirt
    expect(await disksOf(vm.uuid, v.id)).toEqual({ config: 1, live: 1 });

    agent.child.kill('SIGCONT');
    await until('the disk after SIGCONT', () => disksOf(vm.uuid, v.id), (d) => d.config === 0 && d.live === 0);
    await until('the fence', () => fenceOf(agent.host), (f) => f?.fenced === false);

    // it serves its instances again: an attach and a detach on the same server go through
    const w = await volume(stack, 'fd-stopped-after');
    await attach(vm.uuid, w.id);
    await stack.service.awaitDetach((await stack.service.detachVolume({ server: vm.uuid, volume: w.id })).handle);
    const report = await inspectInvariants({ db: stack.db, blockStorage: stack.blockStorage, libvirt: stack.libvirt, client: stack.client, controlTaskQueue: stack.controlTaskQueue, host: agent.host });
    expect(report.disagreements).toEqual([]);
    await agent.stop();
  }, 240_000);

  it('an agent killed and started again: the force detach fences the host, and the new agent cleans up before it serves', async () => {
    let agent = await agentFor(`${stack.host}-killed`);
    const vm = await serverOn(agent.host, 'fd-killed');
    const [v, kept] = [await volume(stack, 'fd-killed'), await volume(stack, 'fd-kept')];
    await attach(vm.uuid, v.id);
    await attach(vm.uuid, kept.id);
    await agent.stop('SIGKILL');

    const started = await stack.service.forceDetachVolume({ server: vm.uuid, volume: v.id, hostWaitSeconds: 3 });
    const result = await stack.service.awaitForceDetach(started.handle);
    expect(result).toMatchObject({ hostDetached: false });
    expect((await stack.blockStorage.getVolume(v.id)).status).toBe('available');
    expect(await disksOf(vm.uuid, v.id)).toEqual({ config: 1, live: 1 });

    agent = await agentFor(agent.host);
    // cleaned before it said it is ready: the released disk is gone, the other volume's stays
    expect(await disksOf(vm.uuid, v.id)).toEqual({ config: 0, live: 0 });
    expect(await disksOf(vm.uuid, kept.id)).toEqual({ config: 1, live: 1 });
    expect(await fenceOf(agent.host)).toMatchObject({ fenced: false });
    expect(agent.output()).toMatch(/fence cleanup done: serving again/);
    await stack.service.awaitDetach((await stack.service.detachVolume({ server: vm.uuid, volume: kept.id })).handle);
    expect(await disksOf(vm.uuid, kept.id)).toEqual({ config: 0, live: 0 });
    await agent.stop();
  }, 240_000);

  it("a host forced down through Nova's os-services: a plain DELETE fences it at once; its agent, still running, cleans up", async () => {
    const vm = await runningServer(stack, 'fd-forced-down');
    const v = await volume(stack, 'fd-forced-down');
    await attach(vm.uuid, v.id);
    const headers = { 'OpenStack-API-Version': 'compute 2.53' };
    const list = await api.inject({ method: 'GET', url: `/v2.1/os-services?host=${stack.host}&binary=nova-compute`, headers });
    expect(list.statusCode).toBe(200);
    const [svc] = list.json().services as Array<{ id: string; state: string; forced_down: boolean }>;
    expect(svc).toMatchObject({ state: 'up', forced_down: false });
    const down = await api.inject({ method: 'PUT', url: `/v2.1/os-services/${svc!.id}`, headers, payload: { forced_down: true } });
    expect(down.statusCode).toBe(200);
    expect(down.json().service).toMatchObject({ forced_down: true, state: 'down' });
    try {
      const r = await api.inject({ method: 'DELETE', url: `/v2.1/servers/${vm.uuid}/os-volume_attachments/${v.id}` });
      expect(r.statusCode).toBe(202);
      const handle = stack.client.workflow.getHandle(`detach-${vm.uuid}-${v.id}`);
      expect((await handle.describe()).type).toBe('forceDetachVolume');
      const result = (await handle.result()) as { hostDetached: boolean; fenceEpoch: number };
      expect(result.hostDetached).toBe(false);
      expect((await stack.blockStorage.getVolume(v.id)).status).toBe('available');
      await until('the disk', () => disksOf(vm.uuid, v.id), (d) => d.config === 0 && d.live === 0);
      await until('the fence', () => fenceOf(stack.host), (f) => f?.fenced === false);
    } finally {
      const up = await api.inject({ method: 'PUT', url: `/v2.1/os-services/${svc!.id}`, headers, payload: { forced_down: false } });
      expect(up.json().service).toMatchObject({ forced_down: false });
    }
  }, 180_000);

  it('a host that answers detaches the disk itself: not fenced', async () => {
    const vm = await runningServer(stack, 'fd-alive');
    const v = await volume(stack, 'fd-alive');
    await attach(vm.uuid, v.id);
    const epochBefore = Number((await fenceOf(stack.host))?.fence_epoch ?? 0);
    const out = JSON.parse(await tether('detach', 'fd-alive', 'fd-alive', '--force', '--json')) as { hostDetached: boolean; fenceEpoch: number | null };
    expect(out).toMatchObject({ hostDetached: true, fenceEpoch: null });
    expect(Number((await fenceOf(stack.host))?.fence_epoch ?? 0)).toBe(epochBefore);
    expect(await disksOf(vm.uuid, v.id)).toEqual({ config: 0, live: 0 });
    expect((await stack.blockStorage.getVolume(v.id)).status).toBe('available');
  }, 120_000);

  it('only an admin may force: a project member gets 403', async () => {
    const vm = await runningServer(stack, 'fd-member');
    const v = await volume(stack, 'fd-member');
    await attach(vm.uuid, v.id);
    const member = stack.service.as({ userId: 'm', userName: 'member', projectId: vm.projectId, projectName: vm.projectId, roles: ['member'] });
    await expect(member.forceDetachVolume({ server: vm.uuid, volume: v.id })).rejects.toMatchObject({ type: 'PolicyNotAuthorized', status: 403 });
    expect((await stack.blockStorage.getVolume(v.id)).status).toBe('in-use');
  });
});

describe('generations', () => {
  it("a late host step of an older operation is refused: the newer attach's disk stays", async () => {
    const vm = await runningServer(stack, 'gen-vm');
    const v = await volume(stack, 'gen-v');
    await attach(vm.uuid, v.id);
    const first = (await currentGeneration(stack.db, vm.uuid, v.id))!;
    await stack.service.awaitDetach((await stack.service.detachVolume({ server: vm.uuid, volume: v.id })).handle);
    await attach(vm.uuid, v.id);
    const now = (await currentGeneration(stack.db, vm.uuid, v.id))!;
    expect(now.generation).toBeGreaterThan(first.generation);
    expect(now.operationId).toMatch(new RegExp(`^attach-${vm.uuid}-${v.id}/`));

    // the first attach's compensation (detach the disk), arriving late on the host
    const host = createHostActivities({ db: stack.db, libvirt: stack.libvirt, host: stack.host, faults: new FaultInjector() });
    const late = await new MockActivityEnvironment().run(host.detachDisk, { instanceUuid: vm.uuid, volumeId: v.id, generation: first.generation }).catch((e: unknown) => e);
    expect(late).toBeInstanceOf(ApplicationFailure);
    expect(late).toMatchObject({ type: 'OperationSuperseded', nonRetryable: true });
    expect((late as Error).message).toContain(`generation ${first.generation} refused`);
    expect(await disksOf(vm.uuid, v.id)).toEqual({ config: 1, live: 1 });

    // the current operation's own step still works (the same call, its generation)
    await new MockActivityEnvironment().run(host.attachDisk, { instanceUuid: vm.uuid, bdmUuid: (await stack.service.listAttachments(vm.uuid)).bdms[0]!.uuid, volumeId: v.id, generation: now.generation });
    expect(await disksOf(vm.uuid, v.id)).toEqual({ config: 1, live: 1 });
  }, 120_000);
});
