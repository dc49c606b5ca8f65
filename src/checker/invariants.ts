/**
 * The invariant checker: reads every store that holds a piece of an attachment — tether's database
 * (instances, block device mappings), the block storage (volume status and attachments), libvirt
 * (each domain's persistent and live XML) — plus Temporal (which operations run), and reports every
 * disagreement between them.
 *
 * ## What "agree" means (the rules)
 *
 * Scope: the live instances (all of them, or with `host` only those whose `host` column is that
 * host); their live volume BDMs; the volumes that have an attachment or a BDM of an instance in
 * scope, or neither attachment nor BDM of any instance (without `host`: every live volume).
 * `libvirt` is taken to be the hypervisor of `host` (without `host`: of every instance that has a
 * host).
 *
 * Instance ↔ libvirt (instances with a host that are not shelved_offloaded):
 * - `missing-domain`: libvirt has no domain with the instance's uuid although the instance is not
 *   building / error. Its disks are then not checked (the one finding says it all).
 * - `power-state-mismatch`: the instance is recorded active or paused (no task_state) but its domain
 *   does not run — QEMU was killed or crashed, or the guest powered off; the compute agent's
 *   power-state sync (src/host/power-state-sync.ts) records it as stopped at its next resync.
 * - `bdm-without-disk`: a BDM in attach_status 'attached' whose disk (the `<disk>` whose `<serial>`
 *   is the volume id) is missing from the persistent config, or — domain running — from the live XML.
 * - `disk-without-bdm`: a disk whose serial is a volume id (a live volume of the block storage, or
 *   any UUID-shaped serial: tether gives its disks no other kind) with no live BDM for that
 *   instance + volume.
 * - `device-mismatch`: a disk found for a BDM sits on another target than the BDM's device_name
 *   (or the BDM has no device name at all).
 *
 * BDMs (database):
 * - `duplicate-device` / `duplicate-bdm`: two live BDMs on one (instance, device) / one (instance,
 *   volume). Unique indexes forbid both; checked anyway.
 * - `stuck-bdm`: a BDM in 'attaching' or 'detaching' — unless the instance is shelved_offloaded, where
 *   an 'attaching' BDM is the resting state (it waits for unshelve).
 * - `bdm-without-attachment`: a BDM that must have a block-storage attachment — 'attached', or any
 *   BDM of a shelved_offloaded instance — while the block storage has no live attachment of that
 *   volume to that instance (or does not know the volume at all).
 * - `attachment-mismatch`: the BDM records another attachment id than the live one, or the BDM is
 *   'attached' while the attachment is not (or, shelved_offloaded, the attachment is not 'reserved').
 * - `orphan-bdm`: a live volume BDM whose instance is deleted or unknown (without `host`); with
 *   `host` and `deletedOnHost`, one whose instance was deleted on this host and whose domain is gone
 *   from it (the reconciler's per-host check).
 *
 * Block storage (each volume against its own live attachments, then against the BDMs):
 * - `volume-status-mismatch`: a steady status that contradicts the attachments — 'in-use' without
 *   an 'attached' attachment; 'available' (or creating/deleting/error/error_deleting) with any live
 *   attachment.
 * - `stuck-volume`: a transitional status — reserved / attaching / detaching. The one resting case
 *   is 'reserved' whose attachments are all 'reserved' for shelved_offloaded instances that have a
 *   live BDM of the volume (Nova's shelved attach), which is not reported.
 * - `unknown-attachment`: a live attachment whose (volume, instance) has no live BDM (without `host`
 *   also when the instance is deleted or unknown).
 *
 * libvirt secrets (when the libvirt reader can list them):
 * - `leaked-secret`: a libvirt secret tether defines for a volume of this block storage — its LUKS
 *   passphrase or its CHAP/cephx secret (UUIDs derived from the volume id) — while no live BDM of
 *   that volume exists anywhere, or, with `host` (whose own daemon `libvirt` is), none of an instance
 *   on this host: a moved server's secrets leave the source with its domain. Attach defines it after
 *   the BDM, detach and rollback remove it before the BDM goes, so only a leak leaves one behind.
 *   Secrets of volumes this block storage does not know (another deployment on the same daemon,
 *   deleted volumes) are not judged.
 *
 * - `missing-secret`: a disk of a live BDM names a libvirt secret (its LUKS passphrase, its CHAP or
 *   cephx secret) that the daemon does not have — removed behind tether's back: the running guest
 *   keeps its open disk, but the next attach, restart or migration of it fails.
 *
 * QEMU (when the libvirt reader can pass QMP commands):
 * - `qemu-orphan-disk`: a disk device QEMU holds in a running domain that the live XML does not list —
 *   left when libvirtd died between QEMU's device_add/device_del and recording it
 *   (src/host/qemu-orphan-disks.ts; the next attach or detach on the instance removes it).
 *
 * Instances:
 * - `stuck-task`: task_state is set (a server action holds the instance) but no workflow of the
 *   instance is running, and task_state had not changed when we looked again.
 *
 * ## In flight is not a disagreement (the exact rule)
 *
 * The stores are read one after the other, never in one snapshot, and a running saga legitimately
 * leaves them disagreeing between two steps. Let T0 be the moment the check starts (before any read).
 * A workflow is *active* when it is running at the moment Temporal is asked (after every store was
 * read), or when its latest run closed at or after T0 (it may have changed a store while we read).
 * A finding is moved from `disagreements` to `inFlight` when:
 * - it names an instance and a volume (a pair): `attach-<instance>-<volume>` or
 *   `detach-<instance>-<volume>` is active (described by workflow id: strongly consistent), or the
 *   instance is held by a server action (below);
 * - it names only a volume (`stuck-volume`, `volume-status-mismatch`): an attachVolume/detachVolume
 *   workflow of that volume is active — by visibility, `VolumeId = '<id>' AND (ExecutionStatus =
 *   'Running' OR CloseTime >= T0)`, and by describing the attach-/detach- ids of every instance that
 *   has an attachment or a BDM of the volume — or one of those instances is held by a server action;
 * - it names only an instance (`missing-domain`, `power-state-mismatch`): the instance is held by a
 *   server action.
 * An instance is *held by a server action* when its task_state (read at the snapshot) is set, or a
 * workflow other than attachVolume/detachVolume with `InstanceUuid = '<uuid>'` is active (visibility).
 * `stuck-task` is in flight when a workflow of the instance other than attachVolume/detachVolume is active,
 * or its task_state changed between the snapshot and the Temporal lookup. `duplicate-*` findings are
 * never in flight: no saga step creates them.
 * Visibility queries are also restricted to `TaskQueue = controlTaskQueue` when it is given.
 * A workflow that never ends (a compensation retrying against a host that is gone) keeps its findings
 * in flight for as long as it runs: look for long-running workflows in Temporal for those.
 */
