/**
 * tether's BlockStorage on a real Cinder (volume API v3, microversion 3.44: the attachments API
 * Nova uses since Queens). Same contract as the LocalVolumeService:
 *
 *   createAttachment   POST /attachments (volume → reserved); first looks for an attachment of the same
 *                      instance (GET /attachments?volume_id=&instance_id=) and returns it: a retried
 *                      activity whose first answer was lost never reserves twice
 *   updateAttachment   PUT /attachments/{id} with the connector (+ mountpoint) → connection_info, rebuilt
 *                      as {driver_volume_type, data} the way Nova does
 *   completeAttachment POST /attachments/{id}/action {"os-complete": null} (→ in-use)
 *   deleteAttachment   DELETE /attachments/{id} with the service role (Cinder refuses to delete an attached
 *                      attachment for a plain user since CVE-2023-2088); 404 = already gone = done
 *   begin/rollDetaching  legacy volume actions os-begin_detaching / os-roll_detaching
 *   deleteVolume       DELETE /volumes/{id}, then waits until it is gone
 *
 * Volume management for the CLI (VolumeAdmin): create (waits for available) and list (by name).
 * A volume's `attachments` are all its live attachments, as with the local service: Cinder's volume
 * view shows only the attached ones, so reserved/attaching/detaching ones come from GET /attachments
 * (asked only when the volume's status says there can be any).
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { TetherError } from '../../errors.ts';
import { volumeStatusRepair } from '../../domain/repair-plan.ts';
import type { ConnectionInfo, HostConnector, Volume, VolumeStatus } from '../../domain/types.ts';
import { VolumeEncryptionError, type AttachmentRef, type BlockStorage, type VolumeAdmin, type VolumeEncryption } from '../block-storage.ts';
import { createAuth, type CinderAuth } from './auth.ts';
import type { CinderConfig } from './config.ts';
import { CinderHttpError, CinderUnavailableError, mapCinderError } from './errors.ts';
import { CinderHttp, type CinderLog, type ServerVersion } from './http.ts';

/** A volume as Cinder's v3 view shows it (the fields tether reads). */
export interface CinderVolume {
  id: string;
  name: string | null;
  status: string;
  size: number;
  availability_zone: string;
  multiattach?: boolean;
  encrypted?: boolean;
  bootable?: string | boolean;
  created_at: string;
  attachments?: Array<{
    id?: string;
    attachment_id: string;
    volume_id: string;
    server_id: string;
    host_name?: string | null;
    device?: string | null;
    attached_at?: string | null;
  }>;
  'os-vol-tenant-attr:tenant_id'?: string;
  description?: string | null;
  metadata?: Record<string, string>;
  updated_at?: string | null;
  /** Shown to admins only. */
  'os-vol-mig-status-attr:migstat'?: string | null;
}

/** An attachment in Cinder's summary view (GET /attachments). */
export interface CinderAttachment {
  id: string;
  status: string;
  instance: string | null;
  volume_id: string;
}

const LIVE_ATTACHMENT: Record<string, AttachmentRef['status']> = {
  reserved: 'reserved',
  attaching: 'attaching',
  attached: 'attached',
  detaching: 'detaching',
  error_attaching: 'attaching',
  error_detaching: 'detaching',
};
const PREFERENCE: AttachmentRef['status'][] = ['attached', 'attaching', 'detaching', 'reserved'];

/** Cinder writes UTC times without a zone ("2026-11-25T17:44:00.000000"). */
function isoTime(t: string | null | undefined): string | null {
  if (!t) return null;
  const withZone = /(Z|[+-]\d\d:?\d\d)$/.test(t) ? t : `${t}Z`;
  const ms = Date.parse(withZone);
  return Number.isFinite(ms) ? new Date(ms).toISOString() : t;
}

const seg = encodeURIComponent;

export interface CinderBlockStorageOptions {
  log?: CinderLog;
  /** Replace fetch (unit tests). */
  fetch?: typeof fetch;
  /** Replace the auth built from the configuration. */
  auth?: CinderAuth;
  /** Replace the clock of the Keystone token cache (unit tests). */
  now?: () => number;
}

export class CinderBlockStorage implements BlockStorage, VolumeAdmin {
  readonly kind = 'cinder';
  readonly http: CinderHttp;
  readonly auth: CinderAuth;
  /** multiattach never changes for a volume (short of a retype): remembered to mark connection_info. */
  private readonly multiattach = new Map<string, boolean>();

