/**
 * A simulated hypervisor for the scale simulation (bench/scale-sim.ts): the part of
 * LibvirtConnection that the compute agent's instance-queue activities use, in memory. Every
 * instance the agent is asked about has a running domain whose XML holds its root disk; attach and
 * detach add and remove `<disk>` elements; QEMU's monitor lists no disk behind libvirt's back.
 * The real ComputeAgent and its real host activities (database work, step guard, generations) run
 * on top of it; only the hypervisor is simulated, so that 10 000 instances need no QEMU.
 * Benchmark tooling only: never used by tether's processes.
 */
import type { AffectFlags, DomainInfo, LibvirtConnection, SecretInfo } from '../src/libvirt/binding.ts';

interface SimDomain {
  uuid: string;
  disks: string[];
}

export class SimulatedHypervisor {
  private readonly domains = new Map<string, SimDomain>();
  private readonly secrets = new Map<string, { xml: string; value: Buffer }>();
  /** Calls answered, by method (what the simulated hosts were asked). */
  readonly calls: Record<string, number> = {};

  constructor(private readonly rootTarget = 'sda') {}

  private count(method: string): void {
    this.calls[method] = (this.calls[method] ?? 0) + 1;
  }

  private domain(uuid: string): SimDomain {
    let d = this.domains.get(uuid);
    if (!d) {
      d = { uuid, disks: [`<disk type='file' device='disk'><source file='/sim/${uuid}-root.qcow2'/><target dev='${this.rootTarget}' bus='scsi'/><alias name='scsi0-0-0-0'/></disk>`] };
      this.domains.set(uuid, d);
    }
    return d;
  }

  async lookupDomain(uuid: string): Promise<DomainInfo | null> {
    this.count('lookupDomain');
    this.domain(uuid);
    return { uuid, name: `instance-${uuid}`, state: 'running' as DomainInfo['state'], active: true, persistent: true };
  }

  async getXml(uuid: string, _options: { inactive?: boolean } = {}): Promise<string> {
    this.count('getXml');
    const d = this.domain(uuid);
    return `<domain type='kvm'><name>instance-${uuid}</name><uuid>${uuid}</uuid><devices>\n${d.disks.join('\n')}\n</devices></domain>`;
  }

  async attachDevice(uuid: string, xml: string, _flags: AffectFlags): Promise<void> {
    this.count('attachDevice');
    const d = this.domain(uuid);
    const target = /<target\b[^>]*\bdev=['"]([^'"]+)['"]/.exec(xml)?.[1];
    if (target && !d.disks.some((x) => x.includes(`dev='${target}'`) || x.includes(`dev="${target}"`))) d.disks.push(xml);
  }

  async detachDevice(uuid: string, xml: string, _flags: AffectFlags): Promise<void> {
    this.count('detachDevice');
    const d = this.domain(uuid);
    const target = /<target\b[^>]*\bdev=['"]([^'"]+)['"]/.exec(xml)?.[1];
    d.disks = d.disks.filter((x) => !(target && (x.includes(`dev='${target}'`) || x.includes(`dev="${target}"`))));
  }

  async qemuMonitorCommand(_uuid: string, command: { execute: string }): Promise<unknown> {
    this.count('qemuMonitorCommand');
    return command.execute === 'query-block' ? [] : {};
  }

  async defineSecret(xml: string, value: Buffer): Promise<string> {
    this.count('defineSecret');
    const uuid = /<uuid>([^<]+)<\/uuid>/.exec(xml)?.[1] ?? `sim-${this.secrets.size}`;
    this.secrets.set(uuid, { xml, value });
    return uuid;
  }

  async listSecrets(): Promise<SecretInfo[]> {
    this.count('listSecrets');
    return [];
  }

  async undefineSecret(uuid: string): Promise<void> {
    this.count('undefineSecret');
    this.secrets.delete(uuid);
  }

  async listDomains(): Promise<DomainInfo[]> {
    return [...this.domains.keys()].map((uuid) => ({ uuid, name: `instance-${uuid}`, state: 'running' as DomainInfo['state'], active: true, persistent: true }));
  }

  async isAlive(): Promise<boolean> {
    return true;
  }

  async close(): Promise<void> {}

  /** What the compute agent takes: the methods above stand for the real connection's. */
  asLibvirt(): LibvirtConnection {
    return this as unknown as LibvirtConnection;
  }
}