import { WorkflowNotFoundError, type Client } from '@temporalio/client';
import type { Queryable } from '../db/database.ts';
import type { VolumeAdmin } from '../blockstorage/block-storage.ts';
import type { BdmAttachStatus, Volume, VmState } from '../domain/types.ts';
import { attachWorkflowId, detachWorkflowId } from '../domain/steps.ts';
import { authSecretUuid, encryptionSecretUuid } from '../host/disk-secrets.ts';
import { stripDev } from '../domain/device-names.ts';
import { diskElements, type DiskElement } from '../host/domain-disks.ts';
import { findOrphanDisks } from '../host/qemu-orphan-disks.ts';
import { LibvirtError, VIR_ERR_NO_DOMAIN, type LibvirtConnection } from '../libvirt/binding.ts';

export type DisagreementKind =
  | 'bdm-without-disk'
  | 'disk-without-bdm'
  | 'device-mismatch'
  | 'volume-status-mismatch'
  | 'stuck-volume'
  | 'duplicate-device'
  | 'unknown-attachment'
  | 'bdm-without-attachment'
  | 'duplicate-bdm'
  | 'stuck-bdm'
  | 'attachment-mismatch'
  | 'missing-domain'
  | 'power-state-mismatch'
  | 'orphan-bdm'
  | 'leaked-secret'
  | 'missing-secret'
  | 'qemu-orphan-disk'
  | 'stuck-task';

/** The order findings are reported in. */
export const DISAGREEMENT_KINDS: readonly DisagreementKind[] = [
  'duplicate-device',
  'duplicate-bdm',
  'missing-domain',
  'power-state-mismatch',
  'bdm-without-disk',
  'disk-without-bdm',
  'device-mismatch',
  'bdm-without-attachment',
  'unknown-attachment',
  'attachment-mismatch',
  'volume-status-mismatch',
  'stuck-volume',
  'stuck-bdm',
  'orphan-bdm',
  'leaked-secret',
  'missing-secret',
  'qemu-orphan-disk',
  'stuck-task',
];

export interface Disagreement {
  kind: DisagreementKind;
  instanceUuid?: string;
  volumeId?: string;
  /** The BDM's device name, or the disk's target (`/dev/<target>`) when there is no BDM. */
  device?: string;
  detail: string;
  /**
   * Only on findings that are in flight: why (the active workflow ids, or `task_state=<task>`).
   * Absent on disagreements.
   */
  inFlightBy?: string[];
}

export interface InvariantReport {
  /** T0: when the check started, before any store was read. */
  startedAt: string;
  disagreements: Disagreement[];
  /** Findings explained by an operation that was in flight (see the rule above); each has inFlightBy. */
  inFlight: Disagreement[];
  scanned: { instances: number; domains: number; bdms: number; volumes: number; attachments: number };
}

/** The libvirt calls the checker makes (a LibvirtConnection has them). */
export type LibvirtReader = Pick<LibvirtConnection, 'lookupDomain' | 'getXml'> & Partial<Pick<LibvirtConnection, 'listSecrets' | 'qemuMonitorCommand'>>;

