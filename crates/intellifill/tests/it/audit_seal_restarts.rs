//! A clean trail stays verifiable through what a deployment goes through: a SIGKILL of the binary, a spool
//! replay of old events, three instances writing and sealing at once, stopped and started again, and a
//! database outage under the sealer.

use std::time::Duration;

use crate::audit_seal::{Keys, assert_verifies, audit_cli_at, wait_sealed};
use crate::helpers::{TestApp, own_cluster, scalar};
use crate::observability::{metrics, sample};

#[tokio::test]
async fn a_trail_verifies_after_the_server_is_killed_mid_load() {
    let keys = Keys::new(11);
    let (mut app, owner, org) = TestApp::with_org_using(|a| keys.apply(a), "Killed").await;
    app.stop().await.expect("stop");
    let spool = tempfile::tempdir().expect("spool");
    let mut serve = app.serve_command(spool.path());
    serve
        .env("BIND_ADDR", "127.0.0.1:0")
        .env("AUDIT_SIGNING_KEY", &keys.seed)
        .env("AUDIT_SEAL_INTERVAL_SECS", "1")
        .env("AUDIT_FLUSH_INTERVAL_MS", "50")
        .env("RUST_LOG", "info");
    let mut child = tokio::process::Command::from(serve)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("serve");
    let base = listening(&mut child).await;
    let http = reqwest::Client::new();
    let load = (0..4).map(|c| {
        let (http, base, token) = (http.clone(), base.clone(), owner.token.clone());
        tokio::spawn(async move {
            for i in 0..1000 {
                let body = serde_json::json!({"title": format!("c{c} n{i}"), "content": "x"});
                let url = format!("{base}/api/organizations/{org}/knowledge");
                if http.post(url).bearer_auth(&token).json(&body).send().await.is_err() {
                    return;
                }
            }
        })
    });
    let load: Vec<_> = load.collect();
    // Killed while it writes and (every second) seals.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let pid = child.id().expect("pid").to_string();
    assert!(std::process::Command::new("kill").args(["-KILL", &pid]).status().expect("kill").success());
    let _ = child.wait().await;
    for task in load {
        let _ = task.await;
    }
    let written: i64 = crate::helpers::scalar(&app.owner, "SELECT count(*) FROM knowledge_sources", &[]).await;
    assert!(written > 0, "the load wrote before the kill");
    let restarted = TestApp::spawn_on(app.db.clone(), app.emulator.clone(), |a| keys.apply(a)).await;
    wait_sealed(&restarted).await;
    assert_verifies(&restarted, &keys);
}

/// `http://addr` from the `listening` log line of a spawned `serve`.
async fn listening(child: &mut tokio::process::Child) -> String {
    use tokio::io::{AsyncBufReadExt, BufReader};
    let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
    let found = tokio::time::timeout(Duration::from_secs(60), async {
        while let Ok(Some(line)) = lines.next_line().await {
            let v: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
            if v["message"] == "listening"
                && let Some(addr) = v["addr"].as_str()
            {
                return Some(format!("http://{addr}"));
            }
        }
        None
    })
    .await
    .expect("serve listens within 60 s")
    .expect("serve listened");
    // Keep draining stderr so the child never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    found
}

#[tokio::test]
async fn a_trail_verifies_after_a_spool_replay_of_old_events() {
    let keys = Keys::new(12);
    let (mut app, owner, org) = TestApp::with_org_using(|a| keys.apply(a), "Replayed").await;
    app.knowledge(&owner, org, "before", "sealed first").await;
    wait_sealed(&app).await;
    app.stop().await.expect("stop");
    // What a run that lost its database an hour ago left on disk.
    let spool = tempfile::tempdir().expect("dir");
    {
        let spool = intellifill::testing::Spool::open(spool.path()).expect("open");
        let events: Vec<_> = (0..5)
            .map(|i| {
                let mut e = intellifill::testing::AuditEvent::new(format!("test.replayed{i}"));
                e.created_at = chrono::Utc::now() - chrono::TimeDelta::hours(1);
                e.organization_id = Some(org);
                e
            })
            .collect();
        spool.append(&events).expect("append");
    }
    let dir = spool.path().display().to_string();
    let app = TestApp::spawn_on(app.db.clone(), app.emulator.clone(), |a| {
        keys.apply(a);
        a.audit_spool_dir = Some(dir);
    })
    .await;
    app.state.audit.flush().await;
    assert_eq!(app.state.audit.spool_pending(), 0, "replayed");
    let replayed: i64 =
        crate::helpers::scalar(&app.owner, "SELECT count(*) FROM audit_log WHERE action LIKE 'test.replayed%'", &[])
            .await;
    assert_eq!(replayed, 5);
    wait_sealed(&app).await;
    assert_verifies(&app, &keys);
}

