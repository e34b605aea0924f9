//! The request-scoped transaction.
//!
//! [`Db::begin`] takes a connection and sends, in one round trip, `BEGIN`, the context statement
//! (`set_user_context`, `set_org_context`, a transaction-local `statement_timeout`) and the caller's first
//! queries (the user row, the membership check), each as a named cached statement or as the unnamed one
//! ([`super::statements`]). tokio-postgres writes requests in the order their futures
//! are first polled, and `join` polls in order, so the server executes them in that order; a context that
//! fails aborts the transaction, so the queries behind it can never run without it.
//!
//! A [`Tx`] that is dropped without [`Tx::commit`] is rolled back before its connection is reused: a
//! `ROLLBACK` is issued from a spawned task and, should that fail, the connection is discarded instead of
//! going back to the pool.

use std::time::{Duration, Instant};

use futures::future::{join, join_all, join3};
use tokio_postgres::Row;
use tokio_postgres::types::Type;
use uuid::Uuid;

use super::statements::{self, Param, StatementMode};
use super::{Db, map_db_error};
use crate::config::RlsFailureMode;
use crate::error::{AppError, ErrorCode};
use crate::security::SecurityKind;
use crate::timing::Timing;

/// Who the transaction acts for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RlsContext {
    pub user_id: Uuid,
    pub org_id: Option<Uuid>,
}

const SET_CONTEXT: &str = "SELECT set_user_context($1), set_org_context($2), set_config('statement_timeout', $3, true)";

/// An open transaction with the RLS context set.
pub struct Tx {
    conn: Option<deadpool_postgres::Object>,
    mode: StatementMode,
    /// How long the request waited for the connection, and when the transaction began (`Server-Timing`).
    pool_wait: Duration,
    opened: Instant,
    timing: Option<Timing>,
}