export interface CheckDeps {
  db: Queryable;
  /** Anything that lists the volumes with their live attachments (LocalVolumeService does). */
  blockStorage: Pick<VolumeAdmin, 'listVolumes'>;
  libvirt: LibvirtReader;
  client: Client;
  /** Restricts Temporal visibility queries to this task queue (where tether's workflows run). */
  controlTaskQueue?: string;
  /** Restrict to the instances on this host (and `libvirt` is that host's daemon). */
  host?: string;
  /** T0 when libvirt was read before the check started (a snapshot read on the host): the snapshot's time. */
  startedAt?: Date;
  /**
   * With `host`: deleted instances last on this host whose domains `libvirt` answers for (the
   * reconciler's host snapshot looked them up). A live volume BDM of one of them is an orphan-bdm
   * once its domain is gone from the host; while the domain still exists (its QEMU may still hold
   * the disk) it is left to the whole-cloud check, which a person reads.
   */
  deletedOnHost?: ReadonlySet<string>;
}

export interface CheckOptions {
  /** Also return the findings that are in flight (each with `inFlightBy`), after the disagreements. */
  includeInFlight?: boolean;
}

/** The disagreements (and, with includeInFlight, the in-flight findings after them). */
export async function checkInvariants(deps: CheckDeps, options: CheckOptions = {}): Promise<Disagreement[]> {
  const report = await inspectInvariants(deps);
  return options.includeInFlight ? [...report.disagreements, ...report.inFlight] : report.disagreements;
}

// ---------------------------------------------------------------------------------------------

interface InstanceRow {
  uuid: string;
  host: string | null;
  vm_state: VmState;
  task_state: string | null;
  deleted: boolean;
}

interface BdmRow {
  uuid: string;
  instance_uuid: string;
  volume_id: string | null;
  device_name: string | null;
  attach_status: BdmAttachStatus;
  attachment_id: string | null;
}

type Scope = { kind: 'pair'; instanceUuid: string; volumeId: string } | { kind: 'volume'; volumeId: string; related: string[] }
  | { kind: 'instance'; instanceUuid: string } | { kind: 'task'; instanceUuid: string; taskState: string } | { kind: 'never' };

interface Candidate {
  finding: Disagreement;
  scope: Scope;
}

const UUID_SHAPED = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const TRANSITIONAL_VOLUME = new Set(['reserved', 'attaching', 'detaching']);
const ATTACH_DETACH_TYPES = new Set(['attachVolume', 'detachVolume', 'forceDetachVolume']);
/** Instances without a domain by design or not yet: no missing-domain for them. */
const NO_DOMAIN_EXPECTED = new Set<VmState>(['building', 'error', 'shelved_offloaded', 'deleted']);
/** Records that say the domain runs (a domain that does not is a power-state-mismatch). */
const RECORDED_RUNNING = new Set<VmState>(['active', 'paused']);

