/**
 * The service layer shared by the HTTP API and the CLI, so they never disagree: name/UUID
 * resolution, quick input checks, and starting the workflows. It holds no state of its own.
 */
import { randomUUID } from 'node:crypto';
import { WithStartWorkflowOperation, type Client, type WorkflowHandle } from '@temporalio/client';
import { valueFromRawPayload } from '../security/decode.ts';
import { TetherError } from '../errors.ts';
import type { TetherConfig } from '../config.ts';
import type { Database } from '../db/database.ts';
import { findInstancesByName, getInstance, insertInstance, listInstances } from '../db/instances.ts';
import { liveBdm, liveBdmsOfInstance } from '../db/block-device-mappings.ts';
import { volumeOperationRefusal } from '../domain/instance-states.ts';
import { attachRefusal } from '../domain/attach-rules.ts';
import { isValidDevicePath } from '../domain/device-names.ts';
import { attachWorkflowId, detachWorkflowId } from '../domain/steps.ts';
import type { BlockDeviceMapping, Instance, Volume } from '../domain/types.ts';
import type { BlockStorage, VolumeAdmin, VolumeEncryption } from '../blockstorage/block-storage.ts';
import { ComputeHost, InstanceUuid, TetherState, VolumeId } from '../temporal/search-attributes.ts';
import { fromTemporalFailure } from './temporal-errors.ts';
import { DEFAULT_PROJECT_ID } from '../auth/caller.ts';
import type { AttachProgress, AttachReservation, AttachResult, AttachVolumeInput, AttachVolumeWorkflow } from '../domain/contracts/attach-volume.ts';
import type { StepProgress } from '../domain/steps.ts';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export function isUuid(s: string): boolean {
  return UUID.test(s);
}

export interface AttachVolumeRequest {
  server: string;
  volume: string;
  device?: string | null;
  tag?: string | null;
  deleteOnTermination?: boolean;
}

export interface StartedAttach {
  reservation: AttachReservation;
  workflowId: string;
  handle: WorkflowHandle;
}

export class TetherService {
  constructor(
    private readonly deps: {
      db: Database;
      client: Client;
      blockStorage: BlockStorage & Partial<VolumeAdmin>;
      config: Pick<TetherConfig, 'controlTaskQueue' | 'computeHost' | 'availabilityZone' | 'defaultDiskBus'>;
    },
  ) {}

  // ---- servers ----

  async resolveServer(nameOrId: string): Promise<Instance> {
    if (isUuid(nameOrId)) {
      const found = await getInstance(this.deps.db, nameOrId.toLowerCase());
      if (found) return found;
    }
    const byName = await findInstancesByName(this.deps.db, nameOrId);
    if (byName.length === 1) return byName[0]!;
    if (byName.length > 1) throw new TetherError('InvalidInput', `More than one server exists with the name '${nameOrId}'; use its ID.`);
    throw new TetherError('InstanceNotFound', `Instance ${nameOrId} could not be found.`);
  }

  listServers(filter: { name?: string; host?: string } = {}): Promise<Instance[]> {
    return listInstances(this.deps.db, filter);
  }

  /** Registers the instance and starts CreateServer (define + start the domain on its host). */
  async createServer(spec: { name: string; host?: string; projectId?: string }): Promise<{ instance: Instance; handle: WorkflowHandle }> {
    if (!spec.name || spec.name.length > 255) throw new TetherError('InvalidInput', 'Server name must be 1 to 255 characters.');
    const uuid = randomUUID();
    const host = spec.host ?? this.deps.config.computeHost;
    const bus = this.deps.config.defaultDiskBus;
    const instance = await insertInstance(this.deps.db, {
      uuid,
      name: spec.name,
      projectId: spec.projectId ?? DEFAULT_PROJECT_ID,
      host,
      availabilityZone: this.deps.config.availabilityZone,
      libvirtDomain: `tether-${uuid.slice(0, 8)}`,
      rootDeviceName: bus === 'virtio' ? '/dev/vda' : '/dev/sda',
      defaultDiskBus: bus,
    });
    const handle = await this.deps.client.workflow.start('createServer', {
      taskQueue: this.deps.config.controlTaskQueue,
      workflowId: `create-server-${uuid}`,
      args: [{ instanceUuid: uuid, domainName: instance.libvirtDomain!, host }],
      typedSearchAttributes: [
        { key: InstanceUuid, value: uuid },
        { key: ComputeHost, value: host },
      ],
    });
    return { instance, handle };
  }

