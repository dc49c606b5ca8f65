/**
 * With a real guest (test/support/guest.ts: a Linux kernel and busybox booted under TCG): the guest
 * sees what tether attaches, by serial, on SCSI and on virtio; a virtio detach completes because the
 * guest releases the disk; data written through one attachment is read back through another, on
 * another server, after migrates (to a second compute agent on the same libvirt daemon, then to a
 * third on a daemon of its own: stack/libvirtd-isolated.ts), and after shelve and unshelve.
 *
 * Host A is the test stack's in-process agent with the guest template; host B a real compute-agent
 * process told by TETHER_DOMAIN_* (the way an operator would), whose server the `tether` CLI creates.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { NativeConnection } from '@temporalio/worker';
import { startTestStack, type TestStack } from './support/test-stack.ts';
import { volume } from './support/fixtures.ts';
import { domainTemplateEnv, Guest, guestDomainTemplate, patternChecksum } from './support/guest.ts';
import { ComputeAgent } from '../workers/compute-agent.ts';
import { inspectInvariants } from '../src/checker/invariants.ts';
import { projectRoot } from '../src/config.ts';
import type { Instance } from '../src/domain/types.ts';
import { LibvirtConnection } from '../src/libvirt/binding.ts';
import { diskElements } from '../src/host/domain-disks.ts';
import type { DomainTemplate } from '../src/libvirt/domain-xml.ts';
import { startIsolatedLibvirtd, type IsolatedLibvirtd } from '../stack/libvirtd-isolated.ts';

const GiB = 1024 ** 3;

/** A compute host of the test: its agent's name and its libvirt daemon. */
interface Host {
  name: string;
  libvirt: LibvirtConnection;
}

let stack: TestStack;
let template: DomainTemplate;
let hypervisor: IsolatedLibvirtd | undefined;
const agents: ComputeAgent[] = [];
const connections: NativeConnection[] = [];
let agentProcess: ChildProcess | undefined;
/** The stack's own host, a second agent (a process) on the same (system) daemon, a third on a daemon of its own. */
let hostA: Host;
let hostB: Host;
let hostC: Host;
let a: Guest;
let b: Guest;
const timings: string[] = [];

async function startAgent(name: string, libvirt: LibvirtConnection): Promise<Host> {
  const connection = await NativeConnection.connect({ address: stack.temporalAddress });
  connections.push(connection);
  const agent = new ComputeAgent({
    connection,
    namespace: 'default',
    host: name,
    db: stack.db,
    databaseUrl: stack.databaseUrl,
    libvirt,
    faults: stack.faults,
    volumeEncryption: stack.blockStorage,
    domainTemplate: template,
  });
  agents.push(agent);
  await agent.start();
  return { name, libvirt };
}

/** workers/compute-agent.ts as a process of its own for host `name`, configured by its environment only; resolves once it is ready. */
async function startAgentProcess(name: string): Promise<Host> {
  const child = spawn(process.execPath, ['--import', 'tsx', path.join(projectRoot, 'workers', 'compute-agent.ts')], {
    cwd: projectRoot,
    env: { ...process.env, ...stack.env, ...domainTemplateEnv(template), TETHER_COMPUTE_HOST: name, TETHER_LOG_LEVEL: 'info' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  agentProcess = child;
  let output = '';
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`compute agent ${name} not ready after 120 s: ${output}`)), 120_000);
    const read = (chunk: Buffer) => {
      output += chunk.toString();
      if (output.includes('compute agent ready')) {
        clearTimeout(timer);
        resolve();
      }
    };
    child.stdout!.on('data', read);
    child.stderr!.on('data', read);
    child.once('exit', (code) => reject(new Error(`compute agent ${name} exited (${code}): ${output}`)));
  });
  return { name, libvirt: stack.libvirt };
}

async function tether(...args: string[]): Promise<string> {
  const { stdout } = await promisify(execFile)(process.execPath, ['bin/tether.js', ...args], { cwd: projectRoot, env: { ...process.env, ...stack.env } });
  return stdout;
}

beforeAll(async () => {
  // Fails here, saying how to build it, when the guest is not built: never skipped.
  template = await guestDomainTemplate();
  [stack, hypervisor] = await Promise.all([
    startTestStack({ domainTemplate: template }),
    startIsolatedLibvirtd({ name: `guest-${randomBytes(3).toString('hex')}`, stateDir: path.join(os.tmpdir(), `tether-guest-hv-${process.pid}`) }),
  ]);
  hostA = { name: stack.host, libvirt: stack.libvirt };
  [hostB, hostC] = await Promise.all([startAgentProcess(`${stack.host}-b`), startAgent(`${stack.host}-c`, await LibvirtConnection.open(hypervisor.uri))]);
  const bootB = async () => {
    const started = Date.now();
    const created = JSON.parse(await tether('server', 'create', 'guest-b', '--host', hostB.name, '--json')) as Instance;
    const guest = await Guest.open(created, hostB.libvirt);
    timings.push(`boot through the CLI and an agent process: ${Date.now() - started} ms`);
    return guest;
  };
  [a, b] = await Promise.all([Guest.boot(stack, 'guest-a'), bootB()]);
  timings.push(`boot in process: ${a.bootMs} ms (two at once)`);
}, 300_000);

