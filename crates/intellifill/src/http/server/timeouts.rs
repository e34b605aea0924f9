//! The header-read and keep-alive timeouts of one connection, kept by its transport.
//!
//! hyper's own `header_read_timeout` also runs while a keep-alive connection waits for its next request, so it
//! would close idle connections after the header timeout: a load balancer with a longer idle timeout would then
//! send its next request down a connection being closed, and answer 502. Here the two are told apart. The
//! connection is in one [`Phase`] at a time, moved by the transport (bytes arriving) and by the service (a
//! request dispatched, its response done), and the transport ends the connection when the phase's deadline
//! passes while it waits for bytes:
//!
//! - awaiting a request head, from the connection's start or from the first byte after an idle period: after
//!   `header_read_timeout` the client gets 408 `REQUEST_TIMEOUT` with the error body, if some of the head
//!   arrived and no response bytes are still on their way, and the connection is closed. A connection that never
//!   sent a byte is closed without an answer: browsers open connections ahead of need and may leave them
//!   silent, and a 408 there would only be noise;
//! - idle between two requests: after `keepalive_timeout` the connection is closed (the read side reports
//!   end of file, which hyper takes as the client's close of an idle connection);
//! - serving a request: no deadline here (`REQUEST_TIMEOUT_MS` bounds the request).
//!
//! A request head that arrives while the previous request is being served (pipelining) starts no deadline of
//! its own: if it is still incomplete when that response is done, the keep-alive deadline bounds it.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};

use crate::config::ConnectionLimits;
use crate::error::ErrorCode;

/// Where a connection is between its requests; shared by its transport and its service.
#[derive(Debug)]
pub(super) struct Phase(Mutex<Shared>);

#[derive(Debug)]
struct Shared {
    state: State,
    /// The transport's reader, parked without a deadline while requests were served: woken when the last
    /// one is done, so that the keep-alive deadline starts running (hyper does not read again on its own
    /// until the socket has bytes).
    parked_reader: Option<Waker>,
}

#[derive(Debug, Clone, Copy)]
enum State {
    /// Waiting for a request head; `started` once a byte of it arrived.
    AwaitingHead { since: Instant, started: bool },
    /// Requests dispatched whose responses are not done.
    Serving { requests: usize },
    /// Between two requests of a keep-alive connection.
    Idle { since: Instant },
}

/// What a passed deadline ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expiry {
    Head { started: bool },
    Idle,
}

impl Phase {
    /// A new connection: awaiting its first head.
    pub(super) fn new() -> Arc<Phase> {
        let state = State::AwaitingHead { since: Instant::now(), started: false };
        Arc::new(Phase(Mutex::new(Shared { state, parked_reader: None })))
    }

    fn shared(&self) -> std::sync::MutexGuard<'_, Shared> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Bytes were read from the client.
    fn bytes_arrived(&self) {
        let mut shared = self.shared();
        match shared.state {
            State::Idle { .. } => shared.state = State::AwaitingHead { since: Instant::now(), started: true },
            State::AwaitingHead { since, started: false } => {
                shared.state = State::AwaitingHead { since, started: true }
            }
            State::AwaitingHead { started: true, .. } | State::Serving { .. } => {}
        }
    }

    /// A request was dispatched; it is in flight until the guard is dropped (with its response body).
    pub(super) fn request_started(self: &Arc<Phase>) -> InFlight {
        let mut shared = self.shared();
        shared.state = match shared.state {
            State::Serving { requests } => State::Serving { requests: requests + 1 },
            State::AwaitingHead { .. } | State::Idle { .. } => State::Serving { requests: 1 },
        };
        InFlight(self.clone())
    }

    fn request_finished(&self) {
        let reader = {
            let mut shared = self.shared();
            match shared.state {
                State::Serving { requests } if requests > 1 => {
                    shared.state = State::Serving { requests: requests - 1 };
                    None
                }
                State::Serving { .. } => {
                    shared.state = State::Idle { since: Instant::now() };
                    shared.parked_reader.take()
                }
                State::AwaitingHead { .. } | State::Idle { .. } => None,
            }
        };
        if let Some(reader) = reader {
            reader.wake();
        }
    }

    /// The deadline of the current phase, if it has one; without one, `reader` is woken when one starts.
    fn deadline(&self, limits: &ConnectionLimits, reader: &Waker) -> Option<(Instant, Expiry)> {
        let mut shared = self.shared();
        match shared.state {
            State::AwaitingHead { since, started } => {
                Some((since + limits.header_read_timeout, Expiry::Head { started }))
            }
            State::Idle { since } => Some((since + limits.keepalive_timeout, Expiry::Idle)),
            State::Serving { .. } => {
                shared.parked_reader = Some(reader.clone());
                None
            }
        }
    }
}

