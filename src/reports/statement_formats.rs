//! Statements as CSV (one row per month, site, zone and workload, for spreadsheets and the
//! operator's period export) and as a printable HTML page (A4, the figures and the method on it,
//! which a customer saves as PDF from the browser).
use super::render::presented;
use super::statement::Statement;
use crate::domain::InstrumentKind;
use std::fmt::Write;

/// Columns named like Google Cloud's carbon footprint export where they mean the same, in kg.
const CSV_HEADER: [&str; 18] = [
    "usage_month",
    "customer",
    "workload",
    "location.location",
    "location.region",
    "carbon_model_version",
    "carbon_footprint_kgCO2e.scope2.location_based",
    "carbon_footprint_kgCO2e.scope2.market_based",
    "it_energy_kwh",
    "facility_energy_kwh",
    "period",
    "statement_version",
    "statement_sha256",
    "market_instrument_share",
    "carbon_footprint_kgCO2e.scope3.embodied",
    "embodied_known_share",
    "modelled_it_energy_kwh",
    "allocated_it_energy_kwh",
];

/// Every statement's rows under one header, in the order given.
pub fn csv(statements: &[Statement]) -> Result<Vec<u8>, csv::Error> {
    let mut writer = csv::Writer::from_writer(Vec::new());
    writer.write_record(CSV_HEADER)?;
    for statement in statements {
        for row in &statement.by_month {
            let month = row.bucket_start.get(..10).unwrap_or(&row.bucket_start);
            writer.write_record([
                month,
                statement.customer.as_str(),
                row.workload.as_deref().unwrap_or(""),
                row.site.as_deref().unwrap_or(""),
                row.zone.as_deref().unwrap_or(""),
                statement.method_version.as_str(),
                &kg(row.figures.location_emissions_gco2e),
                &kg(row.figures.market_emissions_gco2e),
                &row.figures.it_energy_kwh.to_string(),
                &row.figures.facility_energy_kwh.to_string(),
                statement.period.id.as_str(),
                &statement.statement_version.to_string(),
                statement.sha256.as_str(),
                &row.figures.market_instrument_share.to_string(),
                &kg(row.figures.embodied_gco2e),
                &row.figures.embodied_known_share.to_string(),
                &row.figures.modelled_it_energy_kwh.to_string(),
                &row.figures.allocated_it_energy_kwh.to_string(),
            ])?;
        }
    }
    writer
        .into_inner()
        .map_err(|error| csv::Error::from(error.into_error()))
}

fn kg(grams: f64) -> String {
    presented(grams / 1e3).to_string()
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn kind_name(kind: InstrumentKind) -> &'static str {
    match kind {
        InstrumentKind::Ppa => "PPA",
        InstrumentKind::Rec => "REC",
        InstrumentKind::Go => "guarantee of origin",
        InstrumentKind::GreenTariff => "green tariff",
    }
}

fn number(value: f64, decimals: usize) -> String {
    format!("{value:.decimals$}")
}

