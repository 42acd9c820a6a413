//! Jira Service Management (Cloud, and Data Center) as an ITSM target.

pub mod adf;
mod client;
mod format;

pub use client::{JiraAuth, JiraClient, JiraConfig};
pub use format::{Deployment, JiraFields, JiraFormat, ResourceField};
