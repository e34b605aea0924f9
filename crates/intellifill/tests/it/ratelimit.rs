//! Rate limits through the real server: headers, 429 bodies, scopes, proxies, Redis and its fallback.

use crate::helpers::{TestApp, assert_error, dead_redis_url, email};

fn header(response: &reqwest::Response, name: &str) -> Option<String> {
    response.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned)
}

#[tokio::test]
async fn the_user_limit_answers_429_with_standard_headers() {
    let (app, u) = TestApp::with_user_using(|a| a.rate_limit_user_per_minute = Some("5".into())).await;
    let mut remaining = Vec::new();
    for _ in 0..5 {
        let r = app.http.get(app.url("/api/me")).bearer_auth(&u.token).send().await.expect("request");
        assert_eq!(r.status().as_u16(), 200);
        assert_eq!(header(&r, "ratelimit-limit").as_deref(), Some("5"));
        assert_eq!(header(&r, "ratelimit-policy").as_deref(), Some("5;w=60"));
        assert!(header(&r, "ratelimit-reset").is_some_and(|v| v.parse::<u64>().is_ok_and(|s| s <= 60)));
        remaining.push(header(&r, "ratelimit-remaining").and_then(|v| v.parse::<u32>().ok()).expect("remaining"));
    }
    assert_eq!(remaining, [4, 3, 2, 1, 0]);
    let r = app.http.get(app.url("/api/me")).bearer_auth(&u.token).send().await.expect("request");
    assert_eq!(r.status().as_u16(), 429);
    assert!(header(&r, "retry-after").is_some_and(|v| v.parse::<u64>().is_ok_and(|s| (1..=60).contains(&s))));
    assert_eq!(header(&r, "ratelimit-remaining").as_deref(), Some("0"));
    let body: serde_json::Value = r.json().await.expect("json");
    assert_eq!(body["code"], "RATE_LIMITED");
    assert!(body["requestId"].is_string());
    // Another user is not affected.
    let other = app.user(&email("other")).await;
    assert_eq!(app.get(&other, "/api/me").await.0, 200);
}

#[tokio::test]
async fn the_ip_limit_applies_before_authentication() {
    let app = TestApp::spawn_with(|a| a.rate_limit_ip_per_minute = Some("3".into())).await;
    for _ in 0..3 {
        let (s, b) = app.send(app.http.get(app.url("/api/me"))).await;
        assert_error(s, &b, 401, "TOKEN_MISSING");
    }
    let (s, b) = app.send(app.http.get(app.url("/api/me"))).await;
    assert_error(s, &b, 429, "RATE_LIMITED");
    let (s, _) = app.send(app.http.get(app.url("/health"))).await;
    assert_eq!(s, 429, "per ip means every route");
}

#[tokio::test]
async fn forwarded_addresses_count_only_behind_trusted_proxies() {
    let untrusted = TestApp::spawn_with(|a| a.rate_limit_ip_per_minute = Some("2".into())).await;
    for (i, ip) in ["198.51.100.1", "198.51.100.2", "198.51.100.3"].iter().enumerate() {
        let (s, _) = untrusted.send(untrusted.http.get(untrusted.url("/health")).header("x-forwarded-for", *ip)).await;
        assert_eq!(s, if i < 2 { 200 } else { 429 }, "spoofed X-Forwarded-For is ignored");
    }
    let trusted =
        TestApp::spawn_with(settings!(rate_limit_ip_per_minute = "2", trusted_proxies = "127.0.0.1/32, ::1")).await;
    for ip in ["198.51.100.1", "198.51.100.2", "198.51.100.3"] {
        for _ in 0..2 {
            let (s, _) = trusted.send(trusted.http.get(trusted.url("/health")).header("x-forwarded-for", ip)).await;
            assert_eq!(s, 200, "each client behind the proxy has its own bucket");
        }
    }
    let r = trusted.http.get(trusted.url("/health")).header("x-forwarded-for", "198.51.100.1").send().await.expect("r");
    assert_eq!(r.status().as_u16(), 429, "{:?}", r.headers());
}

