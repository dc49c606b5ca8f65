/**
 * The drift family (`npm run chaos -- --drift`): drift planted behind tether's back for each finding
 * kind of the checker, the way an operator makes it — `virsh detach-device` / `attach-device`, a
 * disk plugged through QEMU's monitor, `virsh secret-undefine` / `secret-define`, the block storage's
 * attachment deleted or recreated and its reset-state, a BDM row deleted or changed in the database,
 * a server's row marked deleted, and the embedded stack's files (PostgreSQL and Temporal's SQLite)
 * restored to an earlier consistent copy (a power cut) — while the reconciler runs on its Temporal
 * Schedule with a short period (`--interval`, default 8 s). Nobody calls `tether repair`.
 *
 * Each case requires: the drift repaired by a repair workflow the reconciler started (its parent is a
 * reconcile run, visible in history, outcome `repaired`) no later than the second reconcile run that
 * started after the plant (report-only kinds: reported by the second run, no repair started); the
 * pair in the state the repair should leave; nothing else touched (the other servers' disks, every
 * other BDM and volume unchanged); the checker clean afterwards. Kill cases SIGKILL the process running
 * a repair step or a swap step (pause points of faults/pause.ts, as chaos/kills.ts) and require that it
 * converges. Results: docs/chaos/results/drift.json, rendered by `npm run docs` (chaos/drift-report.ts).
 */
import { execFile } from 'node:child_process';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { setTimeout as sleep } from 'node:timers/promises';
import { WorkflowNotFoundError } from '@temporalio/client';
import type { Instance, Volume } from '../src/domain/types.ts';
import { diskBySerial, diskElements } from '../src/host/domain-disks.ts';
import { buildDiskXml } from '../src/libvirt/disk-xml.ts';
import { liveBdm } from '../src/db/block-device-mappings.ts';
import { encryptionSecretUuid } from '../src/host/disk-secrets.ts';
import { findOrphanDisks } from '../src/host/qemu-orphan-disks.ts';
import { inspectInvariants, formatDisagreements, type DisagreementKind } from '../src/checker/invariants.ts';
import { REPAIR_BY_KIND } from '../src/repair/policy.ts';
import { RECONCILE_WORKFLOW } from '../src/domain/contracts/reconcile.ts';
import { repairPairWorkflowId, repairQemuOrphansWorkflowId, repairSecretWorkflowId, repairVolumeWorkflowId, type RepairResult } from '../src/domain/contracts/repair.ts';
import { swapWorkflowId } from '../src/domain/contracts/swap-volume.ts';
import { attachAndWait, classify, newVolume, pairState, PausePoint, progressOf, result, retrying, tidy, waitClosed, type Harness } from './harness.ts';
import type { CaseResult } from './report.ts';
import type { Target } from './stack.ts';

const run = promisify(execFile);

/** What a drift case adds to the chaos case result (rendered by chaos/drift-report.ts). */
export interface DriftFacts {
  /** The finding kind(s) planted. */
  kinds: string[];
  /** How it was planted, as an operator would. */
  plant: string;
  policy: 'repair' | 'report-only';
  periodS: number;
  /** From the end of the plant (the power cut: the power back, the stack starting) until repaired and the checker clean; null: never. */
  timeToRepairMs: number | null;
  /** Reconcile runs that started after the plant up to the repair's start (report only: up to the second report). */
  reconcileRuns: number | null;
  /** The repair workflows seen in history (id, outcome, started by). */
  repairs: Array<{ workflowId: string; outcome: string; parent: string | null }>;
}

export type DriftCaseResult = CaseResult & { drift?: DriftFacts };

export interface DriftOptions {
  periodS: number;
}

// ---- operator tools ----------------------------------------------------------------------------

async function virsh(h: Harness, ...args: string[]): Promise<string> {
  const { stdout } = await run('virsh', ['-c', h.stack.libvirtUri, ...args], { timeout: 60_000 });
  return stdout;
}

async function withXmlFile<T>(h: Harness, name: string, xml: string, fn: (file: string) => Promise<T>): Promise<T> {
  const file = path.join(h.stack.baseDir, `${name}.xml`);
  await fsp.writeFile(file, xml);
  try {
    return await fn(file);
  } finally {
    await fsp.rm(file, { force: true });
  }
}

async function volumeFile(h: Harness, volumeId: string): Promise<string> {
  const { rows } = await h.stack.db.query<{ file_path: string }>('SELECT file_path FROM volumes WHERE id = $1', [volumeId]);
  return rows[0]!.file_path;
}

async function until(what: string, fn: () => Promise<boolean>, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await fn())) {
    if (Date.now() > deadline) throw new Error(`${what} did not happen within ${timeoutMs / 1000} s`);
    await sleep(100);
  }
}

/** `virsh detach-device DOMAIN disk.xml --live --config`, waiting for QEMU to let go. */
async function virshDetachDisk(h: Harness, server: Instance, volumeId: string): Promise<void> {
  const disk = diskBySerial(await h.stack.libvirt.getXml(server.uuid), volumeId);
  if (!disk) throw new Error(`volume ${volumeId} has no disk in ${server.uuid}`);
  await withXmlFile(h, `detach-${volumeId}`, disk.xml, (f) => virsh(h, 'detach-device', server.uuid, f, '--live', '--config'));
  await until(`the unplug of ${volumeId}`, async () => diskBySerial(await h.stack.libvirt.getXml(server.uuid), volumeId) === null);
}

/** `virsh attach-device DOMAIN disk.xml --live --config` of a volume's file tether never attached. */
async function virshAttachStray(h: Harness, server: Instance, volume: Volume, target: string): Promise<void> {
  const xml = buildDiskXml({ connectionInfo: { driver_volume_type: 'file', data: { path: await volumeFile(h, volume.id), format: 'qcow2' } }, targetDev: target, bus: 'scsi', deviceType: 'disk', serial: volume.id });
  await withXmlFile(h, `attach-${volume.id}`, xml, (f) => virsh(h, 'attach-device', server.uuid, f, '--live', '--config'));
}

