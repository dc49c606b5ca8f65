/**
 * What a repair does to one (server, volume) pair, decided from what every store says about it now:
 * tether's BDM, the block storage's volume and live attachment, the domain's disk (persistent config
 * and live) and the libvirt secrets that disk names. Pure: the repair saga plans from a snapshot it
 * reads after it owns the pair (so a repeated repair finds nothing left to do), and `tether repair
 * --dry-run` prints the same plan without changing anything.
 *
 * The rules, in order (the first that applies decides; later actions see the earlier ones done):
 * - instance deleted or unknown: its BDM is retired, its attachment deleted (orphan-bdm,
 *   unknown-attachment of a deleted instance); its host is not asked.
 * - instance shelved_offloaded: a BDM without its reserved attachment gets one (Nova's shelved
 *   attach), an attachment without BDM is deleted.
 * - no BDM: a disk in the domain whose volume has a live attachment to the instance gets its BDM
 *   back (the row was lost) and its connection refreshed; a disk without one is removed (tether's
 *   kind of disk that nobody recorded); an attachment without disk is deleted.
 * - the volume is gone from the block storage: disk removed, BDM retired.
 * - a BDM left 'attaching'/'detaching' with no disk: the half-done operation is finished backwards
 *   (attachment deleted, BDM retired); with its disk: completed as attached (refresh below).
 * - the BDM's attachment missing, another one than the live one, not 'attached', or no
 *   connection_info: refresh the connection (nova-manage volume_attachment refresh: the
 *   attachment made or found, updated with the host's connector, completed, recorded on the BDM).
 * - the disk on another target than the BDM's device name: the BDM follows the disk (the guest sees it there).
 * - the disk missing from the persistent config or the live domain: put back.
 * - a libvirt secret the disk names missing: defined again (from the connection info and the key store).
 * - last, when no step above went through the block storage's own flow (which sets the status
 *   itself), the volume's status made to agree with its attachments (reset-state done right).
 */
import type { VmState } from './types.ts';

export interface PairSnapshot {
  instanceUuid: string;
  volumeId: string;
  instance: { state: 'live' | 'deleted' | 'unknown'; vmState: VmState | null; host: string | null; taskState: string | null };
  bdm: {
    uuid: string;
    attachStatus: 'attaching' | 'attached' | 'detaching';
    deviceName: string | null;
    diskBus: string | null;
    attachmentId: string | null;
    hasConnectionInfo: boolean;
  } | null;
  /** null: the block storage does not know the volume (deleted). */
  volume: { status: string; multiattach: boolean; attachmentStatuses: string[] } | null;
  /** The live attachment of this volume to this instance. */
  attachment: { id: string; status: string } | null;
  /** What the domain holds; null when the host was not asked (no host, offloaded, deleted instance). */
  disk: {
    domain: boolean;
    active: boolean;
    /** The target (sdb) of the disk whose serial is the volume id, in the persistent config / live domain. */
    configTarget: string | null;
    liveTarget: string | null;
    /** Secret UUIDs the disk's XML names that libvirt does not have. */
    missingSecrets: string[];
  } | null;
}

export type RepairAction =
  | { kind: 'recreateBdm'; bdmUuid: string; device: string; attachmentId: string }
  | { kind: 'refreshConnection'; bdmUuid: string }
  | { kind: 'reserveAttachment'; bdmUuid: string }
  | { kind: 'setDeviceName'; bdmUuid: string; device: string }
  | { kind: 'restoreDisk'; bdmUuid: string }
  | { kind: 'removeDisk' }
  | { kind: 'defineSecrets'; bdmUuid: string }
  | { kind: 'deleteAttachment'; attachmentId: string }
  | { kind: 'retireBdm'; bdmUuid: string }
  | { kind: 'syncVolumeStatus'; from: string; to: string };

export interface RepairPlan {
  actions: RepairAction[];
  /** What is wrong and left alone, with the reason. */
  notes: string[];
}

