/** All SQL about instances. */
import type { Queryable } from './database.ts';
import type { DiskBus, Instance, VmState } from '../domain/types.ts';

interface InstanceRow {
  uuid: string;
  name: string;
  project_id: string;
  host: string | null;
  vm_state: VmState;
  task_state: string | null;
  availability_zone: string;
  libvirt_domain: string | null;
  root_device_name: string | null;
  default_disk_bus: DiskBus;
  locked: boolean;
  created_at: Date;
  flavor_id?: string;
  pinned_availability_zone?: string | null;
  scheduler_hints?: Record<string, unknown>;
}

function toInstance(r: InstanceRow): Instance {
  return {
    uuid: r.uuid,
    name: r.name,
    projectId: r.project_id,
    host: r.host,
    vmState: r.vm_state,
    taskState: r.task_state,
    availabilityZone: r.availability_zone,
    libvirtDomain: r.libvirt_domain,
    rootDeviceName: r.root_device_name,
    defaultDiskBus: r.default_disk_bus,
    locked: r.locked,
    createdAt: r.created_at.toISOString(),
    flavorId: r.flavor_id ?? 'tether.tiny',
    pinnedAvailabilityZone: r.pinned_availability_zone ?? null,
    schedulerHints: r.scheduler_hints ?? {},
  };
}

export async function getInstance(db: Queryable, uuid: string, options: { forUpdate?: boolean } = {}): Promise<Instance | null> {
  const { rows } = await db.query<InstanceRow>(
    `SELECT * FROM instances WHERE uuid = $1 AND deleted_at IS NULL${options.forUpdate ? ' FOR UPDATE' : ''}`,
    [uuid],
  );
  return rows[0] ? toInstance(rows[0]) : null;
}

/** The instance with this uuid, deleted or not (Nova's read_deleted='yes': its instance actions outlive it). */
export async function getInstanceEvenDeleted(db: Queryable, uuid: string): Promise<Instance | null> {
  const { rows } = await db.query<InstanceRow>('SELECT * FROM instances WHERE uuid = $1', [uuid]);
  return rows[0] ? toInstance(rows[0]) : null;
}

export async function findInstancesByName(db: Queryable, name: string): Promise<Instance[]> {
  const { rows } = await db.query<InstanceRow>(
    'SELECT * FROM instances WHERE name = $1 AND deleted_at IS NULL ORDER BY created_at',
    [name],
  );
  return rows.map(toInstance);
}

export async function listInstances(db: Queryable, filter: { host?: string; name?: string } = {}): Promise<Instance[]> {
  const { rows } = await db.query<InstanceRow>(
    `SELECT * FROM instances WHERE deleted_at IS NULL
       AND ($1::text IS NULL OR host = $1) AND ($2::text IS NULL OR name = $2)
     ORDER BY created_at, uuid`,
    [filter.host ?? null, filter.name ?? null],
  );
  return rows.map(toInstance);
}

export interface NewInstance {
  uuid: string;
  name: string;
  projectId: string;
  host: string;
  availabilityZone: string;
  libvirtDomain: string;
  rootDeviceName: string;
  defaultDiskBus: DiskBus;
  /** src/domain/flavors.ts; tether.tiny when absent. */
  flavorId?: string;
  pinnedAvailabilityZone?: string | null;
  schedulerHints?: Record<string, unknown>;
}

/** Insert as building/spawning; idempotent on uuid (a retried insert returns the existing row). */
export async function insertInstance(db: Queryable, i: NewInstance): Promise<Instance> {
  await db.query(
    `INSERT INTO instances (uuid, name, project_id, host, vm_state, task_state, availability_zone, libvirt_domain,
                            root_device_name, default_disk_bus, flavor_id, pinned_availability_zone, scheduler_hints)
     VALUES ($1, $2, $3, $4, 'building', 'spawning', $5, $6, $7, $8, $9, $10, $11)
     ON CONFLICT (uuid) DO NOTHING`,
    [i.uuid, i.name, i.projectId, i.host, i.availabilityZone, i.libvirtDomain, i.rootDeviceName, i.defaultDiskBus, i.flavorId ?? 'tether.tiny', i.pinnedAvailabilityZone ?? null, JSON.stringify(i.schedulerHints ?? {})],
  );
  const row = await getInstance(db, i.uuid);
  if (!row) throw new Error(`instance ${i.uuid} vanished after insert`);
  return row;
}

/** The compute host an instance lives on (unshelve of an offloaded instance, a move). */
export async function setInstanceHost(db: Queryable, uuid: string, host: string): Promise<void> {
  await db.query('UPDATE instances SET host = $2, updated_at = now() WHERE uuid = $1 AND deleted_at IS NULL', [uuid, host]);
}

export async function setInstanceState(
  db: Queryable,
  uuid: string,
  state: { vmState: VmState; taskState: string | null; host?: string | null },
): Promise<void> {
  await db.query(
    `UPDATE instances SET vm_state = $2, task_state = $3,
        host = CASE WHEN $4::boolean THEN $5 ELSE host END, updated_at = now()
     WHERE uuid = $1 AND deleted_at IS NULL`,
    [uuid, state.vmState, state.taskState, state.host !== undefined, state.host ?? null],
  );
}

/**
 * Starts an instance task (Nova's task_state) when the instance is in one of `allowed` vm_states and
 * no other task runs; idempotent when the same task already runs. Returns the refusal, or null.
 */