  constructor(
    private readonly config: CinderConfig,
    options: CinderBlockStorageOptions = {},
  ) {
    this.auth =
      options.auth ??
      createAuth(config.auth, { timeoutMs: config.timeoutMs, ...(options.fetch ? { fetch: options.fetch } : {}), ...(options.now ? { now: options.now } : {}) });
    this.http = new CinderHttp({
      endpoint: config.endpoint,
      auth: this.auth,
      timeoutMs: config.timeoutMs,
      ...(options.log ? { log: options.log } : {}),
      ...(options.fetch ? { fetch: options.fetch } : {}),
    });
  }

  /** Reaches Cinder and checks its microversions: call at start-up to fail fast on a bad configuration. */
  check(): Promise<ServerVersion> {
    return this.http.serverVersion();
  }

  /**
   * tether's Volume from Cinder's view plus the live attachments of GET /attachments: the view lists
   * only attached ones (with device, host and time); the others get their status and nulls.
   */
  private toVolume(v: CinderVolume, projectId: string, listed: CinderAttachment[] = []): Volume {
    this.multiattach.set(v.id, v.multiattach === true);
    const attached = (v.attachments ?? []).map((a) => ({
      id: a.id ?? v.id,
      attachmentId: a.attachment_id,
      volumeId: a.volume_id,
      serverId: a.server_id,
      hostName: a.host_name ?? null,
      device: a.device ?? null,
      attachedAt: isoTime(a.attached_at),
      status: 'attached',
    }));
    const known = new Set(attached.map((a) => a.attachmentId));
    const others = listed
      .filter((a) => a.volume_id === v.id && !known.has(a.id) && LIVE_ATTACHMENT[a.status] !== undefined && a.status !== 'attached')
      .map((a) => ({
        id: v.id,
        attachmentId: a.id,
        volumeId: v.id,
        serverId: a.instance ?? '',
        hostName: null,
        device: null,
        attachedAt: null,
        status: LIVE_ATTACHMENT[a.status]!,
      }));
    return {
      id: v.id,
      name: v.name || null,
      projectId: v['os-vol-tenant-attr:tenant_id'] ?? projectId,
      size: v.size,
      // Cinder has more statuses than tether names (maintenance, extending, …): they pass through as they are.
      status: v.status as VolumeStatus,
      availabilityZone: v.availability_zone,
      multiattach: v.multiattach === true,
      bootable: v.bootable === true || v.bootable === 'true',
      encrypted: v.encrypted === true,
      createdAt: isoTime(v.created_at) ?? v.created_at,
      attachments: [...attached, ...others],
      description: v.description ?? null,
      metadata: v.metadata ?? {},
      updatedAt: isoTime(v.updated_at),
      migrationStatus: v['os-vol-mig-status-attr:migstat'] ?? null,
    };
  }

  /** Whether a volume in this state can hold attachments that are not attached (reserved, attaching, detaching). */
  private static mayHoldPendingAttachments(v: CinderVolume): boolean {
    return v.multiattach === true || ['reserved', 'attaching', 'detaching', 'in-use', 'error_attaching', 'error_detaching', 'maintenance'].includes(v.status);
  }

  /**
   * GET /attachments with filters, every page (Cinder caps a page at osapi_max_limit; the marker is the
   * last id). An attachment deleted between two pages (a detach finishing) makes Cinder answer 404 to
   * the page that names it as the marker: the listing then starts over (a few times at most).
   */
  private async listAttachments(filters: Record<string, string>, subject: { volumeId: string } | { none: true }): Promise<CinderAttachment[]> {
    const out: CinderAttachment[] = [];
    let marker: string | undefined;
    let restarts = 0;
    for (;;) {
      const query = new URLSearchParams(filters);
      if (marker) query.set('marker', marker);
      const answer = await this.http.request<{ attachments: CinderAttachment[] }>('GET', `/attachments?${query}`).catch((err: unknown) => {
        if (marker && err instanceof CinderHttpError && err.status === 404 && restarts < 5) return undefined;
        throw mapCinderError(err, subject);
      });
      if (answer === undefined) {
        restarts++;
        out.length = 0;
        marker = undefined;
        continue;
      }
      const { body } = answer;
      const page = body?.attachments ?? [];
      out.push(...page);
      const last = page.at(-1)?.id;
      if (!last || last === marker) break;
      marker = last;
    }
    return out;
  }