/** A disk plugged into QEMU through its monitor (`virsh qemu-monitor-command`), which libvirt does not know. */
async function qemuPlugOrphan(h: Harness, server: Instance, volume: Volume, lun: number): Promise<string> {
  const file = await volumeFile(h, volume.id);
  // QEMU runs as its own user: libvirt would have handed it the file, as it does on an attach
  await run('chown', ['libvirt-qemu:libvirt-qemu', file]);
  const qmp = async (execute: string, args: Record<string, unknown>) => {
    const answer = await virsh(h, 'qemu-monitor-command', server.uuid, JSON.stringify({ execute, arguments: args }));
    if (/"error"/.test(answer)) throw new Error(`QEMU refused ${execute}: ${answer.trim()}`);
  };
  await qmp('blockdev-add', { driver: 'file', filename: file, 'node-name': `drift-${lun}-storage` });
  await qmp('blockdev-add', { driver: 'qcow2', file: `drift-${lun}-storage`, 'node-name': `drift-${lun}-format` });
  const id = `scsi0-0-0-${lun}`;
  await qmp('device_add', { driver: 'scsi-hd', bus: 'scsi0.0', channel: 0, 'scsi-id': 0, lun, drive: `drift-${lun}-format`, id });
  return id;
}

// ---- what must not change ----------------------------------------------------------------------

interface Excluded {
  volumes: Set<string>;
  instances: Set<string>;
}

/** Every disk of every server, every live BDM and every volume with its attachments — except the planted ones. */
async function fingerprint(h: Harness, ex: Excluded): Promise<string[]> {
  const out: string[] = [];
  for (const s of h.servers) {
    if (ex.instances.has(s.uuid)) continue;
    const info = await h.stack.libvirt.lookupDomain(s.uuid);
    if (!info) {
      out.push(`domain ${s.uuid}: none`);
      continue;
    }
    for (const [where, inactive] of [['config', true], ['live', false]] as const) {
      if (!inactive && !info.active) continue;
      for (const d of diskElements(await h.stack.libvirt.getXml(s.uuid, { inactive }))) {
        if (d.serial && ex.volumes.has(d.serial)) continue;
        out.push(`disk ${s.uuid} ${where} ${d.target} serial=${d.serial ?? '-'}`);
      }
    }
  }
  const { rows } = await h.stack.db.query<{ instance_uuid: string; volume_id: string | null; device_name: string | null; attach_status: string; attachment_id: string | null; uuid: string }>(
    'SELECT uuid, instance_uuid, volume_id, device_name, attach_status, attachment_id FROM block_device_mappings WHERE deleted_at IS NULL ORDER BY uuid',
  );
  for (const b of rows) {
    if ((b.volume_id && ex.volumes.has(b.volume_id)) || ex.instances.has(b.instance_uuid)) continue;
    out.push(`bdm ${b.uuid} ${b.instance_uuid} ${b.volume_id ?? '-'} ${b.device_name ?? '-'} ${b.attach_status} ${b.attachment_id ?? '-'}`);
  }
  for (const v of await h.stack.blockStorage.listVolumes()) {
    if (ex.volumes.has(v.id)) continue;
    out.push(`volume ${v.id} ${v.status} ${v.attachments.map((a) => `${a.attachmentId}:${a.status}:${a.serverId}`).sort().join(',')}`);
  }
  return out.sort();
}

function differences(before: string[], after: string[]): string[] {
  const a = new Set(after);
  const b = new Set(before);
  return [...before.filter((x) => !a.has(x)).map((x) => `gone: ${x}`), ...after.filter((x) => !b.has(x)).map((x) => `new: ${x}`)];
}

// ---- Temporal ------------------------------------------------------------------------------------

/** Reconcile runs that started at or after `from` and at or before `to`. */
async function reconcileRunsBetween(h: Harness, from: Date, to: Date): Promise<number> {
  let n = 0;
  const query = `WorkflowType = '${RECONCILE_WORKFLOW}' AND StartTime >= '${from.toISOString()}' AND StartTime <= '${to.toISOString()}'`;
  for await (const _ of h.stack.client.workflow.list({ query })) n++;
  return n;
}

interface SeenRepair {
  workflowId: string;
  status: string;
  startTime: Date;
  parent: string | null;
  outcome: string;
}

/** The newest run of a repair workflow, when it started at or after `since`. */
async function repairSince(h: Harness, workflowId: string, since: Date): Promise<SeenRepair | null> {
  try {
    const handle = h.stack.client.workflow.getHandle(workflowId);
    const d = await handle.describe();
    if (d.startTime < since) return null;
    let outcome: string = d.status.name;
    if (d.status.name === 'COMPLETED') outcome = ((await handle.result()) as RepairResult).outcome;
    return { workflowId, status: d.status.name, startTime: d.startTime, parent: d.parentExecution?.workflowId ?? null, outcome };
  } catch (err) {
    if (err instanceof WorkflowNotFoundError) return null;
    throw err;
  }
}

async function hostCheck(h: Harness) {
  return retrying(() => inspectInvariants({ db: h.stack.db, blockStorage: h.stack.blockStorage, libvirt: h.stack.libvirt, client: h.stack.client, controlTaskQueue: h.stack.controlTaskQueue, host: h.stack.host }));
}

// ---- the cases -------------------------------------------------------------------------------------

interface Planted {
  /** The repair workflows the reconciler must run (empty: a report-only kind). */
  repairs: string[];
  /** Report-only: the finding the reconciler must report (reconcile_findings, two runs). */
  reported?: { kind: DisagreementKind; instanceUuid: string };
  /** The pair's / the stores' state the repair must leave; problems, empty when right. */
  verify: () => Promise<string[]>;
  /** The repair is visible beyond the host's checker (a deleted server's BDM): true once done. */
  repaired?: () => Promise<boolean>;
  /** Undo what the case made (volumes detached and deleted, servers deleted). */
  tidy: () => Promise<string[]>;
  excluded: Excluded;
  /** When the clock starts (default: when plant() returned). */
  plantedAt?: number;
}

