/**
 * The TetherService as one caller sees it: the policy (src/auth/policy.ts) applied to every call,
 * for the HTTP API (the token's caller) and the CLI (an operator, or a member of --project) alike.
 * Names and ids resolve only within what the caller may see, so another project's server or
 * volume is "not found" exactly like one that does not exist; the role check comes after the
 * lookup (a reader gets 403 on its own server, 404 on another project's).
 */
import type { WorkflowHandle } from '@temporalio/client';
import { TetherError } from '../errors.ts';
import type { BlockDeviceMapping, Instance, Volume } from '../domain/types.ts';
import { isUuid, type AttachVolumeRequest, type OperationHistory, type OperationSummary, type StartedAttach, type TetherService } from '../service/tether-service.ts';
import type { AttachProgress, AttachResult } from '../domain/contracts/attach-volume.ts';
import type { Caller } from './caller.ts';
import { authorize, canSee, isAdmin } from './policy.ts';

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

export class ScopedTetherService {
  constructor(
    readonly inner: TetherService,
    readonly caller: Caller,
  ) {}

  // ---- lookups within the caller's projects ----

  async resolveServer(nameOrId: string): Promise<Instance> {
    if (isAdmin(this.caller)) return this.inner.resolveServer(nameOrId);
    if (isUuid(nameOrId)) {
      const byId = await this.inner.resolveServer(nameOrId.toLowerCase()).catch((err: unknown) => {
        if (err instanceof TetherError && err.type === 'InstanceNotFound') return null;
        throw err;
      });
      if (byId?.uuid === nameOrId.toLowerCase()) {
        if (canSee(this.caller, byId.projectId)) return byId;
        throw serverNotFound(nameOrId);
      }
    }
    const visible = (await this.inner.listServers({ name: nameOrId })).filter((s) => canSee(this.caller, s.projectId));
    return onlyOne(visible, 'server', nameOrId);
  }

  async resolveVolume(nameOrId: string): Promise<Volume> {
    if (isAdmin(this.caller)) return this.inner.resolveVolume(nameOrId);
    if (isUuid(nameOrId)) {
      const byId = await this.inner.resolveVolume(nameOrId.toLowerCase()).catch((err: unknown) => {
        if (err instanceof TetherError && err.type === 'VolumeNotFound') return null;
        throw err;
      });
      if (byId?.id === nameOrId.toLowerCase()) {
        if (canSee(this.caller, byId.projectId)) return byId;
        throw volumeNotFound(nameOrId);
      }
    }
    const visible = (await this.inner.listVolumes({ name: nameOrId })).filter((v) => canSee(this.caller, v.projectId));
    return onlyOne(visible, 'volume', nameOrId);
  }

  // ---- servers ----

  /** `allTenants`: every project's servers (admins only; others get 403, as in Nova). Without it, the caller's project's. */
  async listServers(filter: { name?: string; host?: string; allTenants?: boolean } = {}): Promise<Instance[]> {
    authorize(this.caller, 'servers:list');
    if (filter.allTenants) authorize(this.caller, 'servers:list:all_tenants');
    const { allTenants, ...rest } = filter;
    const servers = await this.inner.listServers(rest);
    // an admin without all_tenants: the whole cloud in the CLI (an operator tool), the own project in the API's lists (Nova's rule)
    if (allTenants || (isAdmin(this.caller) && allTenants === undefined)) return servers;
    return servers.filter((s) => s.projectId === this.caller.projectId);
  }

  async showServer(nameOrId: string): Promise<Instance> {
    const instance = await this.resolveServer(nameOrId);
    authorize(this.caller, 'servers:show');
    return instance;
  }

  /** New servers belong to the caller's project. */
  async createServer(spec: { name: string; host?: string }): Promise<{ instance: Instance; handle: WorkflowHandle }> {
    authorize(this.caller, 'servers:create');
    if (spec.host !== undefined) authorize(this.caller, 'servers:create:forced_host');
    return this.inner.createServer({ ...spec, projectId: this.caller.projectId });
  }

  async shelveServer(server: string): Promise<Instance> {
    const instance = await this.resolveServer(server);
    authorize(this.caller, 'servers:shelve');
    return this.inner.shelveServer(instance.uuid);
  }

  async shelveOffloadServer(server: string): Promise<Instance> {
    const instance = await this.resolveServer(server);
    authorize(this.caller, 'servers:shelve_offload');
    return this.inner.shelveOffloadServer(instance.uuid);
  }

  async unshelveServer(server: string, host?: string): Promise<{ instance: Instance; devices: Record<string, string> }> {
    const instance = await this.resolveServer(server);
    authorize(this.caller, 'servers:unshelve');
    if (host !== undefined) authorize(this.caller, 'servers:unshelve:host');
    return this.inner.unshelveServer(instance.uuid, host);
  }

