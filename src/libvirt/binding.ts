/**
 * A small typed, Promise-based libvirt binding over koffi (libvirt.so.0).
 *
 * - Every call that may talk to libvirtd runs with koffi's `.async`, on a koffi worker
 *   thread, so a slow hypervisor never blocks the event loop. Only calls that libvirt
 *   answers locally (getters on an object we hold, frees, the last error) run inline.
 * - libvirt keeps the last error per thread and per connection. A worker thread's error is
 *   out of reach of the event loop, so errors are read with virConnGetLastError(conn) right
 *   after the failed call. That is only reliable if no other call uses the same connection
 *   meanwhile, hence a small pool of connections, each used by one operation at a time.
 * - The default error handler (which prints every error to stderr) is replaced once per
 *   process with virSetErrorFunc.
 * - A connection that died (libvirtd restarted) is reopened on the next call; read-only
 *   calls are retried once on the new connection, writes throw so the caller decides.
 *
 * koffi's `.async` runs on the libuv thread pool (UV_THREADPOOL_SIZE, 4 by default), shared
 * with fs, dns.lookup, crypto and zlib: `poolSize` slow libvirt calls (a virtio detach takes
 * ~5 s) hold that many of its threads. Give the process a larger UV_THREADPOOL_SIZE than
 * `poolSize` (set in the environment before node starts).
 */
import koffi from 'koffi';
import type { LibraryHandle, TypeObject } from 'koffi';

export type DomainState =
  | 'nostate' | 'running' | 'blocked' | 'paused' | 'shutdown' | 'shutoff' | 'crashed' | 'pmsuspended';

export interface DomainInfo {
  uuid: string;
  name: string;
  state: DomainState;
  active: boolean;
  persistent: boolean;
}

/** Where a device change applies. Both false means VIR_DOMAIN_AFFECT_CURRENT. */
export interface AffectFlags {
  live: boolean;
  config: boolean;
}

/** libvirt's virDomainBlockInfo of one disk, in bytes. */
export interface BlockInfo {
  /** What the guest sees (the virtual size; for LUKS, the decrypted payload). */
  capacity: number;
  /** Host storage in use (for a sparse or qcow2 file, what is allocated). */
  allocation: number;
  /** Host storage the disk occupies (file size, or block device size). */
  physical: number;
}

// virErrorNumber values tether cares about.
export const VIR_ERR_INTERNAL_ERROR = 1;
export const VIR_ERR_NO_SUPPORT = 3;
export const VIR_ERR_NO_CONNECT = 5;
export const VIR_ERR_INVALID_ARG = 8;
export const VIR_ERR_OPERATION_FAILED = 9;
export const VIR_ERR_XML_ERROR = 27;
export const VIR_ERR_SYSTEM_ERROR = 38;
export const VIR_ERR_RPC = 39;
export const VIR_ERR_NO_DOMAIN = 42;
export const VIR_ERR_OPERATION_INVALID = 55;
export const VIR_ERR_NO_SECRET = 66;
export const VIR_ERR_CONFIG_UNSUPPORTED = 67;
export const VIR_ERR_OPERATION_TIMEOUT = 68;

/** An error reported by libvirt: `code` is a virErrorNumber, `domain` a virErrorDomain. */
export class LibvirtError extends Error {
  readonly code: number;
  readonly domain: number;

  constructor(code: number, domain: number, message: string) {
    super(message);
    this.name = 'LibvirtError';
    this.code = code;
    this.domain = domain;
  }
}

// ---------------------------------------------------------------------------------------
// FFI declarations. Types are anonymous on purpose: koffi's named types are process-global,
// and a module evaluated twice (test isolation) would fail with "duplicate type".

type Ptr = bigint; // koffi 3 represents pointers as BigInt; NULL comes back as null
type Fn = ReturnType<LibraryHandle['func']>;
type TypeSpec = string | TypeObject | ReturnType<typeof koffi.out>;

// virDomainState, indexed by its numeric value.
const STATES: readonly DomainState[] = [
  'nostate', 'running', 'blocked', 'paused', 'shutdown', 'shutoff', 'crashed', 'pmsuspended',
];

