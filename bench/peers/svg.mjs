// The latency picture of `make bench-peers`, drawn by hand: for each mode
// (a column), a histogram of latencies on a log axis (top) and latency by
// percentile (bottom, the x axis stretched towards the tail: 50, 90, 99,
// 99.9 %).
import { quantile } from './lib.mjs';

const W = 1200;
const PANEL_W = 500;
const PANEL_H = 250;
const LEFT = 80;
const GAP_X = 80;
const TOP = 120;
const GAP_Y = 90;

const esc = (s) => String(s).replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
const f1 = (v) => (Number.isFinite(v) ? v.toFixed(1) : '0');

/** "850 µs", "1.2 ms". */
export function fmtUs(us) {
  if (us >= 1000) return `${+(us / 1000).toPrecision(3)} ms`;
  if (us >= 100) return `${Math.round(us)} µs`;
  return `${+us.toPrecision(3)} µs`;
}

/** 1-2-5 ticks between lo and hi (both > 0). */
function logTicks(lo, hi) {
  const out = [];
  for (let e = Math.floor(Math.log10(lo)); e <= Math.ceil(Math.log10(hi)); e++) {
    for (const m of [1, 2, 5]) {
      const v = m * 10 ** e;
      if (v >= lo * 0.999 && v <= hi * 1.001) out.push(v);
    }
  }
  return out;
}

function frame(x0, y0, title) {
  return [
    `<rect x="${x0}" y="${y0}" width="${PANEL_W}" height="${PANEL_H}" fill="#fff" stroke="#999"/>`,
    `<text x="${x0 + PANEL_W / 2}" y="${y0 - 10}" text-anchor="middle" font-size="14" font-weight="bold">${esc(title)}</text>`,
  ];
}

function histogram(x0, y0, title, series) {
  const parts = frame(x0, y0, title);
  const all = series.filter((s) => s.sorted.length);
  const lo = Math.max(1, Math.min(...all.map((s) => quantile(s.sorted, 0.001))) * 0.9);
  const hi = Math.max(...all.map((s) => quantile(s.sorted, 0.999))) * 1.1;
  const bins = 70;
  const llo = Math.log10(lo);
  const lhi = Math.log10(hi);
  const X = (v) => x0 + ((Math.log10(v) - llo) / (lhi - llo)) * PANEL_W;
  const shares = all.map((s) => {
    const counts = new Float64Array(bins);
    for (const v of s.sorted) {
      const b = Math.floor(((Math.log10(Math.min(Math.max(v, lo), hi * 0.99999)) - llo) / (lhi - llo)) * bins);
      counts[b]++;
    }
    return counts.map((c) => c / s.sorted.length);
  });
  const top = Math.max(...shares.map((c) => Math.max(...c))) * 1.08;
  const Y = (share) => y0 + PANEL_H - (share / top) * PANEL_H;
  for (const t of logTicks(lo, hi)) {
    parts.push(`<line x1="${f1(X(t))}" x2="${f1(X(t))}" y1="${y0}" y2="${y0 + PANEL_H}" stroke="#eee"/>`);
    parts.push(`<text x="${f1(X(t))}" y="${y0 + PANEL_H + 16}" text-anchor="middle" font-size="11">${esc(fmtUs(t))}</text>`);
  }
  for (let k = 0; k <= 4; k++) {
    const share = (top / 1.08) * (k / 4);
    parts.push(`<text x="${x0 - 6}" y="${f1(Y(share) + 4)}" text-anchor="end" font-size="11">${(share * 100).toFixed(1)} %</text>`);
  }
  parts.push(`<text x="${x0 + PANEL_W / 2}" y="${y0 + PANEL_H + 34}" text-anchor="middle" font-size="12">latency of one call (log scale)</text>`);
  parts.push(
    `<text x="${x0 - 58}" y="${y0 + PANEL_H / 2}" text-anchor="middle" font-size="12" transform="rotate(-90 ${x0 - 58} ${y0 + PANEL_H / 2})">share of calls per bin</text>`,
  );
  all.forEach((s, i) => {
    const pts = [];
    const c = shares[i];
    for (let b = 0; b < bins; b++) {
      const xa = x0 + (b / bins) * PANEL_W;
      const xb = x0 + ((b + 1) / bins) * PANEL_W;
      pts.push(`${f1(xa)},${f1(Y(c[b]))}`, `${f1(xb)},${f1(Y(c[b]))}`);
    }
    const path = `${f1(x0)},${f1(y0 + PANEL_H)} ${pts.join(' ')} ${f1(x0 + PANEL_W)},${f1(y0 + PANEL_H)}`;
    parts.push(`<polygon points="${path}" fill="${s.color}" fill-opacity="0.18" stroke="${s.color}" stroke-width="1.5"/>`);
    const p50 = quantile(s.sorted, 0.5);
    parts.push(`<line x1="${f1(X(p50))}" x2="${f1(X(p50))}" y1="${y0}" y2="${y0 + PANEL_H}" stroke="${s.color}" stroke-dasharray="4 3"/>`);
  });
  return parts;
}