  async deleteServer(server: string): Promise<{ instance: Instance; deletedVolumes: string[] }> {
    const instance = await this.resolveServer(server);
    authorize(this.caller, 'servers:delete');
    return this.inner.deleteServer(instance.uuid);
  }

  async migrateServer(server: string, targetHost: string): Promise<Instance> {
    const instance = await this.resolveServer(server);
    authorize(this.caller, 'servers:migrate');
    return this.inner.migrateServer(instance.uuid, targetHost);
  }

  // ---- volumes ----

  /** The caller's project's volumes; an admin's `allTenants` (or the CLI operator) sees all. Cinder ignores all_tenants for others. */
  async listVolumes(filter: { name?: string; allTenants?: boolean } = {}): Promise<Volume[]> {
    authorize(this.caller, 'volumes:list');
    const { allTenants, ...rest } = filter;
    const everyProject = isAdmin(this.caller) && (allTenants ?? true);
    return this.inner.listVolumes(everyProject ? rest : { ...rest, projectId: this.caller.projectId });
  }

  async showVolume(nameOrId: string): Promise<Volume> {
    const volume = await this.resolveVolume(nameOrId);
    authorize(this.caller, 'volumes:show');
    return volume;
  }

  /** New volumes belong to the caller's project. */
  createVolume(spec: { name: string | null; size: number; multiattach?: boolean; availabilityZone?: string; description?: string | null; volumeType?: string | null }): Promise<Volume> {
    authorize(this.caller, 'volumes:create');
    return this.inner.createVolume({ ...spec, projectId: this.caller.projectId });
  }

  async deleteVolume(nameOrId: string): Promise<void> {
    const volume = await this.resolveVolume(nameOrId);
    authorize(this.caller, 'volumes:delete');
    await this.inner.deleteVolume(volume.id);
  }

  // ---- attachments ----

  /** Both the server and the volume must be visible to the caller (a foreign volume is "not found"), then the role must allow it. */
  async attachVolume(req: AttachVolumeRequest): Promise<StartedAttach> {
    const instance = await this.resolveServer(req.server);
    const volume = await this.resolveVolume(req.volume);
    authorize(this.caller, 'attachments:create');
    return this.inner.attachVolume({ ...req, server: instance.uuid, volume: volume.id });
  }

  async detachVolume(req: { server: string; volume: string }): Promise<{ workflowId: string; handle: WorkflowHandle }> {
    const instance = await this.resolveServer(req.server);
    const volume = await this.resolveVolume(req.volume);
    authorize(this.caller, 'attachments:delete');
    return this.inner.detachVolume({ server: instance.uuid, volume: volume.id });
  }

  async listAttachments(server: string): Promise<{ instance: Instance; bdms: BlockDeviceMapping[] }> {
    const instance = await this.resolveServer(server);
    authorize(this.caller, 'attachments:list');
    return this.inner.listAttachments(instance.uuid);
  }

  async retryAttach(server: string, volume: string): Promise<StartedAttach> {
    const instance = await this.resolveServer(server);
    const vol = await this.resolveVolume(volume);
    authorize(this.caller, 'attachments:retry');
    return this.inner.retryAttach(instance.uuid, vol.id);
  }

  /** Handles come from this caller's own attach/detach calls: following them needs no further check. */
  awaitAttach(handle: WorkflowHandle): Promise<AttachResult> {
    return this.inner.awaitAttach(handle);
  }

  attachProgress(handle: WorkflowHandle): Promise<AttachProgress> {
    return this.inner.attachProgress(handle);
  }

  awaitDetach(handle: WorkflowHandle): Promise<void> {
    return this.inner.awaitDetach(handle);
  }

  // ---- inspection ----

  async operationHistory(server: string, volume: string, options: { kind?: 'attach' | 'detach'; runId?: string } = {}): Promise<OperationHistory> {
    const instance = await this.resolveServer(server);
    const vol = await this.resolveVolume(volume);
    authorize(this.caller, 'operations:history');
    return this.inner.operationHistory(instance.uuid, vol.id, options);
  }

  /** Recent attaches and detaches; a non-admin sees those of its project's servers only. */
  async listOperations(options: { failed?: boolean; limit?: number } = {}): Promise<OperationSummary[]> {
    authorize(this.caller, 'operations:list');
    if (isAdmin(this.caller)) return this.inner.listOperations(options);
    const own = new Set((await this.inner.listServers()).filter((s) => s.projectId === this.caller.projectId).map((s) => s.uuid));
    const all = await this.inner.listOperations({ ...options, limit: 10_000 });
    return all.filter((o) => o.instanceUuid !== null && own.has(o.instanceUuid)).slice(0, options.limit ?? 50);
  }

  /** The invariant checker looks at every project: operators only. */
  authorizeCheck(): void {
    authorize(this.caller, 'invariants:check');
  }
}