#[tokio::test]
async fn the_org_limit_covers_searches_and_writes_of_the_whole_org() {
    let (app, a, org) =
        TestApp::with_org_using(|a| a.rate_limit_org_per_minute = Some("3".into()), "Limited org").await;
    let b = app.member(org, "MEMBER").await;
    let search = format!("/api/organizations/{org}/knowledge/search?q=x");
    assert_eq!(app.get(&a, &search).await.0, 200);
    assert_eq!(app.get(&b, &search).await.0, 200);
    app.knowledge(&a, org, "one", "c").await;
    let (s, body) = app.get(&b, &search).await;
    assert_error(s, &body, 429, "RATE_LIMITED");
    // Plain reads are not org-limited.
    assert_eq!(app.get(&b, &format!("/api/organizations/{org}/knowledge")).await.0, 200);
}

#[tokio::test]
async fn the_auth_endpoint_limit_covers_session_routes_per_user_and_address() {
    let (app, u) = TestApp::with_user_using(|a| a.rate_limit_auth_per_minute = Some("2".into())).await;
    for _ in 0..2 {
        let r = app.http.get(app.url("/api/auth/session")).bearer_auth(&u.token).send().await.expect("request");
        assert_eq!(r.status().as_u16(), 200);
        assert_eq!(header(&r, "ratelimit-policy").as_deref(), Some("2;w=60"), "the tightest policy is reported");
    }
    let (s, body) = app.send(app.http.get(app.url("/api/auth/session")).bearer_auth(&u.token)).await;
    assert_error(s, &body, 429, "RATE_LIMITED");
    // Other routes are not auth-limited; another user has a bucket of their own.
    assert_eq!(app.get(&u, "/api/me").await.0, 200);
    let other = app.user(&email("other")).await;
    assert_eq!(app.get(&other, "/api/auth/session").await.0, 200);
}

#[tokio::test]
async fn limits_hold_in_total_across_instances_sharing_redis() {
    let a = TestApp::spawn_with(|args| args.rate_limit_user_per_minute = Some("6".into())).await;
    let b = a.peer(|args| args.rate_limit_user_per_minute = Some("6".into())).await;
    let u = a.user(&email("u")).await;
    let mut statuses = Vec::new();
    for i in 0..8 {
        let app = if i % 2 == 0 { &a } else { &b };
        statuses.push(app.get(&u, "/api/me").await.0);
    }
    assert_eq!(statuses, [200, 200, 200, 200, 200, 200, 429, 429]);
    assert_eq!(a.state.rate_limits.store_name(), "redis");
}

#[tokio::test]
async fn leased_cells_never_admit_more_than_the_limit_across_instances() {
    // 120 per minute: leases of up to 120/16 = 7 cells at first, one at a time near the end.
    let a = TestApp::spawn_with(|args| args.rate_limit_user_per_minute = Some("120".into())).await;
    let b = a.peer(|args| args.rate_limit_user_per_minute = Some("120".into())).await;
    let u = a.user(&email("u")).await;
    let requests = (0..200).map(|i| {
        let (app, u) = (if i % 2 == 0 { &a } else { &b }, &u);
        async move { app.get(u, "/api/me").await.0 }
    });
    let started = std::time::Instant::now();
    let statuses = futures::future::join_all(requests).await;
    // GCRA gives a cell back every 500 ms (120 per minute): the burst may use those too.
    let refilled = (started.elapsed().as_millis() / 500) as usize;
    let admitted = statuses.iter().filter(|s| **s == 200).count();
    let refused = statuses.iter().filter(|s| **s == 429).count();
    assert_eq!(admitted + refused, 200, "{statuses:?}");
    // Every admitted request took a cell in Redis: never above the limit. Cells an instance still holds
    // when the other is refused are the only shortfall, and a lease is at most 1/16 of what is left.
    assert!(admitted <= 120 + refilled, "{admitted} admitted over a limit of 120 (+{refilled} refilled)");
    assert!(admitted >= 120 - 2 * 120 / 16, "{admitted} admitted: leases held back too many cells");
    let (s, _) = a.get(&u, "/api/me").await;
    let refilled_now = (started.elapsed().as_millis() / 500) as usize;
    assert!(s == 429 || refilled_now > admitted.saturating_sub(120), "the limit is spent on every instance ({s})");
}

