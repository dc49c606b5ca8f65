/**
 * The service layer shared by the HTTP API and the CLI, so they never disagree. One request, one
 * pass: the caller (an API token's, or the CLI's operator or --project member) is handed to the
 * service, which resolves every name or id once within what that caller may see (another project's
 * server or volume is "not found", exactly like one that does not exist), applies the policy once
 * (src/auth/policy.ts; the role check comes after the lookup: a reader gets 403 on its own server,
 * 404 on another project's), decides what needs no workflow, and starts the workflow. It holds no
 * state of its own; `as(caller)` is the same service for another caller.
 */
import { randomUUID } from 'node:crypto';
import { WithStartWorkflowOperation, WorkflowExecutionAlreadyStartedError, type Client, type WorkflowHandle } from '@temporalio/client';
import { valueFromRawPayload } from '../security/decode.ts';
import { TetherError } from '../errors.ts';
import type { TetherConfig } from '../config.ts';
import type { Database } from '../db/database.ts';
import { findInstancesByName, getInstance, getInstanceEvenDeleted, insertInstance, listInstances, releaseInstanceTask, takeInstanceTask } from '../db/instances.ts';
import { withTransaction } from '../db/database.ts';
import { ACTION_RULES, rebootRule, serverActionRefusal, type ServerApiAction } from '../domain/server-action-rules.ts';
import { insertVolumeBdm, liveBdm, liveBdmsOfInstance, setBdmDeleteOnTermination } from '../db/block-device-mappings.ts';
import { findFlavor } from '../domain/flavors.ts';
import { volumeOperationRefusal } from '../domain/instance-states.ts';
import { attachRefusal } from '../domain/attach-rules.ts';
import { swapRefusal } from '../domain/swap-rules.ts';
import { IMPORT_SERVER_WORKFLOW, importWorkflowId, type ImportResult, type ImportServerInput, type ImportServerWorkflow } from '../domain/contracts/import-server.ts';
import { SWAP_VOLUME_WORKFLOW, swapWorkflowId, type SwapResult, type SwapVolumeInput, type SwapVolumeWorkflow } from '../domain/contracts/swap-volume.ts';
import { isValidDevicePath } from '../domain/device-names.ts';
import { attachWorkflowId, detachWorkflowId, extendWorkflowId, type StepProgress } from '../domain/steps.ts';
import type { BlockDeviceMapping, Instance, Volume } from '../domain/types.ts';
import {
  ATTACH_VOLUME_WORKFLOW,
  attachProgressQuery,
  type AttachProgress,
  type AttachReservation,
  type AttachResult,
  type AttachVolumeInput,
  type AttachVolumeWorkflow,
} from '../domain/contracts/attach-volume.ts';
import { DETACH_VOLUME_WORKFLOW, type DetachVolumeWorkflow } from '../domain/contracts/detach-volume.ts';
import { FORCE_DETACH_VOLUME_WORKFLOW, type ForceDetachResult, type ForceDetachVolumeWorkflow } from '../domain/contracts/force-detach-volume.ts';
import { serviceState, type ComputeHostRecord } from '../domain/compute-hosts.ts';
import { getComputeHost, getComputeHostByServiceUuid, listComputeHosts, updateComputeHost } from '../db/compute-hosts.ts';
import type { OperationProgress } from '../domain/contracts/operation.ts';
import type { CreateServerInput, ServerAction, ServerActions } from '../domain/contracts/server-actions.ts';
import {
  completesMigrations,
  isVolumeEditing,
  type BlockStorage,
  type VolumeAdmin,
  type VolumeAttachmentRecord,
  type VolumeEditing,
  type VolumeEncryption,
  type VolumeUpdate,
} from '../blockstorage/block-storage.ts';
import { EXTEND_VOLUME_WORKFLOW, extendAcceptedUpdate, type ExtendAcceptance, type ExtendResult, type ExtendVolumeWorkflow } from '../domain/contracts/extend-volume.ts';
import { signalVolumeExtended } from '../temporal/volume-extended.ts';
import { ComputeHost, InstanceUuid, TetherState, VolumeId } from '../temporal/search-attributes.ts';
import { OPERATOR, type Caller } from '../auth/caller.ts';
import { authorize, canSee, isAdmin, type Action } from '../auth/policy.ts';
import { fromTemporalFailure } from './temporal-errors.ts';
import { DEFAULT_RESERVATION_WAIT, reservationOnBdm, reserveWithStart, unconfirmedAttachesOf } from './attach-reservation.ts';
import { actionEvents, actionStart, listActions, nameOrId, newRequestId, type ActionStartOptions } from './instance-actions.ts';
import type { ActionEvent, InstanceAction } from '../domain/instance-actions.ts';

/** How a server action reads in a workflow's summary. */
const SERVER_ACTION_WORDS: Record<ServerAction, string> = {
  shelveServer: 'shelve',
  shelveOffloadServer: 'shelve-offload',
  unshelveServer: 'unshelve',
  deleteServer: 'delete',
  migrateServer: 'migrate',
  startServer: 'start',
  stopServer: 'stop',
  rebootServer: 'reboot',
};

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export function isUuid(s: string): boolean {
  return UUID.test(s);
}

/**
 * How a request names a server or volume: a string is a name or a UUID (the CLI); `{ id }` is an id
 * from a URL or a body that must be a UUID (the API: clients try GET /servers/{name} first and expect
 * a 404 before they search by name).
 */
export type Ref = string | { id: string };

export interface AttachVolumeRequest {
  server: Ref;
  volume: Ref;
  device?: string | null;
  tag?: string | null;
  deleteOnTermination?: boolean;
  /** Compute API below 2.20: a shelved or shelved-offloaded server is a 409 (Nova's rule). */
  refuseShelved?: boolean;
}

export interface DetachVolumeRequest {
  server: Ref;
  volume: Ref;
  /** Compute API below 2.20: a shelved or shelved-offloaded server is a 409 (Nova's rule). */
  refuseShelved?: boolean;
}

export interface StartedExtend {
  acceptance: ExtendAcceptance;
  workflowId: string;
  handle: WorkflowHandle;
}

export interface StartedSwap {
  workflowId: string;
  handle: WorkflowHandle;
}

/** The embedded service's migration (src/blockstorage/local-volume-service.ts). */
interface LocalVolumeMigration {
  beginMigration(volumeId: string, newVolumeId?: string): Promise<Volume>;
}

export interface StartedAttach {
  reservation: AttachReservation;
  workflowId: string;
  handle: WorkflowHandle;
}

/** A server with its volume attachments (the BDMs of its volumes). */
export interface ServerDetail {
  instance: Instance;
  bdms: BlockDeviceMapping[];
}

export interface TetherServiceDeps {
  db: Database;
  client: Client;
  blockStorage: BlockStorage & Partial<VolumeAdmin>;
  config: Pick<TetherConfig, 'controlTaskQueue' | 'computeHost' | 'availabilityZone' | 'defaultDiskBus'> & Partial<Pick<TetherConfig, 'forceDetachHostWaitSeconds' | 'attachAnswerWaitMs'>>;
}

/** Nova's compute service filter (GET /os-services?host=&binary=). */
export interface ComputeServiceFilter {
  host?: string;
  binary?: string;
}

/** The one binary tether's compute services are (what Nova calls its compute agents). */
export const COMPUTE_BINARY = 'nova-compute';

export interface DetachStarted {
  workflowId: string;
  handle: WorkflowHandle;
  /** The detach is a force detach (the instance's host is forced down, or --force). */
  forced: boolean;
}

function textOf(ref: Ref): { text: string; idOnly: boolean } {
  return typeof ref === 'string' ? { text: ref, idOnly: false } : { text: ref.id, idOnly: true };
}

function serverNotFound(ref: string): TetherError {
  return new TetherError('InstanceNotFound', `Instance ${ref} could not be found.`);
}

function volumeNotFound(ref: string): TetherError {
  return new TetherError('VolumeNotFound', `Volume ${ref} could not be found.`);
}

function onlyOne<T>(found: T[], kind: 'server' | 'volume', ref: string): T {
  if (found.length > 1) throw new TetherError('InvalidInput', `More than one ${kind} exists with the name '${ref}'; use its ID.`);
  if (found.length === 0) throw kind === 'server' ? serverNotFound(ref) : volumeNotFound(ref);
  return found[0]!;
}