export async function inspectInvariants(deps: CheckDeps): Promise<InvariantReport> {
  const t0 = deps.startedAt ?? new Date();
  const candidates: Candidate[] = [];
  const add = (scope: Scope, finding: Disagreement) => candidates.push({ scope, finding });
  const pair = (instanceUuid: string, volumeId: string): Scope => ({ kind: 'pair', instanceUuid, volumeId });

  // ---- 1. tether's database ----
  const { rows: allInstances } = await deps.db.query<InstanceRow>(
    'SELECT uuid, host, vm_state, task_state, deleted_at IS NOT NULL AS deleted FROM instances',
  );
  const instanceByUuid = new Map(allInstances.map((i) => [i.uuid, i]));
  const inScope = (i: InstanceRow | undefined): boolean =>
    i !== undefined && !i.deleted && (deps.host === undefined || i.host === deps.host);
  const instances = allInstances.filter((i) => inScope(i)).sort((a, b) => a.uuid.localeCompare(b.uuid));
  const scopedUuids = new Set(instances.map((i) => i.uuid));

  const { rows: allBdms } = await deps.db.query<BdmRow>(
    `SELECT uuid, instance_uuid, volume_id, device_name, attach_status, attachment_id
     FROM block_device_mappings WHERE deleted_at IS NULL ORDER BY instance_uuid, device_name NULLS LAST, created_at`,
  );
  const bdms = allBdms.filter((b) => scopedUuids.has(b.instance_uuid));
  const volumeBdms = bdms.filter((b): b is BdmRow & { volume_id: string } => b.volume_id !== null);
  const bdmByPair = new Map(volumeBdms.map((b) => [`${b.instance_uuid}/${b.volume_id}`, b]));
  const anyBdmPairs = new Set(allBdms.filter((b) => b.volume_id !== null).map((b) => `${b.instance_uuid}/${b.volume_id}`));

  // Duplicates (all live BDMs with a device, volume or not).
  for (const [key, group] of groupBy(bdms.filter((b) => b.device_name !== null), (b) => `${b.instance_uuid}/${b.device_name}`)) {
    if (group.length < 2) continue;
    const first = group[0]!;
    add({ kind: 'never' }, {
      kind: 'duplicate-device',
      instanceUuid: first.instance_uuid,
      ...(first.volume_id ? { volumeId: first.volume_id } : {}),
      device: first.device_name!,
      detail: `${group.length} live BDMs on ${key.split('/').slice(1).join('/')}: ${group.map((b) => `${b.uuid} (volume ${b.volume_id ?? 'none'})`).join(', ')}`,
    });
  }
  for (const [, group] of groupBy(volumeBdms, (b) => `${b.instance_uuid}/${b.volume_id}`)) {
    if (group.length < 2) continue;
    const first = group[0]!;
    add({ kind: 'never' }, {
      kind: 'duplicate-bdm',
      instanceUuid: first.instance_uuid,
      volumeId: first.volume_id,
      detail: `${group.length} live BDMs of one volume on the instance: ${group.map((b) => `${b.uuid} (${b.device_name ?? 'no device'})`).join(', ')}`,
    });
  }

  if (deps.host === undefined) {
    for (const b of allBdms) {
      if (b.volume_id === null || scopedUuids.has(b.instance_uuid)) continue;
      const owner = instanceByUuid.get(b.instance_uuid);
      add(pair(b.instance_uuid, b.volume_id), {
        kind: 'orphan-bdm',
        instanceUuid: b.instance_uuid,
        volumeId: b.volume_id,
        ...(b.device_name ? { device: b.device_name } : {}),
        detail: `BDM ${b.uuid} (${b.attach_status}) is live but its instance is ${owner ? 'deleted' : 'unknown'}`,
      });
    }
  }

  if (deps.host !== undefined && deps.deletedOnHost) {
    for (const b of allBdms) {
      const owner = instanceByUuid.get(b.instance_uuid);
      if (b.volume_id === null || !owner?.deleted || owner.host !== deps.host || !deps.deletedOnHost.has(owner.uuid)) continue;
      if ((await readDomain(deps.libvirt, owner.uuid)) !== null) continue;
      add(pair(b.instance_uuid, b.volume_id), {
        kind: 'orphan-bdm',
        instanceUuid: b.instance_uuid,
        volumeId: b.volume_id,
        ...(b.device_name ? { device: b.device_name } : {}),
        detail: `BDM ${b.uuid} (${b.attach_status}) is live but its instance is deleted (its domain is gone from host ${deps.host})`,
      });
    }
  }

  // ---- 2. the block storage ----
  const allVolumes = await deps.blockStorage.listVolumes();
  const volumeById = new Map(allVolumes.map((v) => [v.id, v]));
  // With `host`: the volumes of this host's instances, and those of no instance at all (nobody else's).
  const bdmVolumes = new Set(volumeBdms.map((b) => b.volume_id));
  const anyBdmVolumes = new Set(allBdms.map((b) => b.volume_id));
  const volumes = deps.host === undefined
    ? allVolumes
    : allVolumes.filter((v) => v.attachments.some((a) => scopedUuids.has(a.serverId)) || bdmVolumes.has(v.id)
      || (v.attachments.length === 0 && !anyBdmVolumes.has(v.id)));
  const attachmentOf = (volumeId: string, instanceUuid: string) =>
    volumeById.get(volumeId)?.attachments.find((a) => a.serverId === instanceUuid) ?? null;

  // ---- 3. libvirt ----
  let domains = 0;
  const definedSecrets = deps.libvirt.listSecrets ? new Set((await deps.libvirt.listSecrets()).map((s) => s.uuid)) : null;
  for (const instance of instances) {
    if (instance.host === null || instance.vm_state === 'shelved_offloaded') continue;
    const xml = await readDomain(deps.libvirt, instance.uuid);
    const instanceBdms = volumeBdms.filter((b) => b.instance_uuid === instance.uuid);
    if (xml === null) {
      if (!NO_DOMAIN_EXPECTED.has(instance.vm_state)) {
        add({ kind: 'instance', instanceUuid: instance.uuid }, {
          kind: 'missing-domain',
          instanceUuid: instance.uuid,
          detail: `instance is ${instance.vm_state} on host ${instance.host} but libvirt has no domain ${instance.uuid}` +
            (instanceBdms.length > 0 ? ` (its ${instanceBdms.length} volume BDM(s) were not checked against disks)` : ''),
        });
        continue;
      }
    } else {
      domains++;
      if (xml.live === undefined && RECORDED_RUNNING.has(instance.vm_state) && instance.task_state === null) {
        add({ kind: 'instance', instanceUuid: instance.uuid }, {
          kind: 'power-state-mismatch',
          instanceUuid: instance.uuid,
          detail: `instance is ${instance.vm_state} but its domain is ${xml.state} (QEMU gone or the guest powered off; the compute agent of ${instance.host} records it as stopped at its next resync)`,
        });
      }
    }
    const places: Array<{ where: string; disks: DiskElement[] }> = [];
    if (xml?.config !== undefined) places.push({ where: 'the persistent config', disks: diskElements(xml.config) });
    else if (xml === null) places.push({ where: 'the persistent config (no domain)', disks: [] });
    if (xml?.live !== undefined) places.push({ where: 'the live domain', disks: diskElements(xml.live) });
    checkDisks(instance, instanceBdms, places, volumeById, add);
    if (definedSecrets) checkSecrets(instance.uuid, instanceBdms, places, definedSecrets, add);
    if (xml?.live !== undefined && deps.libvirt.qemuMonitorCommand) {
      const orphans = await findOrphanDisks(deps.libvirt as Parameters<typeof findOrphanDisks>[0], instance.uuid).catch(() => []);
      for (const orphan of orphans) {
        add({ kind: 'instance', instanceUuid: instance.uuid }, {
          kind: 'qemu-orphan-disk',
          instanceUuid: instance.uuid,
          detail: `QEMU holds disk ${orphan.id}${orphan.file ? ` (${orphan.file})` : ''} that the live XML does not list (libvirt lost track of it)`,
        });
      }
    }
  }

  // ---- BDMs against the block storage ----
  for (const b of volumeBdms) {
    const instance = instanceByUuid.get(b.instance_uuid)!;
    const shelved = instance.vm_state === 'shelved_offloaded';
    const where = pair(b.instance_uuid, b.volume_id);
    const base = { instanceUuid: b.instance_uuid, volumeId: b.volume_id, ...(b.device_name ? { device: b.device_name } : {}) };
    if (b.attach_status !== 'attached' && !(shelved && b.attach_status === 'attaching')) {
      add(where, { kind: 'stuck-bdm', ...base, detail: `BDM ${b.uuid} is '${b.attach_status}' and no attach or detach of this volume and instance is running` });
    }
    const mustHaveAttachment = b.attach_status === 'attached' || shelved;
    if (!mustHaveAttachment) continue;
    const volume = volumeById.get(b.volume_id);
    const attachment = attachmentOf(b.volume_id, b.instance_uuid);
    if (!attachment) {
      add(where, {
        kind: 'bdm-without-attachment',
        ...base,
        detail: volume
          ? `BDM ${b.uuid} is '${b.attach_status}'${shelved ? ' (instance shelved_offloaded)' : ''} but the block storage has no live attachment of the volume to the instance (volume ${volume.status})`
          : `BDM ${b.uuid} is '${b.attach_status}' but the block storage has no volume ${b.volume_id}`,
      });
      continue;
    }
    const problems: string[] = [];
    if (b.attachment_id !== null && b.attachment_id !== attachment.attachmentId) {
      problems.push(`the BDM records attachment ${b.attachment_id} but the live one is ${attachment.attachmentId}`);
    }
    if (!shelved && attachment.status !== 'attached') problems.push(`the BDM is attached but attachment ${attachment.attachmentId} is '${attachment.status}'`);
    if (shelved && attachment.status !== 'reserved') problems.push(`the instance is shelved_offloaded but attachment ${attachment.attachmentId} is '${attachment.status}', not 'reserved'`);
    if (problems.length > 0) add(where, { kind: 'attachment-mismatch', ...base, detail: `BDM ${b.uuid}: ${problems.join('; ')}` });
  }

  // ---- the block storage against itself and the BDMs ----
  let attachments = 0;
  for (const v of volumes) {
    attachments += v.attachments.length;
    const related = [...new Set([...v.attachments.map((a) => a.serverId), ...volumeBdms.filter((b) => b.volume_id === v.id).map((b) => b.instance_uuid)])];
    const volumeScope: Scope = { kind: 'volume', volumeId: v.id, related };
    const statuses = v.attachments.map((a) => a.status);
    const listing = v.attachments.length === 0 ? 'no live attachment'
      : `attachments: ${v.attachments.map((a) => `${a.attachmentId} ${a.status} to ${a.serverId}`).join(', ')}`;
    if (v.status === 'in-use' && !statuses.includes('attached')) {
      add(volumeScope, { kind: 'volume-status-mismatch', volumeId: v.id, detail: `volume is in-use but has no attached attachment (${listing})` });
    } else if (!TRANSITIONAL_VOLUME.has(v.status) && v.status !== 'in-use' && v.attachments.length > 0) {
      add(volumeScope, { kind: 'volume-status-mismatch', volumeId: v.id, detail: `volume is ${v.status} but has live attachments (${listing})` });
    } else if (TRANSITIONAL_VOLUME.has(v.status) && !isShelvedReservation(v, instanceByUuid, bdmByPair)) {
      add(volumeScope, { kind: 'stuck-volume', volumeId: v.id, detail: `volume is '${v.status}' and no attach or detach of it is running (${listing})` });
    }
    for (const a of v.attachments) {
      // any live BDM of the pair will do: one of a deleted instance is reported as orphan-bdm
      if (anyBdmPairs.has(`${a.serverId}/${v.id}`)) continue;
      const owner = instanceByUuid.get(a.serverId);
      if (!inScope(owner)) {
        // another host's instance is not ours to judge; a deleted or unknown one is, without `host`
        if (deps.host !== undefined || (owner && !owner.deleted)) continue;
      }
      add(pair(a.serverId, v.id), {
        kind: 'unknown-attachment',
        instanceUuid: a.serverId,
        volumeId: v.id,
        ...(a.device ? { device: a.device } : {}),
        detail: `attachment ${a.attachmentId} (${a.status}) has no live BDM` +
          (owner === undefined ? ' and the instance is unknown' : owner.deleted ? ' and the instance is deleted' : ''),
      });
    }
  }

  // ---- libvirt secrets of volumes that no BDM holds ----
  if (deps.libvirt.listSecrets) {
    const secretOwners = new Map<string, { volumeId: string; what: string }>();
    for (const v of allVolumes) {
      secretOwners.set(encryptionSecretUuid(v.id), { volumeId: v.id, what: 'LUKS passphrase secret' });
      secretOwners.set(authSecretUuid(v.id), { volumeId: v.id, what: 'storage auth secret' });
    }
    const heldVolumes = deps.host === undefined ? anyBdmVolumes : new Set(volumeBdms.map((b) => b.volume_id));
    for (const secret of await deps.libvirt.listSecrets()) {
      const owner = secretOwners.get(secret.uuid);
      if (!owner || heldVolumes.has(owner.volumeId)) continue;
      const v = volumeById.get(owner.volumeId)!;
      add({ kind: 'volume', volumeId: v.id, related: v.attachments.map((a) => a.serverId) }, {
        kind: 'leaked-secret',
        volumeId: v.id,
        detail: `libvirt ${owner.what} ${secret.uuid} (usage ${secret.usageType} ${secret.usageId}) is defined but no live BDM holds volume ${v.id}${deps.host === undefined ? '' : ` on host ${deps.host}`} (${v.status})`,
      });
    }
  }

  // ---- instances held by a task ----
  for (const i of instances) {
    if (i.task_state === null) continue;
    add({ kind: 'task', instanceUuid: i.uuid, taskState: i.task_state }, {
      kind: 'stuck-task',
      instanceUuid: i.uuid,
      detail: `instance has task_state '${i.task_state}' (vm_state ${i.vm_state}) and no workflow of it is running`,
    });
  }

  // ---- 4. Temporal: which findings are in flight ----
  const temporal = new ActiveWorkflows(deps, t0);
  const disagreements: Disagreement[] = [];
  const inFlight: Disagreement[] = [];
  for (const c of candidates) {
    const by = await excuses(c.scope, temporal, instanceByUuid, deps.db);
    if (by.length > 0) inFlight.push({ ...c.finding, inFlightBy: by });
    else disagreements.push(c.finding);
  }

  return {
    startedAt: t0.toISOString(),
    disagreements: sortFindings(disagreements),
    inFlight: sortFindings(inFlight),
    scanned: { instances: instances.length, domains, bdms: volumeBdms.length, volumes: volumes.length, attachments },
  };
}