interface DriftCase {
  name: string;
  kinds: DisagreementKind[];
  plant: string;
  /** Makes what it needs and plants the drift. */
  make: (h: Harness, c: { server: Instance }) => Promise<Planted>;
}

const pairSet = (server: Instance, ...volumes: Volume[]): Excluded => ({ volumes: new Set(volumes.map((v) => v.id)), instances: new Set() });

/**
 * A volume attached to `server` through tether (the normal path). Other users of this machine
 * restart the system libvirtd now and then: an attach that failed because the daemon was away is
 * asked again (it rolled back).
 */
async function attached(h: Harness, server: Instance, name: string, o: { volumeType?: string } = {}): Promise<Volume> {
  const v = o.volumeType
    ? await retrying(() => h.stack.service.createVolume({ name, size: 1, volumeType: o.volumeType! }))
    : await newVolume(h, name);
  for (let attempt = 1; ; attempt++) {
    try {
      await attachAndWait(h, server, v);
      return v;
    } catch (err) {
      if (attempt >= 4 || !/libvirt-sock|Failed to connect socket|connection (closed|reset)/i.test((err as Error).message)) throw err;
      h.log(`  ! attach of ${name} failed while libvirtd was away (${(err as Error).message.slice(0, 120)}); again`);
      await sleep(3000);
    }
  }
}

/** The system libvirtd's pid (another user of the machine may restart it during a case: the report says so). */
export async function libvirtdPid(): Promise<string> {
  return (await fsp.readFile('/run/libvirtd.pid', 'utf8').catch(() => '?')).trim();
}

const expectState = (h: Harness, server: Instance, v: Volume, want: 'attached' | 'absent') => async (): Promise<string[]> => {
  const s = classify(await retrying(() => pairState(h, server.uuid, v.id)));
  return s === want ? [] : [`volume ${v.id} on ${server.uuid}: ${s}, expected ${want}`];
};

const tidyPair = (h: Harness, server: Instance, ...volumes: Volume[]) => () => tidy(h, volumes.map((volume) => ({ server, volume })));

async function newServer(h: Harness, name: string): Promise<Instance> {
  const { instance, handle } = await h.stack.service.createServer({ name });
  await handle.result();
  return h.stack.service.resolveServer(instance.uuid);
}

