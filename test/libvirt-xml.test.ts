/** Pure tests of the disk and domain XML tether hands to libvirt. */
import { createHash } from 'node:crypto';
import { XMLParser } from 'fast-xml-parser';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { loadDomainTemplate } from '../src/config.ts';
import { buildDiskXml, DEFAULT_NFS_MOUNT_POINT_BASE, type DiskSpec } from '../src/libvirt/disk-xml.ts';
import { buildDomainXml, DEFAULT_KERNEL_BOOT_MEMORY_MIB, domainSpecFor, escapeXml, parseDomainDisks, type DomainTemplate } from '../src/libvirt/domain-xml.ts';

const VOLUME_ID = '5f3c1a8e-2b4d-4c6e-9f01-23456789abcd';
const SECRET_UUID = '0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d';
const LUKS_UUID = 'fedcba98-7654-4321-8fed-cba987654321';
const CHAP_PASSWORD = 'chap-Pa55word-never-in-xml';
const CEPHX_KEY = 'AQBj8w5kAAAAABAAwGMK/ceph+key==';

// connection_info as Cinder's LVM/iSCSI driver returns it (with CHAP)
const iscsiInfo = {
  driver_volume_type: 'iscsi',
  data: {
    target_discovered: false,
    target_portal: '192.0.2.10:3260',
    target_iqn: `iqn.2010-10.org.openstack:volume-${VOLUME_ID}`,
    target_lun: 1,
    volume_id: VOLUME_ID,
    auth_method: 'CHAP',
    auth_username: 'TbNnY7xrC5Jq',
    auth_password: CHAP_PASSWORD,
    encrypted: false,
    qos_specs: null,
    access_mode: 'rw',
  },
};

// connection_info as Cinder's RBD driver returns it (cephx enabled)
const rbdInfo = {
  driver_volume_type: 'rbd',
  data: {
    name: `volumes/volume-${VOLUME_ID}`,
    hosts: ['192.0.2.21', '192.0.2.22', '2001:db8::23'],
    ports: ['6789', '6789', '3300'],
    cluster_name: 'ceph',
    auth_enabled: true,
    auth_username: 'cinder',
    secret_type: 'ceph',
    secret_uuid: SECRET_UUID,
    keyring: `[client.cinder]\n\tkey = ${CEPHX_KEY}\n`,
    volume_id: VOLUME_ID,
    discard: true,
    qos_specs: null,
    access_mode: 'rw',
    encrypted: false,
  },
};

// connection_info as Cinder's NFS driver returns it
const nfsInfo = {
  driver_volume_type: 'nfs',
  data: {
    export: '192.0.2.30:/srv/cinder',
    name: `volume-${VOLUME_ID}`,
    options: null,
    format: 'raw',
    access_mode: 'rw',
    encrypted: false,
  },
};

function spec(overrides: Partial<DiskSpec> & Pick<DiskSpec, 'connectionInfo'>): DiskSpec {
  return { targetDev: 'sdb', bus: 'scsi', serial: VOLUME_ID, ...overrides };
}

const parser = new XMLParser({ ignoreAttributes: false, attributeNamePrefix: '@', parseTagValue: false });

/** Parses a `<disk>` element (and fails the test if it is not well-formed XML). */
function parseDisk(xml: string): Record<string, any> {
  const doc = parser.parse(xml, true) as { disk: Record<string, any> };
  expect(doc.disk).toBeDefined();
  return doc.disk;
}

/** The disk as parseDomainDisks sees it once inside a domain. */
function roundTrip(diskXml: string) {
  const disks = parseDomainDisks(`<domain type='qemu'><devices>${diskXml}</devices></domain>`);
  expect(disks).toHaveLength(1);
  return disks[0]!;
}