#[tokio::test]
async fn three_instances_write_and_seal_one_chain_and_it_verifies_after_they_restart() {
    let keys = Keys::new(13);
    let (mut first, owner, org) = TestApp::with_org_using(|a| keys.apply(a), "Three").await;
    let mut apps = vec![first.peer(|a| keys.apply(a)).await, first.peer(|a| keys.apply(a)).await];
    for round in 0..2 {
        let all: Vec<&TestApp> = std::iter::once(&first).chain(apps.iter()).collect();
        let writes = all.iter().enumerate().flat_map(|(n, app)| {
            let owner = &owner;
            (0..10).map(move |i| async move {
                app.knowledge(owner, org, &format!("r{round} i{n} w{i}"), "x").await;
            })
        });
        futures::future::join_all(writes).await;
        for app in &all {
            app.state.audit.flush().await;
        }
        wait_sealed(&first).await;
        assert_verifies(&first, &keys);
        if round == 0 {
            for app in apps.iter_mut() {
                app.stop().await.expect("stop");
            }
            first.stop().await.expect("stop");
            let again = TestApp::spawn_on(first.db.clone(), first.emulator.clone(), |a| keys.apply(a)).await;
            apps = vec![again.peer(|a| keys.apply(a)).await, again.peer(|a| keys.apply(a)).await];
            first = again;
        }
    }
    let seqs: Vec<i64> = crate::helpers::column(&first.owner, "SELECT seq FROM audit_digests ORDER BY seq", &[]).await;
    assert_eq!(seqs, (1..=seqs.len() as i64).collect::<Vec<_>>(), "one chain without gaps");
}

#[tokio::test]
async fn the_sealer_survives_a_database_outage_and_seals_the_backlog_when_it_returns() {
    let keys = Keys::new(14);
    let (pg, runtime_url, owner_url) = own_cluster("seal_outage").await;
    let emulator = gotrue_emulator::Emulator::start(Default::default(), ([127, 0, 0, 1], 0).into()).await.expect("emu");
    let app = TestApp::spawn_with_urls("seal_outage".into(), runtime_url, owner_url.clone(), emulator, |a| {
        keys.apply(a);
        a.db_pool_wait_timeout_ms = Some("500".into());
        a.db_connect_timeout_ms = Some("500".into());
    })
    .await;
    let (owner, org) = app.owned_org("Outage").await;
    app.knowledge(&owner, org, "before", "sealed first").await;
    let before = wait_sealed(&app).await;
    let failed = |text: &str| sample(text, r#"audit_seal_failures_total{reason="database"}"#).unwrap_or(0.0);
    assert_eq!(failed(&metrics(&app).await), 0.0);

    pg.stop().await.expect("stop postgres");
    let down = tokio::time::Instant::now() + Duration::from_secs(20);
    while failed(&metrics(&app).await) < 2.0 {
        assert!(tokio::time::Instant::now() < down, "the sealer retries at each interval while Postgres is down");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    pg.restart().await.expect("restart postgres");
    let su = intellifill::testing::schema::connect(&owner_url).await.expect("owner again");
    // Written once the pool reconnects; the events of the outage come back from the spool.
    let up = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let r = app.http.post(app.url(&format!("/api/organizations/{org}/knowledge"))).bearer_auth(&owner.token);
        let s = r.json(&serde_json::json!({"title": "after", "content": "x"})).send().await.expect("send").status();
        if s.is_success() {
            break;
        }
        assert!(tokio::time::Instant::now() < up, "writes succeed again after the restart ({s})");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    app.state.audit.flush().await;
    let sealed = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let unsealed: i64 = scalar(
            &su,
            "SELECT count(*) FROM audit_log WHERE txid >= coalesce((SELECT max(to_xid) FROM audit_digests), 0)::text::xid8",
            &[],
        )
        .await;
        if unsealed == 0 && app.state.audit.spool_pending() == 0 {
            break;
        }
        assert!(tokio::time::Instant::now() < sealed, "{unsealed} row(s) still unsealed after the outage");
        app.state.audit.flush().await;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let after: i64 = scalar(&su, "SELECT count(*) FROM audit_digests", &[]).await;
    assert!(after > before, "the backlog was sealed after the outage ({before} -> {after} digests)");
    let writes: i64 = scalar(&su, "SELECT count(*) FROM audit_log WHERE action = 'knowledge.create'", &[]).await;
    assert_eq!(writes, 2, "both writes have their row");
    let (code, lines) = audit_cli_at(&owner_url, &["verify", "--public-key", keys.public_pem.to_str().expect("path")]);
    assert_eq!(code, 0, "the trail verifies after the outage: {lines:#?}");
    assert!(lines.last().is_some_and(|l| l.contains("0 problem(s)")), "{lines:#?}");
    drop(app);
    pg.stop().await.expect("stop");
}