afterAll(async () => {
  a?.close();
  b?.close();
  for (const agent of agents) await agent.stop();
  for (const connection of connections) await connection.close();
  if (agentProcess && agentProcess.exitCode === null && agentProcess.signalCode === null) {
    const exited = new Promise((resolve) => agentProcess!.once('exit', resolve));
    agentProcess.kill('SIGTERM');
    await exited;
  }
  await hostC?.libvirt.close();
  await stack?.stop();
  // destroys the domains on its daemon (guest-a, migrated there) and leaves nothing
  await hypervisor?.stop();
  if (timings.length > 0) console.log(`guest timings: ${timings.join('; ')}`);
});

async function attach(guest: Guest, volumeId: string, device?: string) {
  const started = await stack.service.attachVolume({ server: guest.instance.uuid, volume: volumeId, ...(device ? { device } : {}) });
  return stack.service.awaitAttach(started.handle);
}

async function detach(guest: Guest, volumeId: string) {
  const { handle } = await stack.service.detachVolume({ server: guest.instance.uuid, volume: volumeId });
  await stack.service.awaitDetach(handle);
}

/** The checker finds every store in agreement, on every host against its own daemon. */
async function expectConsistent() {
  for (const host of [hostA, hostB, hostC]) {
    const report = await inspectInvariants({ db: stack.db, blockStorage: stack.blockStorage, libvirt: host.libvirt, client: stack.client, controlTaskQueue: stack.controlTaskQueue, host: host.name });
    expect(report.disagreements).toEqual([]);
  }
}

/** The serials of the disks a host's daemon has in the domain (live, or the persistent config). */
async function serialsOn(host: Host, guest: Guest, options: { inactive?: boolean } = {}): Promise<string[]> {
  return diskElements(await host.libvirt.getXml(guest.instance.uuid, options)).map((d) => d.serial ?? '');
}