describe('buildDiskXml', () => {
  it('renders a file volume as a qcow2 file disk', () => {
    const xml = buildDiskXml(spec({
      connectionInfo: { driver_volume_type: 'file', data: { path: '/var/lib/tether/volumes/vol.qcow2', format: 'qcow2' } },
    }));
    const disk = parseDisk(xml);
    expect(disk['@type']).toBe('file');
    expect(disk['@device']).toBe('disk');
    expect(disk.driver).toEqual({ '@name': 'qemu', '@type': 'qcow2', '@cache': 'none' });
    expect(disk.source).toEqual({ '@file': '/var/lib/tether/volumes/vol.qcow2' });
    expect(disk.target).toEqual({ '@dev': 'sdb', '@bus': 'scsi' });
    expect(disk.serial).toBe(VOLUME_ID);
    expect(disk.readonly).toBeUndefined();
    expect(disk.shareable).toBeUndefined();
    expect(disk.encryption).toBeUndefined();
    expect(roundTrip(xml)).toEqual({
      target: 'sdb', bus: 'scsi', device: 'disk', type: 'file', serial: VOLUME_ID,
      sourceFile: '/var/lib/tether/volumes/vol.qcow2', shareable: false, readonly: false,
    });
  });

  it('defaults a file volume to raw and rejects unknown formats', () => {
    const xml = buildDiskXml(spec({ connectionInfo: { driver_volume_type: 'file', data: { path: '/v/raw.img' } } }));
    expect(parseDisk(xml).driver['@type']).toBe('raw');
    expect(() => buildDiskXml(spec({
      connectionInfo: { driver_volume_type: 'file', data: { path: '/v/x', format: 'vmdk' } },
    }))).toThrow(/format 'vmdk'/);
  });

  it('renders a local volume as a raw block disk', () => {
    const xml = buildDiskXml(spec({
      connectionInfo: { driver_volume_type: 'local', data: { device_path: '/dev/mapper/tether-vol' } },
      targetDev: 'vdb',
      bus: 'virtio',
    }));
    const disk = parseDisk(xml);
    expect(disk['@type']).toBe('block');
    expect(disk.driver['@type']).toBe('raw');
    expect(disk.source).toEqual({ '@dev': '/dev/mapper/tether-vol' });
    expect(disk.target).toEqual({ '@dev': 'vdb', '@bus': 'virtio' });
    expect(roundTrip(xml)).toMatchObject({ target: 'vdb', bus: 'virtio', type: 'block', sourceDev: '/dev/mapper/tether-vol' });
  });

  it('renders an iSCSI volume with CHAP as a network disk whose password stays in a libvirt secret', () => {
    const xml = buildDiskXml(spec({ connectionInfo: iscsiInfo, authSecretUuid: SECRET_UUID }));
    const disk = parseDisk(xml);
    expect(disk['@type']).toBe('network');
    expect(disk.driver).toEqual({ '@name': 'qemu', '@type': 'raw', '@cache': 'none' });
    expect(disk.source['@protocol']).toBe('iscsi');
    expect(disk.source['@name']).toBe(`iqn.2010-10.org.openstack:volume-${VOLUME_ID}/1`);
    expect(disk.source.host).toEqual({ '@name': '192.0.2.10', '@port': '3260' });
    expect(disk.auth['@username']).toBe('TbNnY7xrC5Jq');
    expect(disk.auth.secret).toEqual({ '@type': 'iscsi', '@uuid': SECRET_UUID });
    expect(xml).not.toContain(CHAP_PASSWORD);
    expect(roundTrip(xml)).toMatchObject({
      type: 'network', sourceProtocol: 'iscsi', sourceName: `iqn.2010-10.org.openstack:volume-${VOLUME_ID}/1`, serial: VOLUME_ID,
    });
  });

  it('refuses CHAP without a libvirt secret rather than falling back to the password', () => {
    expect(() => buildDiskXml(spec({ connectionInfo: iscsiInfo }))).toThrow(/secret/);
  });

  it('renders an iSCSI volume without auth and with an IPv6 portal', () => {
    const { auth_method: _m, auth_username: _u, auth_password: _p, ...data } = iscsiInfo.data;
    const xml = buildDiskXml(spec({
      connectionInfo: { driver_volume_type: 'iscsi', data: { ...data, target_portal: '[2001:db8::10]:3261', target_lun: 0 } },
    }));
    const disk = parseDisk(xml);
    expect(disk.source.host).toEqual({ '@name': '2001:db8::10', '@port': '3261' });
    expect(disk.source['@name']).toMatch(/\/0$/);
    expect(disk.auth).toBeUndefined();
  });

  it('renders an RBD volume with cephx: every monitor, the secret by uuid, never the key', () => {
    const xml = buildDiskXml(spec({ connectionInfo: rbdInfo, bus: 'virtio', targetDev: 'vdc' }));
    const disk = parseDisk(xml);
    expect(disk['@type']).toBe('network');
    expect(disk.driver).toEqual({ '@name': 'qemu', '@type': 'raw', '@cache': 'none', '@discard': 'unmap' });
    expect(disk.source['@protocol']).toBe('rbd');
    expect(disk.source['@name']).toBe(`volumes/volume-${VOLUME_ID}`);
    expect(disk.source.host).toEqual([
      { '@name': '192.0.2.21', '@port': '6789' },
      { '@name': '192.0.2.22', '@port': '6789' },
      { '@name': '2001:db8::23', '@port': '3300' },
    ]);
    expect(disk.auth['@username']).toBe('cinder');
    expect(disk.auth.secret).toEqual({ '@type': 'ceph', '@uuid': SECRET_UUID });
    expect(xml).not.toContain(CEPHX_KEY);
    expect(xml).not.toContain('keyring');
  });

  it('prefers an explicit auth secret over the one named in connection_info', () => {
    const other = '11111111-2222-4333-8444-555555555555';
    const disk = parseDisk(buildDiskXml(spec({ connectionInfo: rbdInfo, authSecretUuid: other })));
    expect(disk.auth.secret['@uuid']).toBe(other);
  });

  it('renders RBD without auth when cephx is disabled', () => {
    const disk = parseDisk(buildDiskXml(spec({
      connectionInfo: { driver_volume_type: 'rbd', data: { ...rbdInfo.data, auth_enabled: false } },
    })));
    expect(disk.auth).toBeUndefined();
  });

  it('renders an NFS volume as a file under <mount_point_base>/<md5 of the export>, like Nova', () => {
    const hash = createHash('md5').update('192.0.2.30:/srv/cinder').digest('hex');
    const disk = parseDisk(buildDiskXml(spec({ connectionInfo: nfsInfo })));
    expect(disk['@type']).toBe('file');
    expect(disk.driver['@type']).toBe('raw');
    expect(disk.source['@file']).toBe(`${DEFAULT_NFS_MOUNT_POINT_BASE}/${hash}/volume-${VOLUME_ID}`);

    const based = parseDisk(buildDiskXml(spec({
      connectionInfo: { driver_volume_type: 'nfs', data: { ...nfsInfo.data, mount_point_base: '/mnt/nfs', format: 'qcow2' } },
    })));
    expect(based.source['@file']).toBe(`/mnt/nfs/${hash}/volume-${VOLUME_ID}`);
    expect(based.driver['@type']).toBe('qcow2');

    const mounted = parseDisk(buildDiskXml(spec({
      connectionInfo: { driver_volume_type: 'nfs', data: { ...nfsInfo.data, device_path: '/already/mounted/vol' } },
    })));
    expect(mounted.source['@file']).toBe('/already/mounted/vol');
  });

  it('adds LUKS encryption by secret uuid', () => {
    const xml = buildDiskXml(spec({ connectionInfo: rbdInfo, encryptionSecretUuid: LUKS_UUID }));
    const disk = parseDisk(xml);
    expect(disk.encryption['@format']).toBe('luks');
    expect(disk.encryption.secret).toEqual({ '@type': 'passphrase', '@uuid': LUKS_UUID });
  });

  it('marks shareable disks (explicitly or for a multiattach volume)', () => {
    const file = { driver_volume_type: 'file', data: { path: '/v/a.img' } };
    expect(roundTrip(buildDiskXml(spec({ connectionInfo: file, shareable: true }))).shareable).toBe(true);
    expect(roundTrip(buildDiskXml(spec({ connectionInfo: { ...file, multiattach: true } }))).shareable).toBe(true);
    expect(roundTrip(buildDiskXml(spec({ connectionInfo: file }))).shareable).toBe(false);
  });

  it('marks readonly disks (explicitly, for access_mode ro, and for a cdrom)', () => {
    const file = { driver_volume_type: 'file', data: { path: '/v/a.img' } };
    expect(roundTrip(buildDiskXml(spec({ connectionInfo: file, readonly: true }))).readonly).toBe(true);
    const ro = { driver_volume_type: 'iscsi', data: { ...iscsiInfo.data, access_mode: 'ro' } };
    expect(roundTrip(buildDiskXml(spec({ connectionInfo: ro, authSecretUuid: SECRET_UUID }))).readonly).toBe(true);
    const cdrom = roundTrip(buildDiskXml(spec({ connectionInfo: file, deviceType: 'cdrom' })));
    expect(cdrom).toMatchObject({ device: 'cdrom', readonly: true });
  });

  it('escapes XML special characters in every value', () => {
    const xml = buildDiskXml(spec({
      connectionInfo: { driver_volume_type: 'file', data: { path: `/v/a'b"c<d>&e.img` } },
      serial: `vol<&>'"`,
    }));
    const disk = roundTrip(xml);
    expect(disk.sourceFile).toBe(`/v/a'b"c<d>&e.img`);
    expect(disk.serial).toBe(`vol<&>'"`);
    expect(xml).not.toContain(`a'b`);
  });

  it('names the type when driver_volume_type is unknown', () => {
    expect(() => buildDiskXml(spec({ connectionInfo: { driver_volume_type: 'fibre_channel', data: {} } })))
      .toThrow(/fibre_channel/);
  });

  it('rejects a target with /dev/ and incomplete connection_info', () => {
    expect(() => buildDiskXml(spec({ connectionInfo: { driver_volume_type: 'file', data: { path: '/v/a' } }, targetDev: '/dev/sdb' })))
      .toThrow(/targetDev/);
    expect(() => buildDiskXml(spec({ connectionInfo: { driver_volume_type: 'local', data: {} } }))).toThrow(/device_path/);
    expect(() => buildDiskXml(spec({ connectionInfo: { driver_volume_type: 'iscsi', data: { target_iqn: 'iqn.x' } } })))
      .toThrow(/target_portal/);
  });

  it('never puts a secret value from connection_info into the XML', () => {
    const secrets = [CHAP_PASSWORD, CEPHX_KEY];
    const cases: DiskSpec[] = [
      spec({ connectionInfo: iscsiInfo, authSecretUuid: SECRET_UUID, encryptionSecretUuid: LUKS_UUID }),
      spec({ connectionInfo: rbdInfo, encryptionSecretUuid: LUKS_UUID }),
      spec({ connectionInfo: { driver_volume_type: 'nfs', data: { ...nfsInfo.data, auth_password: CHAP_PASSWORD } } }),
    ];
    for (const c of cases) {
      const xml = buildDiskXml(c);
      for (const s of secrets) expect(xml).not.toContain(s);
    }
  });
});

