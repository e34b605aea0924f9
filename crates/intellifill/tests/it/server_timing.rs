//! `SERVER_TIMING=true`: every routed response says where its time went (auth, pool wait, database
//! transaction, the rest, total); off by default, nothing is said.

use std::collections::BTreeMap;

use crate::helpers::{TestApp, TestUser};

/// The header's metrics and durations (ms), or None without the header.
async fn timing(app: &TestApp, user: Option<&TestUser>, path: &str) -> (u16, Option<BTreeMap<String, f64>>) {
    let mut request = app.http.get(app.url(path));
    if let Some(user) = user {
        request = request.bearer_auth(&user.token);
    }
    let response = request.send().await.expect("request");
    let status = response.status().as_u16();
    let parsed = response.headers().get("server-timing").map(|v| {
        v.to_str()
            .expect("ascii")
            .split(", ")
            .map(|entry| {
                let (name, dur) = entry.split_once(";dur=").unwrap_or_else(|| panic!("metric;dur=ms, got {entry:?}"));
                (name.to_owned(), dur.parse::<f64>().unwrap_or_else(|_| panic!("a number of ms: {entry:?}")))
            })
            .collect()
    });
    (status, parsed)
}

#[tokio::test]
async fn server_timing_reports_auth_pool_db_and_the_rest_when_enabled() {
    let (app, owner, org) = TestApp::with_org_using(|a| a.server_timing = Some("true".into()), "Timing").await;
    app.knowledge(&owner, org, "timed", "alpha").await;
    let (status, t) = timing(&app, Some(&owner), &format!("/api/organizations/{org}/knowledge")).await;
    assert_eq!(status, 200);
    let t = t.expect("a Server-Timing header");
    assert_eq!(t.keys().map(String::as_str).collect::<Vec<_>>(), ["app", "auth", "db", "pool", "total"]);
    assert!(t.values().all(|v| *v >= 0.0), "{t:?}");
    // The request ran a transaction and was authenticated: both took measurable time, within the total.
    assert!(t["db"] > 0.0 && t["auth"] > 0.0, "{t:?}");
    let parts = t["auth"] + t["pool"] + t["db"] + t["app"];
    assert!((parts - t["total"]).abs() < 0.01, "the parts add up to the total: {t:?}");

    // A refused request has it too: no transaction, no pool wait.
    let (status, t) = timing(&app, None, &format!("/api/organizations/{org}/knowledge")).await;
    assert_eq!(status, 401);
    let t = t.expect("a Server-Timing header on an error");
    assert_eq!((t["db"], t["pool"]), (0.0, 0.0), "{t:?}");

    // A request refused by the membership check: its transaction is rolled back and still counted.
    let stranger = app.user(&crate::helpers::email("stranger")).await;
    let (status, t) = timing(&app, Some(&stranger), &format!("/api/organizations/{org}/knowledge")).await;
    assert_eq!(status, 403);
    assert!(t.expect("header")["db"] > 0.0);
}

#[tokio::test]
async fn server_timing_is_off_by_default() {
    let (app, owner, org) = TestApp::with_org("No timing").await;
    let (status, t) = timing(&app, Some(&owner), &format!("/api/organizations/{org}/knowledge")).await;
    assert_eq!(status, 200);
    assert!(t.is_none(), "{t:?}");
}
