//! The OpenAPI document as a contract: schemathesis (PyPI; `scripts/setup` installs the pinned version into a
//! venv of its own) runs every check it has, through its examples, coverage, fuzzing and stateful phases,
//! against the real server, and must report no failure; the stateful phase must chain the document's links.
//!
//! The caller is a platform ADMIN who owns an organization holding knowledge sources and a second member;
//! generated path identifiers are mostly that organization and its members (see [`config`]), so the handlers
//! behind the organization gate are reached, not only the 403 in front of them. Rate limits are off, so a
//! response says what the handler does rather than how many requests came before it.
//! `POST /api/auth/logout` ends every session of its caller, so it runs apart, as a user of its own (without
//! the stateful phase: no link leads to it).

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Instant;

use uuid::Uuid;

use crate::helpers::{TestApp, email};

/// Where `scripts/setup` puts the venv; the same variable overrides it for both.
const VENV_VAR: &str = "SCHEMATHESIS_VENV";
const REQUIREMENTS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../scripts/schemathesis-requirements.txt");
/// Fixed, so a failure found once is found again by the same command.
const SEED: &str = "20240601";
/// Generated cases per operation in the fuzzing and stateful phases (the coverage phase adds its own fixed set):
/// about 1,000 requests in all, some 20 seconds on 2 cores.
const MAX_EXAMPLES: &str = "12";
const LOGOUT: &str = "/api/auth/logout";
/// Of the 15 links the document declares, the stateful phase must follow at least these (it reaches the rest
/// only when a generated create succeeds in an organization the caller may write to).
const MIN_LINKS_COVERED: usize = 5;
/// When set, schemathesis reads the document from this file instead of the server (to try a changed document
/// against today's handlers before changing the annotations).
const SCHEMA_VAR: &str = "CONTRACT_SCHEMA";
/// When set, each run also writes its requests and responses (HAR) and events (NDJSON) under this directory,
/// beside the document it tested (`openapi.json`).
const REPORT_DIR_VAR: &str = "CONTRACT_REPORT_DIR";

fn venv() -> PathBuf {
    if let Some(dir) = std::env::var_os(VENV_VAR) {
        return PathBuf::from(dir);
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache")))
        .expect("HOME or XDG_CACHE_HOME is set");
    cache.join("intellifill").join("schemathesis-venv")
}

/// The installed schemathesis; without it the test fails (it is part of the suite, never skipped).
fn schemathesis() -> PathBuf {
    let venv = venv();
    let bin = venv.join("bin").join("schemathesis");
    if bin.is_file() {
        return bin;
    }
    let install = format!(
        "python3 -m venv --clear '{venv}' && '{venv}/bin/pip' install -r '{REQUIREMENTS}'",
        venv = venv.display()
    );
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("schemathesis is not installed at {}: scripts/setup installs it in CI ({install})", bin.display());
    }
    panic!("schemathesis is not installed at {}; run scripts/setup as root, or: {install}", bin.display());
}

/// What the run works on: the caller's organization and its members.
struct Fixture {
    org: Uuid,
    members: Vec<Uuid>,
}

fn toml_list(items: impl IntoIterator<Item = String>) -> String {
    let quoted: Vec<String> = items.into_iter().map(|item| format!("\"{item}\"")).collect();
    format!("[{}]", quoted.join(", "))
}

/// Settings the command line has no flag for.
///
/// Path identifiers are drawn from the fixture most of the time, the rest stays generated (so unknown and
/// malformed ids are still tried): `{orgId}` is the caller's organization, `{userId}` one of its members.
/// Body fields get no such binding: a bound field is written into every generated body, which breaks the
/// "exactly one of `email`, `userId`" of a new member.
///
/// No state is kept between runs (no example database, no cache); reports go to the run's own directory.
///
/// The stateful phase chains the links the document declares (a created organization's id into its reads and
/// creates, a created knowledge source or invitation into its reads, updates, deletes, revocation, acceptance).
/// None are inferred: schemathesis 4.32's inference, depending on the data earlier phases left, builds a link
/// from `GET /api/admin/audit` to `PATCH …/members/{userId}` naming a parameter `id` that operation does not
/// have ("Invalid OpenAPI Links Definition"), which skips the stateful phase or fails the run for a reason
/// outside the server.
fn config(dir: &Path, fixture: &Fixture) -> PathBuf {
    let path = dir.join("schemathesis.toml");
    let text = format!(
        r#"[cache]
enabled = false

[reports]
directory = "{reports}"

[dictionaries.orgs]
values = {orgs}

[dictionaries.members]
values = {members}

# A body over MAX_BODY_BYTES is refused by its size (413) before it is parsed: a correct rejection of a
# request the schema forbids (a `content` near its 1,000,000-character limit can exceed 1 MiB on the wire).
[phases.stateful.inference]
algorithms = []

[checks.negative_data_rejection]
expected-statuses = ["400", "401", "403", "404", "405", "406", "409", "413", "415", "422", "428", "429", "5xx"]

[parameters]
"path.orgId" = {{ dictionary = "orgs", probability = 0.9 }}
"path.userId" = {{ dictionary = "members", probability = 0.5 }}
"#,
        reports = dir.join("reports").display(),
        orgs = toml_list([fixture.org.to_string()]),
        members = toml_list(fixture.members.iter().map(Uuid::to_string)),
    );
    std::fs::write(&path, text).expect("schemathesis.toml");
    path
}

