/**
 * A small Prometheus registry with the text exposition format (version 0.0.4): counters, gauges
 * (set directly or computed at scrape time) and histograms with fixed buckets. Enough for tether's
 * own metrics without a dependency (prom-client is not installed).
 */

export type Labels = Record<string, string | number>;

const NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL = /^[a-zA-Z_][a-zA-Z0-9_]*$/;

const escapeLabel = (v: string) => v.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/"/g, '\\"');
const escapeHelp = (v: string) => v.replace(/\\/g, '\\\\').replace(/\n/g, '\\n');

function formatValue(v: number): string {
  if (Number.isNaN(v)) return 'NaN';
  if (v === Infinity) return '+Inf';
  if (v === -Infinity) return '-Inf';
  return String(v);
}

export interface MetricOptions<L extends string> {
  name: string;
  help: string;
  labelNames?: readonly L[];
}

abstract class Metric<L extends string> {
  readonly name: string;
  readonly help: string;
  readonly labelNames: readonly L[];
  abstract readonly type: 'counter' | 'gauge' | 'histogram';

  constructor(o: MetricOptions<L>) {
    if (!NAME.test(o.name)) throw new Error(`invalid metric name ${o.name}`);
    for (const l of o.labelNames ?? []) if (!LABEL.test(l) || l === 'le') throw new Error(`invalid label name ${l} on ${o.name}`);
    this.name = o.name;
    this.help = o.help;
    this.labelNames = o.labelNames ?? [];
  }

  /** Label values in declaration order (missing ones are ''), as a map key. */
  protected key(labels: Partial<Record<L, string | number>> = {}): string {
    for (const k of Object.keys(labels)) if (!this.labelNames.includes(k as L)) throw new Error(`${this.name} has no label ${k}`);
    return JSON.stringify(this.labelNames.map((l) => String(labels[l] ?? '')));
  }

  protected labelText(key: string, extra?: [string, string]): string {
    const values = JSON.parse(key) as string[];
    const pairs = this.labelNames.map((l, i) => `${l}="${escapeLabel(values[i]!)}"`);
    if (extra) pairs.push(`${extra[0]}="${escapeLabel(extra[1])}"`);
    return pairs.length ? `{${pairs.join(',')}}` : '';
  }

  header(): string[] {
    return [`# HELP ${this.name} ${escapeHelp(this.help)}`, `# TYPE ${this.name} ${this.type}`];
  }

  /** Runs before rendering (gauges computed at scrape time). */
  async collect(): Promise<void> {}

  abstract lines(): string[];
}

export class Counter<L extends string = never> extends Metric<L> {
  readonly type = 'counter';
  private readonly values = new Map<string, number>();

  inc(labels?: Partial<Record<L, string | number>>, by = 1): void {
    if (!(by >= 0)) throw new Error(`${this.name}: a counter only goes up (got ${by})`);
    const k = this.key(labels);
    this.values.set(k, (this.values.get(k) ?? 0) + by);
  }

  get(labels?: Partial<Record<L, string | number>>): number {
    return this.values.get(this.key(labels)) ?? 0;
  }

  lines(): string[] {
    return [...this.values].map(([k, v]) => `${this.name}${this.labelText(k)} ${formatValue(v)}`);
  }
}

export interface GaugeOptions<L extends string> extends MetricOptions<L> {
  /** Computes the values at scrape time (errors are swallowed: the last values stay). */
  collect?: (gauge: Gauge<L>) => void | Promise<void>;
}

export class Gauge<L extends string = never> extends Metric<L> {
  readonly type = 'gauge';
  private readonly values = new Map<string, number>();
  private readonly collector: GaugeOptions<L>['collect'];

  constructor(o: GaugeOptions<L>) {
    super(o);
    this.collector = o.collect;
  }

  set(labels: Partial<Record<L, string | number>> | undefined, value: number): void {
    this.values.set(this.key(labels), value);
  }

  inc(labels?: Partial<Record<L, string | number>>, by = 1): void {
    const k = this.key(labels);
    this.values.set(k, (this.values.get(k) ?? 0) + by);
  }

  dec(labels?: Partial<Record<L, string | number>>, by = 1): void {
    this.inc(labels, -by);
  }

  get(labels?: Partial<Record<L, string | number>>): number {
    return this.values.get(this.key(labels)) ?? 0;
  }