/** Nova's events that name their subject in `tag` (without one: a 400 for that event). */
const EVENTS_WITH_TAG = new Set(['volume-extended', 'power-update', 'accelerator-request-bound', 'volume-reimaged']);

/** Attach and detach on a shelved or shelved-offloaded server need compute API 2.20 (Nova answers 409 below it). */
function refuseShelved(instance: Instance, operation: 'attach_volume' | 'detach_volume'): void {
  if (instance.vmState === 'shelved' || instance.vmState === 'shelved_offloaded') {
    throw new TetherError('InstanceInvalidState', `Cannot '${operation}' instance ${instance.uuid} while it is in vm_state ${instance.vmState}`);
  }
}

export class TetherService {
  constructor(
    private readonly deps: TetherServiceDeps,
    /** Who is asking; an operator (admin of every project) unless told. */
    readonly caller: Caller = OPERATOR,
    /** The request id the API answered with (`x-openstack-request-id`): the id of the instance action a workflow started here records. */
    readonly requestId?: string,
  ) {}

  /** The same service, acting for `caller` (one per API request, with its request id; the CLI's --project). */
  as(caller: Caller, requestId?: string): TetherService {
    return new TetherService(this.deps, caller, requestId);
  }

  /**
   * The start options every workflow start takes: the memo that makes the run an instance action
   * (this request's id, or a new one outside the API, and who asked) and the static summary and
   * details the Temporal UI shows.
   */
  private action(summary: string, ids: Record<string, string | null | undefined>): ActionStartOptions {
    return actionStart(this.caller, this.requestId ?? newRequestId(), summary, ids);
  }

  // ---- lookups within the caller's projects (each reads its store once) ----

  async resolveServer(ref: Ref): Promise<Instance> {
    const { text, idOnly } = textOf(ref);
    if (isUuid(text)) {
      const found = await getInstance(this.deps.db, text.toLowerCase());
      if (found) {
        if (canSee(this.caller, found.projectId)) return found;
        throw serverNotFound(text);
      }
    }
    if (idOnly) throw serverNotFound(text);
    const visible = (await findInstancesByName(this.deps.db, text)).filter((s) => canSee(this.caller, s.projectId));
    return onlyOne(visible, 'server', text);
  }

  async resolveVolume(ref: Ref): Promise<Volume> {
    const { text, idOnly } = textOf(ref);
    if (isUuid(text)) {
      const found = await this.deps.blockStorage.getVolume(text.toLowerCase()).catch((err: unknown) => {
        if (err instanceof TetherError && err.type === 'VolumeNotFound') return null;
        throw err;
      });
      if (found) {
        if (canSee(this.caller, found.projectId)) return found;
        throw volumeNotFound(text);
      }
    }
    if (idOnly) throw volumeNotFound(text);
    const visible = (await this.volumeAdmin().listVolumes({ name: text })).filter((v) => canSee(this.caller, v.projectId));
    return onlyOne(visible, 'volume', text);
  }

  /** New servers and volumes belong to the caller's project; an operator (admin) may name another. */
  private projectFor(projectId: string | undefined): string {
    return projectId !== undefined && isAdmin(this.caller) ? projectId : this.caller.projectId;
  }

  // ---- servers ----

  /** `allTenants`: every project's servers (admins only; others get 403, as in Nova). Without it, the caller's project's. */
  async listServers(filter: { name?: string; host?: string; allTenants?: boolean } = {}): Promise<Instance[]> {
    authorize(this.caller, 'servers:list');
    if (filter.allTenants) authorize(this.caller, 'servers:list:all_tenants');
    const { allTenants, ...rest } = filter;
    const servers = await listInstances(this.deps.db, rest);
    // an admin without all_tenants: the whole cloud in the CLI (an operator tool), the own project in the API's lists (Nova's rule)
    if (allTenants || (isAdmin(this.caller) && allTenants === undefined)) return servers;
    return servers.filter((s) => s.projectId === this.caller.projectId);
  }

  /** The servers of listServers, each with its volume attachments. */
  async listServerDetails(filter: { name?: string; host?: string; allTenants?: boolean } = {}): Promise<ServerDetail[]> {
    const servers = await this.listServers(filter);
    return Promise.all(servers.map(async (instance) => ({ instance, bdms: await this.volumeBdmsOf(instance) })));
  }

  async showServer(ref: Ref): Promise<Instance> {
    const instance = await this.resolveServer(ref);
    authorize(this.caller, 'servers:show');
    return instance;
  }

  /** One server with its volume attachments. */
  async showServerDetail(ref: Ref): Promise<ServerDetail> {
    const instance = await this.showServer(ref);
    return { instance, bdms: await this.volumeBdmsOf(instance) };
  }

  private async volumeBdmsOf(instance: Instance): Promise<BlockDeviceMapping[]> {
    return (await liveBdmsOfInstance(this.deps.db, instance.uuid)).filter((b) => b.volumeId !== null);
  }

  /** Registers the instance (in the caller's project) and starts CreateServer (define + start the domain on its host). */
  async createServer(spec: { name: string; host?: string; projectId?: string }): Promise<{ instance: Instance; handle: WorkflowHandle }> {
    authorize(this.caller, 'servers:create');
    if (spec.host !== undefined) authorize(this.caller, 'servers:create:forced_host');
    if (!spec.name || spec.name.length > 255) throw new TetherError('InvalidInput', 'Server name must be 1 to 255 characters.');
    const uuid = randomUUID();
    const host = spec.host ?? this.deps.config.computeHost;
    const bus = this.deps.config.defaultDiskBus;
    const instance = await insertInstance(this.deps.db, {
      uuid,
      name: spec.name,
      projectId: this.projectFor(spec.projectId),
      host,
      availabilityZone: this.deps.config.availabilityZone,
      libvirtDomain: `tether-${uuid.slice(0, 8)}`,
      rootDeviceName: bus === 'virtio' ? '/dev/vda' : '/dev/sda',
      defaultDiskBus: bus,
    });
    const input: CreateServerInput = { instanceUuid: uuid, domainName: instance.libvirtDomain!, host };
    const handle = await this.deps.client.workflow.start('createServer', {
      taskQueue: this.deps.config.controlTaskQueue,
      workflowId: `create-server-${uuid}`,
      args: [input],
      ...this.action(`create server ${spec.name} on host ${host}`, { server: uuid, host }),
      typedSearchAttributes: [
        { key: InstanceUuid, value: uuid },
        { key: ComputeHost, value: host },
      ],
    });
    return { instance, handle };
  }