  // ---- encryption ----

  /**
   * GET /volumes/{id}/encryption: Cinder's metadata ({encryption_key_id} and, for an encrypted type,
   * provider, cipher, key_size, control_location). null when the volume is not encrypted or is
   * decrypted by the back end (control_location 'back-end': the host sees plain data).
   */
  async getVolumeEncryption(volumeId: string): Promise<VolumeEncryption | null> {
    const { body } = await this.http
      .request<{ encryption_key_id?: string | null; provider?: string | null; cipher?: string | null; key_size?: number | null; control_location?: string | null }>(
        'GET',
        `/volumes/${seg(volumeId)}/encryption`,
      )
      .catch((err: unknown) => {
        throw mapCinderError(err, { volumeId });
      });
    if (!body?.encryption_key_id || !body.provider) return null;
    if (body.control_location === 'back-end') return null;
    // Older volume types name the encryptor class (nova.volume.encryptors.luks.LuksEncryptor).
    const provider = /(^|\.)(luks|LuksEncryptor)$/.test(body.provider) ? 'luks' : null;
    if (!provider) throw new VolumeEncryptionError(`Volume ${volumeId} uses encryption provider '${body.provider}'; tether attaches front-end LUKS only.`);
    return { provider, cipher: body.cipher ?? 'aes-xts-plain64', keySize: body.key_size ?? 256, controlLocation: 'front-end', encryptionKeyId: body.encryption_key_id };
  }

  /** Cinder keeps keys in Barbican; tether has no Barbican client yet. */
  async getEncryptionKey(volumeId: string, encryption: VolumeEncryption): Promise<Buffer> {
    throw new VolumeEncryptionError(
      `Volume ${volumeId} is encrypted (key ${encryption.encryptionKeyId} in Cinder's key manager); attaching it is not supported: no key manager (Barbican) configured in tether.`,
    );
  }

  // ---- volumes ----

  async getVolume(volumeId: string): Promise<Volume> {
    const { body } = await this.http.request<{ volume: CinderVolume }>('GET', `/volumes/${seg(volumeId)}`).catch((err: unknown) => {
      throw mapCinderError(err, { volumeId });
    });
    if (!body?.volume) throw new CinderUnavailableError(`Cinder answered GET /volumes/${volumeId} without a volume`);
    const listed = CinderBlockStorage.mayHoldPendingAttachments(body.volume) ? await this.listAttachments({ volume_id: body.volume.id }, { volumeId }) : [];
    return this.toVolume(body.volume, await this.auth.projectId(), listed);
  }

  async listVolumes(filter: { name?: string; projectId?: string } = {}): Promise<Volume[]> {
    const projectId = await this.auth.projectId();
    const volumes: CinderVolume[] = [];
    let marker: string | undefined;
    for (;;) {
      const query = new URLSearchParams({ sort: 'created_at:asc,id:asc' });
      if (filter.name !== undefined) query.set('name', filter.name);
      if (marker) query.set('marker', marker);
      const { body } = await this.http
        .request<{ volumes: CinderVolume[]; volumes_links?: Array<{ rel: string; href: string }> }>('GET', `/volumes/detail?${query}`)
        .catch((err: unknown) => {
          throw mapCinderError(err, { none: true });
        });
      const page = body?.volumes ?? [];
      volumes.push(...page);
      const next = body?.volumes_links?.find((l) => l.rel === 'next')?.href;
      marker = next ? (new URL(next).searchParams.get('marker') ?? undefined) : undefined;
      if (!marker || page.length === 0) break;
    }
    const listed = volumes.some((v) => CinderBlockStorage.mayHoldPendingAttachments(v)) ? await this.listAttachments({}, { none: true }) : [];
    const out = volumes.map((v) => this.toVolume(v, projectId, listed));
    // The credentials scope Cinder's list to one project; another project's filter finds nothing here.
    return filter.projectId === undefined ? out : out.filter((v) => v.projectId === filter.projectId);
  }

