//! A user's logout cut-off, and what it says about one token of that user.
//!
//! A global logout ends every session the user has at the auth service; `others` every session but the
//! caller's. This server cannot list a user's sessions, so it records the moment of the logout instead and
//! judges each token by when it was issued. Two clocks are involved: the cut-off is on this server's clock,
//! `iat` on the auth service's, and `iat` has a resolution of one second. With the difference between the two
//! clocks bounded by `AUTH_CLOCK_SKEW_BOUND_SECONDS` (`skew`), a token was issued, by our clock, somewhere in
//! `[iat − skew, iat + 1 s + skew)`:
//! - entirely before the logout was sent: its session existed when the logout ran, so it was ended: revoked;
//! - entirely after the auth service confirmed the logout: its session is one the logout never saw (a new
//!   sign-in): clear;
//! - otherwise (the skew window): only the auth service knows, so [`Verdict::Undecided`] sends the token to
//!   `GET /auth/v1/user` once. A session it confirms alive is remembered against this cut-off
//!   (`alive_against`), a session it reports gone becomes a session revocation.
//!
//! A token without a `session_id` cannot be asked about (the auth service checks sessions, not issue times):
//! inside the window it is refused, the safe side.
//!
//! A later cut-off subsumes an earlier one (every session the earlier logout ended existed before the later
//! one too, and the later one's kept session, if any, was alive at the later logout), so one cut-off per user
//! is kept: the latest ([`Cutoff::latest`]).

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A global (`except: None`) or `others` (`except`: the caller's session) logout of a user, on this server's
/// clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", from = "CutoffWire")]
pub struct Cutoff {
    /// When the logout was sent to the auth service (unix ms): sessions existing then were ended.
    pub sent_ms: i64,
    /// When the auth service confirmed it (unix ms): a session seen alive after this was not ended by it.
    pub done_ms: i64,
    /// The session the logout kept (`others`).
    pub except: Option<Uuid>,
}

/// What is known about a token, as far as revocations go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Nothing revokes it.
    Clear,
    /// Refused: its token, its session or its user's cut-off covers it.
    Revoked,
    /// Issued within the skew window of the cut-off whose `done_ms` is `against`: ask the auth service.
    Undecided { against: i64 },
}

impl Cutoff {
    /// A cut-off now (a deleted user: every session is gone).
    pub fn at(now_ms: i64) -> Cutoff {
        Cutoff { sent_ms: now_ms, done_ms: now_ms, except: None }
    }

    /// The cut-off's verdict on a token of its user with `session` and `iat`, given the skew bound and the
    /// latest cut-off its session was confirmed alive against, if any.
    pub fn judge(&self, session: Option<Uuid>, iat: i64, skew_ms: i64, alive_against: Option<i64>) -> Verdict {
        if session.is_some() && session == self.except {
            return Verdict::Clear;
        }
        if session.is_some() && alive_against.is_some_and(|at| at >= self.done_ms) {
            return Verdict::Clear;
        }
        let issued_ms = iat.saturating_mul(1000);
        let latest = issued_ms.saturating_add(1000).saturating_add(skew_ms);
        let earliest = issued_ms.saturating_sub(skew_ms);
        if latest <= self.sent_ms {
            Verdict::Revoked
        } else if earliest > self.done_ms {
            Verdict::Clear
        } else if session.is_none() {
            Verdict::Revoked
        } else {
            Verdict::Undecided { against: self.done_ms }
        }
    }

    /// The later of two cut-offs of one user (see the module docs: it subsumes the other).
    pub fn latest(self, other: Cutoff) -> Cutoff {
        if other.done_ms > self.done_ms { other } else { self }
    }
}

/// The stored shapes: this one, and the older `{before, except}` (seconds; every token with `iat <= before`),
/// still read from Redis and the broadcast while a deployment rolls. The older one is read as a cut-off at the
/// end of that second.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CutoffWire {
    sent_ms: Option<i64>,
    done_ms: Option<i64>,
    before: Option<i64>,
    except: Option<Uuid>,
}

