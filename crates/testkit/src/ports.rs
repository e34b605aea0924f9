//! Picking free loopback ports.
//!
//! Servers are told their port up front (so that `restart` can reuse it), which means we must pick
//! one ourselves: bind `127.0.0.1:0`, read the port the kernel chose, release it. That is
//! inherently racy (another process can grab the port before the server binds it), so the
//! servers' start-up code detects "Address already in use" and retries with a fresh port; here we
//! only avoid handing the same port out twice within this process.

use std::collections::VecDeque;
use std::net::{Ipv4Addr, TcpListener};
use std::sync::{Mutex, PoisonError};

use anyhow::{Context, Result, bail};

/// Ports recently returned by [`free_port`] in this process.
static RECENT: Mutex<VecDeque<u16>> = Mutex::new(VecDeque::new());
const RECENT_CAPACITY: usize = 256;

/// A TCP port on 127.0.0.1 that was free a moment ago (and not handed out recently by this process).
pub fn free_port() -> Result<u16> {
    for _ in 0..64 {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .context("could not bind 127.0.0.1:0 to find a free port (is the loopback interface up?)")?;
        let port = listener.local_addr().context("could not read the local address of a 127.0.0.1:0 listener")?.port();
        drop(listener);
        let mut recent = RECENT.lock().unwrap_or_else(PoisonError::into_inner);
        if recent.contains(&port) {
            continue;
        }
        if recent.len() >= RECENT_CAPACITY {
            recent.pop_front();
        }
        recent.push_back(port);
        return Ok(port);
    }
    bail!("could not find a free TCP port on 127.0.0.1 after 64 attempts")
}
