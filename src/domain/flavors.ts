/**
 * The sizes of server tether offers (Nova's flavors), a fixed table: tether's domains have no root
 * disk of their own (`disk: 0`): a server is diskless or boots from a volume. The domain a compute
 * host defines gets the flavor's vCPUs and memory (at least what the host's domain template needs,
 * e.g. 128 MiB for a kernel-booted guest).
 */

export interface Flavor {
  id: string;
  name: string;
  vcpus: number;
  /** MiB. */
  ram: number;
  /** GiB of root disk: always 0 (diskless or boot from volume). */
  disk: number;
  ephemeral: number;
  /** MiB of swap; Nova shows 0 as "" before 2.75. */
  swap: number;
  description: string;
}

export const FLAVORS: readonly Flavor[] = [
  { id: 'tether.tiny', name: 'tether.tiny', vcpus: 1, ram: 64, disk: 0, ephemeral: 0, swap: 0, description: 'an OS-less domain: volumes only' },
  { id: 'tether.small', name: 'tether.small', vcpus: 1, ram: 128, disk: 0, ephemeral: 0, swap: 0, description: 'enough for a kernel-booted guest' },
  { id: 'tether.medium', name: 'tether.medium', vcpus: 2, ram: 256, disk: 0, ephemeral: 0, swap: 0, description: 'a guest with two vCPUs' },
];

/** The flavor of servers created without one (the CLI) and of servers created before flavors existed. */
export const DEFAULT_FLAVOR_ID = 'tether.tiny';

/** By id (Nova's flavorid; clients look a name up in the list). */
export function findFlavor(ref: string): Flavor | null {
  return FLAVORS.find((f) => f.id === ref) ?? null;
}

export function flavorOf(id: string | null | undefined): Flavor {
  return FLAVORS.find((f) => f.id === id) ?? FLAVORS.find((f) => f.id === DEFAULT_FLAVOR_ID)!;
}