const XML_INACTIVE = 2; // VIR_DOMAIN_XML_INACTIVE
const AFFECT_LIVE = 1; // VIR_DOMAIN_AFFECT_LIVE
const AFFECT_CONFIG = 2; // VIR_DOMAIN_AFFECT_CONFIG
// VIR_DOMAIN_UNDEFINE_MANAGED_SAVE | SNAPSHOTS_METADATA | NVRAM | CHECKPOINTS_METADATA
const UNDEFINE_FLAGS = 1 | 2 | 4 | 16;
const UUID_BUFLEN = 37; // VIR_UUID_STRING_BUFLEN
const BLOCK_RESIZE_BYTES = 1; // VIR_DOMAIN_BLOCK_RESIZE_BYTES: the size is in bytes, not KiB
/** virDomainBlockCopyFlags: REUSE_EXT (the destination exists: the block storage made it), TRANSIENT_JOB (a persistent domain may copy; the job does not survive a restart). */
const BLOCK_COPY_REUSE_EXT = 2;
const BLOCK_COPY_TRANSIENT_JOB = 4;
/** virDomainBlockJobAbortFlags: PIVOT (switch the disk to the copy). */
const BLOCK_JOB_ABORT_PIVOT = 2;

/** A block job of a disk (virDomainGetBlockJobInfo): `cur` of `end` done; a copy is ready to pivot when they are equal. */
export interface BlockJobInfo {
  /** virDomainBlockJobType: 2 copy, 4 active commit, … */
  type: number;
  cur: number;
  end: number;
}

function loadApi() {
  const lib = koffi.load('libvirt.so.0');
  const P = 'void *';
  const virDomainBlockInfo = koffi.struct({ capacity: 'unsigned long long', allocation: 'unsigned long long', physical: 'unsigned long long' });
  const virDomainBlockJobInfo = koffi.struct({ type: 'int', bandwidth: 'unsigned long', cur: 'unsigned long long', end: 'unsigned long long' });
  const virError = koffi.struct({
    code: 'int',
    domain: 'int',
    message: 'const char *',
    level: 'int',
    conn: P,
    dom: P,
    str1: 'const char *',
    str2: 'const char *',
    str3: 'const char *',
    int1: 'int',
    int2: 'int',
    net: P,
  });
  // A `char *` the caller must free(): koffi converts it to a JS string, then frees it.
  const heapString = koffi.disposable('str');
  const f = (name: string, result: TypeSpec, args: TypeSpec[]) => lib.func(name, result, args);
  return {
    virError,
    errorFunc: koffi.pointer(koffi.proto('void', [P, koffi.pointer(virError)])),
    virSetErrorFunc: f('virSetErrorFunc', 'void', [P, P]),
    virConnGetLastError: f('virConnGetLastError', P, [P]),
    virConnResetLastError: f('virConnResetLastError', 'void', [P]),
    virConnectOpen: f('virConnectOpen', P, ['str']),
    virConnectClose: f('virConnectClose', 'int', [P]),
    virConnectIsAlive: f('virConnectIsAlive', 'int', [P]),
    virConnectGetLibVersion: f('virConnectGetLibVersion', 'int', [P, koffi.out(koffi.pointer('ulong'))]),
    virConnectListAllDomains: f('virConnectListAllDomains', 'int', [P, koffi.out(koffi.pointer(P)), 'uint']),
    virDomainDefineXML: f('virDomainDefineXML', P, [P, 'str']),
    virDomainLookupByUUIDString: f('virDomainLookupByUUIDString', P, [P, 'str']),
    virDomainFree: f('virDomainFree', 'int', [P]),
    virDomainGetUUIDString: f('virDomainGetUUIDString', 'int', [P, P]),
    virDomainGetName: f('virDomainGetName', 'const char *', [P]),
    virDomainGetState: f('virDomainGetState', 'int', [
      P, koffi.out(koffi.pointer('int')), koffi.out(koffi.pointer('int')), 'uint',
    ]),
    virDomainIsActive: f('virDomainIsActive', 'int', [P]),
    virDomainIsPersistent: f('virDomainIsPersistent', 'int', [P]),
    virDomainCreate: f('virDomainCreate', 'int', [P]),
    virDomainDestroy: f('virDomainDestroy', 'int', [P]),
    virDomainShutdown: f('virDomainShutdown', 'int', [P]),
    virDomainReboot: f('virDomainReboot', 'int', [P, 'uint']),
    virDomainUndefineFlags: f('virDomainUndefineFlags', 'int', [P, 'uint']),
    virDomainGetXMLDesc: f('virDomainGetXMLDesc', heapString, [P, 'uint']),
    virDomainAttachDeviceFlags: f('virDomainAttachDeviceFlags', 'int', [P, 'str', 'uint']),
    virDomainDetachDeviceFlags: f('virDomainDetachDeviceFlags', 'int', [P, 'str', 'uint']),
    virDomainBlockResize: f('virDomainBlockResize', 'int', [P, 'str', 'unsigned long long', 'uint']),
    virDomainBlockCopy: f('virDomainBlockCopy', 'int', [P, 'str', 'str', P, 'int', 'uint']),
    virDomainBlockJobAbort: f('virDomainBlockJobAbort', 'int', [P, 'str', 'uint']),
    virDomainGetBlockJobInfo: f('virDomainGetBlockJobInfo', 'int', [P, 'str', koffi.out(koffi.pointer(virDomainBlockJobInfo)), 'uint']),
    virDomainUpdateDeviceFlags: f('virDomainUpdateDeviceFlags', 'int', [P, 'str', 'uint']),
    virDomainGetBlockInfo: f('virDomainGetBlockInfo', 'int', [P, 'str', koffi.out(koffi.pointer(virDomainBlockInfo)), 'uint']),
    virSecretDefineXML: f('virSecretDefineXML', P, [P, 'str', 'uint']),
    virSecretLookupByUUIDString: f('virSecretLookupByUUIDString', P, [P, 'str']),
    virSecretSetValue: f('virSecretSetValue', 'int', [P, P, 'size_t', 'uint']),
    virSecretGetUUIDString: f('virSecretGetUUIDString', 'int', [P, P]),
    virSecretUndefine: f('virSecretUndefine', 'int', [P]),
    virSecretFree: f('virSecretFree', 'int', [P]),
    virConnectListAllSecrets: f('virConnectListAllSecrets', 'int', [P, koffi.out(koffi.pointer(P)), 'uint']),
    virSecretGetUsageType: f('virSecretGetUsageType', 'int', [P]),
    virSecretGetUsageID: f('virSecretGetUsageID', 'const char *', [P]),
  };
}

