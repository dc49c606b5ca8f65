/**
 * Two compute hosts that share nothing: host A on the system libvirt daemon, host B on a daemon of
 * its own (stack/libvirtd-isolated.ts: its own sockets, persistent domains, secrets and QEMU
 * processes), each with its own compute agent. Servers with volumes migrate from A to B and back;
 * after each move the target has the domain, its disks and their libvirt secrets, and the source
 * has nothing: no domain, no secret, no QEMU process, no open file (so no image lock) on a volume.
 *
 * A running server carries a file volume and a LUKS volume. A CHAP-protected iSCSI volume rides on a
 * stopped server: the volume service answers for it the connection_info Cinder's LVM/iSCSI driver
 * gives (an iSCSI back end stands in for the file), and this machine's QEMU has no iSCSI block
 * driver (Debian's qemu-block-extra), so that disk can be defined in a domain but not opened by QEMU.
 */
import { randomBytes } from 'node:crypto';
import { readFile, readdir, readlink } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { NativeConnection } from '@temporalio/worker';
import { localVolumesOf, startTestStack, type TestStack } from './support/test-stack.ts';
import { ComputeAgent } from '../workers/compute-agent.ts';
import { LocalVolumeService } from '../src/blockstorage/local-volume-service.ts';
import type { ConnectionInfo, HostConnector, Instance, Volume } from '../src/domain/types.ts';
import { setInstanceState } from '../src/db/instances.ts';
import { LibvirtConnection } from '../src/libvirt/binding.ts';
import { diskElements } from '../src/host/domain-disks.ts';
import { authSecretUuid, encryptionSecretUuid } from '../src/host/disk-secrets.ts';
import { instanceTaskQueue } from '../src/domain/task-queues.ts';
import { inspectInvariants } from '../src/checker/invariants.ts';
import { startIsolatedLibvirtd, type IsolatedLibvirtd } from '../stack/libvirtd-isolated.ts';

/** The embedded volume service, except that the volumes named in `chap` answer as CHAP-protected iSCSI LUNs. */
class VolumesWithIscsi extends LocalVolumeService {
  readonly chap = new Set<string>();
  private readonly volumeOf = new Map<string, string>();

  override async createAttachment(volumeId: string, instanceUuid: string) {
    const ref = await super.createAttachment(volumeId, instanceUuid);
    this.volumeOf.set(ref.attachmentId, volumeId);
    return ref;
  }

  override async updateAttachment(attachmentId: string, connector: HostConnector & { mountpoint?: string }): Promise<ConnectionInfo> {
    const info = await super.updateAttachment(attachmentId, connector);
    const volumeId = this.volumeOf.get(attachmentId);
    if (!volumeId || !this.chap.has(volumeId)) return info;
    return {
      driver_volume_type: 'iscsi',
      data: {
        target_portal: '192.0.2.10:3260',
        target_iqn: `iqn.2010-10.org.openstack:volume-${volumeId}`,
        target_lun: 1,
        auth_method: 'CHAP',
        auth_username: 'chap-user',
        auth_password: `chap-${volumeId.slice(0, 8)}`,
        access_mode: 'rw',
        volume_id: volumeId,
      },
      serial: volumeId,
    };
  }
}

const volumesWithIscsi = localVolumesOf(VolumesWithIscsi);

/** One compute host as the test sees it: its name, its own connection to its own daemon, where its QEMU pid files are. */
interface Host {
  name: string;
  libvirt: LibvirtConnection;
  qemuPidFile(domainName: string): string;
}

let stack: TestStack<VolumesWithIscsi>;
let hypervisor: IsolatedLibvirtd;
let agentB: ComputeAgent;
let connectionB: NativeConnection;
let a: Host;
let b: Host;
let running: Instance;
let stopped: Instance;
let fileVolume: Volume;
let luksVolume: Volume;
let chapVolume: Volume;