/** The domain's state and its persistent and live XML; null when libvirt does not know it. */
async function readDomain(libvirt: LibvirtReader, uuid: string): Promise<{ state: string; config?: string; live?: string } | null> {
  try {
    const info = await libvirt.lookupDomain(uuid);
    if (!info) return null;
    return {
      state: info.state,
      ...(info.persistent ? { config: await libvirt.getXml(uuid, { inactive: true }) } : {}),
      ...(info.active ? { live: await libvirt.getXml(uuid) } : {}),
    };
  } catch (err) {
    // undefined between the lookup and the read
    if (err instanceof LibvirtError && err.code === VIR_ERR_NO_DOMAIN) return null;
    throw err;
  }
}

function checkDisks(
  instance: InstanceRow,
  bdms: Array<BdmRow & { volume_id: string }>,
  places: Array<{ where: string; disks: DiskElement[] }>,
  volumeById: Map<string, Volume>,
  add: (scope: Scope, finding: Disagreement) => void,
): void {
  const bdmByVolume = new Map(bdms.map((b) => [b.volume_id, b]));
  // serial -> { where, target }[] for disks without a BDM / with another target
  const unmapped = new Map<string, Array<{ where: string; target: string | null }>>();
  const mismatched = new Map<string, Array<{ where: string; target: string | null }>>();
  for (const { where, disks } of places) {
    for (const disk of disks) {
      if (!disk.serial) continue;
      const bdm = bdmByVolume.get(disk.serial);
      if (bdm) {
        if (bdm.device_name === null || stripDev(bdm.device_name) !== disk.target) push(mismatched, disk.serial, { where, target: disk.target });
      } else if (volumeById.has(disk.serial) || UUID_SHAPED.test(disk.serial)) {
        push(unmapped, disk.serial, { where, target: disk.target });
      }
    }
  }
  for (const [serial, seen] of unmapped) {
    const volume = volumeById.get(serial);
    add({ kind: 'pair', instanceUuid: instance.uuid, volumeId: serial }, {
      kind: 'disk-without-bdm',
      instanceUuid: instance.uuid,
      volumeId: serial,
      ...(seen[0]!.target ? { device: `/dev/${seen[0]!.target}` } : {}),
      detail: `disk ${describePlaces(seen)} has serial ${serial} but the instance has no live BDM of that volume` +
        (volume ? ` (volume ${volume.status})` : ' (no live volume has this id)'),
    });
  }
  for (const [serial, seen] of mismatched) {
    const bdm = bdmByVolume.get(serial)!;
    add({ kind: 'pair', instanceUuid: instance.uuid, volumeId: serial }, {
      kind: 'device-mismatch',
      instanceUuid: instance.uuid,
      volumeId: serial,
      ...(bdm.device_name ? { device: bdm.device_name } : {}),
      detail: `BDM ${bdm.uuid} says ${bdm.device_name ?? 'no device name'} but the disk is ${describePlaces(seen)}`,
    });
  }
  if (instance.vm_state === 'shelved_offloaded') return;
  for (const b of bdms) {
    if (b.attach_status !== 'attached') continue;
    const missing = places.filter((p) => !p.disks.some((d) => d.serial === b.volume_id)).map((p) => p.where);
    if (missing.length === 0) continue;
    add({ kind: 'pair', instanceUuid: instance.uuid, volumeId: b.volume_id }, {
      kind: 'bdm-without-disk',
      instanceUuid: instance.uuid,
      volumeId: b.volume_id,
      ...(b.device_name ? { device: b.device_name } : {}),
      detail: `BDM ${b.uuid} is attached${b.device_name ? ` as ${b.device_name}` : ''} but no disk with serial ${b.volume_id} is in ${missing.join(' or ')}`,
    });
  }
}

