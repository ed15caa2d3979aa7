// The operator's view (admin keys): every customer ranked, each site's books (its meters against
// its workloads), the intensity feeds and telemetry sources with their staleness and last
// errors, and what the registry holds.
import * as api from "./api.js";
import * as format from "./format.js";
import * as view from "./view.js";
import { table } from "./tables.js";

/** A feed is stale once its newest data is older than intensity may be carried forward (2 h). */
const STALE_AFTER_S = 7200;

const $ = (id) => document.getElementById(id);

function section(title, ...content) {
  const card = document.createElement("section");
  card.className = "card";
  const heading = document.createElement("h2");
  heading.textContent = title;
  card.append(heading, ...content);
  return card;
}

const holder = () => {
  const div = document.createElement("div");
  div.className = "table-wrap";
  return div;
};

export async function showOperator(state, stillCurrent) {
  const status = $("operator-status");
  status.className = "status";
  status.textContent = "Loading the overview…";
  const range = view.reportRange(state);
  try {
    const [ranking, feeds, sources, sites, customers, zones, instruments, keys] = await Promise.all([
      api.json(api.footprintPath("", { ...range, granularity: "total", group_by: "customer" })),
      api.json("/v1/feeds"),
      api.json("/v1/telemetry/sources"),
      api.json("/v1/sites"),
      api.json("/v1/customers"),
      api.json("/v1/zones"),
      api.json("/v1/instruments"),
      api.json("/v1/api-keys"),
    ]);
    const books = await Promise.all(sites.map((site) => {
      const query = new URLSearchParams({ from: range.from, to: range.to });
      return api.json(`/v1/sites/${encodeURIComponent(site.id)}/reconciliation?${query}`);
    }));
    if (!stillCurrent()) return;
    const total = ranking.totals.location_emissions_gco2e;
    const names = new Map(customers.map((c) => [c.id, c.name]));
    const ranked = holder();
    table(ranked, "Customers ranked by location-based emissions", [
      { key: "customer", label: "Customer", show: (v) => `${names.get(v) ?? v} (${v})` },
      { key: "location", label: "Location-based", show: (v) => format.text(format.emissions(v)) },
      { key: "market", label: "Market-based", show: (v) => format.text(format.emissions(v)) },
      { key: "facility", label: "Facility energy", show: (v) => format.text(format.energy(v)) },
      { key: "share", label: "Share", show: (v) => format.share(v) },
    ], ranking.rows.map((r) => ({
      customer: r.customer,
      location: r.location_emissions_gco2e,
      market: r.market_emissions_gco2e,
      facility: r.facility_energy_kwh,
      share: total > 0 ? r.location_emissions_gco2e / total : 0,
    })), { sortBy: "location" });

    const stale = feeds.filter((f) => f.staleness_s == null || f.staleness_s > STALE_AFTER_S || f.last_error);
    const feedTable = holder();
    table(feedTable, "Intensity feeds", [
      { key: "provider", label: "Provider", show: (v) => v },
      { key: "zones", label: "Zones", show: (v) => v.join(", ") },
      { key: "last_success", label: "Last success", show: (v) => v ?? "never" },
      { key: "staleness_s", label: "Data age", show: (v) => format.duration(v) },
      { key: "last_error", label: "Last error", show: (v) => v ?? "none" },
      { key: "next_run", label: "Next run", show: (v) => v ?? "" },
    ], feeds);
    const feedNote = document.createElement("p");
    if (!feeds.length) {
      feedNote.textContent = "No feeds are configured: intensity arrives only by push ([[feeds]] in the config pulls it).";
    } else if (stale.length) {
      feedNote.className = "stale";
      feedNote.textContent = `${stale.length} of ${feeds.length} feeds are stale or failing: ${stale.map((f) => f.provider).join(", ")}. Check the last error and the provider's credentials.`;
    } else {
      feedNote.textContent = "Every feed is current.";
    }

    const sourceTable = holder();
    const ignored = (s) => Object.values(s.samples_ignored).reduce((a, b) => a + b, 0);
    const age = (s) => (s.last_sample_at ? (Date.now() - Date.parse(s.last_sample_at)) / 1000 : null);
    table(sourceTable, "Telemetry sources", [
      { key: "source", label: "Source", show: (v) => v },
      { key: "last_sample_at", label: "Newest sample", show: (v) => v ?? "none yet" },
      { key: "samples_accepted", label: "Samples taken", show: (v) => format.count(v) },
      { key: "samples_unmapped", label: "Unmapped", show: (v) => format.count(v) },
      { key: "ignored", label: "Ignored", show: (v) => format.count(v) },
      { key: "readings_written", label: "Readings", show: (v) => format.count(v) },
      { key: "last_error", label: "Last error", show: (v) => v ?? "none" },
    ], sources.map((s) => ({ ...s, ignored: ignored(s) })));
    const quiet = sources.filter((s) => s.last_error || !(age(s) < STALE_AFTER_S));
    const sourceNote = document.createElement("p");
    if (!sources.length) {
      sourceNote.textContent = "No telemetry has arrived since the server started: point Prometheus' remote_write, an OTLP exporter or a [[scrape]] target at this server.";
    } else if (quiet.length) {
      sourceNote.className = "stale";
      sourceNote.textContent = `${quiet.length} of ${sources.length} telemetry sources are quiet or failing: ${quiet.map((s) => s.source).join(", ")}.`;
    } else {
      sourceNote.textContent = "Every telemetry source is delivering.";
    }

    const metered = books.filter((b) => b.totals.it_meter_kwh > 0 || b.totals.facility_meter_kwh > 0);
    const bookTable = holder();
    const kwh = (v) => (v == null ? "not measured" : format.text(format.energy(v)));
    table(bookTable, "Each site's meters against its workloads", [
      { key: "site", label: "Site", show: (v) => v },
      { key: "facility", label: "Facility meter", show: kwh },
      { key: "it", label: "IT meters", show: kwh },
      { key: "workloads", label: "Workloads measured", show: kwh },
      { key: "modelled", label: "Workloads modelled", show: kwh },
      { key: "unattributed", label: "Unattributed", show: kwh },
      { key: "allocated", label: "Allocated to customers", show: kwh },
      { key: "attributed", label: "Attributed", show: (v) => (v == null ? "" : format.share(v)) },
      { key: "pue", label: "Measured PUE", show: (v) => (v == null ? "" : v.toFixed(2)) },
      { key: "discrepancies", label: "Discrepancies", show: (v) => (v.length ? v.join("; ") : "none") },
    ], metered.map((b) => ({
      site: b.site,
      facility: b.totals.facility_meter_kwh,
      it: b.totals.it_meter_kwh,
      workloads: b.totals.measured_workloads_kwh,
      modelled: b.totals.modelled_workloads_kwh,
      unattributed: b.totals.unattributed_it_kwh,
      allocated: b.totals.allocated_it_kwh,
      attributed: b.totals.attribution_coverage,
      pue: b.totals.measured_pue,
      discrepancies: b.totals.discrepancies,
    })));
    const bookNote = document.createElement("p");
    bookNote.textContent = metered.length
      ? "What the IT meters measured beyond the workloads (measured, or modelled from usage where no meter exists) is unattributed: idle servers, unmetered hosts, network and storage. Sites that allocate spread it over their customers."
      : "No site meter readings in this range: POST /v1/meters (facility, it, cooling) to see each site's books.";

    const counts = document.createElement("ul");
    counts.className = "counts";
    for (const [name, list] of [["sites", sites], ["customers", customers], ["zones with factors", zones], ["instruments", instruments], ["active API keys", keys.filter((k) => !k.revoked_at)]]) {
      const item = document.createElement("li");
      item.dataset.count = name;
      item.textContent = `${list.length} ${name}`;
      counts.append(item);
    }
    $("operator-body").replaceChildren(
      section("Customers", ranked),
      section("Site meters and workloads", ...(metered.length ? [bookNote, bookTable] : [bookNote])),
      section("Intensity feeds", ...(feeds.length ? [feedNote, feedTable] : [feedNote])),
      section("Telemetry sources", ...(sources.length ? [sourceNote, sourceTable] : [sourceNote])),
      section("Registry", counts),
    );
    status.textContent = `Figures from ${format.bucket(range.from, "hour")} to ${format.bucket(range.to, "hour")} UTC.`;
  } catch (problem) {
    if (!stillCurrent()) return;
    status.className = "status problem";
    status.textContent = `The overview could not be loaded: ${problem.message}`;
  }
}