type Api = ReturnType<typeof loadApi>;

/** libvirt's virSecretUsageType. */
const SECRET_USAGE: Record<number, string> = { 0: 'none', 1: 'volume', 2: 'ceph', 3: 'iscsi', 4: 'tls', 5: 'vtpm' };

export interface SecretInfo {
  uuid: string;
  /** 'volume' (LUKS passphrases), 'ceph', 'iscsi', … */
  usageType: string;
  /** The usage's id: the volume path for 'volume', the name for 'ceph', the target for 'iscsi'. */
  usageId: string;
}
let api: Api | undefined;
/** The last error seen by our handler; only used for virConnectOpen, which has no connection. */
let lastHandledError: LibvirtError | undefined;

function takeHandledError(): LibvirtError | undefined {
  const e = lastHandledError;
  lastHandledError = undefined;
  return e;
}

/** libvirt-qemu (the QEMU monitor passthrough), loaded on first use: only the orphan-disk repair needs it. */
let qemuApi: { virDomainQemuMonitorCommand: Fn } | undefined;
function libvirtQemu(): { virDomainQemuMonitorCommand: Fn } {
  qemuApi ??= {
    virDomainQemuMonitorCommand: koffi
      .load('libvirt-qemu.so.0')
      .func('virDomainQemuMonitorCommand', 'int', ['void *', 'str', koffi.out(koffi.pointer(koffi.disposable('str'))), 'uint']),
  };
  return qemuApi;
}

/** Loads libvirt on first use (so importing this module works without libvirt installed). */
function libvirt(): Api {
  if (api) return api;
  const a = loadApi();
  // Runs in the thread that raised the error; koffi hops to the event loop and the libvirt
  // thread waits meanwhile, so `err` is valid while we read it. Registered once, never freed.
  const handler = koffi.register((_user: unknown, err: Ptr | null) => {
    if (!err) return;
    const e = koffi.decode(err, a.virError) as { code: number; domain: number; message: string | null };
    lastHandledError = new LibvirtError(e.code, e.domain, e.message ?? `libvirt error ${e.code}`);
  }, a.errorFunc);
  a.virSetErrorFunc(null, handler);
  api = a;
  return a;
}

