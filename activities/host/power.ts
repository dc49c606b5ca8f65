/**
 * A server's power on its compute host (the instance's own queue `instance-<uuid>`, so a power change
 * never runs beside one of its disk steps): start, stop and reboot the defined domain, the way Nova's
 * libvirt driver does. A stop asks the guest first (ACPI, Nova's clean shutdown) and powers it off
 * when it has not stopped within the shutdown timeout; a soft reboot is a clean shutdown and a start,
 * falling back to a hard one (power off, start) like Nova's `_soft_reboot`. Every step is idempotent.
 */
import { heartbeat, sleep } from '@temporalio/activity';
import type { LibvirtConnection } from '../../src/libvirt/binding.ts';
import { libvirtFailure } from './libvirt-failures.ts';
import { businessFailure } from '../failures.ts';

export interface PowerDeps {
  libvirt: LibvirtConnection;
  /**
   * How long a guest gets to power off when asked (Nova's shutdown_timeout, 60 s); 0 powers off at
   * once (an OS-less domain has nothing that answers ACPI).
   */
  cleanShutdownSeconds?: number;
}

export type DomainPowerState = { state: string; active: boolean };

export function createPowerActivities(deps: PowerDeps) {
  const { libvirt } = deps;
  const graceMs = Math.max(0, (deps.cleanShutdownSeconds ?? 60) * 1000);

  async function lookup(instanceUuid: string) {
    const info = await libvirt.lookupDomain(instanceUuid);
    if (!info) throw businessFailure('InstanceNotReady', `The domain of instance ${instanceUuid} is not defined on this host`);
    return info;
  }

  /** Asks the guest to stop and waits up to the shutdown timeout; true when it stopped. */
  async function cleanShutdown(instanceUuid: string): Promise<boolean> {
    if (graceMs === 0) return false;
    await libvirt.shutdownDomain(instanceUuid).catch(() => undefined);
    const deadline = Date.now() + graceMs;
    while (Date.now() < deadline) {
      if (!(await libvirt.lookupDomain(instanceUuid))?.active) return true;
      heartbeat();
      await sleep(250);
    }
    return !(await libvirt.lookupDomain(instanceUuid))?.active;
  }

  async function state(instanceUuid: string): Promise<DomainPowerState> {
    const info = await libvirt.lookupDomain(instanceUuid);
    return { state: info?.state ?? 'unknown', active: info?.active ?? false };
  }

  return {
    /** Starts the instance's defined domain (os-start); a running one stays as it is. */
    async powerOnDomain(input: { instanceUuid: string }): Promise<DomainPowerState> {
      try {
        await lookup(input.instanceUuid);
        await libvirt.startDomain(input.instanceUuid);
        return await state(input.instanceUuid);
      } catch (err) {
        throw libvirtFailure(err, 'PowerFailed');
      }
    },

    /** Stops the domain (os-stop): the guest is asked first, then powered off; it stays defined. */
    async powerOffDomain(input: { instanceUuid: string }): Promise<DomainPowerState & { clean: boolean }> {
      try {
        const info = await libvirt.lookupDomain(input.instanceUuid);
        if (!info?.active) return { state: info?.state ?? 'unknown', active: false, clean: true };
        const clean = await cleanShutdown(input.instanceUuid);
        if (!clean) await libvirt.destroyDomain(input.instanceUuid);
        return { ...(await state(input.instanceUuid)), clean };
      } catch (err) {
        throw libvirtFailure(err, 'PowerFailed');
      }
    },

    /**
     * Reboots the domain: SOFT is a clean shutdown and a start (a hard reboot when the guest did not
     * stop in time), HARD powers off and starts. A stopped domain (hard reboot of a SHUTOFF server) starts.
     */
    async rebootDomain(input: { instanceUuid: string; type: 'SOFT' | 'HARD' }): Promise<DomainPowerState & { hard: boolean }> {
      try {
        const info = await lookup(input.instanceUuid);
        let hard = input.type === 'HARD';
        if (info.active) {
          if (!hard) hard = !(await cleanShutdown(input.instanceUuid));
          if (hard) await libvirt.destroyDomain(input.instanceUuid);
        }
        await libvirt.startDomain(input.instanceUuid);
        return { ...(await state(input.instanceUuid)), hard };
      } catch (err) {
        throw libvirtFailure(err, 'PowerFailed');
      }
    },
  };
}

export type PowerActivities = ReturnType<typeof createPowerActivities>;