#[tokio::test]
async fn a_concurrent_burst_under_the_limit_is_never_refused() {
    // Concurrent misses must not each take a lease: 250 at once against a limit of 300 all pass.
    let (app, u) =
        TestApp::with_user_using(settings!(rate_limit_user_per_minute = "300", rate_limit_ip_per_minute = "300")).await;
    let limits = &app.state.rate_limits;
    let (decisions, trips) = (limits.decisions(), limits.round_trips());
    let statuses = futures::future::join_all((0..250).map(|_| app.get(&u, "/api/me"))).await;
    let refused = statuses.iter().filter(|(s, _)| *s != 200).count();
    assert_eq!(refused, 0, "{:?}", statuses.iter().find(|(s, _)| *s != 200));
    // One call to Redis per key at a time serves the requests waiting behind it.
    let (decisions, trips) = (limits.decisions() - decisions, limits.round_trips() - trips);
    assert_eq!(decisions, 500);
    assert!(trips * 4 <= decisions, "{trips} Redis round trips for {decisions} concurrent decisions");
}

#[tokio::test]
async fn a_busy_key_costs_a_fraction_of_a_round_trip_per_request() {
    let (app, u) =
        TestApp::with_user_using(settings!(rate_limit_user_per_minute = "100000", rate_limit_ip_per_minute = "100000"))
            .await;
    let limits = &app.state.rate_limits;
    let (decisions, trips) = (limits.decisions(), limits.round_trips());
    let mut remaining = Vec::new();
    for _ in 0..300 {
        let r = app.http.get(app.url("/api/me")).bearer_auth(&u.token).send().await.expect("request");
        assert_eq!(r.status().as_u16(), 200);
        remaining.push(header(&r, "ratelimit-remaining").and_then(|v| v.parse::<u32>().ok()).expect("remaining"));
    }
    let decisions = limits.decisions() - decisions;
    let trips = limits.round_trips() - trips;
    assert_eq!(decisions, 600, "two policies (ip, user) per request");
    assert!(trips * 5 <= decisions, "{trips} Redis round trips for {decisions} decisions");
    assert_eq!(limits.store_name(), "redis");
    // Served from a lease or not, the count stays within what was spent (the bucket refills ~1,700/s).
    assert!(remaining.iter().all(|r| (100_000 - 300..100_000).contains(r)), "{remaining:?}");
}

#[tokio::test]
async fn without_redis_limits_fall_back_to_the_process() {
    let (app, u) =
        TestApp::with_user_using(settings!(redis_url = dead_redis_url(), rate_limit_user_per_minute = "3")).await;
    let statuses: Vec<u16> =
        futures::future::join_all((0..4).map(|_| app.get(&u, "/api/me"))).await.iter().map(|r| r.0).collect();
    assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 3, "{statuses:?}");
    assert_eq!(statuses.iter().filter(|s| **s == 429).count(), 1, "{statuses:?}");
    assert_eq!(app.state.rate_limits.store_name(), "memory");
}

#[tokio::test]
async fn hostile_forwarded_for_entries_cannot_choose_or_share_a_bucket() {
    let app =
        TestApp::spawn_with(settings!(rate_limit_ip_per_minute = "2", trusted_proxies = "127.0.0.1/32, ::1")).await;
    let get = |xff: &str| app.http.get(app.url("/health")).header("x-forwarded-for", xff.to_owned());
    // Whatever the client prepends, the right-most untrusted address is its bucket.
    for hostile in ["garbage, 198.51.100.7", "unknown, 198.51.100.7:4711"] {
        assert_eq!(app.send(get(hostile)).await.0, 200, "{hostile}");
    }
    let (s, b) = app.send(get("6.6.6.6, [2001:db8::1]:80, 198.51.100.7")).await;
    assert_error(s, &b, 429, "RATE_LIMITED");
    // A bracketed IPv6 client with a port is a client of its own.
    assert_eq!(app.send(get("[2001:db8::42]:443")).await.0, 200);
    // An invalid entry where the client should be: the proxy (the peer) is the client.
    assert_eq!(app.send(get("198.51.100.8, unknown")).await.0, 200);
    assert_eq!(app.send(app.http.get(app.url("/health"))).await.0, 200);
    let (s, b) = app.send(get("198.51.100.9, not-an-ip")).await;
    assert_error(s, &b, 429, "RATE_LIMITED");
    // ... and 198.51.100.8 was never charged.
    assert_eq!(app.send(get("198.51.100.8")).await.0, 200);
}