  /** Runs one server action workflow (shelve, shelve-offload, unshelve, delete) and waits for it. */
  private async serverAction<R>(
    workflowType: 'shelveServer' | 'shelveOffloadServer' | 'unshelveServer' | 'deleteServer' | 'migrateServer',
    server: string,
    extra: (instance: Instance) => Record<string, unknown> = () => ({}),
  ): Promise<{ instance: Instance; result: R }> {
    const instance = await this.resolveServer(server);
    const handle = await this.deps.client.workflow.start(workflowType, {
      taskQueue: this.deps.config.controlTaskQueue,
      workflowId: `${workflowType}-${instance.uuid}`,
      workflowIdConflictPolicy: 'USE_EXISTING',
      args: [{ instanceUuid: instance.uuid, host: instance.host, ...extra(instance) }],
      typedSearchAttributes: [
        { key: InstanceUuid, value: instance.uuid },
        { key: ComputeHost, value: instance.host ?? '' },
      ],
    });
    try {
      return { instance, result: (await handle.result()) as R };
    } catch (err) {
      throw fromTemporalFailure(err);
    }
  }

  /** Power off, keep everything (volumes stay attached to the stopped domain). */
  async shelveServer(server: string): Promise<Instance> {
    const { instance } = await this.serverAction('shelveServer', server, (i) => ({ vmState: i.vmState }));
    return this.resolveServer(instance.uuid);
  }

  /** Remove the shelved server from its host: volumes stay reserved, nothing is left on the host. */
  async shelveOffloadServer(server: string): Promise<Instance> {
    const { instance } = await this.serverAction('shelveOffloadServer', server);
    return this.resolveServer(instance.uuid);
  }

  /** Start the server again (on `host`, or the default compute host, when it was offloaded) and connect its volumes. */
  async unshelveServer(server: string, host?: string): Promise<{ instance: Instance; devices: Record<string, string> }> {
    const { instance, result } = await this.serverAction<{ devices: Record<string, string> }>('unshelveServer', server, (i) => ({
      host: host ?? i.host ?? this.deps.config.computeHost,
    }));
    return { instance: await this.resolveServer(instance.uuid), devices: result.devices };
  }

  /** Delete the server: every volume is detached, those marked delete_on_termination are deleted. */
  async deleteServer(server: string): Promise<{ instance: Instance; deletedVolumes: string[] }> {
    const { instance, result } = await this.serverAction<{ deletedVolumes: string[] }>('deleteServer', server);
    return { instance, deletedVolumes: result.deletedVolumes };
  }

  /** Move the server to another compute host; attaches in flight finish first. */
  async migrateServer(server: string, targetHost: string): Promise<Instance> {
    if (!targetHost) throw new TetherError('InvalidInput', 'A target host is required.');
    const { instance } = await this.serverAction('migrateServer', server, (i) => ({ targetHost, vmState: i.vmState }));
    return this.resolveServer(instance.uuid);
  }

  // ---- volumes ----

  async resolveVolume(nameOrId: string): Promise<Volume> {
    if (isUuid(nameOrId)) {
      try {
        return await this.deps.blockStorage.getVolume(nameOrId.toLowerCase());
      } catch (err) {
        if (!(err instanceof TetherError && err.type === 'VolumeNotFound')) throw err;
      }
    }
    const byName = await this.volumeAdmin().listVolumes({ name: nameOrId });
    if (byName.length === 1) return byName[0]!;
    if (byName.length > 1) throw new TetherError('InvalidInput', `More than one volume exists with the name '${nameOrId}'; use its ID.`);
    throw new TetherError('VolumeNotFound', `Volume ${nameOrId} could not be found.`);
  }

