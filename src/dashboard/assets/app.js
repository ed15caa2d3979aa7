// The dashboard: sign-in with an API key, then the footprint view (and, for admin keys, the
// operator view), all drawn from the public API. The address holds every filter.
import { showStatements } from "./statements.js";
import * as api from "./api.js";
import * as format from "./format.js";
import * as view from "./view.js";
import * as charts from "./charts.js";
import { table } from "./tables.js";
import { showOperator } from "./operator.js";
import { forecast, showAdvice } from "./insights.js";

const $ = (id) => document.getElementById(id);
const TOP_WORKLOADS = 5;

let me = null; // the signed-in key: {id, role, customer?}
let state = view.fromSearch(location.search);
let firstChartMarked = false;
let generation = 0; // a newer load makes an older one's answers stale

// ---- sign-in -------------------------------------------------------------------------------

async function signIn(key) {
  try {
    me = await api.json("/v1/whoami", { key });
  } catch (problem) {
    me = null;
    const refused = problem.status === 401;
    $("sign-in-error").textContent = refused
      ? "That key was refused: it is unknown or revoked. Check it, or ask your operator for a new one."
      : `Signing in failed: ${problem.message}`;
    showOnly("sign-in");
    return false;
  }
  if (me.role === "ingest" || me.role === "intensity") {
    $("sign-in-error").textContent =
      `This is an ${me.role} key: it may write data but not read footprints. Sign in with a customer or admin key.`;
    me = null;
    showOnly("sign-in");
    return false;
  }
  api.saveKey(key);
  $("sign-in-error").textContent = "";
  performance.mark("carbon-ledger:signed-in");
  return true;
}

function signOut() {
  api.forgetKey();
  me = null;
  location.assign("/dashboard/");
}

function showOnly(section) {
  for (const id of ["sign-in", "footprint", "operator"]) $(id).hidden = id !== section;
  const signedIn = section !== "sign-in";
  $("nav").hidden = !signedIn;
  $("sign-out").hidden = !signedIn;
  $("who").hidden = !signedIn;
  if (section === "sign-in") $("key").focus();
}

// ---- filters <-> address ---------------------------------------------------------------------

function go(next, { push = true } = {}) {
  state = view.fromSearch(view.toSearch(next));
  if (me.role === "customer") state.customer = me.customer; // typed-in addresses included
  const search = view.toSearch(state);
  if (search !== location.search) history[push ? "pushState" : "replaceState"](null, "", search);
  render();
}

const localInput = (t) => new Date(t).toISOString().slice(0, 16);
const fromLocalInput = (value) => Date.parse(`${value}:00Z`);

function showFilters() {
  $("f-range").value = state.range;
  for (const label of document.querySelectorAll(".filters .custom")) label.hidden = state.range !== "custom";
  $("f-from").value = localInput(state.from);
  $("f-to").value = localInput(state.to);
  const allowed = view.allowedGranularities(state.to - state.from);
  for (const option of $("f-granularity").options) option.disabled = !allowed.includes(option.value);
  $("f-granularity").value = state.granularity;
  $("f-customer").value = state.customer;
}

function fillSelect(select, all, values, chosen) {
  const options = [new Option(all, ""), ...values.map((v) => new Option(v.label ?? v, v.value ?? v))];
  select.replaceChildren(...options);
  select.value = chosen;
  if (select.value !== chosen) select.value = "";
}

function wireFilters() {
  $("filters").addEventListener("change", (event) => {
    const next = { ...state };
    const target = event.target;
    if (target.id === "f-range") {
      next.range = target.value;
      if (target.value !== "custom") next.granularity = "";
    } else if (target.id === "f-from" || target.id === "f-to") {
      next.range = "custom";
      next.from = fromLocalInput($("f-from").value) || state.from;
      next.to = fromLocalInput($("f-to").value) || state.to;
    } else {
      next[target.name] = target.value;
    }
    go(next);
  });
  $("filters").addEventListener("submit", (event) => event.preventDefault());
  window.addEventListener("popstate", () => {
    state = view.fromSearch(location.search);
    if (me?.role === "customer") state.customer = me.customer;
    render();
  });
}

// ---- the footprint view ----------------------------------------------------------------------

