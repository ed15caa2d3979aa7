// Numbers with their units, at a precision a reader can use: three significant digits, the unit
// stepped up (g -> kg -> t, kWh -> MWh) so a figure never needs more than four digits before the
// point.

const significant = new Intl.NumberFormat("en", { maximumSignificantDigits: 3 });
const whole = new Intl.NumberFormat("en", { maximumFractionDigits: 0 });
const percent = new Intl.NumberFormat("en", { style: "percent", maximumFractionDigits: 1 });

function scaled(value, steps) {
  const magnitude = Math.abs(value);
  let chosen = steps[0];
  for (const step of steps) {
    if (magnitude >= step.from) chosen = step;
  }
  const shown = value / chosen.divisor;
  return { number: Math.abs(shown) >= 1000 ? whole.format(shown) : significant.format(shown), unit: chosen.unit };
}

const EMISSIONS = [
  { from: 0, divisor: 1, unit: "g CO₂e" },
  { from: 1e3, divisor: 1e3, unit: "kg CO₂e" },
  { from: 1e6, divisor: 1e6, unit: "t CO₂e" },
];
const ENERGY = [
  { from: 0, divisor: 1, unit: "kWh" },
  { from: 1e4, divisor: 1e3, unit: "MWh" },
  { from: 1e7, divisor: 1e6, unit: "GWh" },
];

/** {number, unit} of grams of CO2e. */
export const emissions = (grams) => scaled(grams, EMISSIONS);
/** {number, unit} of kilowatt-hours. */
export const energy = (kwh) => scaled(kwh, ENERGY);
export const intensity = (g) => ({ number: whole.format(g), unit: "g CO₂e/kWh" });
export const share = (fraction) => percent.format(fraction);
export const text = ({ number, unit }) => `${number} ${unit}`;
export const count = (n) => whole.format(n);

/** A signed change, or a sentence when there is nothing to compare with. */
export function change(now, before) {
  if (!(before > 0)) return "no data in the previous period";
  const ratio = now / before - 1;
  const sign = ratio > 0 ? "+" : ratio < 0 ? "−" : "±";
  return `${sign}${percent.format(Math.abs(ratio))} against the previous period`;
}

/** An RFC 3339 instant as a short UTC label for the granularity. */
export function bucket(iso, granularity) {
  const t = new Date(iso);
  const date = t.toISOString().slice(0, 10);
  if (granularity === "hour") return `${date} ${t.toISOString().slice(11, 16)}`;
  if (granularity === "month") return date.slice(0, 7);
  if (granularity === "quarter") return `${date.slice(0, 4)} Q${Math.floor(t.getUTCMonth() / 3) + 1}`;
  if (granularity === "week") return `week of ${date}`;
  return date;
}

export function duration(seconds) {
  if (seconds == null) return "never";
  if (seconds < 120) return `${whole.format(seconds)} s`;
  if (seconds < 7200) return `${whole.format(seconds / 60)} min`;
  if (seconds < 172800) return `${significant.format(seconds / 3600)} h`;
  return `${significant.format(seconds / 86400)} days`;
}