/** Runs a libvirt function on a koffi worker thread. */
function callAsync<T>(fn: Fn, ...args: unknown[]): Promise<T> {
  return new Promise((resolve, reject) => {
    fn.async(...args, (err: unknown, res: T) => (err ? reject(err) : resolve(res)));
  });
}

/** The error libvirt recorded on `conn` for the call that just failed there. */
function connError(conn: Ptr, what: string): LibvirtError {
  const a = libvirt();
  const p = a.virConnGetLastError(conn) as Ptr | null;
  const e = p ? (koffi.decode(p, a.virError) as { code: number; domain: number; message: string | null }) : null;
  if (!e || e.code === 0) return new LibvirtError(VIR_ERR_INTERNAL_ERROR, 0, `${what} failed without a libvirt error`);
  return new LibvirtError(e.code, e.domain, e.message ?? `${what} failed (libvirt error ${e.code})`);
}

/** A connection used by one operation at a time; its calls turn failures into LibvirtErrors. */
class Session {
  constructor(readonly conn: Ptr) {}

  /** Calls a function that returns a pointer, NULL meaning failure. */
  async ptr(fn: Fn, ...args: unknown[]): Promise<Ptr> {
    libvirt().virConnResetLastError(this.conn);
    const res = await callAsync<Ptr | null>(fn, ...args);
    if (res === null || res === 0n) throw connError(this.conn, fn.info.name);
    return res;
  }

  /** Calls a function that returns an int, negative meaning failure. */
  async int(fn: Fn, ...args: unknown[]): Promise<number> {
    libvirt().virConnResetLastError(this.conn);
    const res = await callAsync<number>(fn, ...args);
    if (res < 0) throw connError(this.conn, fn.info.name);
    return res;
  }

  /** Calls a function that returns a string, NULL meaning failure. */
  async str(fn: Fn, ...args: unknown[]): Promise<string> {
    libvirt().virConnResetLastError(this.conn);
    const res = await callAsync<string | null>(fn, ...args);
    if (res === null) throw connError(this.conn, fn.info.name);
    return res;
  }

  /** Looks a domain up, runs `use` with it and frees it; null when the domain is unknown. */
  async withDomain<T>(uuid: string, use: (dom: Ptr) => Promise<T>): Promise<T | null> {
    let dom: Ptr;
    try {
      dom = await this.ptr(libvirt().virDomainLookupByUUIDString, this.conn, uuid);
    } catch (err) {
      if (err instanceof LibvirtError && err.code === VIR_ERR_NO_DOMAIN) return null;
      throw err;
    }
    try {
      return await use(dom);
    } finally {
      libvirt().virDomainFree(dom);
    }
  }

  /** Like withDomain, but an unknown domain is an error. */
  async onDomain<T>(uuid: string, use: (dom: Ptr) => Promise<T>): Promise<T> {
    let found = false;
    const res = await this.withDomain(uuid, (dom) => {
      found = true;
      return use(dom);
    });
    if (!found) throw new LibvirtError(VIR_ERR_NO_DOMAIN, 0, `Domain not found: no domain with matching uuid '${uuid}'`);
    return res as T;
  }

  async domainInfo(dom: Ptr): Promise<DomainInfo> {
    const a = libvirt();
    const uuid = Buffer.alloc(UUID_BUFLEN); // filled locally from the object, no RPC
    if (a.virDomainGetUUIDString(dom, uuid) < 0) throw connError(this.conn, 'virDomainGetUUIDString');
    const name = a.virDomainGetName(dom) as string | null; // owned by the object, not freed
    const state = [0];
    await this.int(a.virDomainGetState, dom, state, [0], 0);
    const active = await this.int(a.virDomainIsActive, dom);
    const persistent = await this.int(a.virDomainIsPersistent, dom);
    return {
      uuid: cString(uuid),
      name: name ?? '',
      state: STATES[state[0] ?? 0] ?? 'nostate',
      active: active === 1,
      persistent: persistent === 1,
    };
  }
}

function cString(buf: Buffer): string {
  const end = buf.indexOf(0);
  return buf.toString('utf8', 0, end < 0 ? buf.length : end);
}

