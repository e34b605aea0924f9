//! The request-scoped transaction.
//!
//! [`Db::begin`] takes a connection and sends, in one round trip, `BEGIN`, `open_request` (migration 0008:
//! the context of `set_user_context` / `set_org_context` and a transaction-local `statement_timeout`, and in
//! the same statement the caller's `users` row and membership) and, optionally, the handler's first query,
//! each as a named cached statement or as the unnamed one ([`super::statements`]). tokio-postgres writes
//! requests in the order their futures are first polled, and `join3` polls in order, so the server executes
//! them in that order; a context that fails aborts the transaction, so a query behind it can never run
//! without it. The first query may run before the caller's membership is checked: RLS answers it with the
//! caller's own rights, and a refused caller's rows are dropped unread.
//!
//! [`Db::read`] also pipelines `COMMIT` behind the first query (a read in one round trip when the first query's
//! statement is ready): the [`Tx`] it returns is already committed ([`Tx::is_committed`]), takes no further
//! statement, and its caller opens a new transaction for anything more (a write to settle the user row, the
//! former-member check of a refused caller).
//!
//! A [`Tx`] that is dropped without [`Tx::commit`] is rolled back before its connection is reused: a
//! `ROLLBACK` is issued from a spawned task and, should that fail, the connection is discarded instead of
//! going back to the pool.

use std::time::{Duration, Instant};

use futures::future::{join, join3};
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

/// Sets the context and returns one row: the caller's `users` columns (`id, email, role, is_active,
/// organization_id, email_claimed_at` as epoch seconds; NULL without a row) and the membership in the
/// context's organization (`org_status, member_role, member_status`; NULL without one).
const OPEN_REQUEST: &str = "SELECT * FROM open_request($1, $2, $3)";