export const DRIFT_CASES: DriftCase[] = [
  {
    name: 'virsh detach-device of an attached disk',
    kinds: ['bdm-without-disk'],
    plant: 'virsh detach-device DOMAIN disk.xml --live --config',
    make: async (h, { server }) => {
      const v = await attached(h, server, 'drift-unplugged');
      await virshDetachDisk(h, server, v.id);
      return { repairs: [repairPairWorkflowId(server.uuid, v.id)], verify: expectState(h, server, v, 'attached'), tidy: tidyPair(h, server, v), excluded: pairSet(server, v) };
    },
  },
  {
    name: 'virsh attach-device of a volume tether never attached',
    kinds: ['disk-without-bdm'],
    plant: 'virsh attach-device DOMAIN disk.xml --live --config (the volume\'s file)',
    make: async (h, { server }) => {
      const v = await newVolume(h, 'drift-stray');
      await virshAttachStray(h, server, v, 'sdx');
      return { repairs: [repairPairWorkflowId(server.uuid, v.id)], verify: expectState(h, server, v, 'absent'), tidy: tidyPair(h, server, v), excluded: pairSet(server, v) };
    },
  },
  {
    name: "a BDM row deleted from tether's database",
    kinds: ['disk-without-bdm', 'unknown-attachment'],
    plant: 'DELETE FROM block_device_mappings WHERE uuid = …',
    make: async (h, { server }) => {
      const v = await attached(h, server, 'drift-bdm-deleted');
      await h.stack.db.query('DELETE FROM block_device_mappings WHERE uuid = $1', [(await liveBdm(h.stack.db, server.uuid, v.id))!.uuid]);
      return { repairs: [repairPairWorkflowId(server.uuid, v.id)], verify: expectState(h, server, v, 'attached'), tidy: tidyPair(h, server, v), excluded: pairSet(server, v) };
    },
  },
  {
    name: "a BDM's device name changed in the database",
    kinds: ['device-mismatch'],
    plant: "UPDATE block_device_mappings SET device_name = '/dev/sdz'",
    make: async (h, { server }) => {
      const v = await attached(h, server, 'drift-renamed');
      await h.stack.db.query(`UPDATE block_device_mappings SET device_name = '/dev/sdz' WHERE uuid = $1`, [(await liveBdm(h.stack.db, server.uuid, v.id))!.uuid]);
      const verify = async () => {
        const problems = await expectState(h, server, v, 'attached')();
        const disk = diskBySerial(await h.stack.libvirt.getXml(server.uuid), v.id);
        const bdm = await liveBdm(h.stack.db, server.uuid, v.id);
        if (bdm?.deviceName !== `/dev/${disk?.target}`) problems.push(`the BDM says ${bdm?.deviceName}, the disk is ${disk?.target}`);
        return problems;
      };
      return { repairs: [repairPairWorkflowId(server.uuid, v.id)], verify, tidy: tidyPair(h, server, v), excluded: pairSet(server, v) };
    },
  },
  {
    name: "the block storage's attachment deleted",
    kinds: ['bdm-without-attachment'],
    plant: 'attachment-delete in the block storage (the embedded service\'s admin call)',
    make: async (h, { server }) => {
      const v = await attached(h, server, 'drift-att-deleted');
      await h.stack.blockStorage.deleteAttachment((await liveBdm(h.stack.db, server.uuid, v.id))!.attachmentId!);
      return { repairs: [repairPairWorkflowId(server.uuid, v.id)], verify: expectState(h, server, v, 'attached'), tidy: tidyPair(h, server, v), excluded: pairSet(server, v) };
    },
  },
  {
    name: "the block storage's attachment replaced by another",
    kinds: ['attachment-mismatch'],
    plant: 'attachment-delete, then attachment-create for the same server (the BDM names the old one)',
    make: async (h, { server }) => {
      const v = await attached(h, server, 'drift-att-replaced');
      await h.stack.blockStorage.deleteAttachment((await liveBdm(h.stack.db, server.uuid, v.id))!.attachmentId!);
      await h.stack.blockStorage.createAttachment(v.id, server.uuid);
      const verify = async () => {
        const problems = await expectState(h, server, v, 'attached')();
        const bdm = await liveBdm(h.stack.db, server.uuid, v.id);
        const att = await h.stack.blockStorage.findAttachment(v.id, server.uuid);
        if (bdm?.attachmentId !== att?.attachmentId) problems.push(`the BDM records attachment ${bdm?.attachmentId}, the live one is ${att?.attachmentId}`);
        return problems;
      };
      return { repairs: [repairPairWorkflowId(server.uuid, v.id)], verify, tidy: tidyPair(h, server, v), excluded: pairSet(server, v) };
    },
  },
  {
    name: 'reset-state of an attached volume to available',
    kinds: ['volume-status-mismatch'],
    plant: "reset-state --state available (UPDATE volumes SET status = 'available')",
    make: async (h, { server }) => {
      const v = await attached(h, server, 'drift-reset');
      await h.stack.db.query(`UPDATE volumes SET status = 'available' WHERE id = $1`, [v.id]);
      return { repairs: [repairVolumeWorkflowId(v.id)], verify: expectState(h, server, v, 'attached'), tidy: tidyPair(h, server, v), excluded: pairSet(server, v) };
    },
  },
  {
    name: 'reset-state of a free volume to attaching',
    kinds: ['stuck-volume'],
    plant: "reset-state --state attaching (UPDATE volumes SET status = 'attaching')",
    make: async (h, { server }) => {
      const v = await newVolume(h, 'drift-stuck-volume');
      await h.stack.db.query(`UPDATE volumes SET status = 'attaching' WHERE id = $1`, [v.id]);
      return { repairs: [repairVolumeWorkflowId(v.id)], verify: expectState(h, server, v, 'absent'), tidy: tidyPair(h, server, v), excluded: pairSet(server, v) };
    },
  },
  {
    name: "a BDM left 'detaching' (a detach that died after its first step)",
    kinds: ['stuck-bdm', 'stuck-volume'],
    plant: "UPDATE block_device_mappings SET attach_status = 'detaching'; the volume 'detaching'",
    make: async (h, { server }) => {
      const v = await attached(h, server, 'drift-detaching');
      await h.stack.db.query(`UPDATE block_device_mappings SET attach_status = 'detaching' WHERE uuid = $1`, [(await liveBdm(h.stack.db, server.uuid, v.id))!.uuid]);
      await h.stack.db.query(`UPDATE volumes SET status = 'detaching' WHERE id = $1`, [v.id]);
      return { repairs: [repairPairWorkflowId(server.uuid, v.id)], verify: expectState(h, server, v, 'attached'), tidy: tidyPair(h, server, v), excluded: pairSet(server, v) };
    },
  },
  {
    name: "a server's row marked deleted by hand, its domain removed with virsh",
    kinds: ['orphan-bdm'],
    plant: "UPDATE instances SET deleted_at = now(), vm_state = 'deleted'; virsh destroy + undefine",
    make: async (h) => {
      const gone = await newServer(h, 'drift-orphan');
      const v = await attached(h, gone, 'drift-orphan');
      await h.stack.db.query(`UPDATE instances SET deleted_at = now(), vm_state = 'deleted', updated_at = now() WHERE uuid = $1`, [gone.uuid]);
      await virsh(h, 'destroy', gone.uuid);
      await virsh(h, 'undefine', gone.uuid);
      const repaired = async () => (await liveBdm(h.stack.db, gone.uuid, v.id)) === null && (await h.stack.blockStorage.getVolume(v.id)).attachments.length === 0;
      const verify = async () => {
        const vol = await h.stack.blockStorage.getVolume(v.id);
        return (await repaired()) && vol.status === 'available' ? [] : [`BDM ${JSON.stringify(await liveBdm(h.stack.db, gone.uuid, v.id))}, volume ${vol.status} with ${vol.attachments.length} attachment(s)`];
      };
      return {
        repairs: [repairPairWorkflowId(gone.uuid, v.id)],
        verify,
        repaired,
        tidy: async () => {
          await h.stack.service.deleteVolume(v.id).catch(() => undefined);
          return [];
        },
        excluded: { volumes: new Set([v.id]), instances: new Set([gone.uuid]) },
      };
    },
  },
  {
    name: "virsh secret-undefine of an attached LUKS volume's passphrase",
    kinds: ['missing-secret'],
    plant: 'virsh secret-undefine UUID',
    make: async (h, { server }) => {
      const v = await attached(h, server, 'drift-luks', { volumeType: 'luks' });
      await virsh(h, 'secret-undefine', encryptionSecretUuid(v.id));
      const verify = async () => {
        const problems = await expectState(h, server, v, 'attached')();
        if (!(await h.stack.libvirt.listSecrets()).some((s) => s.uuid === encryptionSecretUuid(v.id))) problems.push('the LUKS secret is still missing');
        return problems;
      };
      return { repairs: [repairPairWorkflowId(server.uuid, v.id)], verify, tidy: tidyPair(h, server, v), excluded: pairSet(server, v) };
    },
  },
  {
    name: 'virsh secret-define for a volume nobody holds',
    kinds: ['leaked-secret'],
    plant: 'virsh secret-define secret.xml (the volume\'s LUKS secret UUID)',
    make: async (h, { server }) => {
      const v = await newVolume(h, 'drift-leaked');
      const uuid = encryptionSecretUuid(v.id);
      await withXmlFile(h, `secret-${v.id}`, `<secret ephemeral='no' private='yes'><uuid>${uuid}</uuid><usage type='volume'><volume>/tmp/drift-leaked-${v.id}</volume></usage></secret>`, (f) => virsh(h, 'secret-define', f));
      const verify = async () => ((await h.stack.libvirt.listSecrets()).some((s) => s.uuid === uuid) ? [`the secret ${uuid} is still defined`] : []);
      return { repairs: [repairSecretWorkflowId(h.stack.host, v.id)], verify, tidy: tidyPair(h, server, v), excluded: pairSet(server, v) };
    },
  },
  {
    name: "a disk plugged through QEMU's monitor behind libvirt",
    kinds: ['qemu-orphan-disk'],
    plant: 'virsh qemu-monitor-command DOMAIN blockdev-add + device_add (libvirt does not know the disk)',
    make: async (h, { server }) => {
      const v = await newVolume(h, 'drift-qemu-orphan');
      const id = await qemuPlugOrphan(h, server, v, 40);
      const verify = async () => ((await findOrphanDisks(h.stack.libvirt, server.uuid)).some((o) => o.id === id) ? [`QEMU still holds ${id}`] : []);
      return { repairs: [repairQemuOrphansWorkflowId(server.uuid)], verify, repaired: async () => (await verify()).length === 0, tidy: tidyPair(h, server, v), excluded: pairSet(server, v) };
    },
  },
  {
    name: "a server's domain removed with virsh (report only)",
    kinds: ['missing-domain'],
    plant: 'virsh destroy + undefine DOMAIN',
    make: async (h) => {
      const gone = await newServer(h, 'drift-missing-domain');
      await virsh(h, 'destroy', gone.uuid);
      await virsh(h, 'undefine', gone.uuid);
      return {
        repairs: [],
        reported: { kind: 'missing-domain', instanceUuid: gone.uuid },
        verify: async () => ((await h.stack.libvirt.lookupDomain(gone.uuid)) ? ['a domain came back (nothing may recreate it)'] : []),
        tidy: async () => {
          try {
            await h.stack.service.deleteServer(gone.uuid);
            return [];
          } catch (err) {
            return [`deleting the server without a domain failed: ${(err as Error).message}`];
          }
        },
        excluded: { volumes: new Set(), instances: new Set([gone.uuid]) },
      };
    },
  },
  {
    name: "a server's task_state left set (report only)",
    kinds: ['stuck-task'],
    plant: "UPDATE instances SET task_state = 'rebooting'",
    make: async (h, { server }) => {
      await h.stack.db.query(`UPDATE instances SET task_state = 'rebooting' WHERE uuid = $1`, [server.uuid]);
      const { rows } = await h.stack.db.query<{ task_state: string | null }>('SELECT task_state FROM instances WHERE uuid = $1', [server.uuid]);
      return {
        repairs: [],
        reported: { kind: 'stuck-task', instanceUuid: server.uuid },
        verify: async () => {
          const now = await h.stack.db.query<{ task_state: string | null }>('SELECT task_state FROM instances WHERE uuid = $1', [server.uuid]);
          return now.rows[0]!.task_state === rows[0]!.task_state ? [] : [`task_state changed to ${now.rows[0]!.task_state} (nothing may touch it)`];
        },
        // the admin's reset-state (nova reset-state --active clears the task)
        tidy: async () => {
          await h.stack.db.query('UPDATE instances SET task_state = NULL WHERE uuid = $1', [server.uuid]);
          return [];
        },
        excluded: { volumes: new Set(), instances: new Set() },
      };
    },
  },
];