function affect(flags: AffectFlags): number {
  return (flags.live ? AFFECT_LIVE : 0) | (flags.config ? AFFECT_CONFIG : 0);
}

interface Slot {
  conn: Ptr | null;
  /** Value of `LibvirtConnection.epoch` when `conn` was opened. */
  epoch: number;
}

export class LibvirtConnection {
  readonly uri: string;
  private readonly idle: Slot[] = [];
  private readonly waiters: Array<(slot: Slot) => void> = [];
  private readonly slots: Slot[];
  /** Bumped whenever a dead connection is seen: every slot opened earlier is suspect. */
  private epoch = 0;
  private closed = false;

  private constructor(uri: string, poolSize: number) {
    this.uri = uri;
    this.slots = Array.from({ length: poolSize }, () => ({ conn: null, epoch: 0 }));
    this.idle.push(...this.slots);
  }

  /** Opens `uri`. The first connection is opened now (so a bad URI fails here), the others on demand. */
  static async open(uri: string, options: { poolSize?: number } = {}): Promise<LibvirtConnection> {
    const poolSize = options.poolSize ?? 4;
    if (!Number.isInteger(poolSize) || poolSize < 1) throw new RangeError(`poolSize must be a positive integer, got ${poolSize}`);
    const c = new LibvirtConnection(uri, poolSize);
    await c.run(async () => undefined, false);
    return c;
  }

  async defineDomain(xml: string): Promise<DomainInfo> {
    return this.run(async (s) => {
      const dom = await s.ptr(libvirt().virDomainDefineXML, s.conn, xml);
      try {
        return await s.domainInfo(dom);
      } finally {
        libvirt().virDomainFree(dom);
      }
    }, false);
  }

  /** Starts a defined domain; no-op if it is already running. */
  async startDomain(uuid: string): Promise<void> {
    await this.run((s) => s.onDomain(uuid, async (dom) => {
      try {
        await s.int(libvirt().virDomainCreate, dom);
      } catch (err) {
        // "domain is already running" is VIR_ERR_OPERATION_INVALID; confirm before ignoring
        if (err instanceof LibvirtError && err.code === VIR_ERR_OPERATION_INVALID
            && (await s.int(libvirt().virDomainIsActive, dom)) === 1) return;
        throw err;
      }
    }), false);
  }

  /** Hard-stops a domain; no-op if it is not running or unknown. */
  async destroyDomain(uuid: string): Promise<void> {
    await this.run((s) => s.withDomain(uuid, async (dom) => {
      try {
        await s.int(libvirt().virDomainDestroy, dom);
      } catch (err) {
        // "domain is not running"
        if (err instanceof LibvirtError && err.code === VIR_ERR_OPERATION_INVALID
            && (await s.int(libvirt().virDomainIsActive, dom)) === 0) return;
        throw err;
      }
    }), false);
  }

  /**
   * Asks the guest to power off (ACPI power button, virDomainShutdown) and returns at once; a guest
   * without an OS or ACPI support never does. No-op if the domain is not running.
   */
  async shutdownDomain(uuid: string): Promise<void> {
    await this.run((s) => s.onDomain(uuid, async (dom) => {
      try {
        await s.int(libvirt().virDomainShutdown, dom);
      } catch (err) {
        if (err instanceof LibvirtError && err.code === VIR_ERR_OPERATION_INVALID
            && (await s.int(libvirt().virDomainIsActive, dom)) === 0) return;
        throw err;
      }
    }), false);
  }

  /** Asks the guest to reboot (virDomainReboot, the hypervisor's default method: ACPI); returns at once. */
  async rebootDomain(uuid: string): Promise<void> {
    await this.run((s) => s.onDomain(uuid, async (dom) => {
      await s.int(libvirt().virDomainReboot, dom, 0);
    }), false);
  }

  /** Removes a domain's persistent config (a running domain stays up, transient); no-op if unknown. */
  async undefineDomain(uuid: string): Promise<void> {
    await this.run((s) => s.withDomain(uuid, async (dom) => {
      try {
        await s.int(libvirt().virDomainUndefineFlags, dom, UNDEFINE_FLAGS);
      } catch (err) {
        // a transient domain (already undefined but still running): nothing to undefine
        if (err instanceof LibvirtError && err.code === VIR_ERR_OPERATION_INVALID
            && (await s.int(libvirt().virDomainIsPersistent, dom)) === 0) return;
        throw err;
      }
    }), false);
  }