  /**
   * Nova's POST /servers for what tether offers: a flavor of src/domain/flavors.ts, no image, and
   * either no volume (the diskless server, CreateServer) or volumes of block_device_mapping_v2 (one
   * boot volume on the root device name, BootServer). The volumes are looked up within the caller's
   * projects and must be available (or in-use and multiattach) before anything is registered; the
   * instance and its BDMs are registered in one transaction, then the workflow is started.
   */
  async bootServer(spec: BootServerRequest): Promise<{ instance: Instance; handle: WorkflowHandle }> {
    authorize(this.caller, 'servers:create');
    if (spec.host !== undefined) authorize(this.caller, 'servers:create:forced_host');
    const flavor = findFlavor(spec.flavorRef);
    if (!flavor) throw new TetherError('InvalidInput', 'Invalid flavorRef provided.');
    if (spec.availabilityZone !== undefined && spec.availabilityZone !== this.deps.config.availabilityZone) {
      throw new TetherError('InvalidInput', `The requested availability zone is not available`);
    }
    const boots = spec.volumes.filter((v) => v.bootIndex === 0);
    if (spec.volumes.length > 0 && boots.length !== 1) {
      throw new TetherError('InvalidInput', 'Block Device Mapping is Invalid: Boot sequence for the instance and image/block device mapping combination is not valid.');
    }
    const seen = new Set<string>();
    const volumes: Volume[] = [];
    for (const v of spec.volumes) {
      const volume = await this.resolveVolume({ id: v.volumeId }).catch((err: unknown) => {
        throw err instanceof TetherError && err.type === 'VolumeNotFound' ? new TetherError('InvalidInput', `Block Device Mapping is Invalid: failed to get volume ${v.volumeId}.`) : err;
      });
      if (seen.has(volume.id)) throw new TetherError('InvalidInput', `Block Device Mapping is Invalid: Volume ${volume.id} is given twice.`);
      seen.add(volume.id);
      if (!(volume.status === 'available' || (volume.status === 'in-use' && volume.multiattach))) {
        throw new TetherError('InvalidInput', `Invalid volume: volume '${volume.id}' status must be 'available'. Currently in '${volume.status}'`);
      }
      volumes.push(volume);
    }
    const uuid = randomUUID();
    const host = spec.host ?? this.deps.config.computeHost;
    const bus = this.deps.config.defaultDiskBus;
    const rootDeviceName = bus === 'virtio' ? '/dev/vda' : '/dev/sda';
    const workflow = spec.volumes.length > 0 ? 'bootServer' : 'createServer';
    const workflowId = `create-server-${uuid}`;
    const instance = await withTransaction(this.deps.db, async (tx) => {
      const created = await insertInstance(tx, {
        uuid,
        name: spec.name,
        projectId: this.projectFor(spec.projectId),
        host,
        availabilityZone: this.deps.config.availabilityZone,
        libvirtDomain: `tether-${uuid.slice(0, 8)}`,
        rootDeviceName,
        defaultDiskBus: bus,
        flavorId: flavor.id,
        pinnedAvailabilityZone: spec.availabilityZone ?? null,
        schedulerHints: spec.schedulerHints ?? {},
      });
      for (const v of spec.volumes) {
        await insertVolumeBdm(tx, {
          uuid: randomUUID(),
          instanceUuid: uuid,
          volumeId: v.volumeId.toLowerCase(),
          deviceName: v.bootIndex === 0 ? rootDeviceName : null,
          diskBus: null,
          deviceType: 'disk',
          tag: v.tag ?? null,
          deleteOnTermination: v.deleteOnTermination,
          operationId: workflowId,
          bootIndex: v.bootIndex,
        });
      }
      return created;
    });
    const input: CreateServerInput = { instanceUuid: uuid, domainName: instance.libvirtDomain!, host };
    const handle = await this.deps.client.workflow.start(workflow, {
      taskQueue: this.deps.config.controlTaskQueue,
      workflowId,
      args: [input],
      ...this.action(`create server ${spec.name}${volumes.length > 0 ? ` from volume ${nameOrId(volumes.find((v) => spec.volumes.find((s) => s.volumeId === v.id)?.bootIndex === 0) ?? volumes[0]!)}` : ''}`, { server: uuid, host }),
      typedSearchAttributes: [
        { key: InstanceUuid, value: uuid },
        { key: ComputeHost, value: host },
      ],
    });
    return { instance, handle };
  }

  /** Waits for a server's build; throws the TetherError of a failure. */
  async awaitBuild(handle: WorkflowHandle): Promise<void> {
    try {
      await handle.result();
    } catch (err) {
      throw fromTemporalFailure(err);
    }
  }

  /**
   * `tether server import DOMAIN --host H` (admin): a libvirt domain that runs on H without tether
   * becomes a server of the caller's project (or `projectId`), without a restart: the ImportServer
   * saga records it and the volumes among its disks; the result lists the disks left alone.
   */
  async importServer(spec: { domain: string; host?: string; name?: string; projectId?: string }): Promise<ImportResult> {
    authorize(this.caller, 'servers:import');
    if (!spec.domain) throw new TetherError('InvalidInput', 'Name the domain to import (its name or UUID).');
    if (spec.name !== undefined && (!spec.name || spec.name.length > 255)) throw new TetherError('InvalidInput', 'Server name must be 1 to 255 characters.');
    const host = spec.host ?? this.deps.config.computeHost;
    const input: ImportServerInput = {
      domain: spec.domain,
      host,
      projectId: this.projectFor(spec.projectId),
      availabilityZone: this.deps.config.availabilityZone,
      name: spec.name ?? null,
    };
    const handle = await this.deps.client.workflow.start<ImportServerWorkflow>(IMPORT_SERVER_WORKFLOW, {
      taskQueue: this.deps.config.controlTaskQueue,
      workflowId: importWorkflowId(host, spec.domain),
      workflowIdConflictPolicy: 'USE_EXISTING',
      args: [input],
      typedSearchAttributes: [{ key: ComputeHost, value: host }],
      ...this.action(`import domain ${spec.domain} of host ${host}`, { domain: spec.domain, host }),
    });
    try {
      return (await handle.result()) as ImportResult;
    } catch (err) {
      throw fromTemporalFailure(err);
    }
  }

  /** Runs one server action workflow (shelve, shelve-offload, unshelve, delete, migrate) on a resolved server and waits for it. */
  private async serverAction<A extends ServerAction>(action: A, instance: Instance, input: ServerActions[A]['input']): Promise<ServerActions[A]['result']> {
    const handle = await this.deps.client.workflow.start(action, {
      taskQueue: this.deps.config.controlTaskQueue,
      workflowId: `${action}-${instance.uuid}`,
      workflowIdConflictPolicy: 'USE_EXISTING',
      args: [input],
      ...this.action(`${SERVER_ACTION_WORDS[action]} server ${nameOrId(instance)}`, { server: instance.uuid, host: instance.host }),
      typedSearchAttributes: [
        { key: InstanceUuid, value: instance.uuid },
        { key: ComputeHost, value: instance.host ?? '' },
      ],
    });
    try {
      return (await handle.result()) as ServerActions[A]['result'];
    } catch (err) {
      throw fromTemporalFailure(err);
    }
  }

  /** The server as the action left it. */
  private async reread(instance: Instance): Promise<Instance> {
    return (await getInstance(this.deps.db, instance.uuid)) ?? instance;
  }

  /** Power off, keep everything (volumes stay attached to the stopped domain). */
  async shelveServer(server: Ref): Promise<Instance> {
    const instance = await this.resolveServer(server);
    authorize(this.caller, 'servers:shelve');
    await this.serverAction('shelveServer', instance, { instanceUuid: instance.uuid, host: instance.host, vmState: instance.vmState });
    return this.reread(instance);
  }

  /** Remove the shelved server from its host: volumes stay reserved, nothing is left on the host. */
  async shelveOffloadServer(server: Ref): Promise<Instance> {
    const instance = await this.resolveServer(server);
    authorize(this.caller, 'servers:shelve_offload');
    await this.serverAction('shelveOffloadServer', instance, { instanceUuid: instance.uuid, host: instance.host });
    return this.reread(instance);
  }

  /** Start the server again (on `host`, or the default compute host, when it was offloaded) and connect its volumes. */
  async unshelveServer(server: Ref, host?: string): Promise<{ instance: Instance; devices: Record<string, string> }> {
    const instance = await this.resolveServer(server);
    authorize(this.caller, 'servers:unshelve');
    if (host !== undefined) authorize(this.caller, 'servers:unshelve:host');
    const { devices } = await this.serverAction('unshelveServer', instance, {
      instanceUuid: instance.uuid,
      host: host ?? instance.host ?? this.deps.config.computeHost,
    });
    return { instance: await this.reread(instance), devices };
  }

  /** Delete the server: every volume is detached, those marked delete_on_termination are deleted. */
  async deleteServer(server: Ref): Promise<{ instance: Instance; deletedVolumes: string[] }> {
    const instance = await this.resolveServer(server);
    authorize(this.caller, 'servers:delete');
    const { deletedVolumes } = await this.serverAction('deleteServer', instance, { instanceUuid: instance.uuid, host: instance.host });
    return { instance, deletedVolumes };
  }

  /** Move the server to another compute host; attaches in flight finish first. */
  async migrateServer(server: Ref, targetHost: string): Promise<Instance> {
    const instance = await this.resolveServer(server);
    authorize(this.caller, 'servers:migrate');
    if (!targetHost) throw new TetherError('InvalidInput', 'A target host is required.');
    await this.serverAction('migrateServer', instance, { instanceUuid: instance.uuid, host: instance.host, targetHost, vmState: instance.vmState });
    return this.reread(instance);
  }

  // ---- server actions through the API (202: the task is taken, the workflow runs on) ----

