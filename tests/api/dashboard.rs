//! The dashboard's files as served: embedded, same-origin only (CSP), its own 404 page, and the
//! API's problem+json rules left to the API.
use crate::helpers::{assert_problem, spawn_app};

#[tokio::test]
async fn the_page_and_its_files_are_served_with_a_strict_content_security_policy() {
    let app = spawn_app().await;
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let moved = client.get(app.url("/dashboard")).send().await.unwrap();
    assert_eq!(moved.status(), 308);
    assert_eq!(moved.headers()["location"], "/dashboard/");
    for (path, media) in [
        ("/dashboard/", "text/html"),
        ("/dashboard/app.js", "text/javascript"),
        ("/dashboard/style.css", "text/css"),
        (
            "/dashboard/vendor/uplot/uPlot.iife.min.js",
            "text/javascript",
        ),
    ] {
        let response = client.get(app.url(path)).send().await.unwrap();
        assert_eq!(response.status(), 200, "{path}");
        let headers = response.headers();
        assert!(
            headers["content-type"].to_str().unwrap().starts_with(media),
            "{path}"
        );
        let policy = headers["content-security-policy"].to_str().unwrap();
        assert!(policy.starts_with("default-src 'self'"), "{policy}");
        assert!(
            !policy.contains("unsafe-inline") && !policy.contains("http"),
            "{policy}"
        );
        assert_eq!(headers["x-content-type-options"], "nosniff");
        let etag = headers["etag"].to_str().unwrap().to_owned();
        let again = client
            .get(app.url(path))
            .header("if-none-match", &etag)
            .send()
            .await
            .unwrap();
        assert_eq!(again.status(), 304, "{path}");
    }
    let page = client.get(app.url("/dashboard/")).send().await.unwrap();
    let html = page.text().await.unwrap();
    assert!(html.contains(r#"<script type="module" src="app.js">"#));
}

#[tokio::test]
async fn an_unknown_dashboard_path_is_the_pages_own_404_and_the_api_keeps_problem_json() {
    let app = spawn_app().await;
    let missing = reqwest::get(app.url("/dashboard/no/such/page"))
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    assert!(missing.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    assert!(missing.headers().contains_key("content-security-policy"));
    assert!(missing.text().await.unwrap().contains("Open the dashboard"));
    assert_problem(app.get("/v1/no-such-thing").await, 404, "not_found").await;
    assert_problem(app.get("/dashboards").await, 404, "not_found").await;
}

#[test]
fn the_grafana_dashboard_asks_only_for_operations_of_the_contract() {
    let contract = serde_json::to_value(carbon_ledger::http::openapi_document()).unwrap();
    let paths = contract["paths"].as_object().unwrap();
    let dashboard: serde_json::Value =
        serde_json::from_str(include_str!("../../contrib/grafana/carbon-ledger.json")).unwrap();
    let mut urls = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            let url = target["url"].as_str().unwrap();
            // Grafana's `${name}` variables stand where the contract has `{name}` parameters.
            let path = url.replace("${", "{");
            let operation = &paths
                .get(&path)
                .unwrap_or_else(|| panic!("{url} is not a path of the contract"))["get"];
            let known: Vec<&str> = operation["parameters"]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or_default()
                .iter()
                .map(|p| p["name"].as_str().unwrap())
                .collect();
            for param in target["url_options"]["params"].as_array().unwrap() {
                let name = param["key"].as_str().unwrap();
                assert!(known.contains(&name), "{url} takes no parameter {name}");
            }
            urls.push(url.to_owned());
        }
    }
    assert!(urls.len() >= 5, "{urls:?}");
}