beforeAll(async () => {
  const [started, isolated] = await Promise.all([
    startTestStack({ blockStorage: volumesWithIscsi }),
    startIsolatedLibvirtd({ name: `test-${randomBytes(3).toString('hex')}`, stateDir: path.join(os.tmpdir(), `tether-hv-${process.pid}`) }),
  ]);
  stack = started;
  hypervisor = isolated;
  a = { name: stack.host, libvirt: stack.libvirt, qemuPidFile: (name) => `/run/libvirt/qemu/${name}.pid` };
  b = { name: `${stack.host}-b`, libvirt: await LibvirtConnection.open(hypervisor.uri), qemuPidFile: (name) => hypervisor.qemuPidFile(name) };
  connectionB = await NativeConnection.connect({ address: stack.temporalAddress });
  agentB = new ComputeAgent({
    connection: connectionB,
    namespace: 'default',
    host: b.name,
    db: stack.db,
    databaseUrl: stack.databaseUrl,
    libvirt: b.libvirt,
    volumeEncryption: stack.blockStorage,
  });
  await agentB.start();

  const servers = await Promise.all(['hv-running', 'hv-stopped'].map((name) => stack.service.createServer({ name, host: a.name })));
  await Promise.all(servers.map((s) => s.handle.result()));
  running = await stack.service.resolveServer(servers[0]!.instance.uuid);
  stopped = await stack.service.resolveServer(servers[1]!.instance.uuid);
  // tether has no stop action: power the domain off as an operator's virsh would, and say so in the database.
  await a.libvirt.destroyDomain(stopped.uuid);
  await setInstanceState(stack.db, stopped.uuid, { vmState: 'stopped', taskState: null });

  [fileVolume, luksVolume, chapVolume] = await Promise.all([
    stack.service.createVolume({ name: 'hv-file', size: 1 }),
    stack.service.createVolume({ name: 'hv-luks', size: 1, volumeType: 'luks' }),
    stack.service.createVolume({ name: 'hv-chap', size: 1 }),
  ]);
  stack.blockStorage.chap.add(chapVolume.id);
  for (const [server, volume] of [
    [running, fileVolume],
    [running, luksVolume],
    [stopped, chapVolume],
  ] as const) {
    await stack.service.awaitAttach((await stack.service.attachVolume({ server: server.uuid, volume: volume.id })).handle);
  }
});

afterAll(async () => {
  await agentB?.stop();
  await connectionB?.close();
  // Nothing of ours may stay on the shared system daemon, whatever failed above.
  for (const v of [fileVolume, luksVolume, chapVolume]) {
    if (!v) continue;
    await stack?.libvirt.undefineSecret(authSecretUuid(v.id)).catch(() => undefined);
    await stack?.libvirt.undefineSecret(encryptionSecretUuid(v.id)).catch(() => undefined);
  }
  await b?.libvirt.close();
  await stack?.stop();
  await hypervisor?.stop();
});

/** Pids of the processes whose command line names the domain's uuid (QEMU's `-uuid`). */
async function qemuProcesses(uuid: string): Promise<number[]> {
  const pids: number[] = [];
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const cmdline = await readFile(`/proc/${entry}/cmdline`, 'utf8').catch(() => '');
    if (cmdline.startsWith('qemu-system') || cmdline.includes('/qemu-system')) {
      if (cmdline.split('\0').includes(uuid)) pids.push(Number(entry));
    }
  }
  return pids;
}

/** Pids of the processes that hold `file` open (QEMU's image locks live on an open file). */
async function openers(file: string): Promise<number[]> {
  const pids: number[] = [];
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const fds = await readdir(`/proc/${entry}/fd`).catch(() => [] as string[]);
    for (const fd of fds) {
      if ((await readlink(`/proc/${entry}/fd/${fd}`).catch(() => '')) === file) {
        pids.push(Number(entry));
        break;
      }
    }
  }
  return pids;
}

const pidIn = (file: string) => readFile(file, 'utf8').then((s) => Number.parseInt(s, 10), () => undefined);

/** What one daemon holds of a server and its volumes. */
async function holds(host: Host, server: Instance, volumes: Volume[]) {
  const domain = await host.libvirt.lookupDomain(server.uuid);
  const secrets = new Set((await host.libvirt.listSecrets()).map((s) => s.uuid));
  const liveSerials = domain?.active ? diskElements(await host.libvirt.getXml(server.uuid)).map((d) => d.serial) : [];
  const configSerials = domain ? diskElements(await host.libvirt.getXml(server.uuid, { inactive: true })).map((d) => d.serial) : [];
  return {
    domain: domain ? (domain.active ? 'running' : 'defined') : 'none',
    liveDisks: volumes.filter((v) => liveSerials.includes(v.id)).map((v) => v.name),
    configDisks: volumes.filter((v) => configSerials.includes(v.id)).map((v) => v.name),
    secrets: volumes.flatMap((v) => [
      ...(secrets.has(authSecretUuid(v.id)) ? [`${v.name}:auth`] : []),
      ...(secrets.has(encryptionSecretUuid(v.id)) ? [`${v.name}:luks`] : []),
    ]),
    qemuPid: await pidIn(host.qemuPidFile(server.libvirtDomain!)),
  };
}

async function expectCleanOn(host: Host): Promise<void> {
  const report = await inspectInvariants({ db: stack.db, blockStorage: stack.blockStorage, libvirt: host.libvirt, client: stack.client, controlTaskQueue: stack.controlTaskQueue, host: host.name });
  expect(report.disagreements).toEqual([]);
}

