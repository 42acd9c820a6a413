//! One integration-test binary: the real handler over real HTTP on loopback.

mod auth;
mod edge;
mod helpers;
mod replay;
mod samples;
mod servicenow;