/** missing-secret: the secrets a live BDM's disk names that libvirt does not have. */
function checkSecrets(
  instanceUuid: string,
  bdms: Array<BdmRow & { volume_id: string }>,
  places: Array<{ where: string; disks: DiskElement[] }>,
  defined: Set<string>,
  add: (scope: Scope, finding: Disagreement) => void,
): void {
  for (const b of bdms) {
    const missing = new Set<string>();
    for (const { disks } of places) {
      for (const d of disks) {
        if (d.serial !== b.volume_id) continue;
        for (const m of d.xml.matchAll(/<secret\b[^>]*\buuid=['"]([^'"]+)['"]/g)) if (!defined.has(m[1]!)) missing.add(m[1]!);
      }
    }
    if (missing.size === 0) continue;
    add({ kind: 'pair', instanceUuid, volumeId: b.volume_id }, {
      kind: 'missing-secret',
      instanceUuid,
      volumeId: b.volume_id,
      ...(b.device_name ? { device: b.device_name } : {}),
      detail: `the disk names libvirt secret${missing.size > 1 ? 's' : ''} ${[...missing].join(', ')} that the daemon does not have`,
    });
  }
}

/** "sdb in the persistent config and the live domain", "sdb in the persistent config, sdc in the live domain". */
function describePlaces(seen: Array<{ where: string; target: string | null }>): string {
  const byTarget = groupBy(seen, (s) => s.target ?? '(no target)');
  return [...byTarget].map(([target, list]) => `${target} in ${list.map((s) => s.where).join(' and ')}`).join(', ');
}