// Each boot of the guest takes ~3-7 s under TCG, many times that on a crowded machine.
describe('a real guest', { timeout: 240_000 }, () => {
  it('sees a SCSI attach by its serial (the volume id) and no longer sees it after the detach', async () => {
    const v = await volume(stack, 'g-scsi');
    const attached = await attach(a, v.id);
    expect(attached.device).toMatch(/^\/dev\/sd[a-z]$/);
    const disk = await a.waitForDisk(v.id);
    expect(disk).toMatchObject({ bus: 'scsi', serial: v.id, bytes: 1 * GiB });
    expect(await a.write(v.id, 'scsi-1')).toBe(patternChecksum('scsi-1'));

    await detach(a, v.id);
    await a.waitForNoDisk(v.id);
    expect(await serialsOn(hostA, a)).not.toContain(v.id);
    expect((await stack.blockStorage.getVolume(v.id)).status).toBe('available');
  });

  it('releases a virtio disk when asked: the detach completes', async () => {
    const v = await volume(stack, 'g-virtio');
    const attached = await attach(a, v.id, '/dev/vdb');
    expect(attached.device).toBe('/dev/vdb');
    const disk = await a.waitForDisk(v.id);
    // QEMU gives virtio-blk 20 characters of the serial
    expect(disk).toMatchObject({ bus: 'virtio', serial: v.id.slice(0, 20), bytes: 1 * GiB });
    expect(await a.write(v.id, 'virtio-1')).toBe(patternChecksum('virtio-1'));

    await detach(a, v.id);
    await a.waitForNoDisk(v.id);
    expect(await serialsOn(hostA, a)).not.toContain(v.id);
    expect(await serialsOn(hostA, a, { inactive: true })).not.toContain(v.id);
    expect((await stack.service.listAttachments(a.instance.uuid)).bdms.map((bdm) => bdm.volumeId)).not.toContain(v.id);
    expect(await stack.blockStorage.getVolume(v.id)).toMatchObject({ status: 'available', attachments: [] });
    await expectConsistent();
  });

  it('reads back on another server, through another bus, what was written through one attachment', async () => {
    const v = await volume(stack, 'g-move');
    await attach(a, v.id, '/dev/vdb');
    await a.waitForDisk(v.id);
    const written = await a.write(v.id, 'moved-between-servers');
    expect(written).toBe(patternChecksum('moved-between-servers'));
    await detach(a, v.id);
    await a.waitForNoDisk(v.id);

    await attach(b, v.id);
    expect((await b.waitForDisk(v.id)).bus).toBe('scsi');
    expect(await b.read(v.id)).toBe(written);
    await detach(b, v.id);
    await b.waitForNoDisk(v.id);
  });

  it('sees an online extend: the disk grows under the running guest (virtio and SCSI), its data intact', async () => {
    const onVirtio = await volume(stack, 'g-extend-virtio');
    const onScsi = await stack.service.createVolume({ name: 'g-extend-luks', size: 1, volumeType: 'luks' });
    await attach(a, onVirtio.id, '/dev/vdd');
    await attach(a, onScsi.id);
    await a.waitForDisk(onVirtio.id);
    await a.waitForDisk(onScsi.id);
    const written = await a.write(onVirtio.id, 'before-extend');
    for (const v of [onVirtio, onScsi]) {
      const { started } = await stack.service.extendVolume({ volume: v.id, newSize: 2, inUse: true });
      expect(await stack.service.awaitExtend(started!.handle)).toMatchObject({ size: 2, live: true, capacity: 2 * GiB });
    }
    // virtio-blk tells the guest itself; SCSI needs a rescan (the guest's /sys/block/X/device/rescan)
    expect(await a.waitForDiskSize(onVirtio.id, 2 * GiB)).toMatchObject({ bus: 'virtio', bytes: 2 * GiB });
    expect(await a.waitForDiskSize(onScsi.id, 2 * GiB)).toMatchObject({ bus: 'scsi', bytes: 2 * GiB });
    expect(await a.read(onVirtio.id)).toBe(written);
    await detach(a, onVirtio.id);
    await detach(a, onScsi.id);
    await a.waitForNoDisk(onVirtio.id);
    await a.waitForNoDisk(onScsi.id);
    await expectConsistent();
  });

  it('shelve and unshelve, then shelve-offload and unshelve: the guest boots again and finds its disk and data', async () => {
    const v = await volume(stack, 'g-shelve');
    await attach(b, v.id);
    await b.waitForDisk(v.id);
    const written = await b.write(v.id, 'before-shelve');

    expect((await stack.service.shelveServer(b.instance.uuid)).vmState).toBe('shelved');
    const unshelved = await stack.service.unshelveServer(b.instance.uuid);
    expect(unshelved.instance.vmState).toBe('active');
    timings.push(`reboot after unshelve: ${await b.reconnect()} ms`);
    expect((await b.waitForDisk(v.id)).serial).toBe(v.id);
    expect(await b.read(v.id)).toBe(written);

    await stack.service.shelveServer(b.instance.uuid);
    expect((await stack.service.shelveOffloadServer(b.instance.uuid)).host).toBeNull();
    expect(await stack.libvirt.lookupDomain(b.instance.uuid)).toBeNull();
    // The domain is defined anew from the host's template: the same guest boots.
    const again = await stack.service.unshelveServer(b.instance.uuid);
    expect(again.devices[v.id]).toMatch(/^\/dev\/sd[a-z]$/);
    timings.push(`reboot after offload and unshelve: ${await b.reconnect()} ms`);
    expect(await b.read(v.id)).toBe(written);
    await expectConsistent();

    await detach(b, v.id);
    await b.waitForNoDisk(v.id);
  });

  it('migrate to an agent on the same daemon, then to one on a daemon of its own: each time the guest sees its SCSI and virtio disks with their data; a virtio detach on the last host completes', async () => {
    const onScsi = await volume(stack, 'g-migrate-scsi');
    const onVirtio = await volume(stack, 'g-migrate-virtio');
    await attach(a, onScsi.id);
    await attach(a, onVirtio.id, '/dev/vdc');
    await a.waitForDisk(onScsi.id);
    await a.waitForDisk(onVirtio.id);
    const writtenScsi = await a.write(onScsi.id, 'migrate-scsi');
    const writtenVirtio = await a.write(onVirtio.id, 'migrate-virtio');

    for (const [from, to] of [
      [hostA, hostB],
      [hostB, hostC],
    ] as const) {
      const moved = await stack.service.migrateServer(a.instance.uuid, to.name);
      expect(moved).toMatchObject({ host: to.name, vmState: 'active' });
      if (from.libvirt !== to.libvirt) expect(await from.libvirt.lookupDomain(a.instance.uuid)).toBeNull();
      expect(await to.libvirt.lookupDomain(a.instance.uuid)).toMatchObject({ active: true });
      timings.push(`reboot after migrate to ${to === hostB ? 'the same daemon' : 'another daemon'}: ${await a.reconnect()} ms`);
      expect((await a.waitForDisk(onScsi.id)).bus).toBe('scsi');
      expect((await a.waitForDisk(onVirtio.id)).bus).toBe('virtio');
      expect(await a.read(onScsi.id)).toBe(writtenScsi);
      expect(await a.read(onVirtio.id)).toBe(writtenVirtio);
    }

    await detach(a, onVirtio.id);
    await a.waitForNoDisk(onVirtio.id);
    expect(await serialsOn(hostC, a)).toEqual([onScsi.id]);
    await expectConsistent();
  });
});