function status(text, kind = "") {
  $("status").textContent = text;
  $("status").className = `status ${kind}`;
}

function kpi(id, title, value, raw, changeText) {
  const card = document.createElement("article");
  card.className = "kpi";
  card.id = id;
  card.dataset.value = String(raw);
  const heading = document.createElement("h3");
  heading.textContent = title;
  const figure = document.createElement("p");
  figure.className = "value";
  figure.textContent = value.number;
  const unit = document.createElement("span");
  unit.className = "unit";
  unit.textContent = value.unit;
  figure.append(unit);
  const change = document.createElement("p");
  change.className = "change";
  change.textContent = changeText;
  card.append(heading, figure, change);
  return card;
}

function showKpis(totals, previous) {
  const t = totals;
  const p = previous;
  $("kpis").replaceChildren(
    kpi("kpi-location", "Location-based emissions", format.emissions(t.location_emissions_gco2e), t.location_emissions_gco2e, format.change(t.location_emissions_gco2e, p.location_emissions_gco2e)),
    kpi("kpi-market", "Market-based emissions", format.emissions(t.market_emissions_gco2e), t.market_emissions_gco2e, format.change(t.market_emissions_gco2e, p.market_emissions_gco2e)),
    kpi("kpi-it", "IT energy", format.energy(t.it_energy_kwh), t.it_energy_kwh, format.change(t.it_energy_kwh, p.it_energy_kwh)),
    kpi("kpi-facility", "Facility energy", format.energy(t.facility_energy_kwh), t.facility_energy_kwh, format.change(t.facility_energy_kwh, p.facility_energy_kwh)),
    kpi("kpi-intensity", "Grid intensity of that energy", format.intensity(t.location_intensity_gco2e_per_kwh), t.location_intensity_gco2e_per_kwh, format.change(t.location_intensity_gco2e_per_kwh, p.location_intensity_gco2e_per_kwh)),
  );
}

const seconds = (iso) => Date.parse(iso) / 1000;

function showOverTime(series, byWorkload, predicted = null) {
  const times = series.rows.map((r) => seconds(r.bucket_start));
  const index = new Map(times.map((t, i) => [t, i]));
  const totals = new Map();
  for (const row of byWorkload.rows) totals.set(row.workload, (totals.get(row.workload) ?? 0) + row.location_emissions_gco2e);
  const ranked = [...totals.keys()].sort((a, b) => totals.get(b) - totals.get(a));
  const top = ranked.slice(0, TOP_WORKLOADS);
  const stacks = top.map((name) => ({ name, values: times.map(() => 0) }));
  if (ranked.length > TOP_WORKLOADS) stacks.push({ name: "other", other: true, values: times.map(() => 0) });
  for (const row of byWorkload.rows) {
    const at = index.get(seconds(row.bucket_start));
    if (at === undefined) continue;
    const stack = top.includes(row.workload) ? stacks[top.indexOf(row.workload)] : stacks[stacks.length - 1];
    stack.values[at] += row.location_emissions_gco2e;
  }
  const intensity = series.rows.map((r) => (r.facility_energy_kwh > 0 ? r.location_intensity_gco2e_per_kwh : null));
  const flagged = series.rows.map((r, i) => (r.facility_energy_kwh > 0 && r.quality.actual < 0.999999 ? intensity[i] : null));
  charts.overTime($("chart-over-time"), { times, stacks, intensity, flagged, forecast: predicted });
  if (!firstChartMarked) {
    firstChartMarked = true;
    performance.mark("carbon-ledger:first-chart");
  }
  const rows = series.rows.map((r, i) => {
    const row = { bucket: r.bucket_start, intensity: intensity[i] ?? 0, data: dataKinds(r.quality) };
    stacks.forEach((s) => (row[`s:${s.name}`] = s.values[i]));
    row.total = r.location_emissions_gco2e;
    return row;
  });
  table($("table-over-time"), "Location-based emissions per bucket and workload", [
    { key: "bucket", label: "Bucket (UTC)", show: (v) => format.bucket(v, state.granularity) },
    ...stacks.map((s) => ({ key: `s:${s.name}`, label: s.name, show: (v) => format.text(format.emissions(v)) })),
    { key: "total", label: "All", show: (v) => format.text(format.emissions(v)) },
    { key: "intensity", label: "Grid intensity", show: (v) => format.text(format.intensity(v)) },
    { key: "data", label: "Data", show: (v) => v },
  ], rows);
}