  /**
   * Nova's server actions as the API does them: the server is read once, the policy applied, Nova's
   * state checks made and the task_state taken in one row-locked transaction (a 409 worded as Nova
   * words it otherwise), then the workflow is started and not waited for. Show and list report the
   * task_state from here on and the vm_state the workflow leads to once it is done.
   */
  async beginServerAction(server: Ref, request: ServerActionRequest): Promise<StartedServerAction> {
    const found = await this.resolveServer(server);
    const { action } = request;
    authorize(this.caller, SERVER_ACTION_POLICY[action]);
    if (action === 'migrate' && request.host !== undefined) authorize(this.caller, 'servers:migrate:host');
    if (action === 'unshelve' && request.host !== undefined) authorize(this.caller, 'servers:unshelve:host');
    const rule = action === 'reboot' ? rebootRule(request.type) : ACTION_RULES[action];
    let targetHost: string | null = null;
    if (action === 'migrate') targetHost = await this.migrationTarget(found, request.host);
    if (action === 'unshelve' && request.host !== undefined) {
      if (!(await getComputeHost(this.deps.db, request.host))) throw new TetherError('InvalidInput', `Compute host ${request.host} could not be found.`);
    }
    const taken = await withTransaction(this.deps.db, (tx) => takeInstanceTask(tx, found.uuid, rule.task, (i) => serverActionRefusal(i, action, rule)));
    if (!taken) throw serverNotFound(found.uuid);
    if ('refused' in taken) throw new TetherError(taken.refused.type, taken.refused.message);
    const instance = taken.instance;
    const base = { instanceUuid: instance.uuid, host: instance.host };
    const workflow = SERVER_ACTION_WORKFLOW[action];
    let input: ServerActions[ServerAction]['input'];
    switch (action) {
      case 'start':
      case 'stop':
      case 'shelve':
        input = { ...base, vmState: found.vmState };
        break;
      case 'reboot':
        input = { ...base, vmState: found.vmState, type: request.type };
        break;
      case 'unshelve':
        input = { ...base, host: request.host ?? instance.host ?? this.deps.config.computeHost };
        break;
      case 'migrate':
        input = { ...base, targetHost: targetHost!, vmState: found.vmState };
        break;
      default:
        input = base;
    }
    const workflowId = `${workflow}-${instance.uuid}`;
    try {
      const handle = await this.deps.client.workflow.start(workflow, {
        taskQueue: this.deps.config.controlTaskQueue,
        workflowId,
        workflowIdConflictPolicy: 'USE_EXISTING',
        args: [input],
        ...this.action(`${action === 'reboot' ? `${request.type.toLowerCase()} reboot` : SERVER_ACTION_WORDS[workflow]} server ${nameOrId(instance)}`, { server: instance.uuid, host: instance.host }),
        typedSearchAttributes: [
          { key: InstanceUuid, value: instance.uuid },
          { key: ComputeHost, value: instance.host ?? '' },
        ],
      });
      return { instance, workflowId, handle };
    } catch (err) {
      await releaseInstanceTask(this.deps.db, instance.uuid, rule.task);
      throw err;
    }
  }

  /** Waits for a server action begun by beginServerAction; throws the TetherError of a failure. */
  async awaitServerAction(started: StartedServerAction): Promise<Instance> {
    try {
      await started.handle.result();
    } catch (err) {
      throw fromTemporalFailure(err);
    }
    return this.reread(started.instance);
  }

  /** Nova's cold migrate: the host asked for (2.56), else another enabled compute host that is up. */
  private async migrationTarget(instance: Instance, host: string | undefined): Promise<string> {
    if (host !== undefined) {
      const target = await getComputeHost(this.deps.db, host);
      if (!target) throw new TetherError('InvalidInput', `Compute host ${host} could not be found.`);
      if (host === instance.host) throw new TetherError('InvalidInput', 'The target host can\'t be the same one.');
      return host;
    }
    const others = (await listComputeHosts(this.deps.db, {})).filter((h) => h.host !== instance.host && !h.disabled && h.fence === null && serviceState(h) === 'up');
    if (others.length === 0) throw new TetherError('InvalidInput', 'No valid host was found. There are not enough hosts available.');
    return others[0]!.host;
  }

  // ---- volumes ----

  private volumeAdmin(): VolumeAdmin {
    const admin = this.deps.blockStorage;
    if (!admin.createVolume || !admin.listVolumes) {
      throw new TetherError('InvalidInput', `Volume management is done by the block storage service (${this.deps.blockStorage.kind}), not tether.`);
    }
    return admin as VolumeAdmin;
  }

  /** The caller's project's volumes; an admin's `allTenants` (or the CLI operator) sees all. Cinder ignores all_tenants for others. */
  async listVolumes(filter: { name?: string; allTenants?: boolean } = {}): Promise<Volume[]> {
    authorize(this.caller, 'volumes:list');
    const { allTenants, ...rest } = filter;
    const everyProject = isAdmin(this.caller) && (allTenants ?? true);
    return this.volumeAdmin().listVolumes(everyProject ? rest : { ...rest, projectId: this.caller.projectId });
  }

  async showVolume(ref: Ref): Promise<Volume> {
    const volume = await this.resolveVolume(ref);
    authorize(this.caller, 'volumes:show');
    return volume;
  }

  /** The volume's encryption metadata (never its key), null for a plain volume. */
  async volumeEncryption(ref: Ref): Promise<VolumeEncryption | null> {
    const volume = await this.showVolume(ref);
    return this.deps.blockStorage.getVolumeEncryption(volume.id);
  }

  /** New volumes belong to the caller's project. */
  async createVolume(spec: {
    name: string | null;
    size: number;
    projectId?: string;
    multiattach?: boolean;
    availabilityZone?: string;
    description?: string | null;
    /** '__DEFAULT__' (or none), or 'luks' for an encrypted volume. */
    volumeType?: string | null;
    metadata?: Record<string, string>;
  }): Promise<Volume> {
    authorize(this.caller, 'volumes:create');
    if (!Number.isInteger(spec.size) || spec.size < 1 || spec.size > 1024) throw new TetherError('InvalidInput', 'Volume size must be an integer number of GiB from 1 to 1024.');
    return this.volumeAdmin().createVolume({ ...spec, projectId: this.projectFor(spec.projectId) });
  }

  async deleteVolume(ref: Ref): Promise<void> {
    const volume = await this.resolveVolume(ref);
    authorize(this.caller, 'volumes:delete');
    await this.deps.blockStorage.deleteVolume(volume.id);
  }

  // ---- update, metadata and the attachments resource (tether's own /v3) ----

  private volumeEditing(): VolumeEditing {
    const bs = this.deps.blockStorage;
    if (!isVolumeEditing(bs)) throw new TetherError('NotImplemented', `Volumes are managed by the block storage service (${bs.kind}), not tether.`);
    return bs;
  }

  /** Cinder's PUT /volumes/{id}: name, description, metadata (all of it). */
  async updateVolume(ref: Ref, patch: VolumeUpdate): Promise<Volume> {
    const editing = this.volumeEditing();
    const volume = await this.resolveVolume(ref);
    authorize(this.caller, 'volumes:update');
    return editing.updateVolume(volume.id, patch);
  }

  async volumeMetadata(ref: Ref): Promise<Record<string, string>> {
    const volume = await this.resolveVolume(ref);
    authorize(this.caller, 'volumes:metadata:show');
    return volume.metadata ?? {};
  }

  /** Merges the keys into the volume's metadata, or replaces all of it; returns all of it. */
  async setVolumeMetadata(ref: Ref, metadata: Record<string, string>, options: { replace: boolean }): Promise<Record<string, string>> {
    const editing = this.volumeEditing();
    const volume = await this.resolveVolume(ref);
    authorize(this.caller, 'volumes:metadata:update');
    return editing.setVolumeMetadata(volume.id, metadata, options);
  }

  async deleteVolumeMetadata(ref: Ref, key: string): Promise<void> {
    const editing = this.volumeEditing();
    const volume = await this.resolveVolume(ref);
    authorize(this.caller, 'volumes:metadata:delete');
    await editing.deleteVolumeMetadata(volume.id, key);
  }

  /** Cinder's GET /attachments: the caller's project's; an admin's `allTenants` (or the CLI operator) sees all. */
  async listVolumeAttachments(filter: { allTenants?: boolean; volumeId?: string; instanceUuid?: string; status?: string } = {}): Promise<VolumeAttachmentRecord[]> {
    const editing = this.volumeEditing();
    authorize(this.caller, 'volume_attachments:list');
    const { allTenants, ...rest } = filter;
    const everyProject = isAdmin(this.caller) && (allTenants ?? true);
    for (const id of [rest.volumeId, rest.instanceUuid]) if (id !== undefined && !isUuid(id)) return [];
    return editing.listAttachments(everyProject ? rest : { ...rest, projectId: this.caller.projectId });
  }

