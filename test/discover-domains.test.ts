/**
 * The agent's discovery (TETHER_DISCOVER_DOMAINS=1) on the real stack: workers/compute-agent.ts as a
 * process of its own, libvirtd + QEMU under TCG, PostgreSQL, the embedded volume service. A domain
 * started behind tether's back, with a disk of a tether volume and a scratch disk, is imported by the
 * agent on its own — an instance on the agent's host with the domain's uuid, a BDM and an attachment
 * for the volume, the scratch disk left alone — without a restart; it then takes an attach and a
 * detach served by that agent, its QEMU process unchanged, and the checker finds it in agreement.
 *
 * The libvirtd is shared with other tests: the agent discovers only this file's domains
 * (TETHER_DISCOVER_NAMES, a regular expression on the name), runs on a Temporal dev server of this
 * file's own, and any other row is removed before the stack stops (the stack destroys the domains
 * of the instances it records — never another user's).
 */
import { rm } from 'node:fs/promises';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { loadConfig } from '../src/config.ts';
import { startStackTemporal, type StackTemporal } from '../stack/temporal.ts';
import { startTestStack, type TestStack } from './support/test-stack.ts';
import { startAgentProcess, type AgentProcess } from './support/agent-process.ts';
import { foreignDomain, qemuPid } from './support/foreign-domain.ts';
import { volume } from './support/fixtures.ts';
import { getInstance } from '../src/db/instances.ts';
import { liveBdm } from '../src/db/block-device-mappings.ts';
import { diskElements } from '../src/host/domain-disks.ts';
import { formatDisagreements, inspectInvariants } from '../src/checker/invariants.ts';

vi.setConfig({ testTimeout: 240_000, hookTimeout: 180_000 });

let temporal: StackTemporal;
let stack: TestStack;
let agent: AgentProcess | undefined;
const scratchFiles: string[] = [];
/** The instances this file made (the rest were discovered from other users of the daemon). */
const ours = new Set<string>();

beforeAll(async () => {
  temporal = await startStackTemporal({ dev: { readyTimeoutMs: 120_000 } }, { binary: loadConfig().temporalBinary, namespace: 'default', postgresAdminUrl: '' });
  stack = await startTestStack({ temporal: { frontends: [temporal.address], namespace: 'default' } });
});

afterAll(async () => {
  await agent?.stop();
  if (stack) {
    // The stack's stop destroys the domain of every instance it records: it must record only ours.
    // Another user's domain imported (discovery without its name filter) is forgotten, never destroyed.
    await stack.db.query('DELETE FROM block_device_mappings WHERE NOT (instance_uuid::text = ANY($1::text[]))', [[...ours]]);
    await stack.db.query('DELETE FROM instances WHERE NOT (uuid::text = ANY($1::text[]))', [[...ours]]);
    const { rows } = await stack.db.query<{ uuid: string }>('SELECT uuid::text AS uuid FROM instances');
    if (rows.some((r) => !ours.has(r.uuid))) throw new Error(`instances not made by this file are still recorded (${rows.map((r) => r.uuid).join(', ')}): the stack is left running rather than destroying their domains`);
    await stack.stop();
  }
  await temporal?.stop();
  for (const f of scratchFiles) await rm(f, { force: true });
});

async function until<T>(what: string, fn: () => Promise<T | null | undefined>, timeoutMs = 90_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`${what} within ${timeoutMs / 1000} s`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

describe('agent discovery (TETHER_DISCOVER_DOMAINS=1)', () => {
  it('imports a running domain tether did not know, without a restart; it then takes an attach and a detach on that agent; the checker is clean', async () => {
    const v = await volume(stack, 'discovered-data');
    const name = `discover-${stack.id}`;
    const { uuid, scratch } = await foreignDomain(stack, name, v.id, scratchFiles);
    ours.add(uuid);
    const pid = await qemuPid(name);
    const host = `discover-host-${stack.id}`;

    // only this file's domains (TETHER_DISCOVER_NAMES): the daemon is shared with other tests
    agent = await startAgentProcess(stack, host, { TETHER_DISCOVER_DOMAINS: '1', TETHER_DISCOVER_NAMES: `^discover-${stack.id}` });
    // the import registers the instance, then adopts its volume: done once the BDM is there
    await until('the agent did not import the domain with its volume', () => liveBdm(stack.db, uuid, v.id));
    const instance = await getInstance(stack.db, uuid);
    expect(instance).toMatchObject({ uuid, host, vmState: 'active', taskState: null, libvirtDomain: name });
    expect(await liveBdm(stack.db, uuid, v.id)).toMatchObject({ deviceName: '/dev/sdb', attachStatus: 'attached' });
    expect(await stack.blockStorage.getVolume(v.id)).toMatchObject({ status: 'in-use', attachments: [{ serverId: uuid, status: 'attached' }] });
    // nothing else of the shared daemon was taken
    expect(agent.output().match(/discovered a domain tether did not know: imported/g)).toHaveLength(1);
    expect(agent.output()).toMatch(new RegExp(`discovered a domain tether did not know: imported.*${uuid}|${uuid}.*discovered a domain tether did not know: imported`));
    // the scratch disk is left where it was
    expect(diskElements(await stack.libvirt.getXml(uuid)).find((d) => d.serial === 'scratch-disk')).toMatchObject({ target: 'sdc' });
    expect(scratch).toBeTruthy();

    const added = await volume(stack, 'discovered-added');
    const attached = await stack.service.awaitAttach((await stack.service.attachVolume({ server: uuid, volume: added.id })).handle);
    expect(diskElements(await stack.libvirt.getXml(uuid)).map((d) => d.serial).sort()).toEqual([v.id, 'scratch-disk', added.id].sort());
    expect(attached.device).toMatch(/^\/dev\/sd[a-z]$/);
    await stack.service.awaitDetach((await stack.service.detachVolume({ server: uuid, volume: added.id })).handle);
    expect(diskElements(await stack.libvirt.getXml(uuid)).map((d) => d.serial).sort()).toEqual([v.id, 'scratch-disk'].sort());
    expect(await qemuPid(name)).toBe(pid);

    const report = await inspectInvariants({ db: stack.db, blockStorage: stack.blockStorage, libvirt: stack.libvirt, client: stack.client, controlTaskQueue: stack.controlTaskQueue, host });
    const mine = report.disagreements.filter((d) => d.instanceUuid === uuid || d.volumeId === v.id || d.volumeId === added.id);
    expect(mine, formatDisagreements(mine)).toEqual([]);
  });
});
