//! The JSON API under `/api`. Handlers take a request transaction ([`crate::principal::UserTx`] or
//! [`crate::org::OrgTx`]), never the pool, and commit it on success; an error drops (rolls back) it.

pub mod audit;
pub mod invitations;
pub mod knowledge;
pub mod me;
pub mod members;
pub mod organizations;
pub mod pagination;
pub mod session;