  /** Forgets every series (a collector that recomputes all of them calls this first). */
  reset(): void {
    this.values.clear();
  }

  override async collect(): Promise<void> {
    try {
      await this.collector?.(this);
    } catch {
      // keep the last values: a scrape must not fail because one source is down
    }
  }

  lines(): string[] {
    return [...this.values].map(([k, v]) => `${this.name}${this.labelText(k)} ${formatValue(v)}`);
  }
}

/** Bucket bounds (seconds) fit for tether's steps: a few ms (database) to minutes (a stuck host). */
export const STEP_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300];

export interface HistogramOptions<L extends string> extends MetricOptions<L> {
  buckets?: readonly number[];
}

interface HistogramSeries {
  counts: number[];
  sum: number;
  count: number;
}

export class Histogram<L extends string = never> extends Metric<L> {
  readonly type = 'histogram';
  readonly buckets: readonly number[];
  private readonly series = new Map<string, HistogramSeries>();

  constructor(o: HistogramOptions<L>) {
    super(o);
    const b = [...(o.buckets ?? STEP_BUCKETS)].sort((x, y) => x - y);
    if (b.length === 0 || new Set(b).size !== b.length) throw new Error(`${o.name}: buckets must be distinct and not empty`);
    this.buckets = b;
  }

  observe(labels: Partial<Record<L, string | number>> | undefined, value: number): void {
    const k = this.key(labels);
    let s = this.series.get(k);
    if (!s) {
      s = { counts: this.buckets.map(() => 0), sum: 0, count: 0 };
      this.series.set(k, s);
    }
    for (let i = 0; i < this.buckets.length; i++) if (value <= this.buckets[i]!) s.counts[i]! += 1;
    s.sum += value;
    s.count += 1;
  }

  get(labels?: Partial<Record<L, string | number>>): { count: number; sum: number; buckets: Record<string, number> } {
    const s = this.series.get(this.key(labels));
    return {
      count: s?.count ?? 0,
      sum: s?.sum ?? 0,
      buckets: Object.fromEntries(this.buckets.map((b, i) => [String(b), s?.counts[i] ?? 0])),
    };
  }

  lines(): string[] {
    const out: string[] = [];
    for (const [k, s] of this.series) {
      this.buckets.forEach((b, i) => out.push(`${this.name}_bucket${this.labelText(k, ['le', formatValue(b)])} ${s.counts[i]}`));
      out.push(`${this.name}_bucket${this.labelText(k, ['le', '+Inf'])} ${s.count}`);
      out.push(`${this.name}_sum${this.labelText(k)} ${formatValue(s.sum)}`);
      out.push(`${this.name}_count${this.labelText(k)} ${s.count}`);
    }
    return out;
  }
}

export class Registry {
  static readonly contentType = 'text/plain; version=0.0.4; charset=utf-8';
  private readonly metrics = new Map<string, Metric<string>>();

  private add<M extends Metric<string>>(metric: M): M {
    const existing = this.metrics.get(metric.name);
    if (existing) {
      if (existing.type !== metric.type) throw new Error(`metric ${metric.name} is already registered as a ${existing.type}`);
      return existing as M;
    }
    this.metrics.set(metric.name, metric);
    return metric;
  }

  /** Registering a name twice returns the first metric (modules may be loaded by several entry points). */
  counter<L extends string = never>(o: MetricOptions<L>): Counter<L> {
    return this.add(new Counter<L>(o) as unknown as Metric<string>) as unknown as Counter<L>;
  }

  gauge<L extends string = never>(o: GaugeOptions<L>): Gauge<L> {
    return this.add(new Gauge<L>(o) as unknown as Metric<string>) as unknown as Gauge<L>;
  }

  histogram<L extends string = never>(o: HistogramOptions<L>): Histogram<L> {
    return this.add(new Histogram<L>(o) as unknown as Metric<string>) as unknown as Histogram<L>;
  }

  remove(name: string): void {
    this.metrics.delete(name);
  }

  /** The exposition text: every metric with its HELP and TYPE, collectors run first. */
  async metricsText(): Promise<string> {
    const all = [...this.metrics.values()];
    await Promise.all(all.map((m) => m.collect()));
    return `${all.flatMap((m) => [...m.header(), ...m.lines()]).join('\n')}\n`;
  }
}
