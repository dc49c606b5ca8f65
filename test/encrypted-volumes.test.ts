/**
 * Encrypted volumes end to end on the real stack (Temporal dev server, PostgreSQL, libvirtd + QEMU
 * under TCG): a `luks` volume is a LUKS-encrypted qcow2 file whose key lives in the key store; the
 * compute host puts its passphrase into a libvirt secret for the hot-plug and removes it at detach
 * or rollback; the passphrase never reaches workflow history, logs or the BDM rows.
 */
import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { NativeConnection } from '@temporalio/worker';
import { startTestStack, type TestStack } from './support/test-stack.ts';
import { runningServer, storesOf } from './support/fixtures.ts';
import { openstackJson, startTestApi, writeCloud, type Cloud, type RunningApi } from './support/clouds.ts';
import { projectRoot } from '../src/config.ts';
import { encryptionSecretUuid } from '../src/host/disk-secrets.ts';
import { passphraseOf } from '../src/blockstorage/volume-key-store.ts';
import { inspectInvariants } from '../src/checker/invariants.ts';
import { ComputeAgent } from '../workers/compute-agent.ts';
import type { Instance, Volume } from '../src/domain/types.ts';

const run = promisify(execFile);
// LUKS volumes cost a PBKDF2 run at creation and at each attach; CLI runs start a process each.
vi.setConfig({ testTimeout: 180_000 });

let stack: TestStack;
let vm: Instance;
/** Everything the in-process workers and agent write to stdout/stderr while this file runs. */
const output: string[] = [];
const writes = { out: process.stdout.write.bind(process.stdout), err: process.stderr.write.bind(process.stderr) };

beforeAll(async () => {
  process.stdout.write = ((chunk: string | Uint8Array, ...rest: unknown[]) => {
    output.push(Buffer.from(chunk).toString('utf8'));
    return (writes.out as (...a: unknown[]) => boolean)(chunk, ...rest);
  }) as typeof process.stdout.write;
  process.stderr.write = ((chunk: string | Uint8Array, ...rest: unknown[]) => {
    output.push(Buffer.from(chunk).toString('utf8'));
    return (writes.err as (...a: unknown[]) => boolean)(chunk, ...rest);
  }) as typeof process.stderr.write;
  stack = await startTestStack();
  vm = await runningServer(stack, 'vm-luks');
});

afterAll(async () => {
  process.stdout.write = writes.out;
  process.stderr.write = writes.err;
  await stack?.stop();
});

function encryptedVolume(name: string): Promise<Volume> {
  return stack.service.createVolume({ name, size: 1, volumeType: 'luks' });
}

/** The volume's key and passphrase as they would leak: hex passphrase, base64 and hex of the key. */
async function keyForms(volumeId: string): Promise<string[]> {
  const encryption = await stack.blockStorage.getVolumeEncryption(volumeId);
  const key = await stack.blockStorage.getEncryptionKey(volumeId, encryption!);
  return [passphraseOf(key).toString('utf8'), key.toString('base64'), key.toString('hex'), [...key].join(',')];
}

/** Every string and byte array of a value (history payloads are bytes), as one text. */
function allText(value: unknown, out: string[] = []): string[] {
  if (value instanceof Uint8Array) out.push(Buffer.from(value).toString('utf8'), Buffer.from(value).toString('base64'));
  else if (typeof value === 'string') out.push(value);
  else if (Array.isArray(value)) value.forEach((v) => allText(v, out));
  else if (value && typeof value === 'object') Object.values(value).forEach((v) => allText(v, out));
  else if (value !== null && value !== undefined) out.push(String(value));
  return out;
}

async function volumeSecrets(volumeId: string) {
  return (await stack.libvirt.listSecrets()).filter((s) => s.uuid === encryptionSecretUuid(volumeId));
}