  private volumeAdmin(): VolumeAdmin {
    const admin = this.deps.blockStorage;
    if (!admin.createVolume || !admin.listVolumes) {
      throw new TetherError('InvalidInput', `Volume management is done by the block storage service (${this.deps.blockStorage.kind}), not tether.`);
    }
    return admin as VolumeAdmin;
  }

  listVolumes(filter: { name?: string; projectId?: string } = {}): Promise<Volume[]> {
    return this.volumeAdmin().listVolumes(filter);
  }

  createVolume(spec: {
    name: string | null;
    size: number;
    projectId?: string;
    multiattach?: boolean;
    availabilityZone?: string;
    description?: string | null;
    /** '__DEFAULT__' (or none), or 'luks' for an encrypted volume. */
    volumeType?: string | null;
  }): Promise<Volume> {
    if (!Number.isInteger(spec.size) || spec.size < 1 || spec.size > 1024) throw new TetherError('InvalidInput', 'Volume size must be an integer number of GiB from 1 to 1024.');
    return this.volumeAdmin().createVolume({ ...spec, projectId: spec.projectId ?? DEFAULT_PROJECT_ID });
  }

  /** The volume's encryption metadata (never its key), null for a plain volume. */
  volumeEncryption(volumeId: string): Promise<VolumeEncryption | null> {
    return this.deps.blockStorage.getVolumeEncryption(volumeId);
  }

  async deleteVolume(nameOrId: string): Promise<void> {
    const volume = await this.resolveVolume(nameOrId);
    await this.deps.blockStorage.deleteVolume(volume.id);
  }

  // ---- attachments ----

  /**
   * Starts (or joins) the AttachVolume workflow of (server, volume) and returns once the device name
   * and the volume are reserved — Nova's POST answer. Validation failures come back as TetherErrors
   * and change nothing.
   */
  async attachVolume(req: AttachVolumeRequest): Promise<StartedAttach> {
    if (req.device != null && !isValidDevicePath(req.device)) {
      throw new TetherError('InvalidDevicePath', `The supplied device path (${req.device}) is invalid.`);
    }
    if (req.tag != null && (req.tag.length === 0 || req.tag.length > 60 || /[/,]/.test(req.tag))) {
      throw new TetherError('InvalidInput', `Invalid tag '${req.tag}': 1 to 60 characters, no '/' or ','.`);
    }
    const instance = await this.resolveServer(req.server);
    const volume = await this.resolveVolume(req.volume);
    const workflowId = attachWorkflowId(instance.uuid, volume.id);
    // A plain refusal needs no workflow run, unless this very attach is in flight (then the request joins it).
    const refusal = attachRefusal(instance, volume, await liveBdm(this.deps.db, instance.uuid, volume.id), {
      device: req.device ?? null,
      tag: req.tag ?? null,
    });
    if (refusal && !(await this.isRunning(workflowId))) throw refusal;
    const startWorkflowOperation = new WithStartWorkflowOperation<AttachVolumeWorkflow>('attachVolume', {
      workflowId,
      taskQueue: this.deps.config.controlTaskQueue,
      // the same request while one is in flight joins it; after a failure, a new run (a retry)
      workflowIdConflictPolicy: 'USE_EXISTING',
      args: [
        {
          instanceUuid: instance.uuid,
          volumeId: volume.id,
          device: req.device ?? null,
          tag: req.tag ?? null,
          deleteOnTermination: req.deleteOnTermination ?? false,
          diskBus: null,
          deviceType: null,
        },
      ],
      typedSearchAttributes: [
        { key: InstanceUuid, value: instance.uuid },
        { key: VolumeId, value: volume.id },
        { key: ComputeHost, value: instance.host ?? '' },
        { key: TetherState, value: 'attaching' },
      ],
    });
    try {
      const reservation = await this.deps.client.workflow.executeUpdateWithStart<AttachVolumeWorkflow, AttachReservation, []>('reservation', {
        startWorkflowOperation,
      });
      const handle = await startWorkflowOperation.workflowHandle();
      return { reservation, workflowId, handle };
    } catch (err) {
      throw fromTemporalFailure(err);
    }
  }

