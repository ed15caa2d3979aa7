// Charts drawn with the vendored uPlot (loaded as the global `uPlot` before this module runs).
import * as format from "./format.js";

const charts = new Map();

const css = (name) => getComputedStyle(document.documentElement).getPropertyValue(name).trim();
export const seriesColor = (i, other) => css(other ? "--series-other" : `--series-${(i % 5) + 1}`);

function height(container) {
  return window.matchMedia("(max-width: 640px)").matches ? 260 : 320;
}

function place(container, options, data) {
  charts.get(container)?.destroy();
  container.replaceChildren();
  const chart = new window.uPlot({ ...options, width: Math.max(container.clientWidth, 280), height: height(container) }, data, container);
  charts.set(container, chart);
  return chart;
}

window.addEventListener("resize", () => {
  for (const [container, chart] of charts) {
    chart.setSize({ width: Math.max(container.clientWidth, 280), height: height(container) });
  }
});

const axis = (stroke, extra = {}) => ({
  stroke,
  grid: { stroke: css("--line"), width: 1 },
  ticks: { stroke: css("--line"), width: 1 },
  ...extra,
});

/** `values` at `times` re-laid onto `onto` (null where a time has no value). */
function relaid(times, values, onto) {
  const at = new Map(times.map((t, i) => [t, values[i]]));
  return onto.map((t) => at.get(t) ?? null);
}

/**
 * Emissions per bucket stacked by workload, grid intensity on the right axis, and a marker where a
 * bucket rests on anything but measured actuals; with a `forecast` ({times, values, lower, upper})
 * a dashed line continues the total, inside its interval band.
 * `times` are bucket starts (seconds), `stacks` [{name, values, other}], `intensity` and
 * `flagged` (the intensity value, or null) one value per bucket.
 */
export function overTime(container, { times, stacks, intensity, flagged, forecast = null }) {
  const text = css("--text");
  const cumulative = [];
  let running = times.map(() => 0);
  for (const stack of stacks) {
    running = running.map((sum, i) => sum + (stack.values[i] ?? 0));
    cumulative.push(running);
  }
  const all = forecast ? [...new Set([...times, ...forecast.times])].sort((a, b) => a - b) : times;
  const past = (values) => (forecast ? relaid(times, values, all) : values);
  // The tallest (every workload) is drawn first, each smaller sum over it: stacked bars.
  const order = stacks.map((_, i) => stacks.length - 1 - i);
  const bars = window.uPlot.paths.bars({ size: [0.85, 40] });
  const series = [
    { label: "Time (UTC)", value: (u, t) => (t == null ? "" : new Date(t * 1000).toISOString().slice(0, 16).replace("T", " ")) },
    ...order.map((i) => ({
      label: stacks[i].name,
      scale: "g",
      stroke: seriesColor(i, stacks[i].other),
      fill: seriesColor(i, stacks[i].other),
      paths: bars,
      points: { show: false },
      value: (u, v, s, idx) => (idx == null ? "" : format.text(format.emissions(stacks[i].values[idx] ?? 0))),
    })),
    {
      label: "Grid intensity",
      scale: "intensity",
      stroke: css("--intensity"),
      width: 2,
      points: { show: false },
      value: (u, v) => (v == null ? "" : format.text(format.intensity(v))),
    },
    {
      label: "Not measured actuals",
      scale: "intensity",
      stroke: css("--warn"),
      fill: css("--warn"),
      paths: () => null,
      points: { show: true, size: 9, width: 2, fill: css("--warn") },
      value: (u, v) => (v == null ? "" : "estimated, forecast, carried or default"),
    },
  ];
  const options = {
    series,
    scales: { x: { time: true }, g: { range: (u, min, max) => [0, max > 0 ? max * 1.05 : 1] } },
    axes: [
      axis(text),
      axis(text, { scale: "g", values: (u, ticks) => ticks.map((v) => format.text(format.emissions(v)).replace(" CO₂e", "")), size: 70 }),
      axis(text, { scale: "intensity", side: 1, grid: { show: false }, values: (u, ticks) => ticks.map((v) => `${v} g/kWh`), size: 80 }),
    ],
    legend: { live: true },
    cursor: { points: { show: false } },
  };
  const data = [all, ...order.map((i) => past(cumulative[i])), past(intensity), past(flagged)];
  if (forecast) {
    // The dashed line leaves from the last measured total, so it reads as its continuation.
    const line = relaid(forecast.times, forecast.values, all);
    const last = times.length - 1;
    if (last >= 0 && line[all.indexOf(times[last])] == null) line[all.indexOf(times[last])] = running[last];
    const edge = (label) => ({ label, scale: "g", stroke: "transparent", points: { show: false }, value: (u, v) => (v == null ? "" : format.text(format.emissions(v))) });
    series.push(
      { label: "Forecast", scale: "g", stroke: css("--forecast"), width: 2, dash: [6, 4], points: { show: false }, value: (u, v) => (v == null ? "" : format.text(format.emissions(v))) },
      edge("Forecast upper bound"),
      edge("Forecast lower bound"),
    );
    const at = series.length - 3;
    options.bands = [{ series: [at + 1, at + 2], fill: css("--band") }];
    data.push(line, relaid(forecast.times, forecast.upper, all), relaid(forecast.times, forecast.lower, all));
  }
  return place(container, options, data);
}

/** Mean energy per hour of day (bars) against the grid's mean intensity at that hour (line). */
export function profile(container, { energy, intensity }) {
  const text = css("--text");
  const hours = [...Array(24).keys()];
  const options = {
    series: [
      { label: "Hour of day (UTC)", value: (u, h) => (h == null ? "" : `${String(h).padStart(2, "0")}:00`) },
      {
        label: "Mean energy",
        scale: "kwh",
        stroke: css("--series-1"),
        fill: css("--series-1"),
        paths: window.uPlot.paths.bars({ size: [0.8, 30] }),
        points: { show: false },
        value: (u, v) => (v == null ? "" : format.text(format.energy(v))),
      },
      {
        label: "Mean grid intensity",
        scale: "intensity",
        stroke: css("--intensity"),
        width: 2,
        value: (u, v) => (v == null ? "" : format.text(format.intensity(v))),
      },
    ],
    scales: { x: { time: false, range: [-0.5, 23.5] }, kwh: { range: (u, min, max) => [0, max > 0 ? max * 1.05 : 1] } },
    axes: [
      axis(text, { values: (u, ticks) => ticks.map((h) => `${h}h`) }),
      axis(text, { scale: "kwh", values: (u, ticks) => ticks.map((v) => format.text(format.energy(v))), size: 70 }),
      axis(text, { scale: "intensity", side: 1, grid: { show: false }, values: (u, ticks) => ticks.map((v) => `${v} g/kWh`), size: 80 }),
    ],
    cursor: { points: { show: false } },
  };
  return place(container, options, [hours, energy, intensity]);
}