/// A statement and its parameters.
pub(crate) type Statement<'a, 'p> = (&'a str, &'a [Param<'p>]);

/// The caller's membership in an organization, as `org_access` and `open_request` answer it.
#[derive(Debug, Clone)]
pub struct MemberAccess {
    pub org_status: String,
    pub role: String,
    pub member_status: String,
}

impl MemberAccess {
    /// The three columns from `at` on, or `None` when they are NULL (no membership).
    pub fn from_row(row: &Row, at: usize) -> Option<MemberAccess> {
        Some(MemberAccess {
            org_status: row.get::<_, Option<String>>(at)?,
            role: row.get(at + 1),
            member_status: row.get(at + 2),
        })
    }
}

/// What `open_request` answered.
pub struct Opened {
    row: Option<Row>,
}

impl Opened {
    /// The caller's `users` row (columns 0 to 5), when there is one.
    pub fn user_row(&self) -> Option<&Row> {
        self.row.as_ref().filter(|r| r.get::<_, Option<Uuid>>(0).is_some())
    }

    /// The caller's membership in the context's organization.
    pub fn access(&self) -> Option<MemberAccess> {
        self.row.as_ref().and_then(|r| MemberAccess::from_row(r, 6))
    }
}

/// An open transaction with the RLS context set.
pub struct Tx {
    conn: Option<deadpool_postgres::Object>,
    mode: StatementMode,
    /// How long the request waited for the connection, and when the transaction began (`Server-Timing`).
    pool_wait: Duration,
    opened: Instant,
    timing: Option<Timing>,
    /// `COMMIT` went in the opening pipeline ([`Db::read`]) and succeeded: nothing more may run in it.
    committed: bool,
}

/// The first query's rows, or its error, to be looked at once the caller is known to be allowed.
pub(crate) type FirstRows = Option<Result<Vec<Row>, AppError>>;

impl Db {
    /// Open a request transaction for `ctx`, pipelining the `first` query behind `open_request`. Returns the
    /// transaction, `open_request`'s answer and the first query's result.
    pub async fn begin(
        &self,
        ctx: RlsContext,
        first: Option<Statement<'_, '_>>,
    ) -> Result<(Tx, Opened, FirstRows), AppError> {
        self.open(ctx, first, false).await
    }

    /// [`Db::begin`] with `COMMIT` pipelined behind `first`: a read-only request's whole transaction in one
    /// round trip when `first` is prepared on this connection (two on a statement-cache miss: the parse runs
    /// inside the transaction, behind `open_request`, then the execute and `COMMIT`). The returned [`Tx`] is
    /// committed unless something failed on the way; a failed `first` (or context) is rolled back by the
    /// `COMMIT` behind it, and its error is returned as `first`'s.
    pub(crate) async fn read(
        &self,
        ctx: RlsContext,
        first: Statement<'_, '_>,
    ) -> Result<(Tx, Opened, FirstRows), AppError> {
        self.open(ctx, Some(first), true).await
    }

    async fn open(
        &self,
        ctx: RlsContext,
        first: Option<Statement<'_, '_>>,
        commit: bool,
    ) -> Result<(Tx, Opened, FirstRows), AppError> {
        let (conn, pool_wait) = self.acquire_timed().await?;
        let opened = Instant::now();
        let org = ctx.org_id;
        let open_params: [Param<'_>; 3] =
            [(&ctx.user_id, Type::UUID), (&org, Type::UUID), (&self.statement_timeout_ms, Type::TEXT)];
        // A cache miss of open_request is prepared before anything is sent, so the pipeline keeps its order.
        let open_ready = statements::prepare(&conn, self.statements, &[(OPEN_REQUEST, &open_params)]).await.pop();
        let (begun, open, first_rows) = match open_ready.expect("one statement, one result") {
            Ok(open_ready) => {
                join3(conn.batch_execute("BEGIN"), statements::run(&conn, &open_ready, &open_params), async {
                    let (sql, params) = first?;
                    // The first query is prepared (on a cache miss) behind open_request, inside the
                    // transaction: its parse waits on table locks under the request's statement timeout.
                    let ready = statements::prepare(&conn, self.statements, &[(sql, params)]).await.pop();
                    let ready = match ready.expect("one statement, one result") {
                        Ok(ready) => ready,
                        Err(e) => return Some((Err(e), None)),
                    };
                    if !commit {
                        return Some((statements::run(&conn, &ready, params).await, None));
                    }
                    // Written in this order: the execute, then COMMIT (which rolls back if anything failed).
                    let (rows, committed) =
                        join(statements::run(&conn, &ready, params), conn.batch_execute("COMMIT")).await;
                    Some((rows, Some(committed)))
                })
                .await
            }
            // open_request could not even be prepared: nothing behind it is sent.
            Err(e) => (conn.batch_execute("BEGIN").await, Err(e), None),
        };
        let (first_rows, committed) = match first_rows {
            Some((rows, committed)) => (Some(rows), committed),
            None => (None, None),
        };
        let mut tx = Tx { conn: Some(conn), mode: self.statements, pool_wait, opened, timing: None, committed: false };
        begun.map_err(map_db_error)?;
        match committed {
            // Committed, or rolled back because something before it failed: either way no transaction is
            // open on the connection any more.
            Some(Ok(())) => tx.committed = true,
            Some(Err(e)) => {
                // The state of this connection is unknown now: do not give it back to the pool.
                let conn = tx.conn.take().expect("the connection is still held");
                let _ = deadpool_postgres::Object::take(conn);
                return Err(map_db_error(e));
            }
            None => {}
        }
        let rows = match open {
            Ok(rows) => rows,
            Err(e) => {
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
        };
        let first_rows = first_rows.map(|r| r.map_err(map_db_error));
        Ok((tx, Opened { row: rows.into_iter().next() }, first_rows))
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

    /// Whether `COMMIT` already went with the opening pipeline ([`Db::read`]).
    pub(crate) fn is_committed(&self) -> bool {
        self.committed
    }

    /// Give a committed transaction's connection back to the pool now, before the request opens another.
    pub(crate) fn release(&mut self) {
        if self.committed {
            self.conn.take();
        }
    }

    fn conn(&self) -> &deadpool_postgres::Object {
        self.conn.as_ref().expect("a transaction keeps its connection until commit or drop")
    }

    /// Development-only `continue` mode: a fresh transaction with no tenant context, where RLS shows no rows
    /// and refuses every write: no user row, no membership (what the context-less queries would answer).
    async fn restart_without_context(
        mut self,
        first: Option<Statement<'_, '_>>,
    ) -> Result<(Tx, Opened, FirstRows), AppError> {
        self.conn().batch_execute("ROLLBACK; BEGIN").await.map_err(map_db_error)?;
        // A pipelined COMMIT only ended the failed transaction: this one is open, and the caller commits it.
        self.committed = false;
        let rows = match first {
            Some((sql, params)) => Some(self.query(sql, params).await),
            None => None,
        };
        Ok((self, Opened { row: None }, rows))
    }

    pub async fn query(&self, sql: &str, params: &[Param<'_>]) -> Result<Vec<Row>, AppError> {
        if self.committed {
            return Err(AppError::internal(anyhow::anyhow!("a statement after the pipelined COMMIT: {sql}")));
        }
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
        if self.committed {
            return Err(AppError::internal(anyhow::anyhow!("a write after the pipelined COMMIT: {sql}")));
        }
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
        if self.committed {
            self.finished();
            return Ok(());
        }
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
        if self.committed {
            return;
        }
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