const QUALITY = {
  actual: ["Measured actuals", "the grid operator's or provider's measured intensity for that time"],
  estimated: ["Estimates", "a provider's near-real-time estimate, replaced by actuals when they arrive"],
  forecast: ["Forecasts", "a forecast for that time; no measured value has arrived yet"],
  carried_forward: ["Carried forward", "no point covered that time, so the previous one was used (up to the configured window)"],
  default_factor: ["Default factor", "no intensity data at all: the zone's yearly average factor"],
  missing: ["Missing", "no intensity and no default factor: counted as zero emissions"],
};

function dataKinds(quality) {
  const kinds = Object.keys(QUALITY).filter((k) => quality[k] > 0.0005);
  return kinds.map((k) => `${QUALITY[k][0].toLowerCase()} ${format.share(quality[k])}`).join(", ") || "no energy";
}

function showQuality(quality) {
  const bar = document.createElement("div");
  bar.className = "stack";
  bar.setAttribute("role", "img");
  bar.setAttribute("aria-label", `Shares of facility energy by kind of intensity data: ${dataKinds(quality)}`);
  const legend = document.createElement("ul");
  legend.className = "legend";
  for (const [kind, [name, explanation]] of Object.entries(QUALITY)) {
    const part = document.createElement("span");
    part.className = `q-${kind}`;
    part.style.width = `${(quality[kind] * 100).toFixed(3)}%`;
    bar.append(part);
    const item = document.createElement("li");
    item.dataset.kind = kind;
    const swatch = document.createElement("span");
    swatch.className = `swatch q-${kind}`;
    const label = document.createElement("strong");
    label.textContent = name;
    const value = document.createElement("span");
    value.textContent = format.share(quality[kind]);
    const explain = document.createElement("span");
    explain.className = "explain";
    explain.textContent = explanation;
    item.append(swatch, label, value, explain);
    legend.append(item);
  }
  $("quality").replaceChildren(bar, legend);
}

function showBasis(totals) {
  const max = Math.max(totals.location_emissions_gco2e, totals.market_emissions_gco2e, totals.embodied_gco2e, 1e-12);
  const row = (name, value, kind) => {
    const line = document.createElement("div");
    line.className = "bar-row";
    const label = document.createElement("span");
    label.textContent = name;
    const bar = document.createElement("div");
    bar.className = `bar ${kind}`;
    bar.style.width = `${((value / max) * 100).toFixed(2)}%`;
    const figure = document.createElement("span");
    figure.textContent = format.text(format.emissions(value));
    line.append(label, bar, figure);
    return line;
  };
  const bars = document.createElement("div");
  bars.className = "bars";
  bars.append(
    row("Location-based", totals.location_emissions_gco2e, "location"),
    row("Market-based", totals.market_emissions_gco2e, "market"),
    row("Embodied (Scope 3)", totals.embodied_gco2e, "embodied"),
  );
  const covered = document.createElement("p");
  covered.id = "instrument-share";
  covered.dataset.value = String(totals.market_instrument_share);
  covered.textContent = `${format.share(totals.market_instrument_share)} of the facility energy is covered by contractual instruments (PPAs, RECs, GOs, green tariffs).`;
  const fallback = document.createElement("p");
  fallback.className = "hint";
  fallback.textContent = totals.market_location_fallback_share > 0
    ? `${format.share(totals.market_location_fallback_share)} had neither an instrument nor a residual mix for its zone and year, so its market-based figure uses the location-based intensity.`
    : "Energy no instrument covers is priced at its zone's residual mix.";
  const embodied = document.createElement("p");
  embodied.id = "embodied";
  embodied.dataset.value = String(totals.embodied_gco2e);
  embodied.textContent = totals.embodied_known_share > 0
    ? `Embodied emissions of the hardware the workloads reserved: ${format.text(format.emissions(totals.embodied_gco2e))}, registered for ${format.share(totals.embodied_known_share)} of the IT energy.`
    : "No hardware reservations are registered for this energy, so its embodied emissions (Scope 3) are not counted.";
  const sources = document.createElement("p");
  sources.id = "energy-sources";
  sources.dataset.modelled = String(totals.modelled_share);
  const it = totals.it_energy_kwh;
  const measured = totals.attributed_it_energy_kwh - totals.modelled_it_energy_kwh;
  sources.textContent = it > 0
    ? `Of the IT energy, ${format.share(measured / it)} was measured by meters, ${format.share(totals.modelled_it_energy_kwh / it)} modelled from usage (no meter), and ${format.share(totals.allocated_it_energy_kwh / it)} allocated from the site's own meters (idle and unmetered equipment).`
    : "No IT energy in this range.";
  $("basis").replaceChildren(bars, covered, fallback, embodied, sources);
}

