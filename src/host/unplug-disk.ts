/**
 * Removing a volume's disk (found by serial) from a domain: the persistent config, then the live
 * domain, confirmed gone from the live XML. A guest may take time to release a virtio disk, or ignore
 * the unplug: the request is re-sent, and after `requests` of them the guest is given up on. Used by
 * the detach step and by a fenced host's cleanup.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { LibvirtError, type LibvirtConnection } from '../libvirt/binding.ts';
import { diskBySerial } from './domain-disks.ts';

export interface UnplugOptions {
  /** How long to wait for the guest to release the disk before re-sending the unplug. */
  waitMs: number;
  /** Give up after this many unplug requests. */
  requests: number;
  /** Called while waiting (an activity heartbeats). */
  onWait?: (request: number) => void;
  signal?: AbortSignal;
}

/** The guest did not let go of the disk after every unplug request. */
export class GuestHeldDisk extends Error {
  override readonly name = 'GuestHeldDisk';
  constructor(
    readonly target: string | null,
    readonly volumeId: string,
    requests: number,
  ) {
    super(`The guest did not release disk ${target} of volume ${volumeId} after ${requests} unplug requests`);
  }
}

/** Removes the disk with `serial` from the config and the live domain (when `active`); throws GuestHeldDisk when the guest keeps it. */
export async function unplugDisk(
  libvirt: Pick<LibvirtConnection, 'getXml' | 'detachDevice'>,
  instanceUuid: string,
  serial: string,
  active: boolean,
  o: UnplugOptions,
): Promise<{ removed: boolean }> {
  let removed = false;
  const inConfig = diskBySerial(await libvirt.getXml(instanceUuid, { inactive: true }), serial);
  if (inConfig) {
    await libvirt.detachDevice(instanceUuid, inConfig.xml, { config: true, live: false });
    removed = true;
  }
  if (!active) return { removed };
  for (let request = 0; ; request++) {
    const live = diskBySerial(await libvirt.getXml(instanceUuid), serial);
    if (!live) return { removed };
    if (request >= o.requests) throw new GuestHeldDisk(live.target, serial, o.requests);
    await libvirt.detachDevice(instanceUuid, live.xml, { config: false, live: true }).catch((err: unknown) => {
      // "device not found" means the unplug finished between our read and this call.
      if (!(err instanceof LibvirtError && /not found/i.test(err.message))) throw err;
    });
    removed = true;
    const deadline = Date.now() + o.waitMs;
    while (Date.now() < deadline && diskBySerial(await libvirt.getXml(instanceUuid), serial)) {
      o.onWait?.(request);
      await sleep(100, undefined, o.signal ? { signal: o.signal } : {}).catch(() => undefined);
    }
  }
}