/** 'reserved' with only 'reserved' attachments, each for a shelved_offloaded instance with a live BDM of the volume. */
function isShelvedReservation(v: Volume, instances: Map<string, InstanceRow>, bdmByPair: Map<string, BdmRow>): boolean {
  return v.status === 'reserved' && v.attachments.length > 0 && v.attachments.every((a) =>
    a.status === 'reserved' && instances.get(a.serverId)?.vm_state === 'shelved_offloaded' && !instances.get(a.serverId)?.deleted
    && bdmByPair.has(`${a.serverId}/${v.id}`));
}

/** Why a finding is in flight; empty when it is a disagreement. */
async function excuses(scope: Scope, temporal: ActiveWorkflows, instances: Map<string, InstanceRow>, db: Queryable): Promise<string[]> {
  const heldBy = async (instanceUuid: string): Promise<string[]> => {
    const task = instances.get(instanceUuid)?.task_state;
    return [...(task ? [`task_state=${task}`] : []), ...(await temporal.ofInstance(instanceUuid)).filter((w) => !ATTACH_DETACH_TYPES.has(w.type)).map((w) => w.id)];
  };
  switch (scope.kind) {
    case 'never':
      return [];
    case 'pair':
      return unique([...(await temporal.ofPair(scope.instanceUuid, scope.volumeId)), ...(await heldBy(scope.instanceUuid))]);
    case 'volume': {
      const found = [...(await temporal.ofVolume(scope.volumeId))];
      for (const i of scope.related) found.push(...(await temporal.ofPair(i, scope.volumeId)), ...(await heldBy(i)));
      return unique(found);
    }
    case 'instance':
      return unique(await heldBy(scope.instanceUuid));
    case 'task': {
      const found = (await temporal.ofInstance(scope.instanceUuid)).filter((w) => !ATTACH_DETACH_TYPES.has(w.type)).map((w) => w.id);
      if (found.length > 0) return unique(found);
      // The task may have finished while we looked: only a task_state that is still the same is stuck.
      const { rows } = await db.query<{ task_state: string | null }>('SELECT task_state FROM instances WHERE uuid = $1', [scope.instanceUuid]);
      const now = rows[0]?.task_state ?? null;
      return now === scope.taskState ? [] : [`task_state changed to ${now ?? 'none'} during the check`];
    }
  }
}

/** Temporal lookups, each made once per check. */
class ActiveWorkflows {
  private readonly pairs = new Map<string, Promise<string[]>>();
  private readonly volumes = new Map<string, Promise<string[]>>();
  private readonly instances = new Map<string, Promise<Array<{ id: string; type: string }>>>();

