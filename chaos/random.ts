/**
 * A small seeded pseudo-random generator (mulberry32) and the helpers the chaos runner and the
 * fuzzer draw from. The same seed gives the same cases, timings and generated inputs, so a failure
 * is reproduced with `--seed S` (timing against real processes still varies a little).
 */
export class Random {
  private state: number;

  constructor(readonly seed: number) {
    this.state = seed >>> 0 || 0x9e3779b9;
  }

  /** A float in [0, 1). */
  next(): number {
    this.state = (this.state + 0x6d2b79f5) >>> 0;
    let t = this.state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }

  /** An integer in [min, max] (both inclusive). */
  int(min: number, max: number): number {
    return min + Math.floor(this.next() * (max - min + 1));
  }

  bool(p = 0.5): boolean {
    return this.next() < p;
  }

  pick<T>(items: readonly T[]): T {
    if (items.length === 0) throw new Error('pick from an empty list');
    return items[Math.floor(this.next() * items.length)]!;
  }

  /** `n` distinct items (all of them when n >= length), in random order. */
  sample<T>(items: readonly T[], n: number): T[] {
    return this.shuffle(items).slice(0, n);
  }

  shuffle<T>(items: readonly T[]): T[] {
    const out = [...items];
    for (let i = out.length - 1; i > 0; i--) {
      const j = Math.floor(this.next() * (i + 1));
      [out[i], out[j]] = [out[j]!, out[i]!];
    }
    return out;
  }

  /** The stream of one scenario run: the same for a given seed, name and run, whatever ran before. */
  static forCase(seed: number, name: string, run: number): Random {
    let h = (seed ^ 0x811c9dc5) >>> 0;
    for (const ch of `${name}#${run}`) h = Math.imul(h ^ ch.charCodeAt(0), 16777619) >>> 0;
    return new Random(h);
  }

  /** A child generator: independent stream, reproducible from this one. */
  fork(): Random {
    return new Random(Math.floor(this.next() * 2 ** 32));
  }

  /** A random (version 4 shaped) UUID from this stream. */
  uuid(): string {
    const hex = Array.from({ length: 32 }, () => this.int(0, 15).toString(16)).join('');
    return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-4${hex.slice(13, 16)}-${'89ab'[this.int(0, 3)]}${hex.slice(17, 20)}-${hex.slice(20, 32)}`;
  }
}