  /** Waits for the attach to finish; throws the TetherError of a failure. */
  async awaitAttach(handle: WorkflowHandle): Promise<AttachResult> {
    try {
      return (await handle.result()) as AttachResult;
    } catch (err) {
      throw fromTemporalFailure(err);
    }
  }

  async attachProgress(handle: WorkflowHandle): Promise<AttachProgress> {
    return handle.query<AttachProgress>('progress');
  }

  async listAttachments(server: string): Promise<{ instance: Instance; bdms: BlockDeviceMapping[] }> {
    const instance = await this.resolveServer(server);
    const bdms = (await liveBdmsOfInstance(this.deps.db, instance.uuid)).filter((b) => b.volumeId !== null);
    return { instance, bdms };
  }

  /**
   * Starts the DetachVolume workflow of (server, volume); resolves once it is accepted (Nova's 202).
   * Refusals that need no workflow (not attached, root device, instance state) come back as TetherErrors.
   */
  async detachVolume(req: { server: string; volume: string }): Promise<{ workflowId: string; handle: WorkflowHandle }> {
    const instance = await this.resolveServer(req.server);
    const volume = await this.resolveVolume(req.volume);
    const refusal = volumeOperationRefusal(instance, 'detach_volume');
    if (refusal) throw new TetherError('InstanceInvalidState', refusal);
    const bdm = await liveBdm(this.deps.db, instance.uuid, volume.id);
    if (!bdm && !(await this.isRunning(attachWorkflowId(instance.uuid, volume.id)))) {
      throw new TetherError('VolumeNotAttached', `Instance ${instance.uuid} is not attached to volume ${volume.id}`);
    }
    if (bdm && (bdm.bootIndex === 0 || (bdm.deviceName !== null && bdm.deviceName === instance.rootDeviceName))) {
      throw new TetherError('RootDeviceDetach', 'Cannot detach a root device volume');
    }
    const workflowId = detachWorkflowId(instance.uuid, volume.id);
    const handle = await this.deps.client.workflow.start('detachVolume', {
      workflowId,
      taskQueue: this.deps.config.controlTaskQueue,
      workflowIdConflictPolicy: 'USE_EXISTING',
      args: [{ instanceUuid: instance.uuid, volumeId: volume.id }],
      typedSearchAttributes: [
        { key: InstanceUuid, value: instance.uuid },
        { key: VolumeId, value: volume.id },
        { key: ComputeHost, value: instance.host ?? '' },
        { key: TetherState, value: 'detaching' },
      ],
    });
    return { workflowId, handle };
  }

  private async isRunning(workflowId: string): Promise<boolean> {
    try {
      return (await this.deps.client.workflow.getHandle(workflowId).describe()).status.name === 'RUNNING';
    } catch {
      return false;
    }
  }

  /** Waits for a detach to finish; throws the TetherError of a failure. */
  async awaitDetach(handle: WorkflowHandle): Promise<void> {
    try {
      await handle.result();
    } catch (err) {
      throw fromTemporalFailure(err);
    }
  }

  // ---- retry and inspection ----

  /**
   * Retries the latest attach of (server, volume) with the request it was made with: a fresh run of the
   * same workflow id. Refused while the attach still runs or when it succeeded.
   */
  async retryAttach(server: string, volume: string): Promise<StartedAttach> {
    const instance = await this.resolveServer(server);
    const vol = await this.resolveVolume(volume);
    const handle = this.deps.client.workflow.getHandle(attachWorkflowId(instance.uuid, vol.id));
    let description;
    try {
      description = await handle.describe();
    } catch {
      throw new TetherError('InvalidInput', `There is no attach of volume ${vol.id} to server ${instance.uuid} to retry.`);
    }
    const status = description.status.name;
    if (status === 'RUNNING') throw new TetherError('OperationInProgress', `The attach of volume ${vol.id} to server ${instance.uuid} is still running (${description.workflowId}).`);
    if (status === 'COMPLETED') throw new TetherError('VolumeAlreadyAttached', `The latest attach of volume ${vol.id} to server ${instance.uuid} succeeded; nothing to retry.`);
    const input = await firstRunInput<AttachVolumeInput>(handle);
    return this.attachVolume({
      server: instance.uuid,
      volume: vol.id,
      device: input?.device ?? null,
      tag: input?.tag ?? null,
      deleteOnTermination: input?.deleteOnTermination ?? false,
    });
  }

