/**
 * Spans around the compute agent's libvirt calls: `libvirt.attachDevice`, `libvirt.getXml`, … with
 * the instance (domain) uuid and the affect flags. The device and secret XML and the secret value
 * are never recorded.
 */
import type { Attributes } from '@opentelemetry/api';
import type { AffectFlags, LibvirtConnection } from '../libvirt/binding.ts';
import { ATTR, withCallSpans, type TracedCalls } from './spans.ts';

const domain = ([uuid]: unknown[]): Attributes => ({ [ATTR.instanceUuid]: String(uuid) });

const device = ([uuid, , flags]: unknown[]): Attributes => {
  const f = flags as AffectFlags;
  return { [ATTR.instanceUuid]: String(uuid), 'libvirt.affect.live': f.live, 'libvirt.affect.config': f.config };
};

const LIBVIRT_CALLS: TracedCalls = {
  defineDomain: () => ({}),
  startDomain: domain,
  destroyDomain: domain,
  shutdownDomain: domain,
  rebootDomain: domain,
  undefineDomain: domain,
  lookupDomain: domain,
  listDomains: () => ({}),
  getXml: ([uuid, options]) => ({ [ATTR.instanceUuid]: String(uuid), 'libvirt.xml.inactive': (options as { inactive?: boolean } | undefined)?.inactive === true }),
  attachDevice: device,
  detachDevice: device,
  defineSecret: () => ({}),
  undefineSecret: ([uuid]) => ({ 'libvirt.secret.uuid': String(uuid) }),
};

/** The connection with a span around each domain and secret call (the connection itself when tracing is off). */
export function tracedLibvirt(libvirt: LibvirtConnection): LibvirtConnection {
  return withCallSpans(libvirt, 'libvirt', LIBVIRT_CALLS);
}