  /** The domain with this UUID, or null when libvirt does not know it. */
  async lookupDomain(uuid: string): Promise<DomainInfo | null> {
    return this.run((s) => s.withDomain(uuid, (dom) => s.domainInfo(dom)), true);
  }

  async listDomains(): Promise<DomainInfo[]> {
    return this.run(async (s) => {
      const a = libvirt();
      const out: [Ptr | null] = [null];
      const n = await s.int(a.virConnectListAllDomains, s.conn, out, 0);
      const array = out[0];
      if (!array) return [];
      const doms = (n > 0 ? koffi.decode(array, 'void *', n) : []) as Ptr[];
      const infos: DomainInfo[] = [];
      try {
        for (const dom of doms) {
          try {
            infos.push(await s.domainInfo(dom));
          } catch (err) {
            // a transient domain that went away after the listing
            if (!(err instanceof LibvirtError && err.code === VIR_ERR_NO_DOMAIN)) throw err;
          }
        }
      } finally {
        for (const dom of doms) a.virDomainFree(dom);
        koffi.free(array); // the array itself is malloc'd by libvirt
      }
      return infos;
    }, true);
  }

  /** The live XML, or with `inactive` the persistent config. Never includes secrets. */
  async getXml(uuid: string, options: { inactive?: boolean } = {}): Promise<string> {
    const flags = options.inactive ? XML_INACTIVE : 0;
    return this.run((s) => s.onDomain(uuid, (dom) => s.str(libvirt().virDomainGetXMLDesc, dom, flags)), true);
  }

  async attachDevice(uuid: string, xml: string, flags: AffectFlags): Promise<void> {
    await this.run((s) => s.onDomain(uuid, (dom) =>
      s.int(libvirt().virDomainAttachDeviceFlags, dom, xml, affect(flags))), false);
  }

  /**
   * Asks for a device to be removed. For a live detach the call can return before the guest
   * has released the device (virtio/PCI needs the guest's cooperation), so callers confirm
   * removal by reading the live XML.
   */
  async detachDevice(uuid: string, xml: string, flags: AffectFlags): Promise<void> {
    await this.run((s) => s.onDomain(uuid, (dom) =>
      s.int(libvirt().virDomainDetachDeviceFlags, dom, xml, affect(flags))), false);
  }

  /**
   * Grows (or shrinks) a disk of the running domain to `bytes` (virDomainBlockResize with
   * VIR_DOMAIN_BLOCK_RESIZE_BYTES): QEMU resizes the image under the guest and tells it. `disk` is the
   * target (`sdb`) or the source path. libvirt rounds a qcow2 size up to 512 bytes.
   */
  async blockResize(uuid: string, disk: string, bytes: number): Promise<void> {
    if (!Number.isSafeInteger(bytes) || bytes <= 0) throw new RangeError(`blockResize: a positive whole number of bytes, got ${bytes}`);
    await this.run((s) => s.onDomain(uuid, (dom) =>
      s.int(libvirt().virDomainBlockResize, dom, disk, BigInt(bytes), BLOCK_RESIZE_BYTES)), false);
  }

  /**
   * Starts copying a disk of the running domain (`disk`: target or source path) to the destination
   * `<disk>` XML (virDomainBlockCopy with REUSE_EXT and TRANSIENT_JOB: the destination exists, the
   * domain may be persistent). The guest keeps running; QEMU mirrors its writes once the copy caught up.
   */
  async blockCopy(uuid: string, disk: string, destinationXml: string): Promise<void> {
    await this.run((s) => s.onDomain(uuid, (dom) =>
      s.int(libvirt().virDomainBlockCopy, dom, disk, destinationXml, null, 0, BLOCK_COPY_REUSE_EXT | BLOCK_COPY_TRANSIENT_JOB)), false);
  }

  /** The disk's block job, or null when it has none (virDomainGetBlockJobInfo). */
  async blockJobInfo(uuid: string, disk: string): Promise<BlockJobInfo | null> {
    return this.run((s) => s.onDomain(uuid, async (dom) => {
      const out: [Record<string, bigint | number>] = [{}];
      const found = await s.int(libvirt().virDomainGetBlockJobInfo, dom, disk, out, 0);
      if (found === 0) return null;
      const { type = 0, cur = 0, end = 0 } = out[0];
      return { type: Number(type), cur: Number(cur), end: Number(end) };
    }), true);
  }

