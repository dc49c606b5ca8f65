/**
 * A real Linux guest for tests: the kernel and initramfs that scripts/test-deps/guest.sh builds once
 * (Debian's cloud kernel, busybox, scripts/guest/init.sh as /init), booted directly under QEMU (TCG)
 * by a stack whose compute agent has the guest's domain template, and driven through its serial
 * console (a unix socket): which disks it sees (by serial = volume id), and a pattern written to or
 * read from a disk, as a SHA-256 of the bytes.
 *
 *   const stack = await startTestStack({ domainTemplate: await guestDomainTemplate() });
 *   const guest = await Guest.boot(stack, 'g1');
 *   await guest.waitForDisk(volumeId);
 *   const written = await guest.write(volumeId, 'pattern-1');   // === patternChecksum('pattern-1')
 *   expect(await guest.read(volumeId)).toBe(written);
 */
import { createHash, randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import fs from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { projectRoot } from '../../src/config.ts';
import type { DomainTemplate } from '../../src/libvirt/domain-xml.ts';
import type { Instance } from '../../src/domain/types.ts';
import type { LibvirtConnection } from '../../src/libvirt/binding.ts';
import { TEST_VOLUME_ROOT, type TestStack } from './test-stack.ts';

/** What the build wrote next to the kernel and initramfs. */
interface GuestManifest {
  kernel: string;
  initrd: string;
  cmdline: string;
  kernelPackage: string;
  kernelVersion: string;
  busyboxVersion: string;
  sourceHash: string;
}

export interface GuestImage {
  /** The build's folder name, `<kernel release>-<source hash>`. */
  version: string;
  kernel: string;
  initrd: string;
  cmdline: string;
  manifest: GuestManifest;
}

const READY = 'TETHER-GUEST-READY';
const BUILD_COMMAND = 'bash scripts/test-deps/guest.sh';
/** The bytes write and read cover by default. */
export const DEFAULT_PATTERN_BYTES = 1 << 20;

/** Hash of the guest's sources, as scripts/test-deps/guest.sh computes it (same files, same order). */
export async function guestSourceHash(): Promise<string> {
  const hash = createHash('sha256');
  for (const file of ['scripts/test-deps/guest.sh', 'scripts/guest/init.sh']) hash.update(await fs.readFile(path.join(projectRoot, file)));
  return hash.digest('hex').slice(0, 12);
}

export function guestCacheDir(): string {
  return process.env.TETHER_GUEST_CACHE ?? path.join(os.homedir(), '.cache', 'tether', 'guest');
}

/**
 * The guest built for the current sources, copied where QEMU (libvirt-qemu) can read it (the build
 * cache is under a home folder it may not enter). Throws, saying how to build it, when it is missing:
 * a test that needs the guest must fail, never skip.
 */
export async function guestImage(): Promise<GuestImage> {
  const hash = await guestSourceHash();
  const cache = guestCacheDir();
  const entries = existsSync(cache) ? await fs.readdir(cache) : [];
  const version = entries.filter((e) => e.endsWith(`-${hash}`) && existsSync(path.join(cache, e, 'manifest.json'))).sort().pop();
  if (!version) {
    throw new Error(
      `The test guest is not built for the current scripts/guest/init.sh and scripts/test-deps/guest.sh (hash ${hash}; looked in ${cache}). ` +
        `Build it once with '${BUILD_COMMAND}' (Debian's cloud kernel and busybox-static via apt-get download; npm test's pretest runs it).`,
    );
  }
  const source = path.join(cache, version);
  const staged = path.join(TEST_VOLUME_ROOT, `guest-${version}`);
  if (!existsSync(path.join(staged, 'manifest.json'))) {
    // Copy into a folder of our own, then rename: test files running at once may stage together.
    const tmp = `${staged}.tmp-${process.pid}-${randomBytes(3).toString('hex')}`;
    await fs.mkdir(tmp, { recursive: true, mode: 0o755 });
    for (const f of await fs.readdir(source)) await fs.copyFile(path.join(source, f), path.join(tmp, f));
    await fs.chmod(tmp, 0o755);
    await fs.rename(tmp, staged).catch(async (err: NodeJS.ErrnoException) => {
      await fs.rm(tmp, { recursive: true, force: true });
      if (!existsSync(path.join(staged, 'manifest.json'))) throw err;
    });
  }
  const manifest = JSON.parse(await fs.readFile(path.join(staged, 'manifest.json'), 'utf8')) as GuestManifest;
  return { version, kernel: path.join(staged, manifest.kernel), initrd: path.join(staged, manifest.initrd), cmdline: manifest.cmdline, manifest };
}

/** The folder for the guests' console sockets: QEMU (libvirt-qemu) creates them, so it must be able to write there. */
export async function guestConsoleDir(): Promise<string> {
  const dir = path.join(TEST_VOLUME_ROOT, 'consoles');
  await fs.mkdir(dir, { recursive: true });
  await fs.chmod(dir, 0o777);
  return dir;
}

/** The compute agent's domain template that boots every new instance as the test guest. */
export async function guestDomainTemplate(options: { memoryMiB?: number } = {}): Promise<DomainTemplate> {
  const image = await guestImage();
  return {
    boot: { kernel: image.kernel, initrd: image.initrd, cmdline: image.cmdline },
    consoleDir: await guestConsoleDir(),
    ...(options.memoryMiB ? { memoryMiB: options.memoryMiB } : {}),
  };
}

/** The same template as the environment of a compute agent process (workers/compute-agent.ts reads TETHER_DOMAIN_*). */
export function domainTemplateEnv(template: DomainTemplate): Record<string, string> {
  return Object.fromEntries(
    Object.entries({
      TETHER_DOMAIN_KERNEL: template.boot?.kernel,
      TETHER_DOMAIN_INITRD: template.boot?.initrd,
      TETHER_DOMAIN_CMDLINE: template.boot?.cmdline,
      TETHER_DOMAIN_MEMORY_MIB: template.memoryMiB?.toString(),
      TETHER_DOMAIN_CONSOLE_DIR: template.consoleDir,
    }).filter((entry): entry is [string, string] => entry[1] !== undefined),
  );
}

/** SHA-256 of what `write(volumeId, pattern, bytes)` puts on the disk: `pattern\n` repeated, cut at `bytes`. */
export function patternChecksum(pattern: string, bytes = DEFAULT_PATTERN_BYTES): string {
  const unit = Buffer.from(`${pattern}\n`);
  const data = Buffer.alloc(bytes);
  for (let at = 0; at < bytes; at += unit.length) unit.copy(data, at, 0, Math.min(unit.length, bytes - at));
  return createHash('sha256').update(data).digest('hex');
}

/** A disk as the guest sees it. */
export interface GuestDisk {
  /** The guest's name for it: vda, sda, … (not libvirt's target name). */
  name: string;
  bus: 'virtio' | 'scsi';
  /** Size in bytes (/sys/block/X/size × 512). */
  bytes: number;
  /** As the guest reads it: the volume id, or its first 20 characters on virtio (QEMU's limit). */
  serial: string;
}

/** Whether a serial the guest reports names this volume (virtio keeps 20 characters of it). */
export function serialMatches(serial: string, volumeId: string): boolean {
  return serial === volumeId || (serial.length >= 20 && volumeId.startsWith(serial));
}

/** The serial console of one guest: a line protocol over QEMU's unix socket (see scripts/guest/init.sh). */
export class GuestConsole {
  private socket: net.Socket | undefined;
  private buffer = '';
  private readonly lines: string[] = [];
  private wake: (() => void) | undefined;
  /** The last lines that were no answer to a command (boot messages, panics): for error messages. */
  private readonly transcript: string[] = [];
  private sequence = 0;
  /** Commands run one at a time: each reads the answer lines the previous one left alone. */
  private queue: Promise<unknown> = Promise.resolve();

  constructor(
    readonly socketPath: string,
    private readonly label: string,
  ) {}

  get connected(): boolean {
    return this.socket !== undefined && !this.socket.destroyed;
  }

  /**
   * Connects (retrying while QEMU has not created the socket yet) and sends empty lines until the
   * guest answers with its ready marker: QEMU drops what the guest prints while no client is connected.
   */
  async connect(timeoutMs = 180_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    this.close();
    for (;;) {
      try {
        this.socket = await openSocket(this.socketPath);
        break;
      } catch (err) {
        if (Date.now() > deadline) throw new Error(`${this.label}: cannot connect to the guest's console ${this.socketPath}: ${String(err)}`);
        await sleep(100);
      }
    }
    const socket = this.socket;
    this.buffer = '';
    this.lines.length = 0;
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => {
      this.buffer += chunk;
      const parts = this.buffer.split('\n');
      this.buffer = parts.pop()!;
      for (const line of parts) this.lines.push(line.replace(/\r/g, ''));
      this.wake?.();
    });
    socket.on('close', () => this.wake?.());
    socket.on('error', () => undefined);
    for (;;) {
      socket.write('\n');
      const line = await this.nextLine(Math.min(deadline, Date.now() + 250), (l) => l === READY);
      if (line !== undefined) return;
      if (!this.connected || Date.now() > deadline) throw new Error(`${this.label}: the guest did not answer on its console within ${timeoutMs} ms${this.tail()}`);
    }
  }

  /** Runs one command (after those asked before it); its output lines, tag stripped. Throws when the guest reports a failure. */
  run(command: string, timeoutMs = 60_000): Promise<string[]> {
    const result = this.queue.then(() => this.runNow(command, timeoutMs));
    this.queue = result.catch(() => undefined);
    return result;
  }

  private async runNow(command: string, timeoutMs: number): Promise<string[]> {
    if (!this.connected) await this.connect();
    const tag = `c${++this.sequence}${randomBytes(3).toString('hex')}`;
    const deadline = Date.now() + timeoutMs;
    this.socket!.write(`${tag} ${command}\n`);
    const output: string[] = [];
    for (;;) {
      const line = await this.nextLine(deadline, (l) => l.startsWith(`${tag} `));
      if (line === undefined) {
        throw new Error(`${this.label}: no answer to '${command}' within ${timeoutMs} ms${this.connected ? '' : ' (the console closed: did the domain stop?)'}${this.tail()}`);
      }
      const rest = line.slice(tag.length + 1);
      const rc = /^rc=(\d+)$/.exec(rest);
      if (!rc) {
        output.push(rest);
        continue;
      }
      if (rc[1] !== '0') throw new Error(`${this.label}: '${command}' failed in the guest (rc ${rc[1]}): ${output.join(' | ')}`);
      return output;
    }
  }

  close(): void {
    this.socket?.destroy();
    this.socket = undefined;
  }

  /** The next line that `wanted` accepts (others go to the transcript), or undefined at the deadline or when the console closes. */
  private async nextLine(deadline: number, wanted: (line: string) => boolean): Promise<string | undefined> {
    for (;;) {
      while (this.lines.length > 0) {
        const line = this.lines.shift()!;
        if (wanted(line)) return line;
        if (line !== '' && line !== READY) this.transcript.push(line);
        if (this.transcript.length > 20) this.transcript.shift();
      }
      const left = deadline - Date.now();
      if (left <= 0 || !this.connected) return undefined;
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      this.wake = undefined;
    }
  }

  private tail(): string {
    return this.transcript.length > 0 ? `; last console lines: ${this.transcript.join(' | ')}` : '';
  }
}

