//! The JSON API under `/api`. Handlers take a request transaction ([`crate::principal::UserTx`] or
//! [`crate::org::OrgTx`]), never the pool, and commit it on success; an error drops (rolls back) it.

pub(crate) mod audit;
pub(crate) mod invitations;
pub(crate) mod knowledge;
pub(crate) mod links;
pub(crate) mod me;
pub(crate) mod members;
pub(crate) mod organizations;
pub(crate) mod pagination;
pub(crate) mod session;
