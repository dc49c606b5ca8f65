/**
 * tether on the production topology: a Temporal cluster of two nodes on PostgreSQL with mTLS
 * (stack/temporal-cluster.ts), every connection through the frontend relay (src/temporal/frontend-relay.ts),
 * two compute hosts that share nothing — host A on the system libvirt daemon, host B on a daemon of
 * its own (stack/libvirtd-isolated.ts) — each with its own compute agent.
 *
 * The lean subset of the end-to-end tests that `npm test` runs on it (the rest run on the dev server,
 * where they cost less): an attach and a detach; a migrate of a server with a volume to the host on
 * the other daemon; attaches in flight when the node whose frontend the workers talk to is SIGKILLed
 * all complete, on the other node, and an attach after works; the invariant checker is clean on
 * both hosts.
 */
import fsp from 'node:fs/promises';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { inject } from 'vitest';
import { NativeConnection } from '@temporalio/worker';
import { needs } from './support/skips.ts';
import { projectRoot } from '../src/config.ts';
import { startTestStack, workflowBundle, type TestStack } from './support/test-stack.ts';
import { ComputeAgent } from '../workers/compute-agent.ts';
import { LibvirtConnection } from '../src/libvirt/binding.ts';
import { diskElements } from '../src/host/domain-disks.ts';
import { inspectInvariants } from '../src/checker/invariants.ts';
import { frontendRelays } from '../src/temporal/client.ts';
import type { Instance } from '../src/domain/types.ts';
import { temporalServerBinaries } from '../stack/temporal-binaries.ts';
import { startTemporalCluster, type TemporalCluster } from '../stack/temporal-cluster.ts';
import { startIsolatedLibvirtd, type IsolatedLibvirtd } from '../stack/libvirtd-isolated.ts';

const { server } = temporalServerBinaries();
const missing = fs.existsSync(server) ? null : `no temporal-server at ${server} (\`npm run setup\` builds it: scripts/build-temporal.sh server)`;

interface Host {
  name: string;
  libvirt: LibvirtConnection;
  /** The daemon's URI, for a CLI process (LIBVIRT_URI). */
  uri: string;
}

const run = promisify(execFile);