function openSocket(socketPath: string): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(socketPath);
    socket.once('connect', () => {
      socket.off('error', reject);
      resolve(socket);
    });
    socket.once('error', reject);
  });
}

/** The console socket in a domain's XML (`<serial type='unix'><source mode='bind' path=…>`). */
export function consoleSocketOf(domainXml: string): string | undefined {
  return /<serial type=["']unix["']>[\s\S]*?<source [^>]*path=["']([^"']+)["']/.exec(domainXml)?.[1];
}

/** A server booted as the test guest, and what its guest sees. */
export class Guest {
  private constructor(
    readonly instance: Instance,
    readonly console: GuestConsole,
    /** From CreateServer's start (or the connect, for open) to the guest's ready marker. */
    readonly bootMs: number,
  ) {}

  /** Creates a server on the stack (whose agent has the guest template) and waits until its guest answers. */
  static async boot(stack: TestStack, name: string, options: { host?: string; timeoutMs?: number } = {}): Promise<Guest> {
    const started = Date.now();
    const { instance, handle } = await stack.service.createServer({ name, ...(options.host ? { host: options.host } : {}) });
    await handle.result();
    const guest = await Guest.open(await stack.service.resolveServer(instance.uuid), stack.libvirt, options.timeoutMs);
    return new Guest(guest.instance, guest.console, Date.now() - started);
  }

  /**
   * The guest of a server that runs already (booted by any tether, e.g. the chaos runner's
   * processes), through `libvirt`, the daemon of its host: finds its console in the domain's XML.
   */
  static async open(instance: Instance, libvirt: Pick<LibvirtConnection, 'getXml'>, timeoutMs?: number): Promise<Guest> {
    const started = Date.now();
    const socketPath = consoleSocketOf(await libvirt.getXml(instance.uuid));
    if (!socketPath) throw new Error(`Server ${instance.name} has no console socket: its host's domain template has no consoleDir (startTestStack({ domainTemplate: await guestDomainTemplate() }))`);
    const guestConsole = new GuestConsole(socketPath, `guest ${instance.name}`);
    await guestConsole.connect(timeoutMs);
    return new Guest(instance, guestConsole, Date.now() - started);
  }

  /**
   * After the domain was started again (unshelve, migrate): connects to its console anew and waits
   * for the guest to be ready; the time it took.
   */
  async reconnect(timeoutMs?: number): Promise<number> {
    const started = Date.now();
    await this.console.connect(timeoutMs);
    return Date.now() - started;
  }

  async disks(): Promise<GuestDisk[]> {
    return (await this.console.run('disks')).map((line) => {
      const [kind, name, bytes, serial] = line.split(' ');
      if (kind !== 'disk' || !name || !bytes) throw new Error(`guest ${this.instance.name}: unexpected disk line '${line}'`);
      return { name, bus: name.startsWith('vd') ? 'virtio' : 'scsi', bytes: Number(bytes), serial: serial ?? '' };
    });
  }

  /** The volume's disk as the guest sees it now, if it does. */
  async disk(volumeId: string): Promise<GuestDisk | undefined> {
    return (await this.disks()).find((d) => serialMatches(d.serial, volumeId));
  }

  /** Waits until the guest sees the volume's disk (hot-plug takes ~0.1–0.3 s under TCG). */
  async waitForDisk(volumeId: string, timeoutMs = 30_000): Promise<GuestDisk> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const disk = await this.disk(volumeId);
      if (disk) return disk;
      if (Date.now() > deadline) throw new Error(`guest ${this.instance.name}: no disk with serial ${volumeId} after ${timeoutMs} ms (sees: ${JSON.stringify(await this.disks())})`);
      await sleep(100);
    }
  }

  /** Waits until the guest no longer sees the volume's disk. */
  async waitForNoDisk(volumeId: string, timeoutMs = 30_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const disk = await this.disk(volumeId);
      if (!disk) return;
      if (Date.now() > deadline) throw new Error(`guest ${this.instance.name}: still sees ${disk.name} (serial ${volumeId}) after ${timeoutMs} ms`);
      await sleep(100);
    }
  }

  /** Waits until the guest sees the volume's disk with this size (an extend), rescanning SCSI disks meanwhile. */
  async waitForDiskSize(volumeId: string, bytes: number, timeoutMs = 30_000): Promise<GuestDisk> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const disk = await this.waitForDisk(volumeId, Math.max(0, deadline - Date.now()));
      if (disk.bytes === bytes) return disk;
      if (Date.now() > deadline) throw new Error(`guest ${this.instance.name}: ${disk.name} is ${disk.bytes} bytes, not ${bytes}, after ${timeoutMs} ms`);
      if (disk.bus === 'scsi') await this.console.run(`rescan ${volumeId}`);
      await sleep(200);
    }
  }

  /** Writes `pattern\n` repeated over the disk's first `bytes` (fsync'd); the SHA-256 the guest computed of it. */
  async write(volumeId: string, pattern: string, bytes = DEFAULT_PATTERN_BYTES): Promise<string> {
    if (!/^[A-Za-z0-9._-]+$/.test(pattern)) throw new Error(`pattern must be letters, digits, . _ or -, got ${JSON.stringify(pattern)}`);
    return checksumOf(await this.console.run(`write ${volumeId} ${bytes} ${pattern}`));
  }

  /** SHA-256 of the disk's first `bytes`, read past the guest's page cache. */
  async read(volumeId: string, bytes = DEFAULT_PATTERN_BYTES): Promise<string> {
    return checksumOf(await this.console.run(`read ${volumeId} ${bytes}`));
  }

  close(): void {
    this.console.close();
  }
}

function checksumOf(output: string[]): string {
  const line = output.find((l) => l.startsWith('sha256 '));
  if (!line) throw new Error(`guest answered without a checksum: ${output.join(' | ')}`);
  return line.slice('sha256 '.length);
}