function percentiles(x0, y0, title, series) {
  const parts = frame(x0, y0, title);
  const all = series.filter((s) => s.sorted.length);
  const nMax = Math.max(...all.map((s) => s.sorted.length));
  const xMax = Math.min(4, Math.log10(nMax)); // up to 99.99 %
  const lo = Math.max(1, Math.min(...all.map((s) => s.sorted[0])) * 0.9);
  const hi = Math.max(...all.map((s) => s.sorted[s.sorted.length - 1])) * 1.1;
  const llo = Math.log10(lo);
  const lhi = Math.log10(hi);
  const X = (x) => x0 + (x / xMax) * PANEL_W;
  const Y = (v) => y0 + PANEL_H - ((Math.log10(v) - llo) / (lhi - llo)) * PANEL_H;
  for (const [x, label] of [
    [0, '0 %'],
    [Math.log10(2), '50 %'],
    [1, '90 %'],
    [2, '99 %'],
    [3, '99.9 %'],
    [4, '99.99 %'],
  ]) {
    if (x > xMax + 1e-9) continue;
    parts.push(`<line x1="${f1(X(x))}" x2="${f1(X(x))}" y1="${y0}" y2="${y0 + PANEL_H}" stroke="#eee"/>`);
    parts.push(`<text x="${f1(X(x))}" y="${y0 + PANEL_H + 16}" text-anchor="middle" font-size="11">${label}</text>`);
  }
  for (const t of logTicks(lo, hi)) {
    parts.push(`<line x1="${x0}" x2="${x0 + PANEL_W}" y1="${f1(Y(t))}" y2="${f1(Y(t))}" stroke="#eee"/>`);
    parts.push(`<text x="${x0 - 6}" y="${f1(Y(t) + 4)}" text-anchor="end" font-size="11">${esc(fmtUs(t))}</text>`);
  }
  parts.push(`<text x="${x0 + PANEL_W / 2}" y="${y0 + PANEL_H + 34}" text-anchor="middle" font-size="12">percentile (calls at or faster than the latency)</text>`);
  parts.push(
    `<text x="${x0 - 62}" y="${y0 + PANEL_H / 2}" text-anchor="middle" font-size="12" transform="rotate(-90 ${x0 - 62} ${y0 + PANEL_H / 2})">latency (log scale)</text>`,
  );
  for (const s of all) {
    const pts = [];
    const steps = 400;
    const xs = Math.log10(s.sorted.length);
    for (let k = 0; k <= steps; k++) {
      const x = (k / steps) * Math.min(xMax, xs);
      const q = 1 - 10 ** -x;
      pts.push(`${f1(X(x))},${f1(Y(quantile(s.sorted, q)))}`);
    }
    parts.push(`<polyline points="${pts.join(' ')}" fill="none" stroke="${s.color}" stroke-width="2"/>`);
  }
  return parts;
}

/**
 * The whole picture. `columns`: [{title, series: [{name, color, sorted}]}]
 * (sorted: Float64Array of latencies in µs).
 */
export function latencySvg({ title, subtitle, columns }) {
  const H = TOP + 2 * PANEL_H + GAP_Y + 70;
  const parts = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" fill="#222">`,
    `<rect width="${W}" height="${H}" fill="#fafafa"/>`,
    `<text x="${W / 2}" y="28" text-anchor="middle" font-size="18" font-weight="bold">${esc(title)}</text>`,
    `<text x="${W / 2}" y="48" text-anchor="middle" font-size="12">${esc(subtitle)}</text>`,
  ];
  // Legend, from the first column's series.
  let lx = LEFT;
  for (const s of columns[0].series) {
    parts.push(`<rect x="${lx}" y="64" width="18" height="10" fill="${s.color}"/>`);
    parts.push(`<text x="${lx + 24}" y="74" font-size="12">${esc(s.name)}</text>`);
    lx += 40 + 7 * s.name.length;
  }
  parts.push(`<text x="${W - 40}" y="74" text-anchor="end" font-size="11">dashed lines: medians</text>`);
  columns.forEach((col, i) => {
    const x0 = LEFT + i * (PANEL_W + GAP_X);
    parts.push(...histogram(x0, TOP, `${col.title}: distribution`, col.series));
    parts.push(...percentiles(x0, TOP + PANEL_H + GAP_Y, `${col.title}: latency by percentile`, col.series));
  });
  parts.push('</svg>');
  return `${parts.join('\n')}\n`;
}