  constructor(
    private readonly deps: Pick<CheckDeps, 'client' | 'controlTaskQueue'>,
    private readonly t0: Date,
  ) {}

  /** attach-/detach- of the pair that are running or whose latest run closed at or after T0. */
  ofPair(instanceUuid: string, volumeId: string): Promise<string[]> {
    const key = `${instanceUuid}/${volumeId}`;
    let found = this.pairs.get(key);
    if (!found) {
      const ids = [attachWorkflowId(instanceUuid, volumeId), detachWorkflowId(instanceUuid, volumeId)];
      found = Promise.all(ids.map((id) => this.isActive(id))).then((active) => ids.filter((_, i) => active[i]));
      this.pairs.set(key, found);
    }
    return found;
  }

  /** attachVolume/detachVolume workflows of the volume that are running or closed at or after T0 (visibility). */
  ofVolume(volumeId: string): Promise<string[]> {
    let found = this.volumes.get(volumeId);
    if (!found) {
      found = this.list(`VolumeId = ${quote(volumeId)} AND WorkflowType IN ('attachVolume', 'detachVolume', 'forceDetachVolume', 'swapVolume')`).then((ws) => ws.map((w) => w.id));
      this.volumes.set(volumeId, found);
    }
    return found;
  }

  /** Every workflow of the instance (InstanceUuid search attribute) running or closed at or after T0. */
  ofInstance(instanceUuid: string): Promise<Array<{ id: string; type: string }>> {
    let found = this.instances.get(instanceUuid);
    if (!found) {
      found = this.list(`InstanceUuid = ${quote(instanceUuid)}`);
      this.instances.set(instanceUuid, found);
    }
    return found;
  }

  private async isActive(workflowId: string): Promise<boolean> {
    try {
      const d = await this.deps.client.workflow.getHandle(workflowId).describe();
      return d.status.name === 'RUNNING' || (d.closeTime !== undefined && d.closeTime.getTime() >= this.t0.getTime());
    } catch (err) {
      if (err instanceof WorkflowNotFoundError) return false;
      throw err;
    }
  }

  private async list(filter: string): Promise<Array<{ id: string; type: string }>> {
    const clauses = [
      filter,
      `(ExecutionStatus = 'Running' OR CloseTime >= ${quote(this.t0.toISOString())})`,
      ...(this.deps.controlTaskQueue ? [`TaskQueue = ${quote(this.deps.controlTaskQueue)}`] : []),
    ];
    const found: Array<{ id: string; type: string }> = [];
    for await (const w of this.deps.client.workflow.list({ query: clauses.join(' AND ') })) found.push({ id: w.workflowId, type: w.type });
    return found;
  }
}

function quote(value: string): string {
  return `'${value.replace(/\\/g, '\\\\').replace(/'/g, "\\'")}'`;
}

function groupBy<T>(items: readonly T[], key: (item: T) => string): Map<string, T[]> {
  const groups = new Map<string, T[]>();
  for (const item of items) push(groups, key(item), item);
  return groups;
}

function push<K, V>(map: Map<K, V[]>, key: K, value: V): void {
  const list = map.get(key);
  if (list) list.push(value);
  else map.set(key, [value]);
}

function unique(items: string[]): string[] {
  return [...new Set(items)];
}

function sortFindings(list: Disagreement[]): Disagreement[] {
  const rank = (k: DisagreementKind) => DISAGREEMENT_KINDS.indexOf(k);
  return [...list].sort((a, b) =>
    rank(a.kind) - rank(b.kind)
    || (a.instanceUuid ?? '').localeCompare(b.instanceUuid ?? '')
    || (a.volumeId ?? '').localeCompare(b.volumeId ?? '')
    || a.detail.localeCompare(b.detail));
}

// ---------------------------------------------------------------------------------------------

/**
 * A plain-text table for the CLI and the chaos report, one finding per line:
 *
 *   KIND              INSTANCE                              VOLUME                                DEVICE    DETAIL
 *   bdm-without-disk  1b2e…(36 chars)                       6f0c…(36 chars)                       /dev/sdb  BDM … is attached as /dev/sdb but …
 *   1 disagreement
 *
 * Missing values print as `-`; in-flight findings get ` [in flight: <ids>]` after the detail.
 * An empty list prints `no disagreements`.
 */
export function formatDisagreements(list: readonly Disagreement[]): string {
  if (list.length === 0) return 'no disagreements';
  const header = ['KIND', 'INSTANCE', 'VOLUME', 'DEVICE', 'DETAIL'];
  const rows = list.map((d) => [
    d.kind,
    d.instanceUuid ?? '-',
    d.volumeId ?? '-',
    d.device ?? '-',
    d.detail + (d.inFlightBy ? ` [in flight: ${d.inFlightBy.join(', ')}]` : ''),
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]) => cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]!))).join('  ');
  const inFlight = list.filter((d) => d.inFlightBy).length;
  const disagreements = list.length - inFlight;
  const summary = [
    `${disagreements} disagreement${disagreements === 1 ? '' : 's'}`,
    ...(inFlight > 0 ? [`${inFlight} in flight`] : []),
  ].join(', ');
  return [line(header), ...rows.map(line), summary].join('\n');
}
