//! Alert storms as one incident: a routing rule's `group` object
//! (`incident::group_policy`) puts the alerts that share its key
//! (`incident::group_key`) under one parent incident, updated in batches and
//! resolved by policy. `group`: one group's rules; `engine`: grouping as
//! the ITSM the state machine sees; `parent`: the parent incident; `round`:
//! the scheduled round's part; `person`: a parent a person resolved.

mod engine;
pub mod group;
mod parent;
mod person;
mod round;

pub use engine::Grouped;
pub use parent::parent_key;
pub use round::GroupRound;

#[cfg(test)]
mod tests;
