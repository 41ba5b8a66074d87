// Renders bench/results.svg: grouped bars of fan-out deliveries/s and p99 latency per system (and p99 at the moderate
// rate of issue 17), from the results.
import { MODERATE, type BenchResults } from './report.ts';

const WIDTH = 760;
const PANEL_HEIGHT = 230;
const LEFT = 60;
const BAR_COLORS = ['#2b6cb0', '#63b3ed', '#c05621', '#f6ad55', '#6b46c1'];

function escape(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;');
}

/** One panel: a bar per system for each group (scenario), with the value on top. */
function panel(title: string, unit: string, groups: Array<{ name: string; bars: Array<{ label: string; value: number }> }>, top: number): string[] {
  const values = groups.flatMap((group) => group.bars.map((bar) => bar.value)).filter(Number.isFinite);
  const max = Math.max(1, ...values) * 1.15;
  const plotHeight = PANEL_HEIGHT - 70;
  const groupWidth = (WIDTH - LEFT - 20) / Math.max(1, groups.length);
  const out = [`<text x="${LEFT}" y="${top + 16}" font-size="14" font-weight="bold">${escape(title)}</text>`,
    `<line x1="${LEFT}" y1="${top + 30 + plotHeight}" x2="${WIDTH - 20}" y2="${top + 30 + plotHeight}" stroke="#888"/>`];
  groups.forEach((group, g) => {
    const barWidth = Math.min(60, (groupWidth - 20) / Math.max(1, group.bars.length));
    group.bars.forEach((bar, b) => {
      const x = LEFT + g * groupWidth + 10 + b * barWidth;
      const height = Number.isFinite(bar.value) ? (bar.value / max) * plotHeight : 0;
      const y = top + 30 + plotHeight - height;
      out.push(`<rect x="${x.toFixed(1)}" y="${y.toFixed(1)}" width="${(barWidth - 4).toFixed(1)}" height="${height.toFixed(1)}" fill="${BAR_COLORS[b % BAR_COLORS.length]}"><title>${escape(bar.label)}: ${bar.value.toFixed(1)} ${unit}</title></rect>`,
        `<text x="${(x + barWidth / 2 - 2).toFixed(1)}" y="${(y - 3).toFixed(1)}" font-size="10" text-anchor="middle">${Number.isFinite(bar.value) ? Math.round(bar.value).toLocaleString('en') : '–'}</text>`);
    });
    out.push(`<text x="${(LEFT + g * groupWidth + groupWidth / 2).toFixed(1)}" y="${top + 48 + plotHeight}" font-size="12" text-anchor="middle">${escape(group.name)}</text>`);
  });
  out.push(`<text x="14" y="${top + 30 + plotHeight / 2}" font-size="11" transform="rotate(-90 14 ${top + 30 + plotHeight / 2})" text-anchor="middle">${escape(unit)}</text>`);
  return out;
}

export function renderChart(r: BenchResults): string {
  const labels = [...new Set([...r.fanOut, ...r.rates, ...r.latency, ...r.many].map((row) => row.label))];
  const legend = labels.map((label, i) => `<rect x="${LEFT + i * 140}" y="8" width="12" height="12" fill="${BAR_COLORS[i % BAR_COLORS.length]}"/>` +
    `<text x="${LEFT + i * 140 + 16}" y="18" font-size="12">${escape(label)}</text>`);
  const bars = (rows: BenchResults['fanOut'], pick: (row: BenchResults['fanOut'][number]) => number) =>
    labels.map((label) => ({ label, value: pick(rows.find((row) => row.label === label) ?? { median: { rate: NaN, p99: NaN } } as never) }));
  const groups = [
    { name: `fan-out (${r.sizes.fanOut.subscribers.toLocaleString('en')} subscribers)`, rows: r.fanOut },
    { name: `many streams (${r.sizes.many.subscribers.toLocaleString('en')}, one each)`, rows: r.many },
    { name: `latency (${r.sizes.latency.subscribers.toLocaleString('en')} subscribers, ${r.sizes.latency.rate}/s)`, rows: r.latency },
  ].filter((group) => group.rows.length > 0);
  // Its own panel: tens of ms, where scenario 3's p99s are seconds.
  const moderate = r.rates.filter((row) => row.scenario.subscribers === MODERATE.subscribers && row.scenario.rate === MODERATE.rate);
  const moderateGroups = moderate.length > 0 ? [{ name: `${MODERATE.subscribers.toLocaleString('en')} subscribers, ${MODERATE.rate} msg/s`, rows: moderate }] : [];
  const height = 30 + 3 * PANEL_HEIGHT;
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${WIDTH}" height="${height}" viewBox="0 0 ${WIDTH} ${height}" font-family="sans-serif">`,
    `<rect width="100%" height="100%" fill="#fff"/>`,
    ...legend,
    ...panel('deliveries/s (higher is better)', 'deliveries/s', groups.map((group) => ({ name: group.name, bars: bars(group.rows, (row) => row.median.rate) })), 30),
    ...panel('p99 push-to-receive latency (lower is better)', 'ms', groups.map((group) => ({ name: group.name, bars: bars(group.rows, (row) => row.median.p99) })), 30 + PANEL_HEIGHT),
    ...panel('p99 latency at a moderate rate (lower is better)', 'ms', moderateGroups.map((group) => ({ name: group.name, bars: bars(group.rows, (row) => row.median.p99) })), 30 + 2 * PANEL_HEIGHT),
    '</svg>',
    '',
  ].join('\n');
}