/** Report-only kinds no operator can plant: the database's unique indexes forbid them. */
export const UNPLANTABLE: Array<{ kind: DisagreementKind; why: string }> = [
  { kind: 'duplicate-device', why: 'two live BDMs on one device: a unique index forbids it (no operator action or saga makes one); report only' },
  { kind: 'duplicate-bdm', why: 'two live BDMs of one volume on one instance: a unique index forbids it (no operator action or saga makes one); report only' },
];

async function reportedRuns(h: Harness, r: NonNullable<Planted['reported']>): Promise<number> {
  const { rows } = await h.stack.db.query<{ runs: number }>('SELECT runs FROM reconcile_findings WHERE kind = $1 AND instance_uuid = $2', [r.kind, r.instanceUuid]);
  return rows[0]?.runs ?? 0;
}

/**
 * After the plant: waits for the reconciler to repair (or report) it, then checks everything the
 * family requires. `trigger` (kill cases): called once the clock started, before waiting.
 */
async function awaitRepair(h: Harness, o: DriftOptions, scenario: string, runNo: number, kinds: string[], plant: string, p: Planted, before: string[], plantedAt: number, notes: string[], trigger?: () => Promise<void>, requireTwoRuns = true): Promise<DriftCaseResult> {
  const since = new Date(plantedAt - 1000);
  const daemonAtStart = await libvirtdPid();
  const deadline = plantedAt + Math.max(6 * o.periodS * 1000, 180_000);
  const problems: string[] = [];
  await trigger?.();
  let doneAt: number | null = null;
  let seen: SeenRepair[] = [];
  let lastCheck = '';
  while (Date.now() < deadline) {
    if (p.reported) {
      if ((await retrying(() => reportedRuns(h, p.reported!))) >= 2) {
        doneAt = Date.now();
        break;
      }
    } else {
      seen = (await Promise.all(p.repairs.map((id) => retrying(() => repairSince(h, id, since))))).filter((x): x is SeenRepair => x !== null);
      if (seen.length === p.repairs.length && seen.every((s) => s.status !== 'RUNNING')) {
        const report = await hostCheck(h);
        lastCheck = formatDisagreements([...report.disagreements, ...report.inFlight]);
        if (report.disagreements.length === 0 && report.inFlight.length === 0 && (!p.repaired || (await p.repaired()))) {
          doneAt = Date.now();
          break;
        }
      }
    }
    await sleep(250);
  }
  const timeToRepairMs = doneAt === null ? null : doneAt - plantedAt;
  let reconcileRuns: number | null = null;
  if (doneAt !== null) {
    const upTo = p.reported ? new Date(doneAt) : new Date(Math.max(...seen.map((s) => s.startTime.getTime())));
    reconcileRuns = await retrying(() => reconcileRunsBetween(h, new Date(plantedAt), upTo));
  }
  if (doneAt === null) {
    problems.push(p.reported
      ? `the reconciler did not report ${p.reported.kind} twice within ${(deadline - plantedAt) / 1000} s`
      : `not repaired within ${(deadline - plantedAt) / 1000} s (repairs seen: ${seen.map((s) => `${s.workflowId} ${s.status}`).join(', ') || 'none'}${lastCheck ? `; checker: ${lastCheck}` : ''})`);
  }
  if (requireTwoRuns && reconcileRuns !== null && reconcileRuns > 2) problems.push(`took ${reconcileRuns} reconcile runs after the plant (at most 2)`);
  for (const s of seen) {
    if (s.status !== 'COMPLETED') problems.push(`repair ${s.workflowId} ended ${s.status}`);
    else if (s.outcome !== 'repaired') problems.push(`repair ${s.workflowId} ended '${s.outcome}', not 'repaired'`);
    if (!s.parent?.startsWith('reconcile-')) problems.push(`repair ${s.workflowId} was not started by the reconciler (parent ${s.parent ?? 'none'})`);
  }
  if (p.reported) {
    // report only: no repair of the instance's pairs started
    const { rows } = await h.stack.db.query<{ volume_id: string }>('SELECT DISTINCT volume_id FROM block_device_mappings WHERE instance_uuid = $1 AND volume_id IS NOT NULL', [p.reported.instanceUuid]);
    for (const r of rows) if (await repairSince(h, repairPairWorkflowId(p.reported.instanceUuid, r.volume_id), since)) problems.push(`a repair of report-only ${p.reported.kind} started`);
  }
  problems.push(...(await p.verify()));
  const changed = differences(before, await retrying(() => fingerprint(h, p.excluded)));
  if (changed.length) problems.push(`something else was touched: ${changed.join('; ')}`);
  const checked = await hostCheck(h);
  if (!p.reported && (checked.disagreements.length || checked.inFlight.length)) problems.push(`checker: ${formatDisagreements([...checked.disagreements, ...checked.inFlight])}`);
  problems.push(...(await p.tidy()));
  if (p.reported) {
    const after = await hostCheck(h);
    if (after.disagreements.length) problems.push(`checker after the tidy-up: ${formatDisagreements(after.disagreements)}`);
  }
  const daemonAtEnd = await libvirtdPid();
  if (daemonAtEnd !== daemonAtStart) {
    notes.push(`the system libvirtd was restarted during the case (pid ${daemonAtStart} → ${daemonAtEnd}), not by this runner`);
    if (problems.length) problems.push('(the system libvirtd was restarted by another user of the machine during the case)');
  }
  notes.push(doneAt === null ? 'never repaired' : `${p.reported ? 'reported twice' : 'repaired'} in ${((timeToRepairMs ?? 0) / 1000).toFixed(1)} s, ${reconcileRuns} reconcile run(s) after the plant`);
  return {
    ...result(h, scenario, runNo, {
      passed: problems.length === 0,
      converged: doneAt !== null,
      outcome: doneAt === null ? 'not-repaired' : p.reported ? 'reported' : 'repaired',
      leaked: changed.length + (doneAt === null ? 1 : 0),
      convergeMs: timeToRepairMs,
      notes,
      ...(problems.length ? { failure: problems.join('; ') } : {}),
    }),
    drift: {
      kinds,
      plant,
      policy: p.reported ? 'report-only' : 'repair',
      periodS: o.periodS,
      timeToRepairMs,
      reconcileRuns,
      repairs: seen.map((s) => ({ workflowId: s.workflowId, outcome: s.outcome, parent: s.parent })),
    },
  };
}