describe('buildDomainXml', () => {
  it('defines a small TCG domain with ACPI, a virtio-scsi controller and no disks', () => {
    const xml = buildDomainXml({ uuid: '6f1f2a3b-0c4d-4e5f-8a6b-7c8d9e0f1a2b', name: 'tether-instance' });
    const doc = parser.parse(xml, true) as { domain: Record<string, any> };
    expect(doc.domain['@type']).toBe('qemu');
    expect(doc.domain.name).toBe('tether-instance');
    expect(doc.domain.uuid).toBe('6f1f2a3b-0c4d-4e5f-8a6b-7c8d9e0f1a2b');
    expect(doc.domain.memory).toEqual({ '#text': '64', '@unit': 'MiB' });
    expect(doc.domain.vcpu).toBe('1');
    expect(doc.domain.os.type).toEqual({ '#text': 'hvm', '@machine': 'pc' });
    expect(doc.domain.features).toHaveProperty('acpi');
    expect(doc.domain.on_crash).toBe('destroy');
    expect(doc.domain.devices.controller).toEqual({ '@type': 'scsi', '@index': '0', '@model': 'virtio-scsi' });
    expect(doc.domain.devices.memballoon).toEqual({ '@model': 'none' });
    expect(doc.domain.devices.graphics).toBeUndefined();
    expect(parseDomainDisks(xml)).toEqual([]);
  });

  it('takes memory and vCPUs, escapes the name and rejects nonsense sizes', () => {
    const xml = buildDomainXml({ uuid: 'u', name: `a<b>&'"`, memoryMiB: 128, vcpus: 2 });
    const doc = parser.parse(xml, true) as { domain: Record<string, any> };
    expect(doc.domain.name).toBe(`a<b>&'"`);
    expect(doc.domain.memory['#text']).toBe('128');
    expect(doc.domain.vcpu).toBe('2');
    expect(() => buildDomainXml({ uuid: 'u', name: 'n', memoryMiB: 0 })).toThrow(RangeError);
    expect(() => buildDomainXml({ uuid: 'u', name: 'n', vcpus: 1.5 })).toThrow(RangeError);
  });

  it('boots a kernel directly and puts the serial console on a unix socket when the host template says so', () => {
    const template: DomainTemplate = {
      boot: { kernel: '/srv/guest/vmlinuz', initrd: '/srv/guest/initrd.img', cmdline: 'console=ttyS0 quiet' },
      consoleDir: '/srv/consoles',
    };
    const spec = domainSpecFor(template, { uuid: '6f1f2a3b-0c4d-4e5f-8a6b-7c8d9e0f1a2b', name: 'tether-6f1f2a3b' });
    expect(spec).toMatchObject({ memoryMiB: DEFAULT_KERNEL_BOOT_MEMORY_MIB, serialSocket: '/srv/consoles/6f1f2a3b-0c4d-4e5f-8a6b-7c8d9e0f1a2b.sock' });
    const doc = parser.parse(buildDomainXml(spec), true) as { domain: Record<string, any> };
    expect(doc.domain.os).toMatchObject({ kernel: '/srv/guest/vmlinuz', initrd: '/srv/guest/initrd.img', cmdline: 'console=ttyS0 quiet' });
    expect(doc.domain.memory['#text']).toBe(String(DEFAULT_KERNEL_BOOT_MEMORY_MIB));
    expect(doc.domain.devices.serial).toEqual({
      '@type': 'unix',
      source: { '@mode': 'bind', '@path': '/srv/consoles/6f1f2a3b-0c4d-4e5f-8a6b-7c8d9e0f1a2b.sock' },
      target: { '@port': '0' },
    });
    // ACPI and the SCSI controller stay: hot-plug needs them either way
    expect(doc.domain.features).toHaveProperty('acpi');
    expect(doc.domain.devices.controller['@model']).toBe('virtio-scsi');
    expect(domainSpecFor({ ...template, memoryMiB: 96 }, { uuid: 'u', name: 'n' }).memoryMiB).toBe(96);
  });

  it('keeps the OS-less 64 MiB domain for an empty template', () => {
    const spec = domainSpecFor({}, { uuid: 'u', name: 'n' });
    expect(spec).toEqual({ uuid: 'u', name: 'n', memoryMiB: 64 });
    const doc = parser.parse(buildDomainXml(spec), true) as { domain: Record<string, any> };
    expect(doc.domain.os).toEqual({ type: { '#text': 'hvm', '@machine': 'pc' } });
    expect(doc.domain.devices.serial).toBeUndefined();
  });
});