function sumBy(rows, key) {
  const groups = new Map();
  for (const r of rows) {
    const g = groups.get(r[key]) ?? { name: r[key], it: 0, facility: 0, location: 0, market: 0, readings: 0, intensityKwh: 0 };
    g.it += r.it_energy_kwh;
    g.facility += r.facility_energy_kwh;
    g.location += r.location_emissions_gco2e;
    g.market += r.market_emissions_gco2e;
    g.readings += r.readings;
    if (r.location_intensity_gco2e_per_kwh > 0) g.intensityKwh += r.location_emissions_gco2e / r.location_intensity_gco2e_per_kwh;
    groups.set(r[key], g);
  }
  return [...groups.values()].map((g) => ({ ...g, intensity: g.intensityKwh > 0 ? g.location / g.intensityKwh : 0, pue: g.it > 0 ? g.facility / g.it : 0 }));
}

function showBreakdowns(breakdown) {
  const emissions = (v) => format.text(format.emissions(v));
  const energy = (v) => format.text(format.energy(v));
  const columns = (first) => [
    { key: "name", label: first, show: (v) => v },
    { key: "location", label: "Location-based", show: emissions },
    { key: "market", label: "Market-based", show: emissions },
    { key: "it", label: "IT energy", show: energy },
    { key: "facility", label: "Facility energy", show: energy },
  ];
  table($("table-workload"), "Emissions and energy by workload", columns("Workload"), sumBy(breakdown.rows, "workload"), { sortBy: "location" });
  table($("table-site"), "Emissions and energy by site", [...columns("Site"), { key: "pue", label: "PUE", show: (v) => v.toFixed(2) }], sumBy(breakdown.rows, "site"), { sortBy: "location" });
  table($("table-zone"), "Emissions and energy by grid zone", [...columns("Zone"), { key: "intensity", label: "Intensity", show: (v) => format.text(format.intensity(v)) }], sumBy(breakdown.rows, "zone"), { sortBy: "location" });
}

/** Time-weighted mean intensity per UTC hour of day from the points in force. */
function hourlyIntensity(points) {
  const weighted = Array(24).fill(0);
  const covered = Array(24).fill(0);
  for (const p of points) {
    for (let t = Date.parse(p.start); t < Date.parse(p.end); ) {
      const hourEnd = (Math.floor(t / 3600e3) + 1) * 3600e3;
      const until = Math.min(hourEnd, Date.parse(p.end));
      const hour = new Date(t).getUTCHours();
      weighted[hour] += p.gco2e_per_kwh * (until - t);
      covered[hour] += until - t;
      t = until;
    }
  }
  return weighted.map((w, h) => (covered[h] > 0 ? w / covered[h] : null));
}

function showProfile(hourly, part, zone, points) {
  const energy = Array(24).fill(0);
  const days = Math.max((Date.parse(part.to) - Date.parse(part.from)) / 86400e3, 1 / 24);
  for (const r of hourly.rows) energy[new Date(r.bucket_start).getUTCHours()] += r.it_energy_kwh;
  const mean = energy.map((e) => e / Math.max(days, 1));
  const intensity = hourlyIntensity(points);
  charts.profile($("chart-profile"), { energy: mean, intensity });
  $("profile-hint").textContent =
    `Mean IT energy per hour of day (UTC)${part.whole ? "" : " over the last 31 days of the range"}` +
    (zone ? `, against the mean intensity of ${zone}, the zone with the most energy.` : ".");
  table($("table-profile"), "Mean energy and grid intensity per hour of day", [
    { key: "hour", label: "Hour (UTC)", show: (v) => `${String(v).padStart(2, "0")}:00` },
    { key: "energy", label: "Mean IT energy", show: (v) => format.text(format.energy(v)) },
    { key: "intensity", label: "Mean grid intensity", show: (v) => (v == null ? "no data" : format.text(format.intensity(v))) },
  ], mean.map((e, hour) => ({ hour, energy: e, intensity: intensity[hour] })));
}

