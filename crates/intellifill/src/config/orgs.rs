//! The organizations section: `ORG_*` (invitations and quotas) and `SECURITY_RECENT_MEMBERSHIP_SECONDS`.

use std::time::Duration;

use super::ServeArgs;
use super::check::{Checker, Section};

/// Organization lifecycle settings.
#[derive(Debug, Clone)]
pub struct OrgConfig {
    /// How long an invitation can be accepted.
    pub invitation_ttl: Duration,
    /// Organizations one user may hold as an active OWNER (creating more is `ORG_QUOTA_EXCEEDED`).
    pub max_per_user: i64,
    /// Pending, unexpired invitations one organization may have (`INVITATION_QUOTA_EXCEEDED`).
    pub max_pending_invitations: i64,
    /// A refused request to an organization the caller left (or was removed from) less than this long ago is
    /// a former member's stale client, not a cross-tenant attempt: it is not a security event.
    pub recent_membership: Duration,
}

/// The organizations section.
pub(super) fn from_args(args: &ServeArgs) -> Section<OrgConfig> {
    let mut c = Checker::default();
    let orgs = OrgConfig {
        invitation_ttl: c.seconds("ORG_INVITATION_TTL_SECONDS", &args.org_invitation_ttl_seconds, (60, 31_536_000)),
        max_per_user: c.number("ORG_MAX_PER_USER", &args.org_max_per_user, (1, 100_000)),
        max_pending_invitations: c.number(
            "ORG_MAX_PENDING_INVITATIONS",
            &args.org_max_pending_invitations,
            (1, 1_000_000),
        ),
        recent_membership: c.seconds(
            "SECURITY_RECENT_MEMBERSHIP_SECONDS",
            &args.security_recent_membership_seconds,
            (0, 31_536_000),
        ),
    };
    c.finish(orgs)
}
