/** Hand-written SVG charts (no chart library): line charts on log or linear axes, stacked bars. */

const PALETTE = ['#1f77b4', '#d62728', '#2ca02c', '#ff7f0e', '#9467bd', '#8c564b', '#e377c2', '#17becf', '#7f7f7f', '#bcbd22'];
export const color = (i: number) => PALETTE[i % PALETTE.length]!;

function esc(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

function fmt(v: number): string {
  if (v >= 1000) return `${Math.round(v / 100) / 10}k`.replace('.0k', 'k');
  if (v >= 10) return String(Math.round(v));
  return String(Math.round(v * 10) / 10);
}

interface Axis {
  min: number;
  max: number;
  log: boolean;
  ticks: number[];
  label: string;
}

function logTicks(min: number, max: number): number[] {
  const out: number[] = [];
  for (let e = Math.floor(Math.log10(min)); e <= Math.ceil(Math.log10(max)); e++) {
    for (const m of [1, 2, 5]) {
      const v = m * 10 ** e;
      if (v >= min * 0.999 && v <= max * 1.001) out.push(v);
    }
  }
  return out;
}

function linearTicks(min: number, max: number, count = 5): number[] {
  const span = max - min || 1;
  const step0 = span / count;
  const mag = 10 ** Math.floor(Math.log10(step0));
  const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= step0) ?? step0;
  const out: number[] = [];
  for (let v = Math.ceil(min / step) * step; v <= max + 1e-9; v += step) out.push(Math.round(v * 1e6) / 1e6);
  return out;
}

export function axis(values: number[], options: { log?: boolean; label: string; zero?: boolean; ticks?: number[]; min?: number; max?: number }): Axis {
  const finite = values.filter((v) => Number.isFinite(v) && (!options.log || v > 0));
  let min = Math.min(...finite);
  let max = Math.max(...finite);
  if (options.log) {
    min = 10 ** (Math.floor(Math.log10(min) * 2) / 2);
    max = 10 ** (Math.ceil(Math.log10(max) * 2) / 2);
  } else {
    if (options.zero ?? true) min = Math.min(0, min);
    max = max + (max - min) * 0.08;
  }
  if (options.min !== undefined) min = options.min;
  if (options.max !== undefined) max = options.max;
  const ticks = options.ticks ?? (options.log ? logTicks(min, max) : linearTicks(min, max));
  return { min, max, log: options.log ?? false, ticks, label: options.label };
}

export interface LineSeries {
  label: string;
  points: Array<{ x: number; y: number }>;
  dashed?: boolean;
  color?: string;
  markers?: boolean;
}

export function lineChart(o: { title: string; x: Axis; y: Axis; series: LineSeries[]; width?: number; height?: number; note?: string }): string {
  const W = o.width ?? 760;
  const H = o.height ?? 420;
  const m = { l: 64, r: 200, t: 40, b: 56 };
  const pw = W - m.l - m.r;
  const ph = H - m.t - m.b;
  const sx = (v: number) => m.l + (o.x.log ? (Math.log10(v) - Math.log10(o.x.min)) / (Math.log10(o.x.max) - Math.log10(o.x.min)) : (v - o.x.min) / (o.x.max - o.x.min)) * pw;
  const sy = (v: number) => m.t + ph - (o.y.log ? (Math.log10(v) - Math.log10(o.y.min)) / (Math.log10(o.y.max) - Math.log10(o.y.min)) : (v - o.y.min) / (o.y.max - o.y.min)) * ph;
  const parts: string[] = [];
  parts.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">`);
  parts.push(`<rect width="${W}" height="${H}" fill="white"/>`);
  parts.push(`<text x="${m.l}" y="22" font-size="15" font-weight="bold">${esc(o.title)}</text>`);
  for (const t of o.x.ticks) {
    const x = sx(t);
    parts.push(`<line x1="${x}" y1="${m.t}" x2="${x}" y2="${m.t + ph}" stroke="#e5e5e5"/>`);
    parts.push(`<text x="${x}" y="${m.t + ph + 16}" text-anchor="middle" fill="#444">${fmt(t)}</text>`);
  }
  for (const t of o.y.ticks) {
    const y = sy(t);
    parts.push(`<line x1="${m.l}" y1="${y}" x2="${m.l + pw}" y2="${y}" stroke="#e5e5e5"/>`);
    parts.push(`<text x="${m.l - 6}" y="${y + 4}" text-anchor="end" fill="#444">${fmt(t)}</text>`);
  }
  parts.push(`<rect x="${m.l}" y="${m.t}" width="${pw}" height="${ph}" fill="none" stroke="#888"/>`);
  parts.push(`<text x="${m.l + pw / 2}" y="${H - 14}" text-anchor="middle">${esc(o.x.label)}</text>`);
  parts.push(`<text transform="translate(16 ${m.t + ph / 2}) rotate(-90)" text-anchor="middle">${esc(o.y.label)}</text>`);
  o.series.forEach((s, i) => {
    const c = s.color ?? color(i);
    const pts = s.points.filter((p) => Number.isFinite(p.x) && Number.isFinite(p.y) && (!o.x.log || p.x > 0) && (!o.y.log || p.y > 0));
    if (pts.length === 0) return;
    const d = pts.map((p, k) => `${k ? 'L' : 'M'}${sx(p.x).toFixed(1)},${sy(p.y).toFixed(1)}`).join(' ');
    parts.push(`<path d="${d}" fill="none" stroke="${c}" stroke-width="2"${s.dashed ? ' stroke-dasharray="6 4"' : ''}/>`);
    if (s.markers) for (const p of pts) parts.push(`<circle cx="${sx(p.x).toFixed(1)}" cy="${sy(p.y).toFixed(1)}" r="3.5" fill="${c}"/>`);
    const ly = m.t + 8 + i * 18;
    parts.push(`<line x1="${W - m.r + 12}" y1="${ly}" x2="${W - m.r + 36}" y2="${ly}" stroke="${c}" stroke-width="2"${s.dashed ? ' stroke-dasharray="6 4"' : ''}/>`);
    parts.push(`<text x="${W - m.r + 42}" y="${ly + 4}">${esc(s.label)}</text>`);
  });
  if (o.note) parts.push(`<text x="${m.l}" y="${m.t - 6}" fill="#666" font-size="11">${esc(o.note)}</text>`);
  parts.push('</svg>');
  return parts.join('\n');
}