  /** The steps of the latest (or a given) run of the attach or detach of (server, volume). */
  async operationHistory(server: string, volume: string, options: { kind?: 'attach' | 'detach'; runId?: string } = {}): Promise<OperationHistory> {
    const instance = await this.resolveServer(server);
    const vol = await this.resolveVolume(volume);
    const kinds = options.kind ? [options.kind] : (['attach', 'detach'] as const);
    const candidates: OperationHistory[] = [];
    for (const kind of kinds) {
      const workflowId = kind === 'attach' ? attachWorkflowId(instance.uuid, vol.id) : detachWorkflowId(instance.uuid, vol.id);
      const handle = this.deps.client.workflow.getHandle(workflowId, options.runId);
      try {
        const d = await handle.describe();
        const progress = await handle.query<AttachProgress>('progress');
        candidates.push({
          kind,
          workflowId,
          runId: d.runId,
          status: d.status.name,
          startTime: d.startTime.toISOString(),
          closeTime: d.closeTime?.toISOString() ?? null,
          state: progress.state,
          steps: progress.steps,
          error: progress.error,
        });
      } catch {
        // no such operation
      }
    }
    if (candidates.length === 0) throw new TetherError('InvalidInput', `No attach or detach of volume ${vol.id} to server ${instance.uuid} was found.`);
    return candidates.sort((a, b) => b.startTime.localeCompare(a.startTime))[0]!;
  }

  /** Recent attaches and detaches (newest first), from Temporal's visibility store. */
  async listOperations(options: { failed?: boolean; limit?: number } = {}): Promise<OperationSummary[]> {
    const clauses = [
      `TaskQueue = '${this.deps.config.controlTaskQueue}'`,
      `WorkflowType IN ('attachVolume', 'detachVolume')`,
      ...(options.failed ? [`ExecutionStatus IN ('Failed', 'Terminated', 'TimedOut')`] : []),
    ];
    const result: OperationSummary[] = [];
    for await (const w of this.deps.client.workflow.list({ query: clauses.join(' AND ') })) {
      const sa = w.typedSearchAttributes;
      result.push({
        kind: w.type === 'attachVolume' ? 'attach' : 'detach',
        workflowId: w.workflowId,
        runId: w.runId,
        status: w.status.name,
        state: sa.get(TetherState) ?? null,
        instanceUuid: sa.get(InstanceUuid) ?? null,
        volumeId: sa.get(VolumeId) ?? null,
        host: sa.get(ComputeHost) ?? null,
        startTime: w.startTime.toISOString(),
        closeTime: w.closeTime?.toISOString() ?? null,
      });
      if (result.length >= (options.limit ?? 50)) break;
    }
    return result;
  }
}

export interface OperationHistory {
  kind: 'attach' | 'detach';
  workflowId: string;
  runId: string;
  status: string;
  startTime: string;
  closeTime: string | null;
  state: string;
  steps: StepProgress[];
  error: { type: string; message: string } | null;
}

export interface OperationSummary {
  kind: 'attach' | 'detach';
  workflowId: string;
  runId: string;
  status: string;
  state: string | null;
  instanceUuid: string | null;
  volumeId: string | null;
  host: string | null;
  startTime: string;
  closeTime: string | null;
}

/** The input of a workflow run, read from its first history event. */
async function firstRunInput<T>(handle: WorkflowHandle): Promise<T | null> {
  const history = await handle.fetchHistory();
  const payloads = history.events?.[0]?.workflowExecutionStartedEventAttributes?.input?.payloads;
  if (!payloads?.[0]) return null;
  // through the client's codecs: with TETHER_CODEC_KEYS set, history holds ciphertext
  return valueFromRawPayload<T>(handle.client, payloads[0]);
}
