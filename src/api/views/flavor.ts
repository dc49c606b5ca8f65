/** Nova's flavor representations (nova/api/openstack/compute/views/flavors.py), by microversion. */
import type { Flavor } from '../../domain/flavors.ts';
import { resourceLinks } from './links.ts';

export type FlavorBrief = { id: string; name: string; links: ReturnType<typeof resourceLinks>; description?: string | null };

function links(flavor: Flavor, base: string, projectId: string | null) {
  return resourceLinks(base, 'v2.1', `${projectId ? `${projectId}/` : ''}flavors/${flavor.id}`);
}

/** GET /flavors: id, name, links; description from 2.55. */
export function flavorBrief(flavor: Flavor, base: string, projectId: string | null, microversion: number): FlavorBrief {
  return { id: flavor.id, name: flavor.name, links: links(flavor, base, projectId), ...(microversion >= 55 ? { description: flavor.description } : {}) };
}

/**
 * GET /flavors/detail and /flavors/{id}: swap "" for none before 2.75 (0 from it), description from
 * 2.55, extra_specs from 2.61, OS-FLV-DISABLED:disabled and rxtx_factor gone from 2.102.
 */
export function flavorDetail(flavor: Flavor, base: string, projectId: string | null, microversion: number): Record<string, unknown> {
  const view: Record<string, unknown> = {
    id: flavor.id,
    name: flavor.name,
    ram: flavor.ram,
    disk: flavor.disk,
    swap: microversion >= 75 ? flavor.swap : flavor.swap || '',
    'OS-FLV-EXT-DATA:ephemeral': flavor.ephemeral,
    ...(microversion < 102 ? { 'OS-FLV-DISABLED:disabled': false } : {}),
    vcpus: flavor.vcpus,
    'os-flavor-access:is_public': true,
    ...(microversion < 102 ? { rxtx_factor: 1.0 } : {}),
    links: links(flavor, base, projectId),
  };
  if (microversion >= 55) view.description = flavor.description;
  if (microversion >= 61) view.extra_specs = {};
  return view;
}

/** The flavor embedded in a server from 2.47 (Nova's flavor view of an instance). */
export function embeddedFlavor(flavor: Flavor, microversion: number) {
  return {
    vcpus: flavor.vcpus,
    ram: flavor.ram,
    disk: flavor.disk,
    ephemeral: flavor.ephemeral,
    swap: microversion >= 75 ? flavor.swap : flavor.swap,
    original_name: flavor.name,
    extra_specs: {},
  };
}