impl From<CutoffWire> for Cutoff {
    fn from(w: CutoffWire) -> Cutoff {
        let legacy = w.before.map(|s| s.saturating_add(1).saturating_mul(1000)).unwrap_or(0);
        let sent_ms = w.sent_ms.unwrap_or(legacy);
        Cutoff { sent_ms, done_ms: w.done_ms.unwrap_or(sent_ms), except: w.except }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SKEW: i64 = 30_000;

    fn global(at_ms: i64) -> Cutoff {
        Cutoff { sent_ms: at_ms, done_ms: at_ms + 40, except: None }
    }

    #[test]
    fn tokens_are_judged_by_when_they_can_have_been_issued() {
        let logout = 1_000_000_000;
        let c = global(logout);
        let s = Some(Uuid::new_v4());
        let iat = |offset_s: i64| (logout / 1000) + offset_s;
        // Issued at least skew + 1 s before: ended, whatever the clocks did.
        assert_eq!(c.judge(s, iat(-31), SKEW, None), Verdict::Revoked);
        assert_eq!(c.judge(s, iat(-3600), SKEW, None), Verdict::Revoked);
        // Within the window, on either side: the auth service decides.
        for offset in [-30, -5, 0, 5, 30] {
            assert_eq!(c.judge(s, iat(offset), SKEW, None), Verdict::Undecided { against: logout + 40 }, "{offset}");
        }
        // Beyond it: a session the logout never saw.
        assert_eq!(c.judge(s, iat(31), SKEW, None), Verdict::Clear);
        // No skew allowed at all: only the logout's own second (and the round trip) is in doubt.
        assert_eq!(c.judge(s, iat(-1), 0, None), Verdict::Revoked);
        assert_eq!(c.judge(s, iat(0), 0, None), Verdict::Undecided { against: logout + 40 });
        assert_eq!(c.judge(s, iat(1), 0, None), Verdict::Clear);
    }

    #[test]
    fn a_confirmed_or_kept_session_is_clear_and_a_sessionless_token_in_doubt_is_not() {
        let logout = 2_000_000_000;
        let kept = Uuid::new_v4();
        let others = Cutoff { except: Some(kept), ..global(logout) };
        let iat = logout / 1000;
        assert_eq!(others.judge(Some(kept), iat - 3600, SKEW, None), Verdict::Clear);
        assert_eq!(others.judge(Some(Uuid::new_v4()), iat - 3600, SKEW, None), Verdict::Revoked);

        let s = Some(Uuid::new_v4());
        assert_eq!(others.judge(s, iat, SKEW, Some(logout + 40)), Verdict::Clear, "confirmed against this one");
        assert_eq!(others.judge(s, iat, SKEW, Some(logout + 39)), Verdict::Undecided { against: logout + 40 });
        assert_eq!(others.judge(s, iat - 3600, SKEW, Some(logout + 40)), Verdict::Clear, "the auth service said so");

        assert_eq!(others.judge(None, iat, SKEW, None), Verdict::Revoked);
        assert_eq!(others.judge(None, iat + 31, SKEW, None), Verdict::Clear);
    }

    #[test]
    fn the_latest_cutoff_wins_and_the_older_shape_still_reads() {
        let a = global(1_000);
        let b = Cutoff { except: Some(Uuid::new_v4()), ..global(2_000) };
        assert_eq!(a.latest(b), b);
        assert_eq!(b.latest(a), b);

        let json = serde_json::to_string(&b).expect("json");
        assert_eq!(serde_json::from_str::<Cutoff>(&json).expect("round trip"), b);
        let legacy: Cutoff = serde_json::from_str(r#"{"before":1700000000,"except":null}"#).expect("legacy");
        assert_eq!(legacy, Cutoff { sent_ms: 1_700_000_001_000, done_ms: 1_700_000_001_000, except: None });
        assert_eq!(legacy.judge(Some(Uuid::new_v4()), 1_700_000_000 - 31, SKEW, None), Verdict::Revoked);
    }
}