describe('loadDomainTemplate (TETHER_DOMAIN_*)', () => {
  afterEach(() => vi.unstubAllEnvs());

  it('is empty (the OS-less domain) when nothing is set, and reads a kernel boot otherwise', () => {
    for (const name of ['KERNEL', 'INITRD', 'CMDLINE', 'CONSOLE_DIR', 'MEMORY_MIB']) vi.stubEnv(`TETHER_DOMAIN_${name}`, '');
    expect(loadDomainTemplate()).toEqual({});
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tether-template-'));
    fs.writeFileSync(path.join(dir, 'vmlinuz'), '');
    vi.stubEnv('TETHER_DOMAIN_KERNEL', path.join(dir, 'vmlinuz'));
    vi.stubEnv('TETHER_DOMAIN_CMDLINE', 'console=ttyS0');
    vi.stubEnv('TETHER_DOMAIN_CONSOLE_DIR', dir);
    vi.stubEnv('TETHER_DOMAIN_MEMORY_MIB', '96');
    expect(loadDomainTemplate()).toEqual({ boot: { kernel: path.join(dir, 'vmlinuz'), cmdline: 'console=ttyS0' }, consoleDir: dir, memoryMiB: 96 });
    fs.rmSync(dir, { recursive: true });
  });

  it('refuses what could not boot, saying which variable is wrong', () => {
    for (const name of ['KERNEL', 'INITRD', 'CMDLINE', 'CONSOLE_DIR', 'MEMORY_MIB']) vi.stubEnv(`TETHER_DOMAIN_${name}`, '');
    vi.stubEnv('TETHER_DOMAIN_INITRD', '/boot/initrd.img');
    expect(() => loadDomainTemplate()).toThrow(/TETHER_DOMAIN_INITRD and TETHER_DOMAIN_CMDLINE need TETHER_DOMAIN_KERNEL/);
    vi.stubEnv('TETHER_DOMAIN_INITRD', '');
    vi.stubEnv('TETHER_DOMAIN_KERNEL', 'vmlinuz');
    expect(() => loadDomainTemplate()).toThrow(/TETHER_DOMAIN_KERNEL must be an absolute path/);
    vi.stubEnv('TETHER_DOMAIN_KERNEL', '/nonexistent/vmlinuz');
    expect(() => loadDomainTemplate()).toThrow(/TETHER_DOMAIN_KERNEL: \/nonexistent\/vmlinuz does not exist/);
    vi.stubEnv('TETHER_DOMAIN_KERNEL', '');
    vi.stubEnv('TETHER_DOMAIN_MEMORY_MIB', '0');
    expect(() => loadDomainTemplate()).toThrow(/TETHER_DOMAIN_MEMORY_MIB must be a positive/);
  });
});

