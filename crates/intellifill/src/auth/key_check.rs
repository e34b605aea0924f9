//! The start-up check of this server's own API key (`SUPABASE_ANON_KEY`) against the auth service.
//!
//! `GET /auth/v1/settings` needs the key and nothing else, so its answer is about the key alone. A refused key
//! would turn every token that needs the auth service into 503 `AUTH_SERVICE_MISCONFIGURED`: with
//! `AUTH_STARTUP_KEY_CHECK=require` (the production default) `serve` refuses to start, so a bad key stops a
//! rolling deploy at its first instance instead of reaching users. An auth service that cannot be reached at
//! start is only a warning in every mode: it may be back before the first request, and refusing to start
//! would make one outage two (the instances could not come back until it does).

use std::time::Duration;

use super::gotrue::{GoTrueClient, GoTrueError};
use crate::config::StartupKeyCheck;

/// Check the key; `Err` only when `policy` is `Require` and the auth service refuses it.
pub(crate) async fn check_at_start(
    gotrue: &GoTrueClient,
    policy: StartupKeyCheck,
    timeout: Duration,
) -> anyhow::Result<()> {
    if policy == StartupKeyCheck::Off {
        tracing::info!("start-up check of SUPABASE_ANON_KEY skipped (AUTH_STARTUP_KEY_CHECK=off)");
        return Ok(());
    }
    let base = gotrue.base_url();
    let outcome = match tokio::time::timeout(timeout, gotrue.settings()).await {
        Ok(outcome) => outcome,
        Err(_) => Err(GoTrueError::Unavailable("timeout".to_owned())),
    };
    match outcome {
        Ok(()) => tracing::info!(auth_service = base, "the auth service accepts SUPABASE_ANON_KEY"),
        // The client has logged the refusal at ERROR already (and counted it).
        Err(GoTrueError::KeyRejected { message }) => match policy {
            StartupKeyCheck::Require => anyhow::bail!(
                "the auth service at {base} refuses SUPABASE_ANON_KEY ({message:?}): set it to the project's \
                 publishable or anon key. Not starting (AUTH_STARTUP_KEY_CHECK=require, the production default; \
                 `warn` starts anyway)"
            ),
            _ => tracing::warn!(
                auth_service = base,
                "starting although the auth service refuses SUPABASE_ANON_KEY (AUTH_STARTUP_KEY_CHECK=warn): \
                 tokens that need it will get 503 AUTH_SERVICE_MISCONFIGURED"
            ),
        },
        Err(GoTrueError::Rejected { status, code, .. }) => tracing::warn!(
            auth_service = base,
            status,
            code,
            "the auth service accepted the API key but answered GET /settings with an error: check SUPABASE_URL"
        ),
        Err(GoTrueError::Unavailable(error)) => tracing::warn!(
            auth_service = base,
            error,
            "the auth service cannot be reached at start: SUPABASE_ANON_KEY not checked; starting anyway (every \
             call checks it again)"
        ),
    }
    Ok(())
}
