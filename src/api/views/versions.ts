/** Version documents of the compute (v2.1) and block-storage (v3.0) APIs. */
import type { Static } from '@fastify/type-provider-typebox';
import type { VersionDocument } from '../schemas/common.ts';
import { COMPUTE_VERSIONS, VOLUME_VERSIONS, formatVersion } from '../microversion.ts';

export function computeVersion(base: string): Static<typeof VersionDocument> {
  return {
    id: 'v2.1',
    status: 'CURRENT',
    version: formatVersion(COMPUTE_VERSIONS, COMPUTE_VERSIONS.max),
    min_version: formatVersion(COMPUTE_VERSIONS, COMPUTE_VERSIONS.min),
    updated: '2013-07-23T11:33:21Z',
    links: [
      { rel: 'self', href: `${base}/v2.1/` },
      { rel: 'describedby', type: 'text/html', href: 'http://docs.openstack.org/' },
    ],
    'media-types': [{ base: 'application/json', type: 'application/vnd.openstack.compute+json;version=2.1' }],
  };
}

export function volumeVersion(base: string): Static<typeof VersionDocument> {
  return {
    id: 'v3.0',
    status: 'CURRENT',
    version: formatVersion(VOLUME_VERSIONS, VOLUME_VERSIONS.max),
    min_version: formatVersion(VOLUME_VERSIONS, VOLUME_VERSIONS.min),
    updated: '2023-02-20T00:00:00Z',
    links: [
      { rel: 'self', href: `${base}/v3/` },
      { rel: 'describedby', type: 'text/html', href: 'https://docs.openstack.org/' },
    ],
    'media-types': [{ base: 'application/json', type: 'application/vnd.openstack.volume+json;version=3' }],
  };
}