/** Volume statuses a repair may set from the attachments; others (error, extending, …) are left alone. */
const SETTABLE_STATUS = new Set(['available', 'reserved', 'attaching', 'detaching', 'in-use']);

/** The status the attachments imply (the embedded service's own rule after an attachment is deleted). */
export function statusFromAttachments(statuses: readonly string[]): string {
  if (statuses.length === 0) return 'available';
  if (statuses.includes('attached')) return 'in-use';
  if (statuses.includes('attaching')) return 'attaching';
  return 'reserved';
}

/** The volume status to set, or null when it may stay (it agrees, or is not one a repair changes). */
export function volumeStatusRepair(volume: { status: string; attachmentStatuses: readonly string[] }): string | null {
  if (!SETTABLE_STATUS.has(volume.status)) return null;
  const expected = statusFromAttachments(volume.attachmentStatuses);
  return expected === volume.status ? null : expected;
}

export function planPairRepair(s: PairSnapshot, newBdmUuid: string): RepairPlan {
  const actions: RepairAction[] = [];
  const notes: string[] = [];
  // the attachment statuses once the actions are done (for the volume status at the end)
  let attachments = s.volume ? [...s.volume.attachmentStatuses] : [];
  const dropAttachment = (status: string) => {
    const i = attachments.indexOf(status);
    if (i >= 0) attachments.splice(i, 1);
  };
  // The block storage sets the volume's status itself when its attachments change through its own
  // flow (reserve, complete, delete): a status repair only when no such step runs.
  const storageFlow = new Set<RepairAction['kind']>(['refreshConnection', 'reserveAttachment', 'deleteAttachment']);
  const finish = (): RepairPlan => {
    if (s.volume && SETTABLE_STATUS.has(s.volume.status) && !actions.some((a) => storageFlow.has(a.kind))) {
      const to = statusFromAttachments(attachments);
      if (to !== s.volume.status) actions.push({ kind: 'syncVolumeStatus', from: s.volume.status, to });
    }
    return { actions, notes };
  };
  const deleteAttachment = () => {
    if (!s.attachment) return;
    actions.push({ kind: 'deleteAttachment', attachmentId: s.attachment.id });
    dropAttachment(s.attachment.status);
  };
  /** The pair's attachment made 'attached' (created when missing). */
  const attached = () => {
    if (s.attachment) dropAttachment(s.attachment.status);
    attachments.push('attached');
  };

  if (s.instance.state === 'live' && s.instance.taskState !== null) {
    notes.push(`the instance is held by a server action (task_state ${s.instance.taskState}): nothing is changed under it`);
    return { actions, notes };
  }
  if (s.instance.state !== 'live') {
    deleteAttachment();
    if (s.bdm) actions.push({ kind: 'retireBdm', bdmUuid: s.bdm.uuid });
    return finish();
  }

  if (s.instance.vmState === 'shelved_offloaded') {
    if (s.bdm && s.volume && (!s.attachment || s.attachment.id !== s.bdm.attachmentId)) {
      actions.push({ kind: 'reserveAttachment', bdmUuid: s.bdm.uuid });
      if (!s.attachment) attachments.push('reserved');
    } else if (!s.bdm) {
      deleteAttachment();
    }
    if (s.bdm && !s.volume) actions.push({ kind: 'retireBdm', bdmUuid: s.bdm.uuid });
    return finish();
  }

  const disk = s.disk;
  if (disk === null || !disk.domain) {
    notes.push(disk === null ? 'the instance has no host to ask about its disks' : 'the instance has no domain (missing-domain is reported only)');
  }
  const target = disk?.liveTarget ?? disk?.configTarget ?? null;
  const diskPresent = target !== null;

  if (!s.bdm) {
    if (diskPresent && s.attachment && s.volume) {
      actions.push({ kind: 'recreateBdm', bdmUuid: newBdmUuid, device: `/dev/${target}`, attachmentId: s.attachment.id });
      actions.push({ kind: 'refreshConnection', bdmUuid: newBdmUuid });
      attached();
      if (disk && disk.domain && (!disk.configTarget || (disk.active && !disk.liveTarget))) actions.push({ kind: 'restoreDisk', bdmUuid: newBdmUuid });
    } else if (diskPresent) {
      actions.push({ kind: 'removeDisk' });
      deleteAttachment();
    } else {
      deleteAttachment();
    }
    return finish();
  }

  const bdm = s.bdm;
  if (!s.volume) {
    if (diskPresent) actions.push({ kind: 'removeDisk' });
    actions.push({ kind: 'retireBdm', bdmUuid: bdm.uuid });
    return finish();
  }

  if (bdm.attachStatus !== 'attached' && !diskPresent && disk?.domain) {
    // a half-done attach or detach whose disk is not there: finish it backwards
    deleteAttachment();
    actions.push({ kind: 'retireBdm', bdmUuid: bdm.uuid });
    return finish();
  }
  if (disk === null || !disk.domain) {
    if (bdm.attachStatus !== 'attached') notes.push(`BDM ${bdm.uuid} is '${bdm.attachStatus}' and its disk cannot be looked at: left as it is`);
    else if (!s.attachment || s.attachment.id !== bdm.attachmentId || s.attachment.status !== 'attached') notes.push('the attachment is not refreshed without a host to connect');
    return finish();
  }

  if (bdm.attachStatus !== 'attached' || !s.attachment || s.attachment.id !== bdm.attachmentId || s.attachment.status !== 'attached' || !bdm.hasConnectionInfo) {
    actions.push({ kind: 'refreshConnection', bdmUuid: bdm.uuid });
    attached();
  }
  if (target !== null && bdm.deviceName !== `/dev/${target}`) {
    actions.push({ kind: 'setDeviceName', bdmUuid: bdm.uuid, device: `/dev/${target}` });
    if (disk.configTarget && disk.liveTarget && disk.configTarget !== disk.liveTarget) {
      notes.push(`the disk is ${disk.configTarget} in the persistent config but ${disk.liveTarget} in the live domain: the BDM follows the live one`);
    }
  }
  if (!disk.configTarget || (disk.active && !disk.liveTarget)) actions.push({ kind: 'restoreDisk', bdmUuid: bdm.uuid });
  else if (disk.missingSecrets.length > 0) actions.push({ kind: 'defineSecrets', bdmUuid: bdm.uuid });
  return finish();
}