/// A request in flight; dropped when its response body is done (or abandoned).
#[derive(Debug)]
pub(super) struct InFlight(Arc<Phase>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.request_finished();
    }
}

/// The client's TCP stream, ending the connection when the deadline of its [`Phase`] passes.
pub(super) struct TimedIo {
    stream: TcpStream,
    phase: Arc<Phase>,
    limits: ConnectionLimits,
    /// Boxed once per connection, so that the transport is `Unpin` as hyper wants it.
    timer: Pin<Box<Sleep>>,
    /// Bytes were handed to the socket since the last completed flush: a 408 written now could land inside
    /// a response.
    unflushed: bool,
}

impl TimedIo {
    pub(super) fn new(stream: TcpStream, phase: Arc<Phase>, limits: ConnectionLimits) -> TimedIo {
        let timer = Box::pin(tokio::time::sleep(limits.header_read_timeout));
        TimedIo { stream, phase, limits, timer, unflushed: false }
    }

    /// The deadline of `expiry` passed: end of file for an idle connection, an error (after the 408) for a
    /// head not received in time.
    fn expire(&mut self, expiry: Expiry) -> io::Result<()> {
        match expiry {
            Expiry::Idle => Ok(()),
            Expiry::Head { started } => {
                metrics::counter!("http_head_errors_total", "reason" => "timeout").increment(1);
                if started && !self.unflushed {
                    let answer =
                        super::raw_error(ErrorCode::RequestTimeout, "the request head was not received in time");
                    // Best effort, never waiting: a client that does not read its socket gets the close alone.
                    let _ = self.stream.try_write(&answer);
                }
                Err(io::Error::new(io::ErrorKind::TimedOut, "request head not received in time"))
            }
        }
    }
}

impl AsyncRead for TimedIo {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        match Pin::new(&mut this.stream).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    this.phase.bytes_arrived();
                }
                return Poll::Ready(Ok(()));
            }
            Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            Poll::Pending => {}
        }
        let Some((deadline, expiry)) = this.phase.deadline(&this.limits, cx.waker()) else {
            return Poll::Pending;
        };
        if this.timer.deadline() != deadline {
            this.timer.as_mut().reset(deadline);
        }
        ready!(this.timer.as_mut().poll(cx));
        Poll::Ready(this.expire(expiry))
    }
}

impl AsyncWrite for TimedIo {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.unflushed = true;
        Pin::new(&mut this.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.unflushed = true;
        Pin::new(&mut this.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(Pin::new(&mut this.stream).poll_flush(cx))?;
        // hyper flushes the socket only once its own buffer is written out.
        this.unflushed = false;
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn limits() -> ConnectionLimits {
        ConnectionLimits {
            header_read_timeout: Duration::from_secs(10),
            keepalive_timeout: Duration::from_secs(75),
            max_header_bytes: 32_768,
            max_connections: 10,
        }
    }

    /// Counts its wake-ups.
    struct Counter(std::sync::atomic::AtomicUsize);

    impl std::task::Wake for Counter {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    }

    #[tokio::test]
    async fn a_connection_awaits_its_head_then_serves_then_idles_then_awaits_again() {
        let (phase, limits) = (Phase::new(), limits());
        let wakes = Arc::new(Counter(Default::default()));
        let reader = Waker::from(wakes.clone());
        let deadline = |phase: &Phase| phase.deadline(&limits, &reader);
        let (first_head_until, expiry) = deadline(&phase).expect("a new connection has a deadline");
        assert_eq!(expiry, Expiry::Head { started: false });
        phase.bytes_arrived();
        let started = deadline(&phase).expect("deadline");
        assert_eq!(started, (first_head_until, Expiry::Head { started: true }), "counted from the connection's start");

        let first = phase.request_started();
        let second = phase.request_started();
        assert_eq!(deadline(&phase), None, "no deadline while requests are in flight");
        drop(first);
        assert_eq!(deadline(&phase), None, "one request is still in flight");
        assert_eq!(wakes.0.load(std::sync::atomic::Ordering::SeqCst), 0);
        drop(second);
        assert_eq!(wakes.0.load(std::sync::atomic::Ordering::SeqCst), 1, "the parked reader is woken once idle");
        let (idle_until, expiry) = deadline(&phase).expect("an idle connection has a deadline");
        assert_eq!(expiry, Expiry::Idle);
        let connected = first_head_until - limits.header_read_timeout;
        assert!(idle_until - limits.keepalive_timeout >= connected, "counted from the end of the last response");

        phase.bytes_arrived();
        let (head_until, expiry) = deadline(&phase).expect("deadline");
        assert_eq!(expiry, Expiry::Head { started: true });
        assert!(head_until < idle_until, "the next head has the header timeout, counted from its first byte");
    }
}