/// The statement as one self-contained page: no script, no outside resource, print CSS for A4.
pub fn html(statement: &Statement) -> String {
    let totals = &statement.totals;
    let period = &statement.period;
    let mut rows = String::new();
    for row in &statement.by_month {
        let _ = write!(
            rows,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=n>{}</td><td class=n>{}</td><td class=n>{}</td><td class=n>{}</td></tr>",
            escape(row.bucket_start.get(..7).unwrap_or(&row.bucket_start)),
            escape(row.site.as_deref().unwrap_or("")),
            escape(row.zone.as_deref().unwrap_or("")),
            escape(row.workload.as_deref().unwrap_or("")),
            number(row.figures.it_energy_kwh, 3),
            number(row.figures.facility_energy_kwh, 3),
            number(row.figures.location_emissions_gco2e / 1e3, 3),
            number(row.figures.market_emissions_gco2e / 1e3, 3),
        );
    }
    let mut sites = String::new();
    for site in &statement.sites {
        let schedule: Vec<String> = site
            .pue_schedule
            .iter()
            .map(|entry| format!("{} from {}", entry.pue, entry.from.to_rfc3339()))
            .collect();
        let _ = write!(
            sites,
            "<li>{} ({}), zone {}: PUE {}{}</li>",
            escape(site.id.as_str()),
            escape(&site.name),
            escape(site.zone.as_str()),
            site.pue,
            if schedule.is_empty() {
                String::new()
            } else {
                format!(", then {}", escape(&schedule.join(", ")))
            }
        );
    }
    let mut instruments = String::new();
    for instrument in &statement.instruments {
        let _ = write!(
            instruments,
            "<li>{} ({}) at {}: {} MWh at {} gCO2e/kWh, {} to {}</li>",
            escape(instrument.id.as_str()),
            kind_name(instrument.kind),
            escape(instrument.site.as_str()),
            instrument.energy_mwh,
            instrument.gco2e_per_kwh,
            instrument.from.format("%Y-%m-%d"),
            instrument.to.format("%Y-%m-%d"),
        );
    }
    if instruments.is_empty() {
        instruments.push_str("<li>None: market-based figures use residual mixes, else location-based intensity.</li>");
    }
    let mut intensity = String::new();
    for source in &statement.intensity_sources {
        let _ = write!(
            intensity,
            "<li>{}: {} ({}), {} h</li>",
            escape(&source.zone),
            escape(&source.source),
            escape(&source.kind),
            number(source.hours, 1)
        );
    }
    if intensity.is_empty() {
        intensity.push_str("<li>None stored: default factors apply.</li>");
    }
    let quality = &totals.quality;
    format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,">
<title>Carbon statement {period_id}: {customer}</title>
<style>
@page {{ size: A4; margin: 16mm; }}
body {{ font: 10.5pt/1.45 system-ui, sans-serif; color: #111; max-width: 178mm; margin: 1.5em auto; padding: 0 1em; }}
h1 {{ font-size: 16pt; margin: 0 0 .2em; }} h2 {{ font-size: 11.5pt; margin: 1.2em 0 .4em; }}
.totals {{ display: grid; grid-template-columns: repeat(4, 1fr); gap: .5em; margin: 1em 0; }}
.totals div {{ border: 1px solid #bbb; padding: .5em; }} .totals b {{ display: block; font-size: 13pt; }}
table {{ border-collapse: collapse; width: 100%; font-size: 9pt; }}
th, td {{ border-bottom: 1px solid #ddd; padding: .25em .4em; text-align: left; }} td.n {{ text-align: right; font-variant-numeric: tabular-nums; }}
.seal {{ font: 8pt monospace; word-break: break-all; color: #444; }}
@media print {{ body {{ margin: 0; max-width: none; }} tr {{ break-inside: avoid; }} }}
</style></head>
<body>
<h1>Carbon statement: {customer}</h1>
<p>Period <strong>{period_id}</strong>, {from} to {to} (UTC), closed {closed_at}. Statement version {version}{reason}.</p>
<section class="totals" aria-label="Totals">
<div>IT energy<b>{it} kWh</b></div><div>Facility energy<b>{facility} kWh</b></div>
<div>Scope 2, location-based<b>{location} kgCO2e</b></div><div>Scope 2, market-based<b>{market} kgCO2e</b></div>
</section>
<p>Scope 3, embodied emissions of the hardware the workloads reserved: <strong>{embodied} kgCO2e</strong>, registered for {embodied_known}% of the IT energy.</p>
<p>Of the IT energy, {measured_kwh} kWh was measured by meters, {modelled_kwh} kWh modelled from usage (no meter) and {allocated_kwh} kWh allocated from the site's own meters (idle and unmetered equipment). The site's meters measured the PUE for {pue_measured}% of the facility energy.</p>
<p>Intensity behind the energy: actual {actual}%, estimated {estimated}%, forecast {forecast}%, carried forward {carried}%, default factor {default}%. Covered by instruments: {instrument_share}%.</p>
<h2>By month, site and workload</h2>
<table><thead><tr><th>Month</th><th>Site</th><th>Zone</th><th>Workload</th><th>IT kWh</th><th>Facility kWh</th><th>Location kgCO2e</th><th>Market kgCO2e</th></tr></thead>
<tbody>{rows}</tbody></table>
<h2>Sites and PUE</h2><ul>{sites}</ul>
<h2>Grid intensity in force</h2><ul>{intensity}</ul>
<h2>Contractual instruments</h2><ul>{instruments}</ul>
<h2>Method (version {method_version})</h2><p>{method}</p>
<p class="seal">Computed from readings table version {readings}, intensity table version {intensity}, registry version {registry}. sha256 of the JSON statement: {sha}</p>
</body></html>
"#,
        customer = escape(&statement.customer),
        period_id = escape(period.id.as_str()),
        from = period.from.format("%Y-%m-%d %H:%M"),
        to = period.to.format("%Y-%m-%d %H:%M"),
        closed_at = period.closed_at.format("%Y-%m-%d %H:%M"),
        version = statement.statement_version,
        reason = statement
            .reason
            .as_deref()
            .map(|r| format!(", reissued: {}", escape(r)))
            .unwrap_or_default(),
        it = number(totals.it_energy_kwh, 3),
        facility = number(totals.facility_energy_kwh, 3),
        location = number(totals.location_emissions_gco2e / 1e3, 3),
        market = number(totals.market_emissions_gco2e / 1e3, 3),
        embodied = number(totals.embodied_gco2e / 1e3, 3),
        embodied_known = number(totals.embodied_known_share * 100.0, 1),
        measured_kwh = number(
            totals.attributed_it_energy_kwh - totals.modelled_it_energy_kwh,
            3
        ),
        modelled_kwh = number(totals.modelled_it_energy_kwh, 3),
        allocated_kwh = number(totals.allocated_it_energy_kwh, 3),
        pue_measured = number(totals.pue_measured_share * 100.0, 1),
        actual = number(quality.actual * 100.0, 1),
        estimated = number(quality.estimated * 100.0, 1),
        forecast = number(quality.forecast * 100.0, 1),
        carried = number(quality.carried_forward * 100.0, 1),
        default = number(quality.default_factor * 100.0, 1),
        instrument_share = number(totals.market_instrument_share * 100.0, 1),
        method_version = escape(&statement.method_version),
        method = escape(&statement.method),
        readings = statement
            .versions
            .readings
            .map_or("none".into(), |v| v.to_string()),
        intensity = statement
            .versions
            .intensity
            .map_or("none".into(), |v| v.to_string()),
        registry = statement.versions.registry,
        sha = escape(&statement.sha256),
    )
}