/** One line per action, for the dry run and the saga's progress. */
export function describeRepairAction(a: RepairAction): string {
  switch (a.kind) {
    case 'recreateBdm': return `recreate the BDM (${a.bdmUuid}) as ${a.device} for the disk in the domain and attachment ${a.attachmentId}`;
    case 'refreshConnection': return `refresh the connection of BDM ${a.bdmUuid} (nova-manage volume_attachment refresh: attachment made or found, updated with the host connector, completed, recorded on the BDM)`;
    case 'reserveAttachment': return `reserve an attachment for the shelved-offloaded instance and record it on BDM ${a.bdmUuid}`;
    case 'setDeviceName': return `set BDM ${a.bdmUuid}'s device name to ${a.device}, where the disk is`;
    case 'restoreDisk': return `put the disk of BDM ${a.bdmUuid} back into the domain (persistent config and live)`;
    case 'removeDisk': return 'remove the disk nobody records from the domain (persistent config and live) and its libvirt secrets';
    case 'defineSecrets': return `define again the libvirt secrets the disk of BDM ${a.bdmUuid} names`;
    case 'deleteAttachment': return `delete block-storage attachment ${a.attachmentId}`;
    case 'retireBdm': return `retire BDM ${a.bdmUuid}`;
    case 'syncVolumeStatus': return `set the volume's status from '${a.from}' to '${a.to}', as its attachments say`;
  }
}
