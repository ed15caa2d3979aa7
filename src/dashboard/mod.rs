//! The customer dashboard: a static page (HTML, CSS, plain ES modules and the vendored uPlot)
//! embedded in the binary and served under `/dashboard/`. It calls the public API with the key the
//! user pastes, so it can show exactly what that key may read and nothing more. Every answer
//! carries a strict Content-Security-Policy: the page loads nothing from anywhere but this origin.
use actix_web::http::header::{self, HeaderValue};
use actix_web::{web, HttpRequest, HttpResponse};
use sha2::{Digest, Sha256};
use std::sync::OnceLock;

/// Where the page lives; the API's problem+json rules stop at this prefix.
pub const PREFIX: &str = "/dashboard";

/// No inline script or style, no other origin: the page's own files and API calls only.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
style-src 'self'; img-src 'self' data: blob:; connect-src 'self'; font-src 'self'; \
object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// One embedded file.
pub struct Asset {
    pub path: &'static str,
    pub content_type: &'static str,
    pub body: &'static [u8],
}

macro_rules! asset {
    ($path:literal, $content_type:expr) => {
        Asset {
            path: $path,
            content_type: $content_type,
            body: include_bytes!(concat!("assets/", $path)),
        }
    };
}

const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";
const HTML: &str = "text/html; charset=utf-8";

/// Every file the page is made of.
pub const ASSETS: &[Asset] = &[
    asset!("index.html", HTML),
    asset!("style.css", CSS),
    asset!("app.js", JS),
    asset!("api.js", JS),
    asset!("format.js", JS),
    asset!("view.js", JS),
    asset!("charts.js", JS),
    asset!("tables.js", JS),
    asset!("operator.js", JS),
    asset!("statements.js", JS),
    asset!("insights.js", JS),
    asset!("favicon.svg", "image/svg+xml"),
    asset!("vendor/uplot/uPlot.iife.min.js", JS),
    asset!("vendor/uplot/uPlot.min.css", CSS),
    asset!("vendor/uplot/LICENSE", "text/plain; charset=utf-8"),
];

const NOT_FOUND_PAGE: &[u8] = include_bytes!("assets/404.html");

/// Whether a request path is the page's (its answers, errors included, are the page's own).
pub fn serves(path: &str) -> bool {
    path == PREFIX
        || path
            .strip_prefix(PREFIX)
            .is_some_and(|rest| rest.starts_with('/'))
}

pub fn configure(config: &mut web::ServiceConfig) {
    config
        .route(PREFIX, web::get().to(to_the_page))
        .route("/dashboard/{path:.*}", web::get().to(serve));
}

async fn to_the_page() -> HttpResponse {
    with_page_headers(HttpResponse::PermanentRedirect())
        .insert_header((header::LOCATION, "/dashboard/"))
        .finish()
}

fn with_page_headers(
    mut response: actix_web::HttpResponseBuilder,
) -> actix_web::HttpResponseBuilder {
    response
        .insert_header((header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((header::REFERRER_POLICY, "no-referrer"))
        .insert_header((header::X_FRAME_OPTIONS, "DENY"));
    response
}

/// Strong validators, computed once: a browser revalidates and gets 304 until the binary changes.
fn etags() -> &'static [String] {
    static ETAGS: OnceLock<Vec<String>> = OnceLock::new();
    ETAGS.get_or_init(|| {
        ASSETS
            .iter()
            .map(|asset| format!("\"{}\"", &hex::encode(Sha256::digest(asset.body))[..16]))
            .collect()
    })
}

async fn serve(request: HttpRequest, path: web::Path<String>) -> HttpResponse {
    let wanted = match path.as_str() {
        "" => "index.html",
        other => other,
    };
    let Some((index, asset)) = ASSETS
        .iter()
        .enumerate()
        .find(|(_, asset)| asset.path == wanted)
    else {
        return with_page_headers(HttpResponse::NotFound())
            .content_type(HTML)
            .body(NOT_FOUND_PAGE);
    };
    let etag = &etags()[index];
    let fresh = request
        .headers()
        .get(header::IF_NONE_MATCH)
        .is_some_and(|v| v == HeaderValue::from_str(etag).unwrap_or(HeaderValue::from_static("")));
    let mut response = with_page_headers(if fresh {
        HttpResponse::NotModified()
    } else {
        HttpResponse::Ok()
    });
    response
        .insert_header((header::ETAG, etag.as_str()))
        .insert_header((header::CACHE_CONTROL, "no-cache"));
    if fresh {
        return response.finish();
    }
    response.content_type(asset.content_type).body(asset.body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn the_pages_own_files_stay_under_150_kb_compressed() {
        let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        for asset in ASSETS {
            gzip.write_all(asset.body).unwrap();
        }
        let compressed = gzip.finish().unwrap().len();
        let raw: usize = ASSETS.iter().map(|a| a.body.len()).sum();
        println!("dashboard assets: {raw} bytes, {compressed} bytes gzip-compressed");
        assert!(compressed < 150_000, "{compressed} bytes");
    }

    #[test]
    fn every_vendored_file_matches_its_recorded_sha256() {
        let sums = include_str!("assets/vendor/uplot/SHA256SUMS");
        for line in sums.lines() {
            let (sum, name) = line.split_once("  ").unwrap();
            let asset = ASSETS
                .iter()
                .find(|a| a.path == format!("vendor/uplot/{name}"))
                .unwrap_or_else(|| panic!("{name} is not served"));
            assert_eq!(hex::encode(Sha256::digest(asset.body)), sum, "{name}");
        }
    }

    #[test]
    fn the_page_loads_no_inline_script_or_style() {
        let page = std::str::from_utf8(ASSETS[0].body).unwrap();
        assert!(!page.contains("<script>") && !page.contains("style="));
        assert!(!page.contains("http://") && !page.contains("https://"));
    }
}
