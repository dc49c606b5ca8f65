/**
 * Business errors with a stable `type` string. The same type travels through Temporal as a
 * non-retryable ApplicationFailure type and is mapped to an HTTP status by the API, so the API,
 * the CLI and the workflow always agree on what went wrong.
 */
export const ERROR_STATUS = {
  InstanceNotFound: 404,
  VolumeNotFound: 404,
  VolumeNotAttached: 404,
  /** Cinder's VolumeMetadataNotFound. */
  VolumeMetadataNotFound: 404,
  /** Cinder's VolumeAttachmentNotFound (GET /attachments/{id}). */
  VolumeAttachmentNotFound: 404,
  InvalidDevicePath: 400,
  InvalidInput: 400,
  VolumeNotAvailable: 400,
  VolumeAlreadyAttached: 400,
  /** The block storage refused: over quota (Cinder's 413). */
  OverQuota: 413,
  AvailabilityZoneMismatch: 400,
  RootDeviceDetach: 400,
  TaggedAttachToShelvedNotSupported: 400,
  MultiattachToShelvedNotSupported: 400,
  TooManyDiskDevices: 403,
  /** The caller's roles do not allow the action (src/auth/policy.ts). */
  PolicyNotAuthorized: 403,
  InstanceInvalidState: 409,
  DevicePathInUse: 409,
  InstanceLocked: 409,
  /** Nova's InstanceNotReady: the action needs the instance to have a host. */
  InstanceNotReady: 409,
  /** Nova's FlavorNotFound (a 400 in POST /servers, a 404 in GET /flavors/{id}). */
  FlavorNotFound: 404,
  OperationInProgress: 409,
  /** A newer operation on the same volume and server took over (a late step of an older one). */
  OperationSuperseded: 409,
  /** Nova's swap (PUT os-volume_attachments with another volumeId) of a volume the block storage is not migrating. */
  VolumeNotMigrating: 409,
  /** A swap tether does not do (an encrypted or multiattach volume, another size): refused before anything changes. */
  SwapNotSupported: 400,
  /** The swap's block copy or pivot failed on the host (Nova's VolumeRebaseFailed). */
  SwapFailed: 500,
  /** The extend could not reach the instance's disk (Nova's VolumeExtendFailed). */
  ExtendFailed: 500,
  /** Something tether does not do (yet): Nova's and Cinder's 501. */
  NotImplemented: 501,
  DiskAttachFailed: 500,
  DiskDetachFailed: 500,
  HostUnavailable: 503,
  /** The host is fenced: its agent cleans up before it changes anything again. */
  HostFenced: 503,
  /** Temporal did not confirm an attach's reservation in time (src/service/attach-reservation.ts): retry the same request. */
  AttachNotConfirmed: 503,
  /** No compute service by that id or host (Nova's ServiceNotFound). */
  ServiceNotFound: 404,
  /** No action of the server with that request id (Nova's "Action %s not found"). */
  InstanceActionNotFound: 404,
} as const;

export type TetherErrorType = keyof typeof ERROR_STATUS;

export function isTetherErrorType(type: unknown): type is TetherErrorType {
  return typeof type === 'string' && Object.hasOwn(ERROR_STATUS, type);
}

export class TetherError extends Error {
  override readonly name = 'TetherError';
  /** Seconds the client should wait before it asks again (a 503's Retry-After), when the answer says. */
  readonly retryAfterSeconds: number | undefined;

  constructor(
    readonly type: TetherErrorType,
    message: string,
    options: { retryAfterSeconds?: number } = {},
  ) {
    super(message);
    this.retryAfterSeconds = options.retryAfterSeconds;
  }
  get status(): number {
    return ERROR_STATUS[this.type];
  }
}