  /**
   * Ends the disk's block job (virDomainBlockJobAbort, synchronous): `pivot` switches the disk to the
   * copy (the job must be ready), otherwise the copy is dropped and the disk stays as it was.
   */
  async blockJobAbort(uuid: string, disk: string, options: { pivot: boolean }): Promise<void> {
    await this.run((s) => s.onDomain(uuid, (dom) =>
      s.int(libvirt().virDomainBlockJobAbort, dom, disk, options.pivot ? BLOCK_JOB_ABORT_PIVOT : 0)), false);
  }

  /** Replaces a device of the domain (virDomainUpdateDeviceFlags): with `config`, a disk's whole persistent definition. */
  async updateDevice(uuid: string, xml: string, flags: AffectFlags): Promise<void> {
    await this.run((s) => s.onDomain(uuid, (dom) =>
      s.int(libvirt().virDomainUpdateDeviceFlags, dom, xml, affect(flags))), false);
  }

  /** Capacity, allocation and physical size of one disk (`sdb` or its source path), as libvirt reports them. */
  async blockInfo(uuid: string, disk: string): Promise<BlockInfo> {
    return this.run((s) => s.onDomain(uuid, async (dom) => {
      const out: [Record<string, bigint | number>] = [{}];
      await s.int(libvirt().virDomainGetBlockInfo, dom, disk, out, 0);
      const { capacity = 0, allocation = 0, physical = 0 } = out[0];
      return { capacity: Number(capacity), allocation: Number(allocation), physical: Number(physical) };
    }), true);
  }

  /**
   * Sends one QMP command to the domain's QEMU and returns its `return` value (libvirt-qemu's monitor
   * passthrough; libvirt marks the domain "custom-monitor" tainted). Only for what libvirt's own API
   * cannot see: devices QEMU holds that libvirt lost track of (src/host/qemu-orphan-disks.ts).
   */
  async qemuMonitorCommand(uuid: string, command: { execute: string; arguments?: Record<string, unknown> }): Promise<unknown> {
    return this.run((s) => s.onDomain(uuid, async (dom) => {
      const out: [string | null] = [null];
      await s.int(libvirtQemu().virDomainQemuMonitorCommand, dom, JSON.stringify(command), out, 0);
      const reply = JSON.parse(out[0] ?? '{}') as { return?: unknown; error?: { class?: string; desc?: string } };
      if (reply.error) throw new LibvirtError(1, 10, `QEMU ${command.execute}: ${reply.error.desc ?? reply.error.class ?? 'error'}`);
      return reply.return;
    }), false);
  }

  /** Defines a secret and stores its value; returns the secret's UUID. */
  async defineSecret(xml: string, value: Buffer): Promise<string> {
    return this.run(async (s) => {
      const a = libvirt();
      const secret = await s.ptr(a.virSecretDefineXML, s.conn, xml, 0);
      try {
        const uuid = Buffer.alloc(UUID_BUFLEN);
        if (a.virSecretGetUUIDString(secret, uuid) < 0) throw connError(s.conn, 'virSecretGetUUIDString');
        try {
          await s.int(a.virSecretSetValue, secret, value, value.length, 0);
        } catch (err) {
          // do not leave a secret without its value behind
          await s.int(a.virSecretUndefine, secret).catch(() => undefined);
          throw err;
        }
        return cString(uuid);
      } finally {
        a.virSecretFree(secret);
      }
    }, false);
  }