#[tokio::test]
async fn outsiders_cannot_spend_an_organizations_limit() {
    let (app, owner, org) =
        TestApp::with_org_using(|a| a.rate_limit_org_per_minute = Some("3".into()), "Victim org").await;
    let path = format!("/api/organizations/{org}/knowledge");
    for i in 0..3 {
        let outsider = app.user(&email(&format!("outsider{i}"))).await;
        for _ in 0..4 {
            let request = app.http.post(app.url(&path)).bearer_auth(&outsider.token);
            let (s, b) = app.send(request.json(&serde_json::json!({"title": "spam", "content": "x"}))).await;
            assert_error(s, &b, 403, "NOT_ORG_MEMBER");
        }
    }
    // The owner's writes still get the whole budget of the organization.
    for i in 0..3 {
        app.knowledge(&owner, org, &format!("mine {i}"), "c").await;
    }
    let request = app.http.post(app.url(&path)).bearer_auth(&owner.token);
    let (s, b) = app.send(request.json(&serde_json::json!({"title": "fourth", "content": "c"}))).await;
    assert_error(s, &b, 429, "RATE_LIMITED");
}

#[tokio::test]
async fn per_ip_refusals_are_counted_in_the_request_metrics() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").expect("port").local_addr().expect("addr").port();
    let app =
        TestApp::spawn_with(settings!(rate_limit_ip_per_minute = "2", metrics_bind_addr = format!("127.0.0.1:{port}")))
            .await;
    let statuses: Vec<u16> =
        futures::future::join_all((0..4).map(|_| async { app.send(app.http.get(app.url("/health"))).await.0 })).await;
    assert_eq!(statuses.iter().filter(|s| **s == 429).count(), 2, "{statuses:?}");
    assert_eq!(app.send(app.http.get(app.url("/no/such/route"))).await.0, 429);
    let text = app.http.get(format!("http://127.0.0.1:{port}/metrics")).send().await.expect("scrape");
    let text = text.text().await.expect("text");
    let count = |route: &str, status: &str| {
        text.lines()
            .find(|l| {
                l.starts_with("http_requests_total{")
                    && l.contains(&format!("route=\"{route}\""))
                    && l.contains(&format!("status=\"{status}\""))
            })
            .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
    };
    assert_eq!(count("/health", "200"), Some(2.0), "{text}");
    assert_eq!(count("/health", "429"), None, "a refused request never reached its route: {text}");
    assert_eq!(count("unmatched", "429"), Some(3.0), "every response is counted: {text}");
}

#[tokio::test]
async fn a_per_ip_refusal_is_held_while_other_addresses_are_answered() {
    let hold = std::time::Duration::from_millis(1500);
    let app = TestApp::spawn_with(settings!(
        rate_limit_ip_per_minute = "1",
        rate_limit_ip_refusal_delay_ms = "1500",
        trusted_proxies = "127.0.0.1/32, ::1"
    ))
    .await;
    let from = |ip: &str| app.http.get(app.url("/health")).header("x-forwarded-for", ip.to_owned());
    assert_eq!(app.send(from("198.51.100.7")).await.0, 200);
    let started = std::time::Instant::now();
    let held = tokio::spawn(from("198.51.100.7").send());
    assert_eq!(app.send(from("198.51.100.8")).await.0, 200, "another address is answered during the hold");
    assert!(!held.is_finished(), "the refusal is still held when the other address has its answer");
    let refused = held.await.expect("task").expect("the held request is answered");
    assert!(started.elapsed() >= hold, "held {:?}, configured {hold:?}", started.elapsed());
    assert_eq!(refused.status().as_u16(), 429);
    assert!(refused.headers().contains_key("retry-after"), "{:?}", refused.headers());
    let body: serde_json::Value = refused.json().await.expect("json");
    assert_eq!(body["code"], "RATE_LIMITED", "{body}");
}