describe('escapeXml', () => {
  it('escapes the five XML special characters', () => {
    expect(escapeXml(`<a href="x">'&'</a>`)).toBe('&lt;a href=&quot;x&quot;&gt;&apos;&amp;&apos;&lt;/a&gt;');
  });
});

describe('parseDomainDisks', () => {
  // trimmed from `virsh dumpxml` of a running tether domain
  const liveXml = `<domain type='qemu' id='7'>
  <name>tether-test</name>
  <uuid>6f1f2a3b-0c4d-4e5f-8a6b-7c8d9e0f1a2b</uuid>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2' cache='none'/>
      <source file='/var/lib/libvirt/images/tether-test/a.qcow2' index='2'/>
      <backingStore/>
      <target dev='sdb' bus='scsi'/>
      <serial>00123</serial>
      <shareable/>
      <alias name='scsi0-0-0-1'/>
      <address type='drive' controller='0' bus='0' target='0' unit='1'/>
    </disk>
    <disk type='network' device='disk'>
      <driver name='qemu' type='raw' cache='none'/>
      <auth username='cinder'>
        <secret type='ceph' uuid='${SECRET_UUID}'/>
      </auth>
      <source protocol='rbd' name='volumes/volume-1'>
        <host name='192.0.2.21' port='6789'/>
        <host name='192.0.2.22' port='6789'/>
      </source>
      <target dev='vdb' bus='virtio'/>
      <readonly/>
      <serial>${VOLUME_ID}</serial>
    </disk>
    <disk type='block' device='lun'>
      <driver name='qemu' type='raw'/>
      <source dev='/dev/sdz'/>
      <target dev='sdc' bus='scsi'/>
    </disk>
    <controller type='scsi' index='0' model='virtio-scsi'/>
    <memballoon model='none'/>
  </devices>
</domain>`;

  it('reads every disk with its target, bus, serial and source', () => {
    expect(parseDomainDisks(liveXml)).toEqual([
      {
        target: 'sdb', bus: 'scsi', device: 'disk', type: 'file', serial: '00123',
        sourceFile: '/var/lib/libvirt/images/tether-test/a.qcow2', shareable: true, readonly: false,
      },
      {
        target: 'vdb', bus: 'virtio', device: 'disk', type: 'network', serial: VOLUME_ID,
        sourceProtocol: 'rbd', sourceName: 'volumes/volume-1', shareable: false, readonly: true,
      },
      { target: 'sdc', bus: 'scsi', device: 'lun', type: 'block', sourceDev: '/dev/sdz', shareable: false, readonly: false },
    ]);
  });

  it('handles a single disk and no disk at all', () => {
    const one = `<domain><devices><disk type='file' device='cdrom'><target dev='hdc' bus='ide'/><readonly/></disk></devices></domain>`;
    expect(parseDomainDisks(one)).toEqual([
      { target: 'hdc', bus: 'ide', device: 'cdrom', type: 'file', shareable: false, readonly: true },
    ]);
    expect(parseDomainDisks(`<domain><devices><memballoon model='none'/></devices></domain>`)).toEqual([]);
    expect(parseDomainDisks(`<domain><name>x</name></domain>`)).toEqual([]);
  });
});