impl Db {
    /// Open a request transaction for `ctx`, pipelining `first` queries behind the context statement.
    /// Returns the transaction and the rows of each `first` query, in order.
    pub async fn begin(
        &self,
        ctx: RlsContext,
        first: &[(&str, &[Param<'_>])],
    ) -> Result<(Tx, Vec<Vec<Row>>), AppError> {
        let (conn, pool_wait) = self.acquire_timed().await?;
        let opened = Instant::now();
        let org = ctx.org_id;
        let context_params: [Param<'_>; 3] =
            [(&ctx.user_id, Type::UUID), (&org, Type::UUID), (&self.statement_timeout_ms, Type::TEXT)];
        let mut all: Vec<(&str, &[Param<'_>])> = Vec::with_capacity(1 + first.len());
        all.push((SET_CONTEXT, &context_params));
        all.extend_from_slice(first);
        // Cache misses are prepared before anything is sent, so the pipeline below keeps its order.
        let mut prepared = statements::prepare(&conn, self.statements, &all).await.into_iter();
        let context_ready = prepared.next().expect("the context statement is first");
        let ready = prepared.collect::<Result<Vec<_>, _>>().map_err(map_db_error)?;
        let (begun, context, firsts) = match context_ready {
            Ok(context_ready) => {
                join3(
                    conn.batch_execute("BEGIN"),
                    statements::run(&conn, &context_ready, &context_params),
                    join_all(first.iter().zip(&ready).map(|((_, params), r)| statements::run(&conn, r, params))),
                )
                .await
            }
            // The context statement could not even be prepared: nothing behind it is sent.
            Err(e) => (conn.batch_execute("BEGIN").await, Err(e), Vec::new()),
        };
        let tx = Tx { conn: Some(conn), mode: self.statements, pool_wait, opened, timing: None };
        begun.map_err(map_db_error)?;
        if let Err(e) = context {
            self.record_rls_failure(&e, &ctx);
            if e.as_db_error().is_none() {
                // The connection itself failed: an outage, not a context problem.
                return Err(map_db_error(e));
            }
            return match self.rls_failure_mode {
                RlsFailureMode::Fail => Err(AppError::new(
                    ErrorCode::RlsContextFailed,
                    "the request's security context could not be established",
                )
                .with_source(e)
                .security(SecurityKind::RlsContextFailed)),
                RlsFailureMode::Continue => tx.restart_without_context(first).await,
            };
        }
        let rows = firsts.into_iter().collect::<Result<Vec<_>, _>>().map_err(map_db_error)?;
        Ok((tx, rows))
    }
}

impl Tx {
    /// Report this transaction's pool wait now, and its duration when it ends, to the request's `Server-Timing`.
    pub fn time_with(&mut self, timing: &Timing) {
        timing.pool(self.pool_wait);
        self.timing = Some(timing.clone());
    }

    fn finished(&mut self) {
        if let Some(timing) = self.timing.take() {
            timing.db(self.opened.elapsed());
        }
    }

    fn conn(&self) -> &deadpool_postgres::Object {
        self.conn.as_ref().expect("a transaction keeps its connection until commit or drop")
    }

    /// Development-only `continue` mode: a fresh transaction with no tenant context, where RLS shows no rows
    /// and refuses every write.
    async fn restart_without_context(self, first: &[(&str, &[Param<'_>])]) -> Result<(Tx, Vec<Vec<Row>>), AppError> {
        self.conn().batch_execute("ROLLBACK; BEGIN").await.map_err(map_db_error)?;
        let mut rows = Vec::with_capacity(first.len());
        for (sql, params) in first {
            rows.push(self.query(sql, params).await?);
        }
        Ok((self, rows))
    }

    pub async fn query(&self, sql: &str, params: &[Param<'_>]) -> Result<Vec<Row>, AppError> {
        statements::query(self.conn(), self.mode, sql, params).await.map_err(map_db_error)
    }

    pub async fn query_opt(&self, sql: &str, params: &[Param<'_>]) -> Result<Option<Row>, AppError> {
        Ok(self.query(sql, params).await?.into_iter().next())
    }

    pub async fn query_one(&self, sql: &str, params: &[Param<'_>]) -> Result<Row, AppError> {
        self.query_opt(sql, params)
            .await?
            .ok_or_else(|| AppError::internal(anyhow::anyhow!("query returned no row: {sql}")))
    }

    /// Commit with `sql` as the transaction's last statement, sent in the same round trip as `COMMIT` (its
    /// request written first, then `COMMIT`'s: tokio-postgres writes them in the order they are polled). Both
    /// take effect or neither: a failing `sql` aborts the transaction, the `COMMIT` behind it then rolls back,
    /// and `sql`'s error is returned. Returns `sql`'s rows.
    pub async fn commit_with(mut self, sql: &str, params: &[Param<'_>]) -> Result<Vec<Row>, AppError> {
        // A cache miss is prepared first, while the transaction still owns the connection (a failure here is
        // rolled back on drop, like any other).
        let ready = statements::prepare(self.conn(), self.mode, &[(sql, params)]).await.pop();
        let ready = ready.expect("one statement, one result").map_err(map_db_error)?;
        let conn = self.conn.take().expect("commit consumes the transaction");
        let (rows, committed) = join(statements::run(&conn, &ready, params), conn.batch_execute("COMMIT")).await;
        self.finished();
        match (rows, committed) {
            (Ok(rows), Ok(())) => Ok(rows),
            // The connection is idle again: the COMMIT ended the aborted transaction (as a rollback).
            (Err(e), Ok(())) => Err(map_db_error(e)),
            (_, Err(e)) => {
                // The state of this connection is unknown now: do not give it back to the pool.
                let _ = deadpool_postgres::Object::take(conn);
                Err(map_db_error(e))
            }
        }
    }

    /// Commit; on failure the transaction is rolled back by the server.
    pub async fn commit(mut self) -> Result<(), AppError> {
        let conn = self.conn.take().expect("commit consumes the transaction");
        let committed = conn.batch_execute("COMMIT").await;
        self.finished();
        match committed {
            Ok(()) => Ok(()),
            Err(e) => {
                // The state of this connection is unknown now: do not give it back to the pool.
                let _ = deadpool_postgres::Object::take(conn);
                Err(map_db_error(e))
            }
        }
    }
}

impl Drop for Tx {
    fn drop(&mut self) {
        self.finished();
        let Some(conn) = self.conn.take() else { return };
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => {
                rt.spawn(async move {
                    if conn.batch_execute("ROLLBACK").await.is_err() {
                        let _ = deadpool_postgres::Object::take(conn);
                    }
                });
            }
            Err(_) => {
                let _ = deadpool_postgres::Object::take(conn);
            }
        }
    }
}