describe('an encrypted (luks) volume', () => {
  it('is a LUKS-encrypted qcow2 file, its key in the key store encrypted under the master key', async () => {
    const v = await encryptedVolume('luks-create');
    expect(v).toMatchObject({ encrypted: true, status: 'available' });
    const encryption = await stack.blockStorage.getVolumeEncryption(v.id);
    expect(encryption).toEqual({ provider: 'luks', cipher: 'aes-xts-plain64', keySize: 512, controlLocation: 'front-end', encryptionKeyId: expect.any(String) });

    const { rows } = await stack.db.query<{ file_path: string }>('SELECT file_path FROM volumes WHERE id = $1', [v.id]);
    const { stdout } = await run('qemu-img', ['info', '--output=json', rows[0]!.file_path]);
    const info = JSON.parse(stdout) as { format: string; encrypted?: boolean; 'format-specific'?: { data?: { encrypt?: { format?: string } } } };
    expect(info).toMatchObject({ format: 'qcow2', encrypted: true });
    expect(info['format-specific']?.data?.encrypt?.format).toBe('luks');

    const key = await stack.blockStorage.getEncryptionKey(v.id, encryption!);
    expect(key).toHaveLength(64);
    const stored = await stack.db.query<{ ciphertext: Buffer }>('SELECT ciphertext FROM volume_encryption_keys WHERE volume_id = $1', [v.id]);
    expect(stored.rows).toHaveLength(1);
    expect(stored.rows[0]!.ciphertext.equals(key)).toBe(false);
    const tables = JSON.stringify((await stack.db.query('SELECT encode(ciphertext, $1) AS c, encode(ciphertext, $2) AS b, * FROM volume_encryption_keys', ['hex', 'base64'])).rows);
    for (const form of await keyForms(v.id)) expect(tables).not.toContain(form);

    // a plain volume has no encryption metadata; a multiattach encrypted volume is refused
    const plain = await stack.service.createVolume({ name: 'plain', size: 1 });
    expect(await stack.blockStorage.getVolumeEncryption(plain.id)).toBeNull();
    await expect(stack.service.createVolume({ name: 'luks-multi', size: 1, volumeType: 'luks', multiattach: true })).rejects.toThrow(/Multiattach is not supported for encrypted volumes/);
    await expect(stack.service.createVolume({ name: 'x', size: 1, volumeType: 'gold' })).rejects.toThrow(/Volume type gold could not be found/);
  });

  it('attaches to a running QEMU domain through a libvirt passphrase secret, which detach removes; the passphrase stays out of history, logs and BDMs', async () => {
    const v = await encryptedVolume('luks-attach');
    const forms = await keyForms(v.id);
    const outputBefore = output.length;

    const started = await stack.service.attachVolume({ server: vm.uuid, volume: v.id });
    const attached = await stack.service.awaitAttach(started.handle);

    // the live domain has the disk with <encryption format='luks'> naming the secret
    const liveXml = await stack.libvirt.getXml(vm.uuid);
    const disk = /<disk[^>]*>(?:(?!<\/disk>)[\s\S])*<\/disk>/g;
    const ours = (liveXml.match(disk) ?? []).find((d) => d.includes(`<serial>${v.id}</serial>`));
    expect(ours).toMatch(/<driver name='qemu' type='qcow2'/);
    expect(ours).toMatch(new RegExp(`<encryption format='luks'[^>]*>\\s*<secret type='passphrase' uuid='${encryptionSecretUuid(v.id)}'/>`));
    const { configDisks } = await storesOf(stack, vm.uuid);
    expect(configDisks.some((d) => d.serial === v.id)).toBe(true);
    // the secret exists while attached, for the volume's file
    const secrets = await volumeSecrets(v.id);
    expect(secrets).toEqual([{ uuid: encryptionSecretUuid(v.id), usageType: 'volume', usageId: expect.stringContaining(`volume-${v.id}.qcow2`) }]);
    const { stdout: listed } = await run('virsh', ['-c', process.env.LIBVIRT_URI ?? 'qemu:///system', 'secret-list']);
    expect(listed).toContain(encryptionSecretUuid(v.id));

    const detach = await stack.service.detachVolume({ server: vm.uuid, volume: v.id });
    await detach.handle.result();
    expect(await volumeSecrets(v.id)).toEqual([]);
    expect((await stack.blockStorage.getVolume(v.id)).status).toBe('available');
    expect(diskCount(await stack.libvirt.getXml(vm.uuid), v.id)).toBe(0);

    // nowhere in plain text: the workflows' raw histories, the process output, the BDM rows, QEMU's log
    const histories = [
      await started.handle.fetchHistory(),
      await stack.client.workflow.getHandle(detach.workflowId).fetchHistory(),
    ];
    const historyText = allText(histories).join('\n');
    expect(historyText).toContain(v.id); // the check can see the volume, it cannot see the key
    const bdmRows = JSON.stringify((await stack.db.query('SELECT * FROM block_device_mappings WHERE volume_id = $1', [v.id])).rows);
    expect(bdmRows).toContain('"encrypted":true');
    const log = output.slice(outputBefore).join('');
    const qemuLog = await readFile(`/var/log/libvirt/qemu/${(await stack.libvirt.lookupDomain(vm.uuid))!.name}.log`, 'utf8').catch(() => '');
    for (const form of forms) {
      expect(historyText).not.toContain(form);
      expect(bdmRows).not.toContain(form);
      expect(log).not.toContain(form);
      expect(qemuLog).not.toContain(form);
    }
    expect(attached.device).toMatch(/^\/dev\/sd[b-z]$/);
  });

  it('rolls back an attach that fails after the secret was defined: no secret, no disk, volume available', async () => {
    const v = await encryptedVolume('luks-rollback');
    stack.faults.inject('defineEncryptionSecret', 'after', { times: 1 });
    try {
      const started = await stack.service.attachVolume({ server: vm.uuid, volume: v.id });
      const err = await stack.service.awaitAttach(started.handle).catch((e: unknown) => e as Error);
      expect(err).toBeInstanceOf(Error);
      expect((err as Error).message).toMatch(/failed at step attachDisk: Injected fault after step defineEncryptionSecret \(everything was rolled back\)/);
    } finally {
      stack.faults.clear();
    }
    expect(await volumeSecrets(v.id)).toEqual([]);
    const { bdms, liveDisks, configDisks } = await storesOf(stack, vm.uuid);
    expect(bdms.filter((b) => b.volumeId === v.id)).toEqual([]);
    expect([...liveDisks, ...configDisks].filter((d) => d.serial === v.id)).toEqual([]);
    expect((await stack.blockStorage.getVolume(v.id)).status).toBe('available');
  });

  it('a passphrase secret left behind without a BDM is reported by the invariant checker as leaked-secret', async () => {
    const v = await encryptedVolume('luks-leak');
    const check = () => inspectInvariants({ db: stack.db, blockStorage: stack.blockStorage, libvirt: stack.libvirt, client: stack.client, host: stack.host, controlTaskQueue: stack.controlTaskQueue });
    expect((await check()).disagreements.filter((d) => d.volumeId === v.id)).toEqual([]);
    // what a lost detach would leave: the secret, with no BDM holding the volume
    await stack.libvirt.defineSecret(
      `<secret ephemeral='no' private='yes'><uuid>${encryptionSecretUuid(v.id)}</uuid><usage type='volume'><volume>/leak/${v.id}</volume></usage></secret>`,
      Buffer.from('not the key'),
    );
    try {
      const report = await check();
      expect(report.disagreements.filter((d) => d.volumeId === v.id)).toEqual([
        { kind: 'leaked-secret', volumeId: v.id, detail: expect.stringMatching(new RegExp(`LUKS passphrase secret ${encryptionSecretUuid(v.id)} .* no live BDM holds volume`)) },
      ]);
    } finally {
      await stack.libvirt.undefineSecret(encryptionSecretUuid(v.id));
    }
  });

  it('moves with its server to another compute host and goes with it when the server is deleted', async () => {
    // a second compute agent on this machine (same libvirtd), with access to the keys
    const connection = await NativeConnection.connect({ address: stack.temporalAddress });
    const hostB = `${stack.host}-b`;
    const second = new ComputeAgent({
      connection,
      namespace: 'default',
      host: hostB,
      db: stack.db,
      databaseUrl: stack.databaseUrl,
      libvirt: stack.libvirt,
      faults: stack.faults,
      volumeEncryption: stack.blockStorage,
    });
    await second.start();
    try {
      const target = await runningServer(stack, 'vm-luks-move');
      const v = await encryptedVolume('luks-move');
      await stack.service.awaitAttach((await stack.service.attachVolume({ server: target.uuid, volume: v.id })).handle);
      expect(await volumeSecrets(v.id)).toHaveLength(1);

      // the source host's domain (and its secret) go; the target defines the secret again and starts the domain
      const moved = await stack.service.migrateServer(target.uuid, hostB);
      expect(moved.host).toBe(hostB);
      expect(await volumeSecrets(v.id)).toHaveLength(1);
      expect((await stack.libvirt.lookupDomain(target.uuid))?.state).toBe('running');
      expect(await stack.libvirt.getXml(target.uuid)).toContain(`uuid='${encryptionSecretUuid(v.id)}'`);

      const { deletedVolumes } = await stack.service.deleteServer(target.uuid);
      expect(deletedVolumes).toEqual([]);
      expect(await volumeSecrets(v.id)).toEqual([]);
      expect((await stack.blockStorage.getVolume(v.id)).status).toBe('available');
    } finally {
      await second.stop();
      await connection.close();
    }
  });

  it('is deleted with its key (crypto-shredding)', async () => {
    const v = await encryptedVolume('luks-delete');
    await stack.service.deleteVolume(v.id);
    const { rows } = await stack.db.query('SELECT 1 FROM volume_encryption_keys WHERE volume_id = $1', [v.id]);
    expect(rows).toEqual([]);
  });
});

