/**
 * What a compute host of its own costs on this machine (docs/production.md, "Compute hosts"):
 * a libvirt daemon in its own mount namespace (stack/libvirtd-isolated.ts) next to the system one.
 *
 *   node --import tsx bench/hypervisors.ts            measures (root; ~2 min), writes docs/hypervisors.json, prints the table
 *   node --import tsx bench/hypervisors.ts --report   prints the table from docs/hypervisors.json
 *
 * Measured: the daemon's start (to the first answer on its socket), with the system daemon's QEMU
 * capabilities cache copied and once without it (cold: libvirtd probes every installed emulator), and stop; the resident memory
 * of its libvirtd + virtlogd with one domain running, next to the system daemon's; a tiny domain's
 * start, and a qcow2 file's SCSI attach and detach (live + persistent), on each daemon; and that
 * nothing is left after stop (no process, no directory).
 */
import { randomUUID } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { LibvirtConnection } from '../src/libvirt/binding.ts';
import { buildDomainXml } from '../src/libvirt/domain-xml.ts';
import { projectRoot } from '../src/config.ts';
import { ensureLibvirtd } from '../stack/libvirtd.ts';
import { isAlive } from '../stack/pid.ts';
import { startIsolatedLibvirtd, type IsolatedLibvirtd } from '../stack/libvirtd-isolated.ts';
import { pidFromFile, pidsWithArgument, sample } from './procs.ts';
import { median, roundTo } from './stats.ts';

const RESULTS = path.join(projectRoot, 'docs', 'hypervisors.json');
const STARTS = 3;
const CYCLES = 20;
const IMAGE_DIR = '/var/lib/libvirt/images/tether-bench-hypervisors';

interface DaemonFigures {
  /** libvirtd + virtlogd resident memory, MB, with one tiny domain running */
  daemonsRssMb: number;
  domainStartMs: number;
  attachP50Ms: number;
  detachP50Ms: number;
}

interface Results {
  measuredAt: string;
  /** 1-minute load average when the run began: these machines are shared, and a busy one is slower */
  machine: { cpus: number; libvirt: string; loadAverage: number };
  isolated: DaemonFigures & { startMs: number[]; startP50Ms: number; coldStartMs: number; stopP50Ms: number; leftovers: string[] };
  system: DaemonFigures;
  cycles: number;
}

const ms = (t0: number) => performance.now() - t0;
const mb = (kb: number) => roundTo(kb / 1024, 1);

function daemonsRssKb(pids: number[]): number {
  return pids.reduce((sum, pid) => sum + (sample(pid)?.rssKb ?? 0), 0);
}

/** Starts a tiny domain on `uri`, then CYCLES SCSI attach/detach rounds of one qcow2 file. */
async function measureDaemon(uri: string, daemonPids: () => number[]): Promise<DaemonFigures> {
  const libvirt = await LibvirtConnection.open(uri);
  const uuid = randomUUID();
  const image = path.join(IMAGE_DIR, `${uuid}.qcow2`);
  execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', image, '64M']);
  try {
    await libvirt.defineDomain(buildDomainXml({ uuid, name: `tether-bench-${uuid.slice(0, 8)}` }));
    let t0 = performance.now();
    await libvirt.startDomain(uuid);
    const domainStartMs = ms(t0);
    const disk = `<disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='${image}'/><target dev='sdb' bus='scsi'/><serial>bench</serial></disk>`;
    const attach: number[] = [];
    const detach: number[] = [];
    for (let i = 0; i < CYCLES; i++) {
      t0 = performance.now();
      await libvirt.attachDevice(uuid, disk, { live: true, config: true });
      attach.push(ms(t0));
      t0 = performance.now();
      await libvirt.detachDevice(uuid, disk, { live: true, config: true });
      detach.push(ms(t0));
    }
    const daemonsRssMb = mb(daemonsRssKb(daemonPids()));
    return { daemonsRssMb, domainStartMs: roundTo(domainStartMs, 0), attachP50Ms: roundTo(median(attach), 1), detachP50Ms: roundTo(median(detach), 1) };
  } finally {
    await libvirt.destroyDomain(uuid).catch(() => undefined);
    await libvirt.undefineDomain(uuid).catch(() => undefined);
    await libvirt.close();
    fs.rmSync(image, { force: true });
  }
}

/** A domain left running for stop() to deal with: its QEMU's pid. */
async function runningDomain(d: IsolatedLibvirtd): Promise<number> {
  const libvirt = await LibvirtConnection.open(d.uri);
  try {
    const uuid = randomUUID();
    const name = `tether-bench-${uuid.slice(0, 8)}`;
    await libvirt.defineDomain(buildDomainXml({ uuid, name }));
    await libvirt.startDomain(uuid);
    return Number.parseInt(fs.readFileSync(d.qemuPidFile(name), 'utf8'), 10);
  } finally {
    await libvirt.close();
  }
}

