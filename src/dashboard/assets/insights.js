// From reporting to reducing, from the same API: when to run a job in the customer's zones (the
// greenest windows from now, forecasts included), what moving past runs would have saved, and the
// footprint forecast drawn as a dashed continuation of the emissions chart.
import * as api from "./api.js";
import * as format from "./format.js";
import { table } from "./tables.js";

const $ = (id) => document.getElementById(id);
const HOUR = 3600e3;
const DAY = 24 * HOUR;
const SHIFT_LONGEST = 31 * DAY;

const iso = (t) => new Date(t).toISOString().replace(".000Z", "Z");
const when = (value) => (value ? format.bucket(value, "hour") : "");
const grams = (v) => (v == null ? "not priced" : format.text(format.emissions(v)));

/** The greenest window of the chosen length in each zone, from now to where its data ends. */
async function showWindows(zones, isCurrent) {
  const minutes = Number($("job-length").value);
  const answers = await Promise.all(
    zones.map((zone) =>
      api.json(`/v1/zones/${encodeURIComponent(zone)}/windows?${api.query({ duration_min: minutes, limit: 1 })}`)
        .catch(() => null)),
  );
  if (!isCurrent()) return;
  const rows = answers.filter(Boolean).map((a) => ({
    zone: a.zone,
    start: a.windows[0]?.start ?? "",
    end: a.windows[0]?.end ?? "",
    average: a.windows[0]?.average_gco2e_per_kwh ?? null,
    now: a.run_now?.average_gco2e_per_kwh ?? null,
    saving: a.windows[0]?.saving_percent ?? null,
    basis: a.windows[0] ? dataOf(a.windows[0].kinds) : "",
  }));
  const intensity = (v) => (v == null ? "no data" : format.text(format.intensity(v)));
  table($("table-windows"), "The greenest window to run in, per grid zone", [
    { key: "zone", label: "Zone", show: (v) => v },
    { key: "start", label: "Start (UTC)", show: (v) => (v ? when(v) : "no forecast ahead") },
    { key: "end", label: "End (UTC)", show: when },
    { key: "average", label: "Average intensity", show: intensity },
    { key: "now", label: "If started now", show: intensity },
    { key: "saving", label: "Saving", show: (v) => (v == null ? "" : format.share(v / 100)) },
    { key: "basis", label: "Data", show: (v) => v },
  ], rows);
}

function dataOf(kinds) {
  return ["actual", "estimated", "forecast"]
    .filter((k) => kinds[k] > 0.0005)
    .map((k) => `${k} ${format.share(kinds[k])}`)
    .join(", ");
}

/** Per workload: what its runs emitted and what the best start within ±6 h would have. */
async function showShift(customer, state, isCurrent) {
  const to = Math.min(state.to, Date.now());
  const from = Math.max(state.from, to - SHIFT_LONGEST);
  if (!customer || from >= to) {
    $("table-shift").replaceChildren(Object.assign(document.createElement("p"), {
      textContent: "Choose a customer to see what shifting its runs would have saved.",
    }));
    return;
  }
  let answer;
  try {
    answer = await api.json(`/v1/customers/${encodeURIComponent(customer)}/shift-opportunities?${api.query({ from: iso(from), to: iso(to), flex_h: 6, workload: state.workload })}`);
  } catch (problem) {
    if (isCurrent()) $("shift-hint").textContent = `Shift opportunities could not be loaded: ${problem.message}`;
    return;
  }
  if (!isCurrent()) return;
  $("shift-hint").textContent = `Each run (consecutive hours with energy) moved whole to the best start within ±${answer.flex_h} h, ` +
    `${format.bucket(answer.from, "hour")} to ${format.bucket(answer.to, "hour")} UTC; location-based, in hindsight and as the forecasts then stored would have chosen.`;
  const rows = answer.workloads.map((w) => ({
    workload: w.workload,
    runs: w.runs_priced,
    actual: w.actual_gco2e,
    best: w.best_gco2e,
    saving: w.saving_gco2e,
    percent: w.saving_percent,
    forecast: w.as_forecast_runs > 0 ? w.as_forecast_saving_gco2e : null,
  }));
  table($("table-shift"), "What shifting each workload's runs would have saved", [
    { key: "workload", label: "Workload", show: (v) => v },
    { key: "runs", label: "Runs", show: (v) => format.count(v) },
    { key: "actual", label: "As run", show: grams },
    { key: "best", label: "Best start", show: grams },
    { key: "saving", label: "Saving", show: grams },
    { key: "percent", label: "Saving %", show: (v) => (v == null ? "" : format.share(v / 100)) },
    { key: "forecast", label: "Following the forecast", show: (v) => (v == null ? "no stored forecast" : grams(v)) },
  ], rows, { sortBy: "saving" });
}

export async function showAdvice(customer, state, zones, isCurrent) {
  $("job-length").onchange = () => showWindows(zones, isCurrent);
  await Promise.all([showWindows(zones, isCurrent), showShift(customer, state, isCurrent)]);
}

/**
 * The customer's forecast for the view's granularity, when the view ends now and shows all its
 * workloads and sites; else (or without enough history) `null`, with the reason in the note.
 */
export async function forecast(customer, state) {
  const note = $("forecast-note");
  note.textContent = "";
  const endsNow = Math.abs(state.to - Date.now()) <= 2 * HOUR;
  if (!customer || !endsNow || state.workload || state.site || !["hour", "day"].includes(state.granularity)) return null;
  const horizon = state.granularity === "hour" ? "48h" : `${Math.min(30, Math.max(2, Math.round((state.to - state.from) / DAY)))}d`;
  let answer;
  try {
    answer = await api.json(`/v1/customers/${encodeURIComponent(customer)}/forecast?${api.query({ horizon, granularity: state.granularity, group_by: "none" })}`);
  } catch (problem) {
    note.textContent = problem.code === "insufficient_history"
      ? "No forecast yet: it needs 24 days of hourly history."
      : `The forecast could not be loaded: ${problem.message}`;
    return null;
  }
  const t = answer.totals;
  note.textContent = `Dashed: the next ${horizon} forecast, ${format.text(format.emissions(t.emissions_gco2e))} ` +
    `(${format.text(format.emissions(t.emissions_lower_gco2e))} to ${format.text(format.emissions(t.emissions_upper_gco2e))} at ${format.share(answer.level)}), ` +
    `${format.share(t.grid_forecast_share)} of it priced at grid forecasts, the rest at the zones' seasonal profile. ` +
    `Backtest error ${format.text(format.energy(answer.backtest.mae_kwh))} an hour against seasonal naive's ${format.text(format.energy(answer.backtest.baseline_mae_kwh))}.`;
  return {
    times: answer.buckets.map((b) => Date.parse(b.bucket_start) / 1000),
    values: answer.buckets.map((b) => b.emissions_gco2e),
    lower: answer.buckets.map((b) => b.emissions_lower_gco2e),
    upper: answer.buckets.map((b) => b.emissions_upper_gco2e),
    total: t.emissions_gco2e,
  };
}