  /** Creates the volume in the credentials' project (spec.projectId is not Cinder's to choose) and waits until it is available. */
  async createVolume(spec: Parameters<VolumeAdmin['createVolume']>[0]): Promise<Volume> {
    const request: Record<string, unknown> = { size: spec.size, name: spec.name };
    if (spec.description !== undefined) request.description = spec.description;
    if (spec.metadata !== undefined) request.metadata = spec.metadata;
    if (spec.availabilityZone !== undefined) request.availability_zone = spec.availabilityZone;
    // Cinder removed the multiattach parameter: a volume type with multiattach="<is> True" decides.
    if (spec.multiattach) request.volume_type = this.config.multiattachVolumeType;
    // Other types (e.g. an encrypted one) are Cinder's to know; the default type is Cinder's default.
    else if (spec.volumeType && spec.volumeType !== '__DEFAULT__') request.volume_type = spec.volumeType;
    const { body } = await this.http.request<{ volume: CinderVolume }>('POST', '/volumes', { volume: request }).catch((err: unknown) => {
      throw mapCinderError(err, { none: true });
    });
    if (!body?.volume?.id) throw new CinderUnavailableError('Cinder answered POST /volumes without a volume');
    const id = body.volume.id;
    const volume = await this.waitFor(id, (v) => v !== null && !['creating', 'downloading'].includes(v.status), 'to finish creating');
    if (!volume || volume.status !== 'available') {
      throw new TetherError('VolumeNotAvailable', `Cinder could not create volume ${id}: its status is ${volume?.status ?? 'deleted'}.`);
    }
    return volume;
  }

  async deleteVolume(volumeId: string): Promise<void> {
    try {
      await this.http.request('DELETE', `/volumes/${seg(volumeId)}`);
    } catch (err) {
      const mapped = mapCinderError(err, { volumeId });
      if (!(mapped instanceof TetherError && mapped.type === 'VolumeNotAvailable')) throw mapped;
      // A retry of a delete already under way: wait for it; anything else is a real refusal.
      const current = await this.getVolume(volumeId);
      if (current.status !== 'deleting') {
        throw new TetherError('VolumeNotAvailable', `${mapped.message} (current status is: ${current.status})`);
      }
    }
    const last = await this.waitFor(volumeId, (v) => v === null || v.status === 'error_deleting', 'to be deleted');
    if (last !== null) throw new CinderUnavailableError(`Cinder could not delete volume ${volumeId}: its status is ${last.status}`);
  }

  /** Polls the volume (null once it is gone) until `done`; a CinderUnavailableError after CINDER_WAIT_TIMEOUT_MS. */
  private async waitFor(volumeId: string, done: (v: Volume | null) => boolean, what: string): Promise<Volume | null> {
    const deadline = Date.now() + this.config.waitTimeoutMs;
    let delay = 50;
    for (;;) {
      let v: Volume | null;
      try {
        v = await this.getVolume(volumeId);
      } catch (err) {
        if (!(err instanceof TetherError && err.type === 'VolumeNotFound')) throw err;
        v = null;
      }
      if (done(v)) return v;
      if (Date.now() > deadline) {
        throw new CinderUnavailableError(`Volume ${volumeId} did not get ${what} within ${this.config.waitTimeoutMs} ms (status ${v?.status ?? 'gone'})`);
      }
      await sleep(delay);
      delay = Math.min(delay * 2, 1_000);
    }
  }

  // ---- attachments ----

  async findAttachment(volumeId: string, instanceUuid: string): Promise<AttachmentRef | null> {
    const listed = await this.listAttachments({ volume_id: volumeId, instance_id: instanceUuid }, { volumeId });
    const live = listed
      .filter((a) => a.volume_id === volumeId && a.instance === instanceUuid && LIVE_ATTACHMENT[a.status] !== undefined)
      .map((a) => ({ attachmentId: a.id, status: LIVE_ATTACHMENT[a.status]! }));
    live.sort((a, b) => PREFERENCE.indexOf(a.status) - PREFERENCE.indexOf(b.status));
    return live[0] ?? null;
  }

  async createAttachment(volumeId: string, instanceUuid: string): Promise<AttachmentRef> {
    const existing = await this.findAttachment(volumeId, instanceUuid);
    if (existing) return existing;
    const { body } = await this.http
      .request<{ attachment: CinderAttachment }>('POST', '/attachments', { attachment: { volume_uuid: volumeId, instance_uuid: instanceUuid } })
      .catch((err: unknown) => {
        throw mapCinderError(err, { volumeId });
      });
    if (!body?.attachment?.id) throw new CinderUnavailableError(`Cinder answered POST /attachments for volume ${volumeId} without an attachment`);
    return { attachmentId: body.attachment.id, status: LIVE_ATTACHMENT[body.attachment.status] ?? 'reserved' };
  }