  /** The host's secrets: UUID, usage type (libvirt's virSecretUsageType: 1 volume, 2 ceph, 3 iscsi, …) and usage id. Never values. */
  async listSecrets(): Promise<SecretInfo[]> {
    return this.run(async (s) => {
      const a = libvirt();
      const out: [Ptr | null] = [null];
      const n = await s.int(a.virConnectListAllSecrets, s.conn, out, 0);
      const array = out[0];
      if (!array) return [];
      const secrets = (n > 0 ? koffi.decode(array, 'void *', n) : []) as Ptr[];
      const infos: SecretInfo[] = [];
      try {
        for (const secret of secrets) {
          const uuid = Buffer.alloc(UUID_BUFLEN);
          if (a.virSecretGetUUIDString(secret, uuid) < 0) continue;
          const usageType = a.virSecretGetUsageType(secret) as number;
          const usageId = a.virSecretGetUsageID(secret) as string | null;
          infos.push({ uuid: cString(uuid), usageType: SECRET_USAGE[usageType] ?? String(usageType), usageId: usageId ?? '' });
        }
      } finally {
        for (const secret of secrets) a.virSecretFree(secret);
        koffi.free(array);
      }
      return infos;
    }, true);
  }

  /** Removes a secret; no-op if unknown. */
  async undefineSecret(uuid: string): Promise<void> {
    await this.run(async (s) => {
      const a = libvirt();
      let secret: Ptr;
      try {
        secret = await s.ptr(a.virSecretLookupByUUIDString, s.conn, uuid);
      } catch (err) {
        if (err instanceof LibvirtError && err.code === VIR_ERR_NO_SECRET) return;
        throw err;
      }
      try {
        await s.int(a.virSecretUndefine, secret);
      } finally {
        a.virSecretFree(secret);
      }
    }, false);
  }

  /** True when libvirtd answers a request (reconnecting first if needed); never throws. */
  async isAlive(): Promise<boolean> {
    if (this.closed) return false;
    try {
      await this.run((s) => s.int(libvirt().virConnectGetLibVersion, s.conn, [0]), true);
      return true;
    } catch {
      return false;
    }
  }

  /** Waits for the calls in flight, then closes every connection. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const slots = await Promise.all(this.slots.map(() => this.acquire(true)));
    await Promise.all(slots.map((slot) => this.drop(slot)));
  }

  // -------------------------------------------------------------------------------------

  /**
   * Runs `op` on a connection no other operation is using. If the connection turns out to
   * be dead it is dropped (the next call reopens it) and, when `retry` (read-only calls),
   * `op` runs once more on a fresh connection.
   */
  private async run<T>(op: (s: Session) => Promise<T>, retry: boolean): Promise<T> {
    const slot = await this.acquire(false);
    try {
      try {
        return await op(new Session(await this.ensureOpen(slot)));
      } catch (err) {
        if (!(err instanceof LibvirtError) || !this.diedAfter(slot)) throw err;
        await this.drop(slot);
        if (!retry) throw err;
        return await op(new Session(await this.ensureOpen(slot)));
      }
    } finally {
      this.release(slot);
    }
  }

  /** True if the slot's connection is dead (a failed RPC closes libvirt's client socket). */
  private diedAfter(slot: Slot): boolean {
    if (slot.conn === null) return false;
    if (libvirt().virConnectIsAlive(slot.conn) === 1) return false;
    this.epoch++;
    return true;
  }

  private async ensureOpen(slot: Slot): Promise<Ptr> {
    const a = libvirt();
    if (slot.conn !== null && (slot.epoch < this.epoch || a.virConnectIsAlive(slot.conn) !== 1)) {
      await this.drop(slot);
    }
    if (slot.conn === null) {
      takeHandledError();
      const conn = await callAsync<Ptr | null>(a.virConnectOpen, this.uri);
      if (!conn) {
        // no connection to read the error from: use what our error handler saw
        throw takeHandledError() ?? new LibvirtError(VIR_ERR_NO_CONNECT, 0, `cannot connect to ${this.uri}`);
      }
      slot.conn = conn;
      slot.epoch = this.epoch;
    }
    return slot.conn;
  }

  /** Closes a slot's connection, ignoring errors (it may already be dead). */
  private async drop(slot: Slot): Promise<void> {
    const conn = slot.conn;
    slot.conn = null;
    if (conn !== null) await callAsync(libvirt().virConnectClose, conn).catch(() => undefined);
  }

  private acquire(closing: boolean): Promise<Slot> {
    if (this.closed && !closing) return Promise.reject(new Error(`libvirt connection to ${this.uri} is closed`));
    const slot = this.idle.pop();
    if (slot) return Promise.resolve(slot);
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  private release(slot: Slot): void {
    const next = this.waiters.shift();
    if (next) next(slot);
    else this.idle.push(slot);
  }
}
