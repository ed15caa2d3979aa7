// What is on screen, as a value that lives in the address bar: every filter is a query parameter
// (customer, range or from/to, granularity, workload, site, view), so a view can be bookmarked
// and shared, and the address restores it.

const HOUR = 3600e3;
const DAY = 24 * HOUR;
export const RANGES = { "24h": DAY, "7d": 7 * DAY, "30d": 30 * DAY, "12mo": 365 * DAY };
const DEFAULT_GRANULARITY = { "24h": "hour", "7d": "hour", "30d": "day", "12mo": "month" };
/** The API's longest range per granularity (hour 31 days, day 366 days; the rest 10 years). */
const LONGEST = { hour: 31 * DAY, day: 366 * DAY, week: Infinity, quarter: Infinity, month: Infinity };

const iso = (t) => new Date(t).toISOString().replace(".000Z", "Z");

function parseInstant(raw) {
  if (!raw) return null;
  const t = Date.parse(raw.endsWith("Z") || /[+-]\d\d:\d\d$/.test(raw) ? raw : `${raw}Z`);
  return Number.isNaN(t) ? null : t;
}

/** Granularities the API accepts for a span. */
export const allowedGranularities = (span) =>
  Object.keys(LONGEST).filter((g) => span <= LONGEST[g]);

function fallbackGranularity(span) {
  if (span <= 2 * DAY) return "hour";
  if (span <= 92 * DAY) return "day";
  return "month";
}

/** The view from the address (or any query string), completed and made consistent. */
export function fromSearch(search, now = Date.now()) {
  const p = new URLSearchParams(search);
  const view = p.get("view") === "operator" ? "operator" : "footprint";
  let range = p.get("range");
  let from = parseInstant(p.get("from"));
  let to = parseInstant(p.get("to"));
  if (!(range in RANGES) && range !== "custom") range = from && to ? "custom" : "7d";
  if (range === "custom" && !(from && to && from < to)) range = "7d";
  if (range !== "custom") {
    to = to ?? Math.ceil(now / HOUR) * HOUR;
    from = to - RANGES[range];
  }
  const span = to - from;
  const allowed = allowedGranularities(span);
  let granularity = p.get("granularity");
  if (!allowed.includes(granularity)) {
    const preferred = DEFAULT_GRANULARITY[range] ?? fallbackGranularity(span);
    granularity = allowed.includes(preferred) ? preferred : allowed[allowed.length - 1];
  }
  return {
    view,
    customer: p.get("customer") || "",
    range,
    from,
    to,
    granularity,
    workload: p.get("workload") || "",
    site: p.get("site") || "",
  };
}

/** The query string that restores `state`. */
export function toSearch(state) {
  const p = new URLSearchParams();
  if (state.view === "operator") p.set("view", "operator");
  if (state.customer) p.set("customer", state.customer);
  p.set("range", state.range);
  if (state.range === "custom") p.set("from", iso(state.from));
  p.set("to", iso(state.to));
  p.set("granularity", state.granularity);
  if (state.workload) p.set("workload", state.workload);
  if (state.site) p.set("site", state.site);
  return `?${p}`;
}

/** The report parameters of a view (RFC 3339 UTC instants). */
export const reportRange = (state) => ({ from: iso(state.from), to: iso(state.to) });

/** The same span just before the view, to compare with. */
export const previousRange = (state) => ({
  from: iso(state.from - (state.to - state.from)),
  to: iso(state.from),
});

/** At most the last `longest` milliseconds of the view (for requests that cap their span). */
export function lastPart(state, longest) {
  const from = Math.max(state.from, state.to - longest);
  return { from: iso(from), to: iso(state.to), whole: from === state.from };
}

export const HOURLY_LIMIT = LONGEST.hour;
export const INTENSITY_LIMIT = 93 * DAY;
export { iso };