export function driftCaseName(c: DriftCase): string {
  return `drift ${c.kinds.join('+')}: ${c.name}`;
}

export async function runDriftCase(h: Harness, c: DriftCase, runNo: number, server: Instance, o: DriftOptions): Promise<DriftCaseResult> {
  const notes: string[] = [];
  const before = await retrying(() => fingerprint(h, { volumes: new Set(), instances: new Set() }));
  const p = await c.make(h, { server });
  const plantedAt = Date.now();
  // what the case made itself (its volumes, a server of its own) is not part of "everything else"
  const beforeOthers = before.filter((line) => ![...p.excluded.volumes, ...p.excluded.instances].some((id) => line.includes(id)));
  return awaitRepair(h, o, driftCaseName(c), runNo, c.kinds, c.plant, p, beforeOthers, plantedAt, notes);
}

export function unplantableResult(h: Harness, u: (typeof UNPLANTABLE)[number], runNo: number, o: DriftOptions): DriftCaseResult {
  return {
    ...result(h, `drift ${u.kind}: not plantable`, runNo, { passed: false, skipped: true, converged: false, outcome: 'skipped', leaked: 0, convergeMs: null, notes: [u.why] }),
    drift: { kinds: [u.kind], plant: '—', policy: 'report-only', periodS: o.periodS, timeToRepairMs: null, reconcileRuns: null, repairs: [] },
  };
}

// ---- the power cut -----------------------------------------------------------------------------

const EMBEDDED_FILES = ['pg', 'temporal'];

async function stopEverything(h: Harness): Promise<void> {
  const s = h.stack;
  for (const w of ['api', 'control-plane', 'compute-agent'] as const) await s.kill(w);
  await s.kill('temporal');
  await s.kill('postgres');
}

async function startEverything(h: Harness): Promise<void> {
  const s = h.stack;
  await s.restart('postgres');
  await s.restart('temporal');
  for (const w of ['control-plane', 'compute-agent', 'api'] as const) await s.restart(w);
  await s.waitHealthy(300_000);
}

/**
 * The power cut of the dev server (issue 20): its files — PostgreSQL's data folder and Temporal's
 * SQLite — restored to an earlier consistent copy. The copy is taken with every process of the
 * embedded stack stopped at once (SIGKILL: what the disk holds after a power cut), then the stack
 * goes on: a volume is attached and another detached. The power cut: everything SIGKILLed, the files
 * replaced by the copy, everything started again. tether's records say what they said at the copy;
 * libvirt (the host, not the dev server's files) kept what happened after. The reconciler alone must
 * bring them back into agreement: the disk attached after the copy removed, the one detached after
 * it put back (as the records say), within two runs after the stack is back.
 */
