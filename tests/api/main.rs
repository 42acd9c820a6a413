//! One integration-test binary: the real handler over real HTTP on loopback.

mod auth;
mod aws;
mod binary_logs;
mod bmc;
mod edge;
mod fake_azure;
mod fake_changes;
mod fake_jira;
mod fake_limit;
mod fakes;
mod faults;
mod helpers;
mod hostile;
mod itsm_contract;
mod jira;
mod limits;
mod logs;
mod moto;
mod properties;
mod queue;
mod replay;
mod review;
mod samples;
mod servicenow;
mod store;
mod sync;
