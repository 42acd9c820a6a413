//! Alert storms as one incident: a routing rule's `group` object puts the
//! alerts that share its key under one parent incident, updated in batches
//! and resolved by policy. `policy`: the configuration and its checks;
//! `key`: which alerts belong together; `group`: one group's rules.
//!
//! Not wired to routing yet (issue 24 is open): the routing file refuses a
//! `group` object until the parent's writes are in place.

pub mod group;
pub mod key;
pub mod policy;