/** Migrates both servers to `to` and checks that `to` has everything and `from` nothing. */
async function moveAndCheck(from: Host, to: Host): Promise<void> {
  const moved = await Promise.all([running, stopped].map((s) => stack.service.migrateServer(s.uuid, to.name)));
  expect(moved.map((m) => [m.host, m.vmState, m.taskState])).toEqual([
    [to.name, 'active', null],
    [to.name, 'stopped', null],
  ]);

  expect(await holds(to, running, [fileVolume, luksVolume])).toMatchObject({
    domain: 'running',
    liveDisks: ['hv-file', 'hv-luks'],
    configDisks: ['hv-file', 'hv-luks'],
    secrets: ['hv-luks:luks'],
  });
  expect(await holds(to, stopped, [chapVolume])).toMatchObject({ domain: 'defined', configDisks: ['hv-chap'], secrets: ['hv-chap:auth'] });
  for (const server of [running, stopped]) {
    expect(await holds(from, server, [fileVolume, luksVolume, chapVolume])).toEqual({ domain: 'none', liveDisks: [], configDisks: [], secrets: [], qemuPid: undefined });
  }

  // One QEMU for the running server, the target daemon's; it alone has the volume files open.
  const qemuPid = (await holds(to, running, [])).qemuPid;
  expect(qemuPid).toBeGreaterThan(0);
  expect(await qemuProcesses(running.uuid)).toEqual([qemuPid]);
  expect(await qemuProcesses(stopped.uuid)).toEqual([]);
  for (const v of [fileVolume, luksVolume]) {
    expect(await openers(path.join(stack.volumeDir, `volume-${v.id}.qcow2`))).toEqual([qemuPid]);
  }

  // The instance queues followed: only the target's agent serves them.
  const agents = { [a.name]: stack.agent, [b.name]: agentB };
  for (const server of [running, stopped]) {
    await expect.poll(() => agents[to.name]!.servedQueues().includes(instanceTaskQueue(server.uuid))).toBe(true);
    await expect.poll(() => agents[from.name]!.servedQueues().includes(instanceTaskQueue(server.uuid))).toBe(false);
  }
  await expectCleanOn(from);
  await expectCleanOn(to);
}

describe('compute hosts on two libvirt daemons that share nothing', () => {
  it('the second daemon is a host of its own: its own socket, and none of the first daemon’s domains or secrets', async () => {
    expect(b.libvirt.uri).toMatch(/^qemu\+unix:\/\/\/system\?socket=/);
    expect(await b.libvirt.lookupDomain(running.uuid)).toBeNull();
    expect(await a.libvirt.lookupDomain(running.uuid)).toMatchObject({ active: true });
    const secretsOnB = (await b.libvirt.listSecrets()).map((s) => s.uuid);
    expect(secretsOnB).not.toContain(encryptionSecretUuid(luksVolume.id));
    expect((await a.libvirt.listSecrets()).map((s) => s.uuid)).toContain(encryptionSecretUuid(luksVolume.id));
    expect(await holds(a, stopped, [chapVolume])).toMatchObject({ domain: 'defined', configDisks: ['hv-chap'], secrets: ['hv-chap:auth'] });
  });

  it('migrates servers with file, LUKS and CHAP volumes to the host on the other daemon: the target defines what it needs, the source keeps nothing', async () => {
    await moveAndCheck(a, b);
  });

  it('an attach after the move runs on the new host, against its own daemon', async () => {
    const extra = await stack.service.createVolume({ name: 'hv-extra', size: 1 });
    const attached = await stack.service.awaitAttach((await stack.service.attachVolume({ server: running.uuid, volume: extra.id })).handle);
    expect(attached.device).toMatch(/^\/dev\/sd/);
    expect((await holds(b, running, [extra])).liveDisks).toEqual(['hv-extra']);
    expect((await holds(a, running, [extra])).liveDisks).toEqual([]);
    await stack.service.awaitDetach((await stack.service.detachVolume({ server: running.uuid, volume: extra.id })).handle);
    expect((await holds(b, running, [extra])).liveDisks).toEqual([]);
  });

  it('migrates them back: the first daemon has everything again, the second nothing', async () => {
    await moveAndCheck(b, a);
  });

  it("the checker of a host reports a secret its daemon keeps for a server that lives on the other host", async () => {
    const stray = authSecretUuid(chapVolume.id);
    await b.libvirt.defineSecret(`<secret ephemeral='no' private='yes'><uuid>${stray}</uuid><usage type='iscsi'><target>tether-stray-${chapVolume.id}</target></usage></secret>`, Buffer.from('x'));
    try {
      const report = await inspectInvariants({ db: stack.db, blockStorage: stack.blockStorage, libvirt: b.libvirt, client: stack.client, controlTaskQueue: stack.controlTaskQueue, host: b.name });
      expect(report.disagreements).toMatchObject([{ kind: 'leaked-secret', volumeId: chapVolume.id }]);
      expect(report.disagreements[0]!.detail).toContain(`no live BDM holds volume ${chapVolume.id} on host ${b.name}`);
    } finally {
      await b.libvirt.undefineSecret(stray);
    }
  });

  it('deleting the servers removes their secrets with their domains', async () => {
    for (const server of [running, stopped]) await stack.service.deleteServer(server.uuid);
    for (const host of [a, b]) {
      for (const server of [running, stopped]) {
        expect(await holds(host, server, [fileVolume, luksVolume, chapVolume])).toEqual({ domain: 'none', liveDisks: [], configDisks: [], secrets: [], qemuPid: undefined });
      }
    }
  });
});