export async function beginInstanceTask(db: Queryable, uuid: string, task: string, allowed: readonly VmState[] | 'any'): Promise<string | null> {
  const { rows } = await db.query<{ vm_state: VmState; task_state: string | null }>(
    'SELECT vm_state, task_state FROM instances WHERE uuid = $1 AND deleted_at IS NULL FOR UPDATE',
    [uuid],
  );
  const row = rows[0];
  if (!row) return `Instance ${uuid} could not be found.`;
  if (row.task_state === task) return null;
  if (row.task_state !== null) return `Cannot '${task}' instance ${uuid} while it is in task_state ${row.task_state}`;
  if (allowed !== 'any' && !allowed.includes(row.vm_state)) return `Cannot '${task}' instance ${uuid} while it is in vm_state ${row.vm_state}`;
  await db.query('UPDATE instances SET task_state = $2, updated_at = now() WHERE uuid = $1', [uuid, task]);
  return null;
}

export async function markInstanceDeleted(db: Queryable, uuid: string): Promise<void> {
  await db.query(
    `UPDATE block_device_mappings SET deleted_at = now(), updated_at = now() WHERE instance_uuid = $1 AND deleted_at IS NULL`,
    [uuid],
  );
  await db.query(
    `UPDATE instances SET vm_state = 'deleted', task_state = NULL, deleted_at = now(), updated_at = now() WHERE uuid = $1 AND deleted_at IS NULL`,
    [uuid],
  );
}

/**
 * The API's check-and-set of a server action (Nova's API saves task_state before it casts): under the
 * row lock, `refusal` decides on the instance as it is now; when it allows, the task is taken.
 * Returns the instance as it was (with the task) or the refusal.
 */
export async function takeInstanceTask<R>(
  db: Queryable,
  uuid: string,
  task: string,
  refusal: (instance: Instance) => R | null,
): Promise<{ instance: Instance } | { refused: R } | null> {
  const { rows } = await db.query<InstanceRow>('SELECT * FROM instances WHERE uuid = $1 AND deleted_at IS NULL FOR UPDATE', [uuid]);
  if (!rows[0]) return null;
  const instance = toInstance(rows[0]);
  const refused = refusal(instance);
  if (refused !== null) return { refused };
  await db.query('UPDATE instances SET task_state = $2, updated_at = now() WHERE uuid = $1', [uuid, task]);
  return { instance: { ...instance, taskState: task } };
}

/** Gives a task back when its workflow could not be started (only if that task still holds the instance). */
export async function releaseInstanceTask(db: Queryable, uuid: string, task: string): Promise<void> {
  await db.query('UPDATE instances SET task_state = NULL, updated_at = now() WHERE uuid = $1 AND task_state = $2 AND deleted_at IS NULL', [uuid, task]);
}

/**
 * The rollback of an import: the instance row it registered goes, with the (soft-deleted) BDMs its
 * own rollback left. Refused (false) while the instance has a live BDM.
 */
export async function forgetImportedInstance(db: Queryable, uuid: string): Promise<boolean> {
  const { rows } = await db.query<{ n: string }>('SELECT count(*) AS n FROM block_device_mappings WHERE instance_uuid = $1 AND deleted_at IS NULL', [uuid]);
  if (Number(rows[0]!.n) > 0) return false;
  await db.query('DELETE FROM block_device_mappings WHERE instance_uuid = $1', [uuid]);
  await db.query('DELETE FROM instances WHERE uuid = $1', [uuid]);
  return true;
}

/** Instances of `host` at rest (no task) whose record says one of `states` (the power-state sync's candidates). */
export async function instancesAtRest(db: Queryable, host: string, states: readonly VmState[]): Promise<Array<{ uuid: string; vmState: VmState }>> {
  const { rows } = await db.query<{ uuid: string; vm_state: VmState }>(
    `SELECT uuid, vm_state FROM instances
      WHERE host = $1 AND deleted_at IS NULL AND task_state IS NULL AND vm_state = ANY($2::text[])`,
    [host, states],
  );
  return rows.map((r) => ({ uuid: r.uuid, vmState: r.vm_state }));
}

/** Records `uuid` as stopped if it is still at rest on `host` in state `was`; whether it did. */
export async function markStoppedIfAtRest(db: Queryable, uuid: string, host: string, was: VmState): Promise<boolean> {
  const updated = await db.query(
    `UPDATE instances SET vm_state = 'stopped', updated_at = now()
      WHERE uuid = $1 AND host = $2 AND deleted_at IS NULL AND task_state IS NULL AND vm_state = $3`,
    [uuid, host, was],
  );
  return (updated.rowCount ?? 0) > 0;
}

/** Deleted instances last on `host` that still have live volume BDMs (their domains should be gone). */
export async function deletedInstancesWithLiveVolumeBdms(db: Queryable, host: string): Promise<string[]> {
  const { rows } = await db.query<{ uuid: string }>(
    `SELECT DISTINCT i.uuid FROM instances i JOIN block_device_mappings b ON b.instance_uuid = i.uuid
     WHERE i.deleted_at IS NOT NULL AND i.host = $1 AND b.deleted_at IS NULL AND b.volume_id IS NOT NULL`,
    [host],
  );
  return rows.map((r) => r.uuid);
}
