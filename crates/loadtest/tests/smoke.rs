//! The harness itself, end to end with tiny parameters: a run with non-zero throughput and no 5xx, one
//! chaos scenario that must pass, and the overhead measurement with every probe answering. Each runs the
//! `loadtest` binary (its own throwaway Postgres, Redis and emulator) and stays well under 20 s.

use std::process::Command;

fn loadtest() -> Command {
    Command::new(env!("CARGO_BIN_EXE_loadtest"))
}

/// `loadtest <args> --json <file>` (`args` separated by blanks), which must succeed; its JSON report.
fn report(args: &str) -> serde_json::Value {
    let dir = tempfile::tempdir().expect("temp dir");
    let json = dir.path().join("report.json");
    let output = loadtest().args(args.split_whitespace()).arg("--json").arg(&json).output().expect("loadtest runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "loadtest {args} failed:\n{stdout}\n{stderr}");
    serde_json::from_slice(&std::fs::read(&json).expect("json report")).expect("valid json")
}

#[test]
fn a_tiny_run_has_throughput_and_no_server_errors() {
    let report = report("run --orgs 2 --users 2 --concurrency 4 --duration-secs 2 --warmup-secs 0 --max-requests 3000");
    for phase in ["mixed", "list_only", "hello"] {
        let load = &report[phase]["load"];
        assert!(load["throughput_rps"].as_f64().is_some_and(|t| t > 0.0), "{phase}: no throughput: {load}");
        let statuses = load["statuses"].as_object().expect("statuses");
        assert!(statuses.keys().all(|s| !s.starts_with('5')), "{phase}: server errors: {statuses:?}");
        assert_eq!(load["transport_errors"], 0, "{phase}: {load}");
        assert!(load["responses"].as_u64().is_some_and(|n| n <= 3000 + 4), "{phase}: request bound: {load}");
    }
    assert!(report["pgbench"]["tps"].as_f64().is_some_and(|t| t > 0.0), "pgbench: {}", report["pgbench"]);
    assert_eq!(report["mixed"]["server"]["audit_dropped"], 0);
}

#[test]
fn the_flaky_auth_service_scenario_passes() {
    let output = loadtest()
        .args(["chaos", "auth-flaky", "--duration-secs", "8", "--concurrency", "4"])
        .output()
        .expect("loadtest runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "chaos auth-flaky failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("== chaos auth-flaky: PASS"), "{stdout}");
    assert!(!stdout.contains("FAIL"), "{stdout}");
}

#[test]
fn every_overhead_probe_answers_and_every_pair_is_reported() {
    // A probe whose request is not answered with 200 fails the command.
    let report = report("overhead --variant no-redis --rounds 2 --block 5 --warmup 5");
    let variants = report["variants"].as_array().expect("variants");
    assert_eq!(variants.len(), 1, "{report}");
    let series = variants[0]["series"].as_array().expect("series");
    assert!(
        series.iter().any(|s| s["name"] == "org no-op transaction on a bare router"),
        "the routed transaction probe ran: {series:?}"
    );
    for s in series {
        assert_eq!(s["latency"]["count"], 10, "one block of 5 requests per round, 2 rounds: {s}");
    }
    let pairs = variants[0]["overhead"].as_array().expect("overhead");
    assert_eq!(pairs.len(), 11, "every pair: {pairs:?}");
    for p in pairs {
        assert_eq!(p["requests"], 10, "{p}");
        assert!(p["allocations_with"][0].as_u64().is_some_and(|n| n > 0), "allocations counted: {p}");
    }
}