describe('tether on a Temporal cluster with mTLS and two libvirt daemons', needs('temporal-server', missing), () => {
  let cluster: TemporalCluster;
  let dataDir: string;
  let stack: TestStack;
  let hypervisor: IsolatedLibvirtd;
  let agentB: ComputeAgent;
  let connectionB: NativeConnection;
  let a: Host;
  let b: Host;

  beforeAll(async () => {
    dataDir = await fsp.mkdtemp(path.join(os.tmpdir(), 'tether-topology-'));
    const url = new URL(inject('databaseAdminUrl'));
    url.pathname = `/temporal_${randomBytes(4).toString('hex')}`;
    [cluster, hypervisor] = await Promise.all([
      startTemporalCluster({ dataDir, databaseUrl: url.toString() }),
      startIsolatedLibvirtd({ name: `topo-${randomBytes(3).toString('hex')}`, stateDir: path.join(dataDir, 'hypervisor-b') }),
      workflowBundle(), // made once per file: meanwhile
    ]);
    stack = await startTestStack({ temporal: { frontends: cluster.frontends, namespace: cluster.namespace, tls: cluster.tls } });
    a = { name: stack.host, libvirt: stack.libvirt, uri: process.env.LIBVIRT_URI ?? 'qemu:///system' };
    b = { name: `${stack.host}-b`, libvirt: await LibvirtConnection.open(hypervisor.uri), uri: hypervisor.uri };
    connectionB = await NativeConnection.connect(stack.dial);
    agentB = new ComputeAgent({
      connection: connectionB,
      namespace: stack.namespace,
      host: b.name,
      db: stack.db,
      databaseUrl: stack.databaseUrl,
      libvirt: b.libvirt,
      volumeEncryption: stack.blockStorage,
    });
    await agentB.start();
  }, 240_000);

  afterAll(async () => {
    await agentB?.stop();
    await connectionB?.close();
    await b?.libvirt.close();
    await stack?.stop();
    for (const relay of await frontendRelays()) await relay.close();
    await hypervisor?.stop();
    await cluster?.stop();
    if (dataDir) await fsp.rm(dataDir, { recursive: true, force: true });
  }, 120_000);

  async function serverOn(host: Host, name: string): Promise<Instance> {
    const { instance, handle } = await stack.service.createServer({ name, host: host.name });
    await handle.result();
    return stack.service.resolveServer(instance.uuid);
  }

  async function disksOn(host: Host, uuid: string): Promise<string[] | null> {
    const domain = await host.libvirt.lookupDomain(uuid);
    if (!domain) return null;
    return diskElements(await host.libvirt.getXml(uuid, { inactive: true })).map((d) => d.serial ?? '');
  }

  async function expectClean(): Promise<void> {
    for (const host of [a, b]) {
      const report = await inspectInvariants({
        db: stack.db,
        blockStorage: stack.blockStorage,
        libvirt: host.libvirt,
        client: stack.client,
        controlTaskQueue: stack.controlTaskQueue,
        host: host.name,
      });
      expect(report.disagreements).toEqual([]);
    }
  }

  /** `tether check --host <host>` as a user runs it: its own process, over mTLS through its own relay to the frontends. */
  async function tetherCheck(host: Host): Promise<{ code: number; stdout: string; stderr: string }> {
    try {
      const { stdout, stderr } = await run(process.execPath, ['bin/tether.js', 'check', '--host', host.name], {
        cwd: projectRoot,
        env: { ...process.env, ...stack.env, LIBVIRT_URI: host.uri },
        timeout: 120_000,
      });
      return { code: 0, stdout, stderr };
    } catch (err) {
      const e = err as { code: number; stdout: string; stderr: string };
      return { code: e.code, stdout: e.stdout, stderr: e.stderr };
    }
  }

  it('attaches and detaches a volume end to end, every call over mTLS', async () => {
    expect(stack.dial.tls).toMatchObject({ serverNameOverride: 'localhost' });
    expect(stack.dial.tls?.clientCertPair).toBeDefined();
    const vm = await serverOn(a, 'topo-e2e');
    const v = await stack.service.createVolume({ name: 'topo-e2e', size: 1 });
    const attached = await stack.service.awaitAttach((await stack.service.attachVolume({ server: vm.uuid, volume: v.id })).handle);
    expect(attached.device).toMatch(/^\/dev\/sd/);
    expect(await disksOn(a, vm.uuid)).toContain(v.id);
    const detach = await stack.service.detachVolume({ server: vm.uuid, volume: v.id });
    await stack.service.awaitDetach(detach.handle);
    expect(await disksOn(a, vm.uuid)).not.toContain(v.id);
    expect((await stack.service.showVolume(v.id)).status).toBe('available');
    await expectClean();
  });

  it('migrates a server with a volume to the host on the other libvirt daemon: gone from the first', async () => {
    const vm = await serverOn(a, 'topo-move');
    const v = await stack.service.createVolume({ name: 'topo-move', size: 1 });
    await stack.service.awaitAttach((await stack.service.attachVolume({ server: vm.uuid, volume: v.id })).handle);
    const moved = await stack.service.migrateServer(vm.uuid, b.name);
    expect(moved).toMatchObject({ host: b.name, vmState: 'active', taskState: null });
    expect(await disksOn(b, vm.uuid)).toContain(v.id);
    expect(await b.libvirt.lookupDomain(vm.uuid)).toMatchObject({ active: true });
    expect(await a.libvirt.lookupDomain(vm.uuid)).toBeNull();
    await expectClean();
  });

  it('completes every attach in flight when the node whose frontend the workers use is SIGKILLed; an attach after works', async () => {
    const [relay] = await frontendRelays();
    expect(relay).toBeDefined();
    const servers = await Promise.all([serverOn(a, 'topo-kill-a'), serverOn(b, 'topo-kill-b')]);
    const volumes = await Promise.all(Array.from({ length: 4 }, (_, i) => stack.service.createVolume({ name: `topo-kill-${i}`, size: 1 })));
    const started = await Promise.all(volumes.map((v, i) => stack.service.attachVolume({ server: servers[i % 2]!.uuid, volume: v.id })));

    const victim = cluster.processes.find((p) => p.address === relay!.current)!;
    expect(victim).toBeDefined();
    const finished: boolean[] = volumes.map(() => false);
    const results = Promise.all(started.map((s, i) => stack.service.awaitAttach(s.handle).then((r) => ((finished[i] = true), r))));
    cluster.kill(victim.name, 'SIGKILL');
    const inFlightAtKill = finished.filter((f) => !f).length;

    const attached = await results;
    expect(inFlightAtKill).toBeGreaterThan(0);
    expect(attached.map((r) => r.device)).toEqual(attached.map(() => expect.stringMatching(/^\/dev\/sd/)));
    expect(cluster.running(victim.name)).toBe(false);
    expect(relay!.current).not.toBe(victim.address);
    for (const [i, v] of volumes.entries()) {
      const host = i % 2 === 0 ? a : b;
      expect(await disksOn(host, servers[i % 2]!.uuid)).toContain(v.id);
    }

    const after = await stack.service.createVolume({ name: 'topo-after', size: 1 });
    const done = await stack.service.awaitAttach((await stack.service.attachVolume({ server: servers[1]!.uuid, volume: after.id })).handle);
    expect(done.device).toMatch(/^\/dev\/sd/);
    await expectClean();
    // the CLI too, while the killed node is still down: its relay finds the frontend that answers
    expect(cluster.running(victim.name)).toBe(false);
    for (const host of [a, b]) {
      const check = await tetherCheck(host);
      expect(check, check.stderr).toMatchObject({ code: 0 });
      expect(check.stdout).toContain('no disagreements');
    }
  }, 240_000);
});