  /** Cinder's GET /attachments/{id}: another project's is "not found". */
  async showVolumeAttachment(attachmentId: string): Promise<VolumeAttachmentRecord> {
    const editing = this.volumeEditing();
    const notFound = new TetherError('VolumeAttachmentNotFound', `Volume attachment could not be found with filter: attachment_id = ${attachmentId}.`);
    if (!isUuid(attachmentId)) throw notFound;
    const found = await editing.getAttachment(attachmentId.toLowerCase());
    if (!canSee(this.caller, found.projectId)) throw notFound;
    authorize(this.caller, 'volume_attachments:show');
    return found;
  }

  // ---- extend ----

  /**
   * Cinder's os-extend on tether's own block storage: an available volume grows at once; an in-use
   * one (volume API 3.42 and later: `inUse`) through the ExtendVolume saga on the queue of the server
   * it is attached to (the first one, for a multiattach volume: the others are told once it grew).
   * Answers once the volume is `extending` (or with the refusal, after the rollback).
   */
  async extendVolume(req: { volume: Ref; newSize: number; inUse: boolean }): Promise<{ volume: Volume; started: StartedExtend | null }> {
    const editing = this.volumeEditing();
    const volume = await this.resolveVolume(req.volume);
    authorize(this.caller, 'volumes:extend');
    if (!Number.isSafeInteger(req.newSize) || req.newSize < 1) throw new TetherError('InvalidInput', `Invalid input received: new_size must be a whole number of GiB, not ${req.newSize}.`);
    if (!(req.inUse && volume.status === 'in-use')) return { volume: await editing.extendVolume(volume.id, req.newSize), started: null };
    authorize(this.caller, 'volumes:extend_attached');
    const refusal = await editing.extendRefusal(volume.id, req.newSize, 'in-use');
    if (refusal) throw refusal;
    const attachment = volume.attachments.find((a) => a.status === 'attached');
    // the server it is attached to (it may be another project's: the volume is the caller's)
    const instance = attachment && (await getInstance(this.deps.db, attachment.serverId));
    if (!instance) throw new TetherError('VolumeNotAvailable', `Invalid volume: Volume ${volume.id} is in-use but attached to no server.`);
    const workflowId = extendWorkflowId(instance.uuid, volume.id);
    const startWorkflowOperation = new WithStartWorkflowOperation<ExtendVolumeWorkflow>(EXTEND_VOLUME_WORKFLOW, {
      workflowId,
      taskQueue: this.deps.config.controlTaskQueue,
      // a run in flight (a volume-extended event for this pair) is not joined: its size is not this one
      workflowIdConflictPolicy: 'FAIL',
      args: [{ instanceUuid: instance.uuid, volumeId: volume.id, newSize: req.newSize }],
      ...this.action(`extend volume ${nameOrId(volume)} on server ${nameOrId(instance)} to ${req.newSize} GiB`, { server: instance.uuid, volume: volume.id, host: instance.host }),
      typedSearchAttributes: [
        { key: InstanceUuid, value: instance.uuid },
        { key: VolumeId, value: volume.id },
        { key: ComputeHost, value: instance.host ?? '' },
        { key: TetherState, value: 'extending' },
      ],
    });
    try {
      const acceptance = await this.deps.client.workflow.executeUpdateWithStart(extendAcceptedUpdate, { startWorkflowOperation });
      const handle = await startWorkflowOperation.workflowHandle();
      return { volume: await this.deps.blockStorage.getVolume(volume.id), started: { acceptance, workflowId, handle } };
    } catch (err) {
      if (err instanceof WorkflowExecutionAlreadyStartedError) {
        throw new TetherError('VolumeNotAvailable', `Invalid volume: Volume ${volume.id} is being extended on server ${instance.uuid} already (${workflowId}).`);
      }
      throw fromTemporalFailure(err);
    }
  }

  /** Waits for an extend to finish; throws the TetherError of a failure. */
  async awaitExtend(handle: WorkflowHandle): Promise<ExtendResult> {
    try {
      return (await handle.result()) as ExtendResult;
    } catch (err) {
      throw fromTemporalFailure(err);
    }
  }

  /**
   * One event of Nova's os-server-external-events, with Nova's per-event code: 404 an unknown
   * server, 400 an event that needs a tag and has none (or a `volume-extended` tag that names no
   * volume), 422 a server with no host, else 200. `volume-extended` (the block storage grew volume
   * `tag`) starts the ExtendVolume run of (server, volume), or tells the one in flight to resize once
   * more; tether has nothing to do for the others (networks, power, accelerators): accepted, dropped.
   */
  async serverExternalEvent(event: { name: string; serverUuid: string; tag: string | null }): Promise<{ code: 200 | 400 | 404 | 422; handle?: WorkflowHandle }> {
    authorize(this.caller, 'server_external_events:create');
    const instance = isUuid(event.serverUuid) ? await getInstance(this.deps.db, event.serverUuid.toLowerCase()) : null;
    if (!instance) return { code: 404 };
    if (EVENTS_WITH_TAG.has(event.name) && event.tag === null) return { code: 400 };
    if (!instance.host) return { code: 422 };
    if (event.name !== 'volume-extended') return { code: 200 };
    if (!isUuid(event.tag!)) return { code: 400 };
    const volumeId = event.tag!.toLowerCase();
    const handle = await signalVolumeExtended(
      this.deps.client,
      this.deps.config.controlTaskQueue,
      { instanceUuid: instance.uuid, volumeId, host: instance.host },
      this.action(`extend volume ${volumeId} on server ${nameOrId(instance)} (volume-extended event)`, { server: instance.uuid, volume: volumeId, host: instance.host }),
    );
    return { code: 200, handle };
  }

  // ---- attachments ----

  /**
   * Starts (or joins) the AttachVolume workflow of (server, volume) and returns once the device name
   * and the volume are reserved — Nova's POST answer. The server is read once and the volume once;
   * both must be visible to the caller (a foreign volume is "not found"), then the role must allow
   * it. Validation failures come back as TetherErrors and change nothing.
   */
  async attachVolume(req: AttachVolumeRequest): Promise<StartedAttach> {
    // The three reads at once (a round trip each, the volume's an HTTP call with Cinder); their
    // failures keep their order: the server's first, then the volume's.
    const reads = this.attachReads(req.server, req.volume);
    const instance = await reads.instance;
    if (req.refuseShelved) refuseShelved(instance, 'attach_volume');
    const volume = await reads.volume;
    authorize(this.caller, 'attachments:create');
    if (req.device != null && !isValidDevicePath(req.device)) {
      throw new TetherError('InvalidDevicePath', `The supplied device path (${req.device}) is invalid.`);
    }
    if (req.tag != null && (req.tag.length === 0 || req.tag.length > 60 || /[/,]/.test(req.tag))) {
      throw new TetherError('InvalidInput', `Invalid tag '${req.tag}': 1 to 60 characters, no '/' or ','.`);
    }
    return this.startAttach(instance, volume, { device: req.device ?? null, tag: req.tag ?? null, deleteOnTermination: req.deleteOnTermination ?? false }, await reads.bdm(instance, volume));
  }

  /**
   * The server, the volume and the pair's live BDM, read concurrently. The BDM read needs the ids:
   * when both refs are UUIDs (every Nova API call) it starts with the others, else once they resolved.
   * Nothing rejects unobserved: a read whose answer is not awaited (an earlier one failed) is dropped.
   */
  private attachReads(server: Ref, volume: Ref) {
    const instance = this.resolveServer(server);
    const vol = this.resolveVolume(volume);
    const ids = [textOf(server).text, textOf(volume).text];
    const early = ids.every(isUuid) ? liveBdm(this.deps.db, ids[0]!.toLowerCase(), ids[1]!.toLowerCase()) : null;
    for (const p of [instance, vol, early]) p?.catch(() => undefined);
    return {
      instance,
      volume: vol,
      bdm: (i: Instance, v: Volume) => (early && i.uuid === ids[0]!.toLowerCase() && v.id === ids[1]!.toLowerCase() ? early : liveBdm(this.deps.db, i.uuid, v.id)),
    };
  }