function showMethod(breakdown, sources) {
  const parts = [];
  const para = (text) => {
    const p = document.createElement("p");
    p.textContent = text;
    parts.push(p);
  };
  para("Each workload's measured IT energy is split hour by hour (and at every change of intensity, PUE or contract) and multiplied by the site's PUE to give facility energy. Location-based emissions multiply that energy by the carbon intensity of the site's grid zone at that very time. Market-based emissions use the contractual instruments that cover the energy first, then the zone's residual mix.");
  const list = document.createElement("ul");
  for (const [zone, info] of sources) {
    const item = document.createElement("li");
    item.textContent = info.length
      ? `${zone}: ${info.join("; ")}`
      : `${zone}: no intensity data in this range (default factors apply)`;
    list.append(item);
  }
  const sites = sumBy(breakdown.rows, "site").filter((s) => s.it > 0);
  const pue = document.createElement("p");
  pue.textContent = sites.length
    ? `PUE used (facility ÷ IT energy): ${sites.map((s) => `${s.name} ${s.pue.toFixed(2)}`).join(", ")}.`
    : "No energy in this view, so no PUE was applied.";
  const heading = document.createElement("h3");
  heading.textContent = "Intensity sources per zone";
  $("method").replaceChildren(...parts, heading, list, pue);
}

async function zoneSources(zones) {
  const part = view.lastPart(state, view.INTENSITY_LIMIT);
  const answers = await Promise.all(
    zones.map((zone) => api.json(`/v1/zones/${encodeURIComponent(zone)}/intensity?${api.query({ from: part.from, to: part.to })}`).catch(() => ({ points: [] }))),
  );
  return new Map(zones.map((zone, i) => {
    const seen = new Map();
    for (const p of answers[i].points) {
      const key = `${p.source} (${p.signal})`;
      seen.set(key, (seen.get(key) ?? new Set()).add(p.kind));
    }
    return [zone, { points: answers[i].points, info: [...seen].map(([k, kinds]) => `${k}: ${[...kinds].join(", ")}`) }];
  }));
}