/** Cumulative distribution: x = latency, y = share of cycles at or below it (percent). */
export function cdfPoints(values: number[]): Array<{ x: number; y: number }> {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted.map((v, i) => ({ x: v, y: ((i + 1) / sorted.length) * 100 }));
}

export interface Bar {
  label: string;
  segments: Array<{ label: string; value: number }>;
}

/** Horizontal stacked bars (ms), one color per segment label, legend below. */
export function stackedBars(o: { title: string; unit: string; bars: Bar[]; width?: number }): string {
  const W = o.width ?? 760;
  const labels = [...new Set(o.bars.flatMap((b) => b.segments.map((s) => s.label)))];
  const m = { l: 230, r: 80, t: 40 };
  const barH = 24;
  const gap = 12;
  const plotH = o.bars.length * (barH + gap);
  const legendRows = Math.ceil(labels.length / 2);
  const H = m.t + plotH + 30 + legendRows * 18 + 10;
  const max = Math.max(...o.bars.map((b) => b.segments.reduce((s, x) => s + Math.max(0, x.value), 0)), 1);
  const pw = W - m.l - m.r;
  const sx = (v: number) => (v / max) * pw;
  const parts: string[] = [];
  parts.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">`);
  parts.push(`<rect width="${W}" height="${H}" fill="white"/>`);
  parts.push(`<text x="10" y="22" font-size="15" font-weight="bold">${esc(o.title)}</text>`);
  o.bars.forEach((b, i) => {
    const y = m.t + i * (barH + gap);
    parts.push(`<text x="${m.l - 8}" y="${y + barH / 2 + 4}" text-anchor="end">${esc(b.label)}</text>`);
    let x = m.l;
    for (const s of b.segments) {
      const w = sx(Math.max(0, s.value));
      const c = color(labels.indexOf(s.label));
      parts.push(`<rect x="${x.toFixed(1)}" y="${y}" width="${w.toFixed(1)}" height="${barH}" fill="${c}"><title>${esc(`${s.label}: ${fmt(s.value)} ${o.unit}`)}</title></rect>`);
      if (w > 30) parts.push(`<text x="${(x + w / 2).toFixed(1)}" y="${y + barH / 2 + 4}" text-anchor="middle" fill="white" font-size="11">${fmt(s.value)}</text>`);
      x += w;
    }
    const total = b.segments.reduce((s, x2) => s + x2.value, 0);
    parts.push(`<text x="${(x + 4).toFixed(1)}" y="${y + barH / 2 + 4}" fill="#333">${fmt(total)} ${esc(o.unit)}</text>`);
  });
  labels.forEach((l, i) => {
    const x = 10 + (i % 2) * (W / 2);
    const y = m.t + plotH + 24 + Math.floor(i / 2) * 18;
    parts.push(`<rect x="${x}" y="${y - 10}" width="12" height="12" fill="${color(i)}"/>`);
    parts.push(`<text x="${x + 18}" y="${y}">${esc(l)}</text>`);
  });
  parts.push('</svg>');
  return parts.join('\n');
}