  /** The attach of a resolved, authorized pair: a plain refusal without a workflow run, else update-with-start. */
  private async startAttach(
    instance: Instance,
    volume: Volume,
    ask: { device: string | null; tag: string | null; deleteOnTermination: boolean },
    bdmRead?: BlockDeviceMapping | null,
  ): Promise<StartedAttach> {
    const workflowId = attachWorkflowId(instance.uuid, volume.id);
    // A plain refusal needs no workflow run, unless this very attach is in flight (then the request joins it).
    const bdm = bdmRead !== undefined ? bdmRead : await liveBdm(this.deps.db, instance.uuid, volume.id);
    const refusal = attachRefusal(instance, volume, bdm, ask);
    const unconfirmed = unconfirmedAttachesOf(this.deps);
    if (refusal && !(await this.isRunning(workflowId))) {
      // the retry of a POST answered 503 whose attach went through meanwhile: its answer, not a refusal
      const reserved = refusal.type === 'VolumeAlreadyAttached' ? reservationOnBdm(bdm, workflowId) : null;
      if (reserved && unconfirmed.take(workflowId)) return { reservation: reserved, workflowId, handle: this.deps.client.workflow.getHandle(workflowId) };
      throw refusal;
    }
    const input: AttachVolumeInput = { instanceUuid: instance.uuid, volumeId: volume.id, ...ask, diskBus: null, deviceType: null };
    const startWorkflowOperation = new WithStartWorkflowOperation<AttachVolumeWorkflow>(ATTACH_VOLUME_WORKFLOW, {
      workflowId,
      taskQueue: this.deps.config.controlTaskQueue,
      // the same request while one is in flight joins it; after a failure, a new run (a retry)
      workflowIdConflictPolicy: 'USE_EXISTING',
      args: [input],
      ...this.action(`attach volume ${nameOrId(volume)} to server ${nameOrId(instance)}`, { server: instance.uuid, volume: volume.id, host: instance.host, device: ask.device }),
      typedSearchAttributes: [
        { key: InstanceUuid, value: instance.uuid },
        { key: VolumeId, value: volume.id },
        { key: ComputeHost, value: instance.host ?? '' },
        { key: TetherState, value: 'attaching' },
      ],
    });
    try {
      const { reservation, handle } = await reserveWithStart({
        client: this.deps.client,
        operation: startWorkflowOperation,
        workflowId,
        updateId: unconfirmed.updateIdOf(workflowId) ?? randomUUID(),
        readBack: async () => reservationOnBdm(await liveBdm(this.deps.db, instance.uuid, volume.id), workflowId),
        wait: { ...DEFAULT_RESERVATION_WAIT, ...(this.deps.config.attachAnswerWaitMs ? { budgetMs: this.deps.config.attachAnswerWaitMs } : {}) },
        what: `the attach of volume ${volume.id} to server ${instance.uuid}`,
        unconfirmed,
      });
      // answered: a later POST of the pair is a new request, not the retry of an unconfirmed one
      unconfirmed.take(workflowId);
      return { reservation, workflowId, handle };
    } catch (err) {
      throw fromTemporalFailure(err);
    }
  }

  /** Waits for the attach to finish; throws the TetherError of a failure. Handles come from this service's own calls. */
  async awaitAttach(handle: WorkflowHandle): Promise<AttachResult> {
    try {
      return (await handle.result()) as AttachResult;
    } catch (err) {
      throw fromTemporalFailure(err);
    }
  }

  /** The steps so far of an attach or detach this service started. */
  async attachProgress(handle: WorkflowHandle): Promise<AttachProgress> {
    return handle.query(attachProgressQuery);
  }

  async listAttachments(server: Ref): Promise<ServerDetail> {
    const instance = await this.resolveServer(server);
    authorize(this.caller, 'attachments:list');
    return { instance, bdms: await this.volumeBdmsOf(instance) };
  }

  /**
   * Starts the DetachVolume workflow of (server, volume); resolves once it is accepted (Nova's 202).
   * Refusals that need no workflow (not attached, root device, instance state) come back as TetherErrors.
   */
  async detachVolume(req: DetachVolumeRequest): Promise<DetachStarted> {
    const instance = await this.resolveServer(req.server);
    if (req.refuseShelved) refuseShelved(instance, 'detach_volume');
    const volume = await this.resolveVolume(req.volume);
    authorize(this.caller, 'attachments:delete');
    const refusal = volumeOperationRefusal(instance, 'detach_volume');
    if (refusal) throw new TetherError('InstanceInvalidState', refusal);
    // Nova begins detaching at the block storage before it answers: Cinder refuses a volume being extended
    if (volume.status === 'extending') {
      throw new TetherError('VolumeNotAvailable', "Invalid volume: Unable to detach volume. Volume status must be 'in-use' and attach_status must be 'attached' to detach.");
    }
    const bdm = await liveBdm(this.deps.db, instance.uuid, volume.id);
    if (!bdm && !(await this.isRunning(attachWorkflowId(instance.uuid, volume.id)))) {
      throw new TetherError('VolumeNotAttached', `Instance ${instance.uuid} is not attached to volume ${volume.id}`);
    }
    if (bdm && (bdm.bootIndex === 0 || (bdm.deviceName !== null && bdm.deviceName === instance.rootDeviceName))) {
      throw new TetherError('RootDeviceDetach', 'Cannot detach a root device volume');
    }
    // An operator forced the instance's host down (Nova's forced_down: it is gone, or fenced from
    // outside): no host will answer, so the detach is a force detach that fences it at once.
    if (instance.host && (await getComputeHost(this.deps.db, instance.host))?.forcedDown) {
      return this.startForceDetach(instance, volume, { hostWaitSeconds: 0, reason: `detach asked by ${this.caller.userName} while host ${instance.host} is forced down` });
    }
    const workflowId = detachWorkflowId(instance.uuid, volume.id);
    const handle = await this.deps.client.workflow.start<DetachVolumeWorkflow>(DETACH_VOLUME_WORKFLOW, {
      workflowId,
      taskQueue: this.deps.config.controlTaskQueue,
      workflowIdConflictPolicy: 'USE_EXISTING',
      args: [{ instanceUuid: instance.uuid, volumeId: volume.id }],
      ...this.action(`detach volume ${nameOrId(volume)} from server ${nameOrId(instance)}`, { server: instance.uuid, volume: volume.id, host: instance.host }),
      typedSearchAttributes: [
        { key: InstanceUuid, value: instance.uuid },
        { key: VolumeId, value: volume.id },
        { key: ComputeHost, value: instance.host ?? '' },
        { key: TetherState, value: 'detaching' },
      ],
    });
    return { workflowId, handle, forced: false };
  }

  /**
   * `tether detach --force` (admin): the ForceDetachVolume saga, for a volume whose server's host may
   * be gone (Nova bug 1909120). It asks the host to detach for at most `hostWaitSeconds`, then fences
   * it; the block-storage attachment is released only after one or the other.
   */
  async forceDetachVolume(req: { server: Ref; volume: Ref; hostWaitSeconds?: number }): Promise<DetachStarted> {
    const instance = await this.resolveServer(req.server);
    const volume = await this.resolveVolume(req.volume);
    authorize(this.caller, 'attachments:force_delete');
    const hostWaitSeconds = req.hostWaitSeconds ?? this.deps.config.forceDetachHostWaitSeconds ?? 30;
    if (!Number.isFinite(hostWaitSeconds) || hostWaitSeconds < 0) throw new TetherError('InvalidInput', `The host wait must be a number of seconds, 0 or more, not ${hostWaitSeconds}.`);
    return this.startForceDetach(instance, volume, { hostWaitSeconds, reason: `force detach asked by ${this.caller.userName}` });
  }