struct Run<'a> {
    schemathesis: &'a Path,
    dir: &'a Path,
    config: &'a Path,
    schema: &'a str,
    base: &'a str,
    token: &'a str,
}

impl Run<'_> {
    /// `schemathesis run` with every check and the given phases; `filter` selects the operations.
    async fn run(&self, name: &str, phases: &str, filter: &[&str]) -> Output {
        let mut command = tokio::process::Command::new(self.schemathesis);
        command
            .arg("--config-file")
            .arg(self.config)
            .arg("--no-color")
            .arg("run")
            .arg(self.schema)
            .args(["--url", self.base])
            .args(["--checks", "all"])
            .args(["--phases", phases])
            .args(["--mode", "all"])
            .args(["--max-examples", MAX_EXAMPLES])
            .args(["--seed", SEED])
            .args(["--generation-database", "none"])
            // NUL (U+0000) in any text is refused by design (Postgres text cannot hold it; the document says so
            // in its description): not generated.
            .args(["--generation-allow-x00", "false"])
            // One worker: the requests go out in one order, so a seed replays a run. (Two workers also trip
            // CPython 3.11's `ast` module, shared between threads: "AST constructor recursion depth mismatch".)
            .args(["--workers", "1"])
            .args(["--request-timeout", "10"])
            .arg("--continue-on-failure")
            .args(["--header", &format!("Authorization: Bearer {}", self.token)])
            .args(filter)
            .current_dir(self.dir)
            // Loopback only, whatever proxy the environment names.
            .env("NO_PROXY", "*")
            .env("no_proxy", "*")
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .kill_on_drop(true);
        if let Some(dir) = std::env::var_os(REPORT_DIR_VAR) {
            command.args(["--report", "har,ndjson", "--output-truncate", "false", "--report-dir"]);
            command.arg(Path::new(&dir).join(name));
        }
        command.output().await.expect("schemathesis runs")
    }
}

/// The declared links the stateful phase followed, from the summary's `API Links: N covered / M selected / T
/// total` line (none when the phase did not run).
fn links_covered(output: &Output) -> usize {
    let stdout = String::from_utf8_lossy(&output.stdout);
    stdout
        .lines()
        .find_map(|line| line.trim().strip_prefix("API Links:"))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn report(name: &str, output: &Output) -> String {
    format!(
        "=== schemathesis ({name}): {} ===\n{}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[tokio::test]
async fn openapi_document_holds_against_the_server() {
    let schemathesis = schemathesis();
    let app = TestApp::spawn_with(|args| args.rate_limit_enabled = Some("false".into())).await;
    let owner = app.user(&email("contract-owner")).await;
    app.owner.execute("UPDATE users SET role = 'ADMIN' WHERE id = $1", &[&owner.id]).await.expect("promote");
    let org = app.org(&owner, "Contract Works").await;
    for (title, content) in [
        ("Onboarding", "How a new customer fills in the intake form."),
        ("Tax form W-9", "Taxpayer identification number and certification."),
        ("Shipping address", "Street, city, postal code and country of delivery."),
    ] {
        app.knowledge(&owner, org, title, content).await;
    }
    let colleague = app.user(&email("contract-member")).await;
    app.add_member(org, &colleague, "MEMBER").await;
    let fixture = Fixture { org, members: vec![owner.id, colleague.id] };
    let leaver = app.user(&email("contract-logout")).await;

    let dir = tempfile::tempdir().expect("run directory");
    let config = config(dir.path(), &fixture);
    let version = tokio::process::Command::new(&schemathesis).arg("--version").output().await.expect("version");
    eprintln!("{}", String::from_utf8_lossy(&version.stdout).trim());

    let file = std::env::var(SCHEMA_VAR).ok();
    if let Some(reports) = std::env::var_os(REPORT_DIR_VAR) {
        let document = match &file {
            Some(file) => std::fs::read(file).expect("CONTRACT_SCHEMA file"),
            None => {
                let response = app.http.get(app.url("/api/docs/openapi.json")).send().await.expect("document");
                response.bytes().await.expect("document body").to_vec()
            }
        };
        std::fs::create_dir_all(&reports).expect("report directory");
        std::fs::write(Path::new(&reports).join("openapi.json"), document).expect("openapi.json");
    }

    let started = Instant::now();
    let schema = file.unwrap_or_else(|| app.url("/api/docs/openapi.json"));
    let mut run = Run {
        schemathesis: &schemathesis,
        dir: dir.path(),
        config: &config,
        schema: &schema,
        base: &app.base,
        token: &owner.token,
    };
    let api = run.run("api", "examples,coverage,fuzzing,stateful", &["--exclude-path", LOGOUT]).await;
    eprintln!("every operation but logout: {:.0?}", started.elapsed());
    run.token = &leaver.token;
    // schemathesis reports a stateful phase without links as an error.
    let logout = run.run("logout", "examples,coverage,fuzzing", &["--include-path", LOGOUT]).await;
    eprintln!("with logout: {:.0?}", started.elapsed());

    let reports = format!("{}\n{}", report("every operation but logout", &api), report("logout", &logout));
    assert!(api.status.success() && logout.status.success(), "the OpenAPI document does not hold:\n{reports}");
    let covered = links_covered(&api);
    eprintln!("stateful phase: {covered} of the declared links followed");
    assert!(covered >= MIN_LINKS_COVERED, "the stateful phase followed {covered} links:\n{reports}");
}