export async function runPowerCut(h: Harness, runNo: number, server: Instance, o: DriftOptions): Promise<DriftCaseResult> {
  const scenario = 'drift power cut: the embedded stack\'s files restored to an earlier copy';
  const plant = 'SIGKILL of PostgreSQL, Temporal and every worker; pg/ and temporal/ replaced by a copy taken (stopped) before an attach and a detach; all started again';
  const notes: string[] = [];
  const detachedLater = await attached(h, server, 'drift-powercut-detached');
  // made before the copy, so that the records restored know the volume (free there)
  const attachedLater = await newVolume(h, 'drift-powercut-attached');
  const before = await retrying(() => fingerprint(h, { volumes: new Set(), instances: new Set() }));
  const copyDir = path.join(h.stack.baseDir, 'powercut-copy');
  await stopEverything(h);
  await fsp.rm(copyDir, { recursive: true, force: true });
  await fsp.mkdir(copyDir, { recursive: true });
  for (const d of EMBEDDED_FILES) await run('cp', ['-a', path.join(h.stack.baseDir, d), copyDir]);
  await startEverything(h);
  notes.push('copy taken with the stack stopped');

  // after the copy: what the power cut will make tether forget
  await attachAndWait(h, server, attachedLater);
  const { handle } = await h.stack.service.detachVolume({ server: server.uuid, volume: detachedLater.id });
  await h.stack.service.awaitDetach(handle);

  await stopEverything(h);
  for (const d of EMBEDDED_FILES) {
    await fsp.rm(path.join(h.stack.baseDir, d), { recursive: true, force: true });
    await run('cp', ['-a', path.join(copyDir, d), h.stack.baseDir]);
  }
  // a postmaster.pid whose number another process may have taken since would stop PostgreSQL's start
  await fsp.rm(path.join(h.stack.baseDir, 'pg', 'postmaster.pid'), { force: true });
  // the clock starts when the power comes back: the stack's own start is counted in (the reconciler
  // runs as soon as the control plane is up, before the API answers)
  const plantedAt = Date.now();
  await startEverything(h);
  notes.push(`the stack took ${((Date.now() - plantedAt) / 1000).toFixed(1)} s to start again after the power cut (counted in the time to repair)`);

  const excluded = { volumes: new Set([attachedLater.id, detachedLater.id]), instances: new Set<string>() };
  const beforeOthers = before.filter((line) => !line.includes(attachedLater.id) && !line.includes(detachedLater.id));
  const p: Planted = {
    repairs: [repairPairWorkflowId(server.uuid, attachedLater.id), repairPairWorkflowId(server.uuid, detachedLater.id)],
    verify: async () => [...(await expectState(h, server, attachedLater, 'absent')()), ...(await expectState(h, server, detachedLater, 'attached')())],
    tidy: tidyPair(h, server, attachedLater, detachedLater),
    excluded,
  };
  return awaitRepair(h, o, scenario, runNo, ['disk-without-bdm', 'bdm-without-disk'], plant, p, beforeOthers, plantedAt, notes);
}

// ---- kills during repairs and swaps --------------------------------------------------------------

export interface DriftKill {
  what: 'repair' | 'swap';
  /** The step whose process is killed, and how it is reached. */
  step: string;
  trigger: { pause: 'before' | 'after' } | { progress: true };
  target: Target;
}

export const DRIFT_KILLS: DriftKill[] = [
  { what: 'repair', step: 'attachDisk', trigger: { pause: 'after' }, target: 'compute-agent' },
  { what: 'repair', step: 'detachDisk', trigger: { pause: 'after' }, target: 'compute-agent' },
  { what: 'repair', step: 'recreateBdm', trigger: { progress: true }, target: 'control-plane' },
  { what: 'repair', step: 'attachDisk', trigger: { pause: 'before' }, target: 'temporal' },
  { what: 'swap', step: 'reserveSwapVolume', trigger: { pause: 'after' }, target: 'control-plane' },
  { what: 'swap', step: 'copyDisk', trigger: { pause: 'after' }, target: 'compute-agent' },
  { what: 'swap', step: 'pivotDisk', trigger: { pause: 'after' }, target: 'compute-agent' },
];

export function driftKillName(k: DriftKill): string {
  const phase = 'pause' in k.trigger ? (k.trigger.pause === 'after' ? 'during' : 'before') : 'during';
  return `kill ${k.what} ${k.step} ${phase} ${k.target}`;
}

/** SIGKILL of `target` while `point` is held (or at once), its restart, the hold released (before or after the restart, drawn). */
async function killAround(h: Harness, target: Target, point: PausePoint | undefined, notes: string[]): Promise<void> {
  const releaseAfter = point !== undefined && h.rnd.bool();
  const heldBy = point?.claimedByPid;
  await h.stack.kill(target);
  notes.push(`killed ${target}${heldBy ? ` (step held in pid ${heldBy})` : ''}${point ? `, released ${releaseAfter ? 'after' : 'before'} the restart` : ''}`);
  if (!releaseAfter) await point?.release();
  await h.stack.restart(target);
  if (releaseAfter) await point?.release();
}