function diskCount(xml: string, serial: string): number {
  return xml.split(`<serial>${serial}</serial>`).length - 1;
}

describe('creating encrypted volumes from the clients', () => {
  let api: RunningApi;
  let cloud: Cloud;
  beforeAll(async () => {
    api = await startTestApi(stack);
    cloud = await writeCloud(api.url);
  });
  afterAll(async () => {
    await cloud?.dispose();
    await api?.close();
  });

  it('openstack volume create --type luks', async () => {
    const shown = await openstackJson<Record<string, unknown>>(cloud, ['volume', 'create', '--type', 'luks', '--size', '1', 'osc-luks']);
    expect(shown).toMatchObject({ name: 'osc-luks', type: 'luks', encrypted: true });
    expect(await stack.blockStorage.getVolumeEncryption(String(shown.id))).toMatchObject({ provider: 'luks' });

    // Cinder's GET /volumes/{id}/encryption: the metadata Nova asks for, never the key
    const v = await stack.blockStorage.getVolume(String(shown.id));
    const res = await fetch(`${api.url}/v3/${v.projectId}/volumes/${v.id}/encryption`);
    expect(res.status).toBe(200);
    const body = (await res.json()) as Record<string, unknown>;
    expect(body).toEqual({ encryption_key_id: expect.any(String), provider: 'luks', cipher: 'aes-xts-plain64', key_size: 512, control_location: 'front-end' });
    const plain = await stack.service.createVolume({ name: 'osc-plain', size: 1 });
    expect(await (await fetch(`${api.url}/v3/${v.projectId}/volumes/${plain.id}/encryption`)).json()).toEqual({ encryption_key_id: null });
    for (const form of await keyForms(v.id)) expect(JSON.stringify(body)).not.toContain(form);
  });

  it('tether volume create --encrypted', async () => {
    const { stdout } = await run(process.execPath, ['bin/tether.js', 'volume', 'create', 'cli-luks', '--size', '1', '--encrypted'], {
      cwd: projectRoot,
      env: { ...process.env, ...stack.env },
    });
    expect(stdout).toMatch(/^cli-luks [0-9a-f-]{36} available 1 GiB encrypted$/m);
    const [v] = await stack.service.listVolumes({ name: 'cli-luks' });
    // the CLI process used the stack's master key (TETHER_VOLUME_KEY): this process can open the key
    const encryption = await stack.blockStorage.getVolumeEncryption(v!.id);
    await expect(stack.blockStorage.getEncryptionKey(v!.id, encryption!)).resolves.toHaveLength(64);
  });
});