/** What an isolated daemon left behind after stop(): live processes that name its directories, and the directories. */
function leftovers(d: IsolatedLibvirtd): string[] {
  const found: string[] = [];
  for (const pid of [d.libvirtdPid, d.virtlogdPid]) if (isAlive(pid)) found.push(`process ${pid}`);
  for (const pid of pidsWithArgument(d.stateDir).filter(isAlive)) found.push(`process ${pid} (names ${d.stateDir})`);
  for (const dir of [d.stateDir, d.runDir]) if (fs.existsSync(dir)) found.push(dir);
  return found;
}

async function measure(): Promise<Results> {
  const loadAverage = roundTo(os.loadavg()[0]!, 1);
  fs.mkdirSync(IMAGE_DIR, { recursive: true });
  const system = await ensureLibvirtd('qemu:///system');
  const base = fs.mkdtempSync(path.join(os.tmpdir(), 'tether-hv-bench-'));
  try {
    const starts: number[] = [];
    const stops: number[] = [];
    const found: string[] = [];
    let isolated: DaemonFigures | undefined;
    for (let i = 0; i < STARTS; i++) {
      const name = `bench-${process.pid}-${i}`;
      const t0 = performance.now();
      const d = await startIsolatedLibvirtd({ name, stateDir: path.join(base, name) });
      starts.push(ms(t0));
      if (i === 0) isolated = await measureDaemon(d.uri, () => [d.libvirtdPid, d.virtlogdPid]);
      const qemuPid = await runningDomain(d);
      const t1 = performance.now();
      await d.stop();
      stops.push(ms(t1));
      found.push(...leftovers(d));
      if (isAlive(qemuPid)) found.push(`QEMU ${qemuPid}`);
    }
    // Cold: no capabilities cache to start from.
    const coldName = `bench-${process.pid}-cold`;
    const t0 = performance.now();
    const cold = await startIsolatedLibvirtd({ name: coldName, stateDir: path.join(base, coldName), seedCapabilities: false });
    const coldStartMs = ms(t0);
    await cold.stop();
    found.push(...leftovers(cold));

    const systemFigures = await measureDaemon('qemu:///system', () =>
      [pidFromFile('/run/libvirtd.pid'), pidFromFile('/run/virtlogd.pid')].filter((p): p is number => p !== undefined),
    );
    return {
      measuredAt: new Date().toISOString(),
      machine: { cpus: os.cpus().length, loadAverage, libvirt: execFileSync('libvirtd', ['--version'], { encoding: 'utf8' }).trim() },
      isolated: {
        ...isolated!,
        startMs: starts.map((v) => roundTo(v, 0)),
        startP50Ms: roundTo(median(starts), 0),
        coldStartMs: roundTo(coldStartMs, 0),
        stopP50Ms: roundTo(median(stops), 0),
        leftovers: found,
      },
      system: systemFigures,
      cycles: CYCLES,
    };
  } finally {
    fs.rmSync(base, { recursive: true, force: true });
    fs.rmSync(IMAGE_DIR, { recursive: true, force: true });
    await system.stop();
  }
}

export function renderTable(r: Results): string {
  const row = (what: string, isolated: string, system: string) => `| ${what} | ${isolated} | ${system} |`;
  return [
    `| (${r.machine.libvirt}, ${r.machine.cpus} cores, load average ${r.machine.loadAverage}, ${r.measuredAt.slice(0, 10)}) | own daemon (mount namespace) | system daemon |`,
    '|---|---|---|',
    row('daemon start, to the first answer (p50 of 3), capabilities cache copied', `${r.isolated.startP50Ms} ms`, '—'),
    row('daemon start without a capabilities cache (cold, once)', `${r.isolated.coldStartMs} ms`, '—'),
    row('daemon stop, domains destroyed, files removed (p50 of 3)', `${r.isolated.stopP50Ms} ms`, '—'),
    row('libvirtd + virtlogd RSS, one tiny domain running', `${r.isolated.daemonsRssMb} MB`, `${r.system.daemonsRssMb} MB (whatever else it runs)`),
    row('tiny domain start', `${r.isolated.domainStartMs} ms`, `${r.system.domainStartMs} ms`),
    row(`qcow2 SCSI attach, live + persistent (p50 of ${r.cycles})`, `${r.isolated.attachP50Ms} ms`, `${r.system.attachP50Ms} ms`),
    row(`detach (p50 of ${r.cycles})`, `${r.isolated.detachP50Ms} ms`, `${r.system.detachP50Ms} ms`),
    row('left after stop (a domain was running)', r.isolated.leftovers.length === 0 ? 'nothing' : r.isolated.leftovers.join(', '), '—'),
  ].join('\n');
}

async function main(): Promise<void> {
  if (process.argv.includes('--report')) {
    process.stdout.write(`${renderTable(JSON.parse(fs.readFileSync(RESULTS, 'utf8')) as Results)}\n`);
    return;
  }
  const results = await measure();
  fs.writeFileSync(RESULTS, `${JSON.stringify(results, null, 2)}\n`);
  process.stdout.write(`${renderTable(results)}\n\n(written to ${path.relative(projectRoot, RESULTS)})\n`);
  if (results.isolated.leftovers.length > 0) process.exitCode = 1;
}

await main();
