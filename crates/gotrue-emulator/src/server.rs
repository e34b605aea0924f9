//! The accept loop, on a thread and runtime of its own.
//!
//! `axum::serve` cannot stop listening and start again on the same port, nor
//! drop the connections it already has, which is what the "connection
//! refused" fault needs. So the emulator accepts connections itself, serves
//! each with hyper in a task of a `JoinSet`, and obeys [`Control`] commands:
//! closing the socket and aborting every connection task, re-binding, or
//! shutting down.
//!
//! It runs on a dedicated OS thread with its own Tokio runtime so that it
//! keeps serving whatever the caller's runtime does (a `current_thread` test
//! runtime blocked in a synchronous fault setter, a runtime being shut
//! down), and so that fault setters can wait for the loop to act.

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::faults::{Control, Faults, THREAD_NAME};

/// How long re-binding the port is retried before giving up.
const REBIND_PATIENCE: Duration = Duration::from_secs(5);

/// Starts serving `app` on `listener` on a new thread. Resolves once the
/// thread's runtime has taken over the socket.
pub(crate) async fn spawn(
    listener: std::net::TcpListener,
    app: Router,
    faults: Faults,
    control: mpsc::UnboundedReceiver<Control>,
) -> anyhow::Result<()> {
    let addr = listener.local_addr()?;
    let (ready_tx, ready_rx) = oneshot::channel::<anyhow::Result<()>>();
    std::thread::Builder::new().name(THREAD_NAME.to_owned()).spawn(move || {
        let runtime = match tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name(THREAD_NAME)
            .enable_all()
            .build()
        {
            Ok(runtime) => runtime,
            Err(e) => {
                let _ = ready_tx.send(Err(e.into()));
                return;
            }
        };
        runtime.block_on(async move {
            let listener = match TcpListener::from_std(listener) {
                Ok(listener) => listener,
                Err(e) => {
                    let _ = ready_tx.send(Err(e.into()));
                    return;
                }
            };
            let _ = ready_tx.send(Ok(()));
            AcceptLoop {
                addr,
                listener: Some(listener),
                app,
                faults,
                control,
                connections: JoinSet::new(),
                resume_at: None,
            }
            .run()
            .await;
        });
        // Dropping the runtime cancels whatever is still pending, such as
        // requests held by the hang fault.
        runtime.shutdown_background();
    })?;
    ready_rx.await.map_err(|_| anyhow::anyhow!("the emulator thread exited during start-up"))?
}

enum Event {
    Accepted(std::io::Result<(TcpStream, SocketAddr)>),
    ConnectionEnded,
    ResumeDue,
    Command(Option<Control>),
}

struct AcceptLoop {
    addr: SocketAddr,
    listener: Option<TcpListener>,
    app: Router,
    faults: Faults,
    control: mpsc::UnboundedReceiver<Control>,
    connections: JoinSet<()>,
    resume_at: Option<Instant>,
}

async fn accept(listener: &Option<TcpListener>) -> std::io::Result<(TcpStream, SocketAddr)> {
    match listener {
        Some(listener) => listener.accept().await,
        None => std::future::pending().await,
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

impl AcceptLoop {
    async fn run(mut self) {
        loop {
            let event = tokio::select! {
                accepted = accept(&self.listener) => Event::Accepted(accepted),
                Some(_) = self.connections.join_next(), if !self.connections.is_empty() => {
                    Event::ConnectionEnded
                }
                () = sleep_until(self.resume_at) => Event::ResumeDue,
                command = self.control.recv() => Event::Command(command),
            };
            match event {
                Event::Accepted(Ok((stream, _))) => self.serve(stream),
                Event::Accepted(Err(e)) => {
                    // E.g. EMFILE: back off instead of spinning.
                    tracing::warn!(error = %e, "gotrue-emulator: accept failed");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Event::ConnectionEnded => {}
                Event::ResumeDue => {
                    self.resume_at = None;
                    self.rebind().await;
                    self.faults.mark_resumed();
                }
                Event::Command(Some(Control::Refuse { until, ack })) => {
                    self.close().await;
                    self.resume_at = until;
                    if let Some(ack) = ack {
                        let _ = ack.send(());
                    }
                }
                Event::Command(Some(Control::Resume { ack })) => {
                    self.resume_at = None;
                    self.rebind().await;
                    self.faults.mark_resumed();
                    if let Some(ack) = ack {
                        let _ = ack.send(());
                    }
                }
                Event::Command(Some(Control::Shutdown { ack })) => {
                    self.close().await;
                    let _ = ack.send(());
                    return;
                }
                Event::Command(None) => {
                    // Every `Emulator` handle is gone.
                    self.close().await;
                    return;
                }
            }
        }
    }

    fn serve(&mut self, stream: TcpStream) {
        if self.faults.settings().refusing {
            // Accepted in the instant before a refusal closed the socket.
            drop(stream);
            return;
        }
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(self.app.clone());
        self.connections.spawn(async move {
            let connection = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service);
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "gotrue-emulator: connection ended with an error");
            }
        });
    }

    /// Closes the listening socket and every connection, and waits until
    /// all connection tasks are gone (their sockets closed).
    async fn close(&mut self) {
        self.listener = None;
        self.connections.shutdown().await;
    }

    /// Binds the original address again, retrying while the port is still
    /// held by the old socket.
    async fn rebind(&mut self) {
        if self.listener.is_some() {
            return;
        }
        let deadline = Instant::now() + REBIND_PATIENCE;
        loop {
            match TcpListener::bind(self.addr).await {
                Ok(listener) => {
                    self.listener = Some(listener);
                    return;
                }
                Err(e) if Instant::now() < deadline => {
                    tracing::debug!(error = %e, "gotrue-emulator: re-bind failed, retrying");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(e) => {
                    tracing::error!(error = %e, addr = %self.addr, "gotrue-emulator: cannot re-bind");
                    return;
                }
            }
        }
    }
}
