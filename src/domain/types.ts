/** Domain types shared by the service layer, the activities and the workflows (types only). */

export type VmState =
  | 'building'
  | 'active'
  | 'paused'
  | 'stopped'
  | 'suspended'
  | 'resized'
  | 'soft-delete'
  | 'shelved'
  | 'shelved_offloaded'
  | 'rescued'
  | 'error'
  | 'deleted';

export interface Instance {
  uuid: string;
  name: string;
  projectId: string;
  host: string | null;
  vmState: VmState;
  taskState: string | null;
  availabilityZone: string;
  libvirtDomain: string | null;
  rootDeviceName: string | null;
  defaultDiskBus: DiskBus;
  locked: boolean;
  createdAt: string;
  /** src/domain/flavors.ts (tether.tiny for servers older than flavors). */
  flavorId?: string;
  /** Nova's pinned_availability_zone (2.96): the zone asked for at create, else null. */
  pinnedAvailabilityZone?: string | null;
  /** Nova's scheduler_hints of the create request (2.100); tether has no scheduler. */
  schedulerHints?: Record<string, unknown>;
}

export type DiskBus = 'virtio' | 'scsi' | 'ide' | 'sata' | 'usb';

export type BdmAttachStatus = 'attaching' | 'attached' | 'detaching';

export interface BlockDeviceMapping {
  uuid: string;
  instanceUuid: string;
  volumeId: string | null;
  sourceType: string;
  destinationType: string;
  deviceName: string | null;
  diskBus: DiskBus | null;
  deviceType: string | null;
  bootIndex: number | null;
  tag: string | null;
  deleteOnTermination: boolean;
  attachmentId: string | null;
  attachStatus: BdmAttachStatus;
  operationId: string | null;
  createdAt: string;
  /** Nova's volume_size: the size (GiB) the disk was last extended to; null until an extend. */
  volumeSize?: number | null;
}

export type VolumeStatus =
  | 'creating'
  | 'available'
  | 'reserved'
  | 'attaching'
  | 'in-use'
  | 'detaching'
  | 'extending'
  | 'deleting'
  | 'error'
  | 'error_deleting';

export interface VolumeAttachmentSummary {
  id: string;
  attachmentId: string;
  volumeId: string;
  serverId: string;
  hostName: string | null;
  device: string | null;
  attachedAt: string | null;
  status: string;
}

export interface Volume {
  id: string;
  name: string | null;
  projectId: string;
  size: number;
  status: VolumeStatus;
  availabilityZone: string;
  multiattach: boolean;
  bootable: boolean;
  encrypted: boolean;
  attachments: VolumeAttachmentSummary[];
  createdAt: string;
  /** Cinder's description and user metadata (the embedded service keeps both; a Cinder's pass through). */
  description?: string | null;
  metadata?: Record<string, string>;
  updatedAt?: string | null;
  /** Cinder's migration_status (os-vol-mig-status-attr:migstat, admins only): set while Cinder migrates the volume. */
  migrationStatus?: string | null;
}

/** What a host reports about itself to the block storage (os-brick's connector). */
export interface HostConnector {
  ip: string;
  host: string;
  initiator: string;
  wwpns?: string[];
  wwnns?: string[];
  multipath: boolean;
  platform: string;
  os_type: string;
  do_local_attach: boolean;
}

/** connection_info as Cinder returns it; `data` may hold secrets and never enters workflow history. */
export interface ConnectionInfo {
  driver_volume_type: string;
  data: Record<string, unknown>;
  serial?: string;
  /** A multiattach volume becomes a shareable disk. */
  multiattach?: boolean;
}

/** What an attach asks for (the AttachVolume workflow's input). */
export interface AttachRequest {
  instanceUuid: string;
  volumeId: string;
  device: string | null;
  tag: string | null;
  deleteOnTermination: boolean;
  diskBus: string | null;
  deviceType: string | null;
}