  private async startForceDetach(instance: Instance, volume: Volume, o: { hostWaitSeconds: number; reason: string }): Promise<DetachStarted> {
    if (!instance.host) {
      throw new TetherError('InvalidInput', `Instance ${instance.uuid} has no host (${instance.vmState}): a plain detach releases its volume without asking any host.`);
    }
    const bdm = await liveBdm(this.deps.db, instance.uuid, volume.id);
    if (!bdm && !volume.attachments.some((a) => a.serverId === instance.uuid) && !(await this.isRunning(attachWorkflowId(instance.uuid, volume.id)))) {
      throw new TetherError('VolumeNotAttached', `Instance ${instance.uuid} is not attached to volume ${volume.id}`);
    }
    if (bdm && (bdm.bootIndex === 0 || (bdm.deviceName !== null && bdm.deviceName === instance.rootDeviceName))) {
      throw new TetherError('RootDeviceDetach', 'Cannot detach a root device volume');
    }
    const workflowId = detachWorkflowId(instance.uuid, volume.id);
    // A force detach of the pair in flight is joined; a plain detach in flight (it may wait for the
    // dead host for ever) is replaced: the force detach takes its place under the same id.
    const running = await this.runningType(workflowId);
    const handle = await this.deps.client.workflow.start<ForceDetachVolumeWorkflow>(FORCE_DETACH_VOLUME_WORKFLOW, {
      workflowId,
      taskQueue: this.deps.config.controlTaskQueue,
      workflowIdConflictPolicy: running === FORCE_DETACH_VOLUME_WORKFLOW ? 'USE_EXISTING' : 'TERMINATE_EXISTING',
      args: [{ instanceUuid: instance.uuid, volumeId: volume.id, hostWaitSeconds: o.hostWaitSeconds, reason: o.reason }],
      ...this.action(`force detach volume ${nameOrId(volume)} from server ${nameOrId(instance)} (host ${instance.host})`, { server: instance.uuid, volume: volume.id, host: instance.host, reason: o.reason }),
      typedSearchAttributes: [
        { key: InstanceUuid, value: instance.uuid },
        { key: VolumeId, value: volume.id },
        { key: ComputeHost, value: instance.host },
        { key: TetherState, value: 'detaching' },
      ],
    });
    return { workflowId, handle, forced: true };
  }

  /** Waits for a force detach to finish; throws the TetherError of a failure. */
  async awaitForceDetach(handle: WorkflowHandle): Promise<ForceDetachResult> {
    try {
      return (await handle.result()) as ForceDetachResult;
    } catch (err) {
      throw fromTemporalFailure(err);
    }
  }

  /** The workflow type of the running workflow with this id, or null. */
  private async runningType(workflowId: string): Promise<string | null> {
    try {
      const d = await this.deps.client.workflow.getHandle(workflowId).describe();
      return d.status.name === 'RUNNING' ? d.type : null;
    } catch {
      return null;
    }
  }

  // ---- instance actions (Nova's os-instance-actions) ----

  /**
   * The server of an instance-actions request: from compute API 2.21 a deleted server's actions are
   * still shown (Nova's read_deleted='yes'); another project's server is "not found".
   */
  private async actionsServer(serverId: string, includeDeleted: boolean): Promise<Instance> {
    if (!includeDeleted) return this.resolveServer({ id: serverId });
    const found = isUuid(serverId) ? await getInstanceEvenDeleted(this.deps.db, serverId.toLowerCase()) : null;
    if (!found || !canSee(this.caller, found.projectId)) throw serverNotFound(serverId);
    return found;
  }

  /** Every action on the server (each workflow run on it), newest first. */
  async listInstanceActions(serverId: string, options: { includeDeleted: boolean }): Promise<{ instance: Instance; actions: InstanceAction[] }> {
    const instance = await this.actionsServer(serverId, options.includeDeleted);
    authorize(this.caller, 'instance_actions:list');
    return { instance, actions: await listActions(this.deps.client, instance) };
  }

  /** One action by its request id, with its events (newest first); an unknown request id is InstanceActionNotFound. */
  async showInstanceAction(serverId: string, requestId: string, options: { includeDeleted: boolean }): Promise<{ instance: Instance; action: InstanceAction; events: ActionEvent[] }> {
    const instance = await this.actionsServer(serverId, options.includeDeleted);
    authorize(this.caller, 'instance_actions:show');
    const action = (await listActions(this.deps.client, instance)).find((a) => a.requestId === requestId);
    if (!action) throw new TetherError('InstanceActionNotFound', `Action ${requestId} not found`);
    return { instance, action, events: await actionEvents(this.deps.client, action) };
  }

  // ---- compute services (Nova's os-services) ----

  /** The compute hosts, as Nova's compute services (admin). */
  async listComputeServices(filter: ComputeServiceFilter = {}): Promise<ComputeHostRecord[]> {
    authorize(this.caller, 'services:list');
    if (filter.binary !== undefined && filter.binary !== COMPUTE_BINARY) return [];
    return listComputeHosts(this.deps.db, filter.host === undefined ? {} : { host: filter.host });
  }

  /**
   * Nova's service update (admin): `forcedDown` (an operator's word that the host is down: a detach
   * of its servers' volumes then fences it at once), `disabled` with its reason. The service is named
   * by its id (2.53) or by its host.
   */
  async updateComputeService(ref: { serviceUuid: string } | { host: string }, patch: { forcedDown?: boolean; disabled?: boolean; disabledReason?: string | null }): Promise<ComputeHostRecord> {
    authorize(this.caller, 'services:update');
    const found = 'serviceUuid' in ref
      ? isUuid(ref.serviceUuid) ? await getComputeHostByServiceUuid(this.deps.db, ref.serviceUuid.toLowerCase()) : null
      : (await listComputeHosts(this.deps.db, { host: ref.host }))[0] ?? null;
    if (!found) throw new TetherError('ServiceNotFound', `Service ${'serviceUuid' in ref ? ref.serviceUuid : ref.host} could not be found.`);
    return updateComputeHost(this.deps.db, found.host, patch);
  }

  /**
   * Nova's PUT os-volume_attachments (2.85) without a swap: delete_on_termination may change; the
   * other fields of the attachment may be sent (as GET shows them) but not changed (400).
   */
  async updateVolumeAttachment(req: {
    server: Ref;
    volumeId: string;
    changes: { id?: string; serverId?: string; device?: string | null; tag?: string | null; deleteOnTermination?: boolean };
  }): Promise<BlockDeviceMapping> {
    const instance = await this.resolveServer(req.server);
    authorize(this.caller, 'attachments:update');
    const volumeId = req.volumeId.toLowerCase();
    const bdm = isUuid(volumeId) ? await liveBdm(this.deps.db, instance.uuid, volumeId) : null;
    if (!bdm) throw new TetherError('VolumeNotAttached', `No volume Block Device Mapping with id ${req.volumeId}.`);
    const { changes } = req;
    if (changes.id !== undefined && changes.id !== req.volumeId) throw new TetherError('InvalidInput', 'The id property is not mutable');
    if (changes.serverId !== undefined && changes.serverId !== instance.uuid) throw new TetherError('InvalidInput', 'The serverId property is not mutable');
    if (changes.device !== undefined && changes.device !== bdm.deviceName) throw new TetherError('InvalidInput', 'The device property is not mutable');
    if (changes.tag !== undefined && changes.tag !== bdm.tag) throw new TetherError('InvalidInput', 'The tag property is not mutable');
    if (changes.deleteOnTermination !== undefined && changes.deleteOnTermination !== bdm.deleteOnTermination) {
      if (!(await setBdmDeleteOnTermination(this.deps.db, bdm.uuid, changes.deleteOnTermination))) {
        throw new TetherError('VolumeNotAttached', `No volume Block Device Mapping with id ${req.volumeId}.`);
      }
      return { ...bdm, deleteOnTermination: changes.deleteOnTermination };
    }
    return bdm;
  }

