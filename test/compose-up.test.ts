/**
 * docker-compose.yml brought up for real (test/compose.test.ts only validates it): the images are
 * built without any registry from what the build scripts make (scripts/compose/images.sh), the
 * unchanged compose file runs on podman through Debian's docker-compose (test/support/compose-stack.ts),
 * a server is created through the CLI in the API's container — a QEMU domain on this machine's
 * libvirt, defined by the compute agent in its container through the mounted socket — a volume is
 * created, attached and detached through the API, and after `down` nothing of it is left.
 * The same run is `npm run compose:smoke` on its own.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { setTimeout as sleep } from 'node:timers/promises';
import { podman, run, startComposeStack, type ComposeStack } from './support/compose-stack.ts';
import { needs } from './support/skips.ts';

const LIBVIRT_URI = 'qemu:///system';
const LIBVIRT_SOCKET = '/var/run/libvirt/libvirt-sock';

function missing(): string | null {
  if (process.getuid?.() !== 0) return 'needs root (rootful podman, the host libvirt socket)';
  for (const [cmd, args, hint] of [
    ['podman', ['--version'], 'scripts/test-deps/podman.sh installs it'],
    ['docker-compose', ['version'], '`npm run setup` installs it'],
    ['virsh', ['--version'], '`npm run setup` installs it'],
  ] as const) {
    if (spawnSync(cmd, [...args], { stdio: 'ignore' }).status !== 0) return `${cmd} is not installed (${hint})`;
  }
  if (!fs.existsSync(LIBVIRT_SOCKET)) return `no libvirt socket at ${LIBVIRT_SOCKET}`;
  return null;
}

const virsh = (...args: string[]) => run('virsh', ['-c', LIBVIRT_URI, ...args]);

async function until<T>(what: string, fn: () => Promise<T | undefined>, timeoutMs = 90_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(250);
  }
}

describe('docker-compose.yml brought up on podman', needs('compose-up', missing()), () => {
  let stack: ComposeStack;
  const timings: Record<string, number> = {};
  let server: { uuid: string; libvirtDomain: string } | undefined;
  let volumeId: string | undefined;

  const api = async (method: string, path: string, body?: unknown) => {
    const res = await fetch(`${stack.apiUrl}${path}`, {
      method,
      headers: body ? { 'content-type': 'application/json' } : {},
      body: body ? JSON.stringify(body) : undefined,
    });
    const text = await res.text();
    return { status: res.status, body: text ? (JSON.parse(text) as Record<string, any>) : {} };
  };
  const volumeStatus = async (id: string) => (await api('GET', `/v3/volumes/${id}`)).body.volume?.status as string | undefined;
  const cli = async (...args: string[]) => {
    const r = await stack.exec('tether-api', ['node', 'bin/tether.js', ...args, '--json']);
    if (r.code !== 0) throw new Error(`tether ${args.join(' ')} failed: ${r.stderr}`);
    return JSON.parse(r.stdout) as Record<string, any>;
  };

  beforeAll(async () => {
    stack = await startComposeStack({ log: (line) => console.log(`[compose] ${line}`) });
    timings.images = stack.timings.images;
    timings.up = stack.timings.up;
  }, 40 * 60_000);

  afterAll(async () => {
    await stack?.down();
    // What this file made on the host, if a test stopped half-way: its domain (by its exact name)
    // and its volume folder.
    if (server && (await virsh('dominfo', server.libvirtDomain)).code === 0) {
      await virsh('destroy', server.libvirtDomain);
      await virsh('undefine', server.libvirtDomain);
    }
    if (stack) fs.rmSync(stack.volumeDir, { recursive: true, force: true });
    console.log(`[compose] timings (s): ${JSON.stringify(Object.fromEntries(Object.entries(timings).map(([k, v]) => [k, Math.round(v * 10) / 10])))}`);
  }, 5 * 60_000);

  it('runs every service of the unchanged file: one-shot jobs exited 0, the rest up, healthchecks healthy', async () => {
    const r = await podman(['ps', '-a', '--filter', `label=com.docker.compose.project=${stack.project}`, '--format', 'json']);
    expect(r.code, r.stderr).toBe(0);
    const containers = JSON.parse(r.stdout) as Array<{ Labels: Record<string, string>; State: string; ExitCode: number; Status: string }>;
    const byService = new Map<string, typeof containers>();
    for (const c of containers) {
      const name = c.Labels['com.docker.compose.service']!;
      byService.set(name, [...(byService.get(name) ?? []), c]);
    }
    const states = Object.fromEntries([...byService].map(([name, cs]) => [name, cs.map((c) => (c.State === 'exited' ? `exited ${c.ExitCode}` : c.State))]));
    expect(states).toEqual({
      postgresql: ['running'],
      'temporal-schema': ['exited 0'],
      temporal: ['running'],
      'temporal-setup': ['exited 0'],
      'temporal-ui': ['running'],
      'tether-volume-dir': ['exited 0'],
      'tether-codec-server': ['running'],
      'tether-api': ['running'],
      'tether-control-plane': ['running', 'running'],
      'tether-compute-agent': ['running'],
    });
    for (const name of ['postgresql', 'temporal', 'tether-api']) expect(byService.get(name)![0]!.Status, name).toContain('(healthy)');
    // The UI answers on its published port.
    const ui = await fetch(`http://127.0.0.1:${stack.env.TEMPORAL_UI_PORT}/`);
    expect(ui.status).toBe(200);
  });

  it("attaches a volume through the API to a domain on the host's libvirt, and detaches it", async () => {
    const t0 = performance.now();
    // The server: the CLI in the API's container starts CreateServer; the compute agent (in its
    // container) defines and starts the domain on this machine's libvirtd.
    const created = await cli('server', 'create', 'compose-vm', '--host', stack.computeHost);
    server = { uuid: created.uuid, libvirtDomain: created.libvirtDomain };
    expect(created.vmState).toBe('active');
    expect((await virsh('domstate', server.libvirtDomain)).stdout.trim()).toBe('running');
    timings.serverCreate = (performance.now() - t0) / 1000;

    const v = await api('POST', '/v3/volumes', { volume: { size: 1, name: 'compose-v1' } });
    expect(v.status, JSON.stringify(v.body)).toBe(202);
    volumeId = v.body.volume.id as string;
    await until('the volume to be available', async () => ((await volumeStatus(volumeId!)) === 'available' ? true : undefined));
    const file = fs.readdirSync(stack.volumeDir).find((f) => f.includes(volumeId!));
    expect(file, `a file of volume ${volumeId} in ${stack.volumeDir}`).toBeDefined();

    const t1 = performance.now();
    const attach = await api('POST', `/v2.1/servers/${server.uuid}/os-volume_attachments`, { volumeAttachment: { volumeId } });
    expect(attach.status, JSON.stringify(attach.body)).toBe(200);
    expect(attach.body.volumeAttachment.device).toMatch(/^\/dev\/[sv]d[b-z]$/);
    await until('the volume to be in-use', async () => ((await volumeStatus(volumeId!)) === 'in-use' ? true : undefined));
    timings.attach = (performance.now() - t1) / 1000;
    const live = await virsh('dumpxml', server.libvirtDomain);
    expect(live.stdout).toContain(`${stack.volumeDir}/${file}`);
    const listed = await api('GET', `/v2.1/servers/${server.uuid}/os-volume_attachments`);
    expect(listed.body.volumeAttachments.map((a: { volumeId: string }) => a.volumeId)).toEqual([volumeId]);

    const t2 = performance.now();
    const detach = await api('DELETE', `/v2.1/servers/${server.uuid}/os-volume_attachments/${volumeId}`);
    expect(detach.status, JSON.stringify(detach.body)).toBe(202);
    await until('the volume to be available again', async () => ((await volumeStatus(volumeId!)) === 'available' ? true : undefined));
    timings.detach = (performance.now() - t2) / 1000;
    expect((await virsh('dumpxml', server.libvirtDomain)).stdout).not.toContain(stack.volumeDir);

    // Everything this test made through the stack, undone through the stack.
    const deleted = await cli('server', 'delete', server.uuid);
    expect(deleted.deleted).toBe(server.uuid);
    expect((await virsh('dominfo', server.libvirtDomain)).code).not.toBe(0);
    expect((await api('DELETE', `/v3/volumes/${volumeId}`)).status).toBe(202);
    await until('the volume file to be deleted', async () => (fs.readdirSync(stack.volumeDir).length === 0 ? true : undefined));
  }, 5 * 60_000);

  it('comes down leaving nothing behind: containers, volumes, network, firewall chains, domain', async () => {
    const { firewallChainsLeft } = await stack.down();
    timings.down = stack.timings.down!;
    expect(await stack.leftovers()).toEqual({ containers: [], volumes: [], networks: [] });
    expect(firewallChainsLeft).toEqual([]);
    const domains = (await virsh('list', '--all', '--name')).stdout;
    if (server) expect(domains).not.toContain(server.libvirtDomain);
  }, 5 * 60_000);
});