async function render() {
  const current = ++generation;
  $("nav-footprint").href = view.toSearch({ ...state, view: "footprint" });
  $("nav-operator").href = view.toSearch({ ...state, view: "operator" });
  $("nav-footprint").removeAttribute("aria-current");
  $("nav-operator").removeAttribute("aria-current");
  if (state.view === "operator" && me.role === "admin") {
    showOnly("operator");
    $("nav-operator").setAttribute("aria-current", "page");
    await showOperator(state, () => current === generation);
    return;
  }
  $("nav-footprint").setAttribute("aria-current", "page");
  showOnly("footprint");
  showFilters();
  showStatements(state.customer);
  status("Loading figures…");
  $("figures").setAttribute("aria-busy", "true");
  const c = state.customer;
  const range = view.reportRange(state);
  const filters = { workload: state.workload, site: state.site };
  const g = state.granularity;
  const hourlyPart = view.lastPart(state, view.HOURLY_LIMIT);
  try {
    // Every request leaves at once; the chart is drawn as soon as its two answers are in.
    const chartData = Promise.all([
      api.json(api.footprintPath(c, { ...range, granularity: g, ...filters })),
      api.json(api.footprintPath(c, { ...range, granularity: g, group_by: "workload", ...filters })),
    ]);
    const rest = Promise.all([
      api.json(api.footprintPath(c, { ...range, granularity: "total", group_by: "workload,site,zone", ...filters })),
      api.json(api.footprintPath(c, { ...range, granularity: "total", group_by: "workload,site" })),
      api.json(api.footprintPath(c, { ...view.previousRange(state), granularity: "total", ...filters })),
      g === "hour" && hourlyPart.whole
        ? null
        : api.json(api.footprintPath(c, { from: hourlyPart.from, to: hourlyPart.to, granularity: "hour", ...filters })),
    ]);
    rest.catch(() => {}); // awaited below; an early failure of the chart's requests must not leave it unhandled
    const predicted = forecast(c, state);
    const [series, byWorkload] = await chartData;
    if (current !== generation) return;
    if (series.totals.readings > 0) {
      $("figures").hidden = false;
      showOverTime(series, byWorkload);
      // The forecast (a model fit per workload) arrives later: the chart is drawn again with it.
      predicted.then((p) => p && current === generation && showOverTime(series, byWorkload, p));
    }
    const [breakdown, choices, previous, hourly] = await rest;
    if (current !== generation) return;
    const unique = (key) => [...new Set(choices.rows.map((r) => r[key]))].sort();
    fillSelect($("f-workload"), "All workloads", unique("workload"), state.workload);
    fillSelect($("f-site"), "All sites", unique("site"), state.site);
    if (series.totals.readings === 0) {
      $("figures").hidden = true;
      status(
        choices.totals.readings === 0
          ? "No readings in this range yet. Agents post them to /v1/readings; or pick another range above."
          : "Nothing matches these filters in this range: choose all workloads and sites, or another range.",
        "empty",
      );
      return;
    }
    showKpis(series.totals, previous.totals);
    showBasis(series.totals);
    showQuality(series.totals.quality);
    showBreakdowns(breakdown);
    const zones = sumBy(breakdown.rows, "zone").sort((a, b) => b.facility - a.facility).map((z) => z.name);
    const sources = await zoneSources(zones);
    if (current !== generation) return;
    showProfile(hourly ?? series, hourlyPart, zones[0], sources.get(zones[0])?.points ?? []);
    showMethod(breakdown, [...sources].map(([zone, s]) => [zone, s.info]));
    showAdvice(c, state, zones, () => current === generation);
    status(`${format.count(series.totals.readings)} readings, ${format.bucket(range.from, "hour")} to ${format.bucket(range.to, "hour")} UTC.`);
    performance.mark("carbon-ledger:rendered");
  } catch (problem) {
    if (current !== generation) return;
    $("figures").hidden = true;
    if (problem.status === 401) return signOut();
    status(problem.status === 404 ? `No such customer: ${c}.` : `The figures could not be loaded: ${problem.message}`, "problem");
  } finally {
    $("figures").removeAttribute("aria-busy");
  }
}

async function exportView(kind) {
  const path = api.footprintPath(state.customer, {
    ...view.reportRange(state),
    granularity: state.granularity,
    group_by: "workload,site",
    workload: state.workload,
    site: state.site,
    format: kind,
  });
  try {
    await api.download(path, `footprint-${state.customer || "all"}-${view.iso(state.from).slice(0, 10)}.${kind}`);
  } catch (problem) {
    status(`The export failed: ${problem.message}`, "problem");
  }
}

// ---- start -----------------------------------------------------------------------------------

async function start() {
  wireFilters();
  $("sign-out").addEventListener("click", signOut);
  for (const button of document.querySelectorAll("[data-export]")) {
    button.addEventListener("click", () => exportView(button.dataset.export));
  }
  $("sign-in-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    if (await signIn($("key").value.trim())) await enter();
  });
  const key = api.savedKey();
  if (key && (await signIn(key))) await enter();
  else showOnly("sign-in");
}

async function enter() {
  $("who").textContent = me.role === "admin" ? "Signed in as operator (admin key)" : `Signed in as customer ${me.customer}`;
  $("nav-operator").hidden = me.role !== "admin";
  if (me.role === "admin") {
    const customers = await api.json("/v1/customers");
    fillSelect($("f-customer"), "All customers", customers.map((c) => ({ value: c.id, label: c.name })), state.customer);
    $("f-customer").disabled = false;
  } else {
    fillSelect($("f-customer"), me.customer, [], "");
    $("f-customer").options[0].value = me.customer;
    $("f-customer").disabled = true;
  }
  go(state, { push: false });
}

start();