  /**
   * Nova's swap volume (PUT os-volume_attachments with another volumeId), under Nova's current rule:
   * only the block storage may ask, while it migrates the old volume (Cinder's migration_status);
   * any other swap is a 409. Refusals that need no workflow come back at once (src/domain/swap-rules.ts);
   * otherwise the SwapVolume saga starts on the instance's queue (Nova's 202). The same swap asked
   * again while it runs joins it.
   */
  async swapVolume(req: { server: Ref; oldVolumeId: string; newVolumeId: string }): Promise<StartedSwap> {
    const instance = await this.resolveServer(req.server);
    authorize(this.caller, 'attachments:swap');
    const oldVolume = await this.resolveVolume({ id: req.oldVolumeId });
    if (oldVolume.migrationStatus !== 'migrating') {
      throw new TetherError('VolumeNotMigrating', `volume ${req.oldVolumeId} is not migrating; this API should only be called by Cinder`);
    }
    const newVolume = await this.resolveVolume({ id: req.newVolumeId }).catch((err: unknown) => {
      // a volume named in the body, not the URL: 400 (Nova's API-WG rule)
      throw err instanceof TetherError && err.type === 'VolumeNotFound' ? new TetherError('InvalidInput', err.message) : err;
    });
    const refusal = swapRefusal(instance, await liveBdm(this.deps.db, instance.uuid, oldVolume.id), oldVolume, newVolume);
    if (refusal) throw refusal;
    const workflowId = swapWorkflowId(instance.uuid, oldVolume.id);
    const input: SwapVolumeInput = { instanceUuid: instance.uuid, oldVolumeId: oldVolume.id, newVolumeId: newVolume.id };
    const handle = await this.deps.client.workflow.start<SwapVolumeWorkflow>(SWAP_VOLUME_WORKFLOW, {
      workflowId,
      taskQueue: this.deps.config.controlTaskQueue,
      workflowIdConflictPolicy: 'USE_EXISTING',
      args: [input],
      typedSearchAttributes: [
        { key: InstanceUuid, value: instance.uuid },
        { key: VolumeId, value: oldVolume.id },
        { key: ComputeHost, value: instance.host ?? '' },
        { key: TetherState, value: 'swapping' },
      ],
      ...this.action(`swap volume ${nameOrId(oldVolume)} for ${nameOrId(newVolume)} on server ${nameOrId(instance)}`, {
        server: instance.uuid,
        volume: oldVolume.id,
        'new volume': newVolume.id,
        host: instance.host,
      }),
    });
    return { workflowId, handle };
  }

  /** Waits for a swap to finish; throws the TetherError of a failure. */
  async awaitSwap(handle: WorkflowHandle): Promise<SwapResult> {
    try {
      return (await handle.result()) as SwapResult;
    } catch (err) {
      throw fromTemporalFailure(err);
    }
  }

  /**
   * `tether volume migrate` (admin, the embedded volume service): moves an in-use volume's data to
   * another volume (`to`, or a new one made like it) the way Cinder's migration does: the volume
   * begins migrating, then its server's swap copies the disk under the running guest and ends the
   * migration; the volume keeps its id.
   */
  async migrateVolume(req: { volume: Ref; to?: Ref }): Promise<StartedSwap & { destination: Volume }> {
    const volume = await this.resolveVolume(req.volume);
    authorize(this.caller, 'volumes:migrate');
    const storage = this.deps.blockStorage as BlockStorage & Partial<Pick<LocalVolumeMigration, 'beginMigration'>>;
    if (typeof storage.beginMigration !== 'function') {
      throw new TetherError('NotImplemented', `The block storage (${storage.kind}) migrates its volumes itself (Cinder's os-migrate_volume), then asks tether to swap.`);
    }
    const server = volume.attachments[0]?.serverId;
    if (volume.status !== 'in-use' || !server) {
      throw new TetherError('VolumeNotAvailable', `Invalid volume: only an in-use volume migrates through its server's swap; volume ${volume.id} is ${volume.status}.`);
    }
    const to = req.to === undefined ? undefined : (await this.resolveVolume(req.to)).id;
    const destination = await storage.beginMigration(volume.id, to);
    try {
      const started = await this.swapVolume({ server: { id: server }, oldVolumeId: volume.id, newVolumeId: destination.id });
      return { ...started, destination };
    } catch (err) {
      // refused before any saga ran: the migration ends as Cinder's would
      if (completesMigrations(storage)) await storage.migrateVolumeCompletion(volume.id, destination.id, true);
      throw err;
    }
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
  async retryAttach(server: Ref, volume: Ref): Promise<StartedAttach> {
    const instance = await this.resolveServer(server);
    const vol = await this.resolveVolume(volume);
    authorize(this.caller, 'attachments:retry');
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
    return this.startAttach(instance, vol, { device: input?.device ?? null, tag: input?.tag ?? null, deleteOnTermination: input?.deleteOnTermination ?? false });
  }

  /** The steps of the latest (or a given) run of the attach or detach of (server, volume). */
  async operationHistory(server: Ref, volume: Ref, options: { kind?: 'attach' | 'detach'; runId?: string } = {}): Promise<OperationHistory> {
    const instance = await this.resolveServer(server);
    const vol = await this.resolveVolume(volume);
    authorize(this.caller, 'operations:history');
    const kinds = options.kind ? [options.kind] : (['attach', 'detach'] as const);
    const candidates: OperationHistory[] = [];
    for (const kind of kinds) {
      const workflowId = kind === 'attach' ? attachWorkflowId(instance.uuid, vol.id) : detachWorkflowId(instance.uuid, vol.id);
      const handle = this.deps.client.workflow.getHandle(workflowId, options.runId);
      try {
        const d = await handle.describe();
        const progress = await handle.query<OperationProgress>('progress');
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

  /** Recent attaches and detaches (newest first), from Temporal's visibility store; a non-admin sees those of its project's servers only. */
  async listOperations(options: { failed?: boolean; limit?: number } = {}): Promise<OperationSummary[]> {
    authorize(this.caller, 'operations:list');
    const limit = options.limit ?? 50;
    if (isAdmin(this.caller)) return this.operations(options.failed ?? false, limit);
    const own = new Set((await listInstances(this.deps.db)).filter((s) => s.projectId === this.caller.projectId).map((s) => s.uuid));
    const all = await this.operations(options.failed ?? false, 10_000);
    return all.filter((o) => o.instanceUuid !== null && own.has(o.instanceUuid)).slice(0, limit);
  }

  private async operations(failed: boolean, limit: number): Promise<OperationSummary[]> {
    const clauses = [
      `TaskQueue = '${this.deps.config.controlTaskQueue}'`,
      `WorkflowType IN ('${ATTACH_VOLUME_WORKFLOW}', '${DETACH_VOLUME_WORKFLOW}', '${FORCE_DETACH_VOLUME_WORKFLOW}')`,
      ...(failed ? [`ExecutionStatus IN ('Failed', 'Terminated', 'TimedOut')`] : []),
    ];
    const result: OperationSummary[] = [];
    for await (const w of this.deps.client.workflow.list({ query: clauses.join(' AND ') })) {
      const sa = w.typedSearchAttributes;
      result.push({
        kind: w.type === ATTACH_VOLUME_WORKFLOW ? 'attach' : 'detach',
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
      if (result.length >= limit) break;
    }
    return result;
  }

  /** The invariant checker and the notification outbox look at every project: operators only. */
  authorizeCheck(): void {
    authorize(this.caller, 'invariants:check');
  }
}

/** POST /servers as the service takes it. */
export interface BootServerRequest {
  name: string;
  flavorRef: string;
  /** The zone asked for (Nova's availability_zone): it must be tether's. */
  availabilityZone?: string;
  /** Nova's os:scheduler_hints, kept and shown (2.100); tether has no scheduler to follow them. */
  schedulerHints?: Record<string, unknown>;
  /** Admins: the compute host (Nova's "zone:host" or 2.74 host). */
  host?: string;
  projectId?: string;
  /** block_device_mapping_v2 entries of source and destination type volume. */
  volumes: { volumeId: string; bootIndex: number | null; deleteOnTermination: boolean; tag?: string | null }[];
}

/** A server action of the API (POST /servers/{id}/action, DELETE /servers/{id}). */
export type ServerActionRequest =
  | { action: 'start' | 'stop' | 'shelve' | 'shelveOffload' | 'delete' }
  | { action: 'reboot'; type: 'SOFT' | 'HARD' }
  | { action: 'unshelve'; host?: string }
  | { action: 'migrate'; host?: string };

export interface StartedServerAction {
  /** The server with the task it took. */
  instance: Instance;
  workflowId: string;
  handle: WorkflowHandle;
}

const SERVER_ACTION_WORKFLOW: Record<ServerApiAction, ServerAction> = {
  start: 'startServer',
  stop: 'stopServer',
  reboot: 'rebootServer',
  shelve: 'shelveServer',
  shelveOffload: 'shelveOffloadServer',
  unshelve: 'unshelveServer',
  migrate: 'migrateServer',
  delete: 'deleteServer',
};

const SERVER_ACTION_POLICY = {
  start: 'servers:start',
  stop: 'servers:stop',
  reboot: 'servers:reboot',
  shelve: 'servers:shelve',
  shelveOffload: 'servers:shelve_offload',
  unshelve: 'servers:unshelve',
  migrate: 'servers:migrate',
  delete: 'servers:delete',
} as const satisfies Record<ServerApiAction, Action>;

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
