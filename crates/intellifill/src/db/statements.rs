//! How a statement travels to Postgres: named and prepared once per connection, or unnamed every time.
//!
//! - [`StatementMode::Prepared`]: each SQL text is prepared once per pooled connection (deadpool-postgres's
//!   statement cache, keyed by text and parameter types) and then only bound and executed: Postgres parses
//!   and plans it once, not on every request. Needs a connection that keeps named statements between
//!   transactions: Postgres itself, or a pooler that tracks them (PgBouncer >= 1.21 with
//!   `max_prepared_statements` > 0).
//! - [`StatementMode::Unnamed`]: every statement is sent as the unnamed statement with its parameter types
//!   (`query_typed`, one round trip, nothing left on the server connection): safe behind any pooler, including
//!   PgBouncer < 1.21 and Supavisor in transaction mode, which cannot carry a named statement from one
//!   transaction to the next.
//!
//! Preparing happens before any statement of a pipeline is sent, so a cache miss never reorders the pipeline:
//! the context statement is still written first.

use futures::future::join_all;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{Row, Statement};

pub(crate) use crate::config::StatementMode;

/// A typed statement parameter (the unnamed-statement protocol needs the type up front; a named one is
/// prepared with it).
pub(crate) type Param<'a> = (&'a (dyn ToSql + Sync), Type);

/// A statement ready to execute on one connection.
pub(crate) enum Ready<'a> {
    Named(Statement),
    Unnamed(&'a str),
}

/// Prepare `statements` on `conn` for `mode`: nothing to do for unnamed ones or cached ones; cache misses are
/// prepared concurrently (one round trip for all of them). One result per statement, in order.
pub(crate) async fn prepare<'a>(
    conn: &deadpool_postgres::Object,
    mode: StatementMode,
    statements: &[(&'a str, &[Param<'_>])],
) -> Vec<Result<Ready<'a>, tokio_postgres::Error>> {
    match mode {
        StatementMode::Unnamed => statements.iter().map(|(sql, _)| Ok(Ready::Unnamed(sql))).collect(),
        StatementMode::Prepared => {
            join_all(statements.iter().map(|(sql, params)| async move {
                let types: Vec<_> = params.iter().map(|(_, t)| t.clone()).collect();
                conn.prepare_typed_cached(sql, &types).await.map(Ready::Named).inspect_err(hint)
            }))
            .await
        }
    }
}

/// Execute a prepared statement. The request is written on the first poll, so futures polled in order
/// (`join_all`) are executed by the server in that order.
pub(crate) async fn run(
    conn: &deadpool_postgres::Object,
    ready: &Ready<'_>,
    params: &[Param<'_>],
) -> Result<Vec<Row>, tokio_postgres::Error> {
    let result = match ready {
        Ready::Unnamed(sql) => conn.query_typed(sql, params).await,
        Ready::Named(statement) => {
            let values: Vec<&(dyn ToSql + Sync)> = params.iter().map(|(v, _)| *v).collect();
            let result = conn.query(statement, &values).await;
            if result.as_ref().err().is_some_and(stale_plan) {
                // A migration changed the type of a column this statement returns, so the named statement can
                // never run again: forget this connection's statements, the next request prepares them afresh.
                conn.statement_cache.clear();
                metrics::counter!("db_statement_cache_resets_total").increment(1);
                tracing::warn!(event = "db.statement_cache_reset", "a cached statement outlived a schema change");
            }
            result
        }
    };
    result.inspect_err(hint)
}

/// Prepare (if needed) and execute one statement.
pub(crate) async fn query(
    conn: &deadpool_postgres::Object,
    mode: StatementMode,
    sql: &str,
    params: &[Param<'_>],
) -> Result<Vec<Row>, tokio_postgres::Error> {
    let ready = prepare(conn, mode, &[(sql, params)]).await.pop().expect("one statement, one result")?;
    run(conn, &ready, params).await
}

/// `cached plan must not change result type` (0A000): the statement was prepared before a schema change.
fn stale_plan(e: &tokio_postgres::Error) -> bool {
    e.code() == Some(&SqlState::FEATURE_NOT_SUPPORTED)
        && e.as_db_error().is_some_and(|d| d.message().contains("cached plan must not change result type"))
}

/// A named statement the server does not know, or knows twice: the connection goes through a transaction
/// pooler that does not track prepared statements. Say what to change.
fn hint(e: &tokio_postgres::Error) {
    if let Some(code) = e.code()
        && (*code == SqlState::INVALID_SQL_STATEMENT_NAME || *code == SqlState::DUPLICATE_PSTATEMENT)
    {
        metrics::counter!("db_prepared_statement_errors_total").increment(1);
        tracing::error!(
            event = "db.prepared_statement_lost",
            error = %e,
            "a named prepared statement was lost between transactions: DATABASE_URL goes through a transaction \
             pooler without prepared-statement support; set DATABASE_STATEMENTS=unnamed (docs/DEPLOY.md)"
        );
    }
}
