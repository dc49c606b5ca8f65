/**
 * Reading processes from /proc: resident memory (RSS and PSS), CPU time, children, the pid that
 * listens on a TCP port. Linux only; every reader returns undefined/empty instead of throwing
 * for a process that went away.
 */
import fs from 'node:fs';

const CLK_TCK = 100; // getconf CLK_TCK on Linux x86-64

export interface ProcSample {
  pid: number;
  /** kB */
  rssKb: number;
  /** Proportional set size (shared pages split between their users), kB; summing PSS does not double-count. */
  pssKb: number;
  /** user+system CPU seconds so far */
  cpuSec: number;
}

function read(path: string): string | undefined {
  try {
    return fs.readFileSync(path, 'utf8');
  } catch {
    return undefined;
  }
}

export function sample(pid: number): ProcSample | undefined {
  const status = read(`/proc/${pid}/status`);
  const stat = read(`/proc/${pid}/stat`);
  if (!status || !stat) return undefined;
  const rssKb = Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0);
  const rollup = read(`/proc/${pid}/smaps_rollup`) ?? '';
  const pssKb = Number(/^Pss:\s+(\d+)/m.exec(rollup)?.[1] ?? rssKb);
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // fields[0] is state (field 3); utime is field 14, stime field 15
  const cpuSec = (Number(fields[11]) + Number(fields[12])) / CLK_TCK;
  return { pid, rssKb, pssKb, cpuSec };
}

function ppidOf(pid: number): number | undefined {
  const stat = read(`/proc/${pid}/stat`);
  if (!stat) return undefined;
  return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
}

function allPids(): number[] {
  return fs
    .readdirSync('/proc')
    .filter((d) => /^\d+$/.test(d))
    .map(Number);
}

/** pid and all its descendants. */
export function withDescendants(root: number): number[] {
  const children = new Map<number, number[]>();
  for (const pid of allPids()) {
    const ppid = ppidOf(pid);
    if (ppid === undefined) continue;
    children.set(ppid, [...(children.get(ppid) ?? []), pid]);
  }
  const out: number[] = [];
  const stack = [root];
  while (stack.length) {
    const p = stack.pop()!;
    out.push(p);
    stack.push(...(children.get(p) ?? []));
  }
  return out;
}

/** Processes whose command line contains `text` (e.g. a daemon's private config folder). */
export function pidsWithArgument(text: string): number[] {
  return allPids().filter((pid) => {
    try {
      return fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(text);
    } catch {
      return false;
    }
  });
}

/** The pid of the process listening on 127.0.0.1/0.0.0.0:port (via /proc/net/tcp and the fd links). */
export function pidListeningOn(port: number): number | undefined {
  const inodes = new Set<string>();
  for (const file of ['/proc/net/tcp', '/proc/net/tcp6']) {
    for (const line of (read(file) ?? '').split('\n').slice(1)) {
      const cols = line.trim().split(/\s+/);
      if (cols.length < 10) continue;
      const localPort = Number.parseInt(cols[1]!.split(':')[1] ?? '', 16);
      if (localPort === port && cols[3] === '0A') inodes.add(cols[9]!);
    }
  }
  if (inodes.size === 0) return undefined;
  for (const pid of allPids()) {
    let fds: string[];
    try {
      fds = fs.readdirSync(`/proc/${pid}/fd`);
    } catch {
      continue;
    }
    for (const fd of fds) {
      let link: string;
      try {
        link = fs.readlinkSync(`/proc/${pid}/fd/${fd}`);
      } catch {
        continue;
      }
      const m = /^socket:\[(\d+)\]$/.exec(link);
      if (m && inodes.has(m[1]!)) return pid;
    }
  }
  return undefined;
}

export function pidFromFile(file: string): number | undefined {
  const n = Number.parseInt((read(file) ?? '').trim().split('\n')[0] ?? '', 10);
  return Number.isInteger(n) && n > 0 && fs.existsSync(`/proc/${n}`) ? n : undefined;
}

/** A named group of processes, resolved anew at every sample (children come and go). */
export interface ProcGroup {
  name: string;
  pids: () => number[];
}

export interface GroupSample {
  name: string;
  processes: number;
  rssMb: number;
  pssMb: number;
  cpuSec: number;
}

export function sampleGroups(groups: ProcGroup[]): GroupSample[] {
  return groups.map((g) => {
    const samples = g.pids().map(sample).filter((s): s is ProcSample => s !== undefined);
    return {
      name: g.name,
      processes: samples.length,
      rssMb: Math.round(samples.reduce((s, x) => s + x.rssKb, 0) / 102.4) / 10,
      pssMb: Math.round(samples.reduce((s, x) => s + x.pssKb, 0) / 102.4) / 10,
      cpuSec: samples.reduce((s, x) => s + x.cpuSec, 0),
    };
  });
}

/**
 * Samples the groups every `intervalMs` until stopped: the peak RSS/PSS of each group and its CPU use
 * (CPU seconds spent between start and stop, divided by the wall time = cores used on average).
 */
export function startSampler(groups: ProcGroup[], intervalMs = 1000) {
  const t0 = performance.now();
  const first = sampleGroups(groups);
  const peak = new Map(first.map((g) => [g.name, { ...g }]));
  const timer = setInterval(() => {
    for (const g of sampleGroups(groups)) {
      const p = peak.get(g.name);
      if (!p) peak.set(g.name, { ...g });
      else {
        p.rssMb = Math.max(p.rssMb, g.rssMb);
        p.pssMb = Math.max(p.pssMb, g.pssMb);
        p.processes = Math.max(p.processes, g.processes);
      }
    }
  }, intervalMs);
  timer.unref();
  return {
    stop(): Array<GroupSample & { cpuCores: number }> {
      clearInterval(timer);
      const last = sampleGroups(groups);
      const wall = (performance.now() - t0) / 1000;
      return last.map((g) => {
        const p = peak.get(g.name) ?? g;
        const before = first.find((f) => f.name === g.name)?.cpuSec ?? 0;
        return {
          name: g.name,
          processes: Math.max(p.processes, g.processes),
          rssMb: Math.max(p.rssMb, g.rssMb),
          pssMb: Math.max(p.pssMb, g.pssMb),
          // a process that exits takes its CPU time with it: never report less than nothing
          cpuSec: Math.round(Math.max(0, g.cpuSec - before) * 100) / 100,
          cpuCores: wall > 0 ? Math.round((Math.max(0, g.cpuSec - before) / wall) * 100) / 100 : 0,
        };
      });
    },
  };
}

/** Busy CPU seconds of the whole machine so far (all cores; /proc/stat). */
export function machineBusySec(): number {
  const line = (read('/proc/stat') ?? '').split('\n')[0] ?? '';
  const v = line.trim().split(/\s+/).slice(1).map(Number);
  // user nice system idle iowait irq softirq steal
  const busy = (v[0] ?? 0) + (v[1] ?? 0) + (v[2] ?? 0) + (v[5] ?? 0) + (v[6] ?? 0) + (v[7] ?? 0);
  return busy / CLK_TCK;
}

export function loadAverage(): number {
  return Number((read('/proc/loadavg') ?? '0').split(' ')[0]);
}
