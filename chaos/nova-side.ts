/**
 * Reading what a real Nova (test/support/nova.ts) leaves, the way chaos/harness.ts reads tether:
 * one (server, volume) pair across Nova's block_device_mapping, Cinder and the libvirt domain, and
 * tether's invariant checker (src/checker/invariants.ts) pointed at Nova's database.
 *
 * The checker reads tether's tables through three queries; `novaCheckerDb` answers them from Nova's
 * cell database instead:
 *   instances                uuid, host, vm_state, task_state, deleted (deleted != 0)
 *   block_device_mappings    Nova's block_device_mapping rows with destination_type 'volume' and
 *                            deleted = 0 (the boot volume included). Nova keeps no attach status on a
 *                            BDM: one with connection_info is taken as 'attached', one without as
 *                            'attaching' (reserved, not attached yet) — Nova has no 'detaching' BDM, its
 *                            detach shows only in the volume's status.
 * Nova runs no Temporal workflows, so nothing of Nova's is ever "in flight" to the checker: it is
 * asked after Nova settled (chaos/nova-kills.ts), and every finding is a disagreement.
 */
import type { Client } from '@temporalio/client';
import type { Queryable } from '../src/db/database.ts';
import type { VolumeAdmin, BlockStorage } from '../src/blockstorage/block-storage.ts';
import type { LibvirtConnection } from '../src/libvirt/binding.ts';
import { diskBySerial } from '../src/host/domain-disks.ts';
import { inspectInvariants, formatDisagreements, type Disagreement } from '../src/checker/invariants.ts';
import type { NovaHandle } from '../test/support/nova.ts';
import type { PairState } from './harness.ts';

async function jsonRows<T>(nova: NovaHandle, select: string): Promise<T[]> {
  const text = await nova.sql('nova', select);
  return text === null ? [] : (JSON.parse(text) as T[]);
}

/** MariaDB's JSON_OBJECT gives a comparison as true/false or 1/0 (or "1"), depending on the expression. */
const truthy = (v: unknown) => v === true || Number(v) === 1;

const uuidLiteral = (v: unknown) => {
  const s = String(v);
  if (!/^[0-9a-f-]{36}$/i.test(s)) throw new Error(`not a UUID: ${s}`);
  return `'${s}'`;
};

/** A Queryable that answers the checker's queries from Nova's cell database (see above). */
export function novaCheckerDb(nova: NovaHandle): Queryable {
  const query = async (sql: string, params: unknown[] = []) => {
    const q = sql.replace(/\s+/g, ' ').trim();
    if (q.startsWith('SELECT uuid, host, vm_state, task_state, deleted_at IS NOT NULL AS deleted FROM instances')) {
      const rows = await jsonRows<{ uuid: string; host: string | null; vm_state: string; task_state: string | null; deleted: unknown }>(
        nova,
        "SELECT JSON_ARRAYAGG(JSON_OBJECT('uuid', uuid, 'host', host, 'vm_state', vm_state, 'task_state', task_state, 'deleted', deleted != 0)) FROM instances",
      );
      return { rows: rows.map((r) => ({ ...r, deleted: truthy(r.deleted) })) };
    }
    if (q.startsWith('SELECT uuid, instance_uuid, volume_id, device_name, attach_status, attachment_id FROM block_device_mappings WHERE deleted_at IS NULL')) {
      const rows = await jsonRows<{ uuid: string; instance_uuid: string; volume_id: string | null; device_name: string | null; connected: unknown; attachment_id: string | null }>(
        nova,
        "SELECT JSON_ARRAYAGG(JSON_OBJECT('uuid', uuid, 'instance_uuid', instance_uuid, 'volume_id', volume_id, 'device_name', device_name, " +
          "'connected', connection_info IS NOT NULL, 'attachment_id', attachment_id)) FROM block_device_mapping WHERE deleted = 0 AND destination_type = 'volume'",
      );
      return { rows: rows.map(({ connected, ...r }) => ({ ...r, attach_status: truthy(connected) ? 'attached' : 'attaching' })) };
    }
    if (q === 'SELECT task_state FROM instances WHERE uuid = $1') {
      return { rows: await jsonRows(nova, `SELECT JSON_ARRAYAGG(JSON_OBJECT('task_state', task_state)) FROM instances WHERE uuid = ${uuidLiteral(params[0])}`) };
    }
    throw new Error(`novaCheckerDb: the invariant checker asked a query this adapter does not translate: ${q}`);
  };
  return { query } as unknown as Queryable;
}

/** tether's invariant checker on Nova's host: Nova's database, the shared Cinder, libvirt. */
export async function checkNova(
  nova: NovaHandle,
  deps: { blockStorage: Pick<VolumeAdmin, 'listVolumes'>; libvirt: LibvirtConnection; client: Client },
): Promise<{ disagreements: Disagreement[]; text: string }> {
  const report = await inspectInvariants({
    db: novaCheckerDb(nova),
    blockStorage: deps.blockStorage,
    libvirt: deps.libvirt,
    client: deps.client,
    // no workflow of tether's runs on this queue: nothing of Nova's is in flight
    controlTaskQueue: `nova-${nova.id}-has-no-workflows`,
    host: nova.host,
  });
  const all = [...report.disagreements, ...report.inFlight];
  return { disagreements: all, text: formatDisagreements(all) };
}

/** What Nova's BDMs, Cinder and the domain say about one pair (the shape chaos/harness.ts classifies). */
export async function novaPairState(nova: NovaHandle, blockStorage: BlockStorage, libvirt: LibvirtConnection, serverId: string, volumeId: string): Promise<PairState> {
  const bdms = await jsonRows<{ connected: unknown }>(
    nova,
    `SELECT JSON_ARRAYAGG(JSON_OBJECT('connected', connection_info IS NOT NULL)) FROM block_device_mapping WHERE deleted = 0 AND instance_uuid = ${uuidLiteral(serverId)} AND volume_id = ${uuidLiteral(volumeId)}`,
  );
  const volume = await blockStorage.getVolume(volumeId);
  const info = await libvirt.lookupDomain(serverId);
  const inConfig = info ? diskBySerial(await libvirt.getXml(serverId, { inactive: true }), volumeId) !== null : false;
  const inLive = info?.active ? diskBySerial(await libvirt.getXml(serverId), volumeId) !== null : false;
  return {
    bdm: bdms.length === 0 ? null : bdms.length > 1 ? `${bdms.length} BDMs` : truthy(bdms[0]!.connected) ? 'attached' : 'attaching',
    volumeStatus: volume.status,
    attachments: volume.attachments.filter((a) => a.serverId === serverId).map((a) => a.status),
    inConfig,
    inLive,
    domainActive: info?.active ?? false,
  };
}