  async updateAttachment(attachmentId: string, connector: HostConnector & { mountpoint?: string }): Promise<ConnectionInfo> {
    // The answer holds connection_info (maybe with credentials): it is returned, never logged.
    const { body } = await this.http
      .request<{ attachment: { volume_id?: string; connection_info?: Record<string, unknown> | null } }>('PUT', `/attachments/${seg(attachmentId)}`, {
        attachment: { connector },
      })
      .catch((err: unknown) => {
        throw mapCinderError(err, { attachmentId });
      });
    const flat = body?.attachment?.connection_info;
    if (!flat || typeof flat.driver_volume_type !== 'string') {
      throw new CinderUnavailableError(`Cinder answered PUT /attachments/${attachmentId} without connection_info`);
    }
    // Cinder flattens the driver's {driver_volume_type, data}; rebuild it as Nova does (_translate_attachment_ref).
    const { driver_volume_type, attachment_id: _attachmentId, ...data } = flat;
    const info: ConnectionInfo = { driver_volume_type, data };
    const volumeId = body.attachment.volume_id;
    if (volumeId) {
      let multiattach = this.multiattach.get(volumeId);
      if (multiattach === undefined) multiattach = (await this.getVolume(volumeId)).multiattach;
      if (multiattach) info.multiattach = true;
    }
    return info;
  }

  async completeAttachment(attachmentId: string): Promise<void> {
    await this.http.request('POST', `/attachments/${seg(attachmentId)}/action`, { 'os-complete': null }).catch((err: unknown) => {
      throw mapCinderError(err, { attachmentId });
    });
  }

  async deleteAttachment(attachmentId: string): Promise<void> {
    try {
      await this.http.request('DELETE', `/attachments/${seg(attachmentId)}`, undefined, { service: this.config.serviceToken });
    } catch (err) {
      if (err instanceof CinderHttpError && err.status === 404) return; // already gone
      throw mapCinderError(err, { attachmentId });
    }
  }

  async beginDetaching(volumeId: string): Promise<void> {
    try {
      await this.http.request('POST', `/volumes/${seg(volumeId)}/action`, { 'os-begin_detaching': null });
    } catch (err) {
      const mapped = mapCinderError(err, { volumeId });
      if (!(mapped instanceof TetherError && mapped.type === 'VolumeNotAvailable')) throw mapped;
      const current = await this.getVolume(volumeId);
      if (current.status === 'detaching') return; // a retry: already done
      throw new TetherError(
        'VolumeNotAvailable',
        `Invalid volume: Unable to detach volume. Volume status must be 'in-use', but current status is: ${current.status}.`,
      );
    }
  }

  /** os-reset_status (an admin action) to what the attachments say; see VolumeStatusRepair. */
  async syncStatusWithAttachments(volumeId: string): Promise<{ from: string; to: string } | null> {
    const v = await this.getVolume(volumeId);
    const to = volumeStatusRepair({ status: v.status, attachmentStatuses: v.attachments.map((a) => a.status) });
    if (to === null) return null;
    await this.http.request('POST', `/volumes/${seg(volumeId)}/action`, { 'os-reset_status': { status: to } }).catch((err: unknown) => {
      throw mapCinderError(err, { volumeId });
    });
    return { from: v.status, to };
  }

  /**
   * Cinder's `os-migrate_volume_completion` (admin), which Nova calls when its swap of a migrating
   * volume is done (or failed): Cinder swaps the two volumes' records, so the attachment keeps the
   * source's id (`save_volume_id`).
   */
  async migrateVolumeCompletion(volumeId: string, newVolumeId: string, error: boolean): Promise<{ saveVolumeId: string }> {
    const { body } = await this.http
      .request<{ save_volume_id?: string }>('POST', `/volumes/${seg(volumeId)}/action`, { 'os-migrate_volume_completion': { new_volume: newVolumeId, error } })
      .catch((err: unknown) => {
        throw mapCinderError(err, { volumeId });
      });
    return { saveVolumeId: body?.save_volume_id ?? volumeId };
  }

  async rollDetaching(volumeId: string): Promise<void> {
    // Cinder changes only a detaching volume (back to in-use): repeating it is harmless.
    await this.http.request('POST', `/volumes/${seg(volumeId)}/action`, { 'os-roll_detaching': null }).catch((err: unknown) => {
      throw mapCinderError(err, { volumeId });
    });
  }
}