export async function runDriftKill(h: Harness, k: DriftKill, runNo: number, server: Instance, o: DriftOptions): Promise<DriftCaseResult> {
  const scenario = driftKillName(k);
  const why = h.stack.cannotKill(k.target);
  if (why) return result(h, scenario, runNo, { passed: false, skipped: true, converged: false, outcome: 'skipped', leaked: 0, convergeMs: null, notes: [why] });
  const notes: string[] = [];
  const point = 'pause' in k.trigger ? new PausePoint(h.stack.pauseDir, k.step, k.trigger.pause) : undefined;
  try {
    if (k.what === 'swap') return await swapKill(h, k, runNo, server, point, notes);
    const before = await retrying(() => fingerprint(h, { volumes: new Set(), instances: new Set() }));
    // the drift whose repair runs the step: a disk put back (attachDisk), a stray disk removed (detachDisk), a BDM recreated
    let p: Planted;
    let kinds: DisagreementKind[];
    const v = k.step === 'detachDisk' ? await newVolume(h, 'drift-kill-stray') : await attached(h, server, `drift-kill-${k.step}`);
    const base = { tidy: tidyPair(h, server, v), excluded: pairSet(server, v), repairs: [repairPairWorkflowId(server.uuid, v.id)] };
    await point?.arm(Math.max(120_000, 8 * o.periodS * 1000));
    if (k.step === 'attachDisk') {
      await virshDetachDisk(h, server, v.id);
      kinds = ['bdm-without-disk'];
      p = { ...base, verify: expectState(h, server, v, 'attached') };
    } else if (k.step === 'detachDisk') {
      await virshAttachStray(h, server, v, 'sdw');
      kinds = ['disk-without-bdm'];
      p = { ...base, verify: expectState(h, server, v, 'absent') };
    } else {
      await h.stack.db.query('DELETE FROM block_device_mappings WHERE uuid = $1', [(await liveBdm(h.stack.db, server.uuid, v.id))!.uuid]);
      kinds = ['disk-without-bdm', 'unknown-attachment'];
      p = { ...base, verify: expectState(h, server, v, 'attached') };
    }
    const plantedAt = Date.now();
    const beforeOthers = before.filter((line) => !line.includes(v.id));
    const trigger = async () => {
      let hit = false;
      const waitMs = Math.max(6 * o.periodS * 1000, 180_000);
      if (point) {
        hit = await point.waitClaimed(waitMs);
      } else {
        const deadline = Date.now() + waitMs;
        while (!hit && Date.now() < deadline) {
          const progress = await progressOf(h, base.repairs[0]!);
          hit = progress !== null && (progress.currentStep === k.step || progress.steps.some((s) => s.step === k.step));
          if (!hit) await sleep(5);
        }
      }
      notes.push(hit ? `the repair reached ${k.step}` : `the repair never reached ${k.step}; killed anyway`);
      await killAround(h, k.target, point, notes);
    };
    // a kill costs time (a restart): the repair must converge, not within two periods
    return { ...(await awaitRepair(h, o, scenario, runNo, kinds, 'as the drift case', p, beforeOthers, plantedAt, notes, trigger, false)), triggered: true };
  } finally {
    await point?.release();
  }
}

async function swapKill(h: Harness, k: DriftKill, runNo: number, server: Instance, point: PausePoint | undefined, notes: string[]): Promise<DriftCaseResult> {
  const scenario = driftKillName(k);
  const v = await attached(h, server, `drift-swap-${k.step}`);
  await point?.arm();
  const started = await h.stack.service.migrateVolume({ volume: v.id });
  const t0 = Date.now();
  const triggered = point ? await point.waitClaimed(120_000) : false;
  if (!triggered) notes.push(`the swap never reached ${k.step}; killed anyway`);
  await killAround(h, k.target, point, notes);
  const id = swapWorkflowId(server.uuid, v.id);
  const end = (await waitClosed(h, [id]))[id]!;
  await h.stack.settled();
  const problems: string[] = [];
  if (end !== 'COMPLETED' && end !== 'FAILED') problems.push(`swap ${id} ${end}`);
  const state = classify(await retrying(() => pairState(h, server.uuid, v.id)));
  if (state !== 'attached') problems.push(`after the swap ${end}: ${state}`);
  const dest = await h.stack.blockStorage.getVolume(started.destination.id).catch(() => null);
  if (dest && (dest.attachments.length > 0 || !['available', 'deleting'].includes(dest.status))) problems.push(`the swap's other volume is ${dest.status} with ${dest.attachments.length} attachment(s)`);
  const checked = await hostCheck(h);
  if (checked.disagreements.length || checked.inFlight.length) problems.push(`checker: ${formatDisagreements([...checked.disagreements, ...checked.inFlight])}`);
  const convergeMs = Date.now() - t0;
  notes.push(`swap ${end}`);
  problems.push(...(await tidy(h, [{ server, volume: v }])));
  if (dest) await h.stack.service.deleteVolume(dest.id).catch(() => undefined);
  return result(h, scenario, runNo, {
    passed: problems.length === 0,
    converged: end === 'COMPLETED' || end === 'FAILED',
    outcome: end === 'COMPLETED' ? 'swapped' : end === 'FAILED' ? 'rolled-back' : end,
    leaked: checked.disagreements.length + checked.inFlight.length,
    convergeMs,
    triggered,
    notes,
    ...(problems.length ? { failure: problems.join('; ') } : {}),
  });
}

/** The whole cloud's `tether check` (the CLI, every host and the orphans) after the family. */
export async function runFinalCliCheck(h: Harness, runNo: number): Promise<CaseResult> {
  const out = await h.stack.runCli(['check'], 180_000);
  const clean = out.code === 0 && out.stdout.trim() === 'no disagreements';
  return result(h, 'drift final: tether check (the whole cloud) is clean', runNo, {
    passed: clean,
    converged: clean,
    outcome: clean ? 'clean' : 'disagreements',
    leaked: clean ? 0 : 1,
    convergeMs: null,
    notes: [],
    ...(clean ? {} : { failure: `tether check exited ${out.code}: ${out.stdout}${out.stderr}` }),
  });
}

/** The policy each planted kind is under (src/repair/policy.ts), for the report. */
export function policyOf(kind: DisagreementKind): 'repair' | 'report-only' {
  return REPAIR_BY_KIND[kind].target === 'report-only' ? 'report-only' : 'repair';
}

/** A volume attached to each shared server before the family: what no repair may touch. */
export async function attachBackground(h: Harness): Promise<void> {
  for (const s of h.servers) await attached(h, s, `drift-background-${s.name ?? s.uuid.slice(0, 8)}`);
}
