/**
 * Finding a volume's disk in a domain's XML. tether gives every volume disk `<serial>` = volume id
 * (as Nova does), so the serial is the key; the raw `<disk>` element is what libvirt wants back for
 * a detach.
 */
export interface DiskElement {
  xml: string;
  target: string | null;
  serial: string | null;
}

export function diskElements(domainXml: string): DiskElement[] {
  const devices = /<devices>([\s\S]*?)<\/devices>/.exec(domainXml)?.[1] ?? '';
  return [...devices.matchAll(/<disk\b[\s\S]*?<\/disk>/g)].map((m) => ({
    xml: m[0],
    target: /<target\b[^>]*\bdev=['"]([^'"]+)['"]/.exec(m[0])?.[1] ?? null,
    serial: /<serial>([^<]*)<\/serial>/.exec(m[0])?.[1] ?? null,
  }));
}

export function diskBySerial(domainXml: string, serial: string): DiskElement | null {
  return diskElements(domainXml).find((d) => d.serial === serial) ?? null;
}
