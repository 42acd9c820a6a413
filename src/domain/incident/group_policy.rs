//! A routing rule's `group` object: which alerts share one parent incident,
//! for how long a group takes new alerts, when its parent resolves and how
//! often the parent is updated. Checked at start; errors name the field.

use serde::{Deserialize, Serialize};

/// The `group` object of a routing rule (or of `default`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupPolicy {
    /// The fields whose values make the group key, in order.
    pub by: Vec<String>,
    /// An alert joins an open group only if its last join was at most this
    /// long ago (a rolling window).
    #[serde(default = "defaults::window")]
    pub window_secs: u64,
    /// No alert joins a group opened longer ago than this.
    #[serde(default = "defaults::max_age")]
    pub max_age_secs: u64,
    #[serde(default)]
    pub resolve: ResolvePolicy,
    /// At most one update of the parent per group per interval, besides its
    /// creation and its resolve.
    #[serde(default = "defaults::notes_every")]
    pub notes_every_secs: u64,
    /// Updates list at most this many children, then summarise.
    #[serde(default = "defaults::max_listed")]
    pub max_listed: u32,
    /// A group without a join for this long resolves (alerts Azure never
    /// resolves: activity log, budget). `None`: never.
    #[serde(default)]
    pub idle_resolve_secs: Option<u64>,
    #[serde(default)]
    pub children: Children,
}

/// When the parent incident resolves.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResolvePolicy {
    /// When its last open child resolves.
    #[default]
    All,
    /// When any child resolves.
    First,
    /// People resolve it.
    Never,
}

/// How the children appear in the ITSM.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Children {
    /// As entries in the parent's journal (work notes, work log, comments).
    #[default]
    Notes,
    /// As incidents of their own under the parent (ServiceNow's
    /// `parent_incident`, resolved by its parent-child cascade).
    Incidents,
}

mod defaults {
    pub fn window() -> u64 {
        600
    }
    pub fn max_age() -> u64 {
        7200
    }
    pub fn notes_every() -> u64 {
        60
    }
    pub fn max_listed() -> u32 {
        200
    }
}

/// The fields `by` may name; `custom.KEY` and `dimension.NAME` besides.
pub const KEY_FIELDS: [&str; 8] = [
    "alert_rule",
    "severity",
    "monitoring_service",
    "signal_type",
    "subscription",
    "resource_group",
    "resource_type",
    "target",
];

/// The longest any interval may be: 30 days (a group is an incident's
/// worth of alerts, not a season's; it also keeps clock arithmetic small).
pub const LONGEST_SECS: u64 = 30 * 24 * 3600;

impl GroupPolicy {
    /// Checks the values; the error names the field and what is allowed.
    pub fn check(&self) -> Result<(), String> {
        if self.by.is_empty() {
            return Err("group.by is empty; name at least one field, e.g. [\"alert_rule\"]".into());
        }
        for field in &self.by {
            let known = KEY_FIELDS.contains(&field.as_str())
                || ["custom.", "dimension."].iter().any(|p| {
                    field
                        .strip_prefix(p)
                        .is_some_and(|rest| !rest.trim().is_empty())
                });
            if !known {
                return Err(format!(
                    "group.by names {field:?}; known: {}, custom.KEY, dimension.NAME",
                    KEY_FIELDS.join(", ")
                ));
            }
        }
        let bounded = |name: &str, v: u64, least: u64| {
            if (least..=LONGEST_SECS).contains(&v) {
                Ok(())
            } else {
                Err(format!(
                    "group.{name} is {v}; allowed {least} to {LONGEST_SECS} seconds"
                ))
            }
        };
        bounded("window_secs", self.window_secs, 1)?;
        bounded("max_age_secs", self.max_age_secs, 1)?;
        bounded("notes_every_secs", self.notes_every_secs, 1)?;
        if let Some(idle) = self.idle_resolve_secs {
            bounded("idle_resolve_secs", idle, 60)?;
        }
        if self.window_secs > self.max_age_secs {
            return Err(format!(
                "group.window_secs ({}) is longer than group.max_age_secs ({}); no group stays \
                 open past its max_age_secs",
                self.window_secs, self.max_age_secs
            ));
        }
        if !(1..=10_000).contains(&self.max_listed) {
            return Err(format!(
                "group.max_listed is {}; allowed 1 to 10000",
                self.max_listed
            ));
        }
        Ok(())
    }

    /// Refuses what `itsm_kind` cannot do: children as incidents of their
    /// own need ServiceNow's `parent_incident`.
    pub fn check_for(&self, itsm_kind: &str) -> Result<(), String> {
        if self.children == Children::Incidents && itsm_kind != "servicenow" {
            return Err(format!(
                "group.children \"incidents\" needs ServiceNow's parent_incident; {itsm_kind} \
                 takes \"notes\" (entries in the parent's journal)"
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(v: serde_json::Value) -> Result<GroupPolicy, String> {
        let p: GroupPolicy = serde_json::from_value(v).map_err(|e| e.to_string())?;
        p.check().map(|()| p)
    }

    #[test]
    fn defaults_are_the_documented_ones() {
        let p = parse(json!({"by": ["alert_rule"]})).unwrap();
        assert_eq!(
            (
                p.window_secs,
                p.max_age_secs,
                p.notes_every_secs,
                p.max_listed
            ),
            (600, 7200, 60, 200)
        );
        assert_eq!(
            (p.resolve, p.children),
            (ResolvePolicy::All, Children::Notes)
        );
        assert_eq!(p.idle_resolve_secs, None);
    }

    #[test]
    fn mistakes_name_the_field_and_what_is_allowed() {
        let rows = [
            (json!({"by": []}), "group.by is empty"),
            (
                json!({"by": ["rg"]}),
                "group.by names \"rg\"; known: alert_rule",
            ),
            (json!({"by": ["custom."]}), "group.by names \"custom.\""),
            (
                json!({"by": ["alert_rule"], "window_secs": 0}),
                "group.window_secs is 0; allowed 1 to",
            ),
            (
                json!({"by": ["alert_rule"], "max_age_secs": 99_999_999}),
                "group.max_age_secs is 99999999",
            ),
            (
                json!({"by": ["alert_rule"], "window_secs": 900, "max_age_secs": 600}),
                "longer than group.max_age_secs",
            ),
            (
                json!({"by": ["alert_rule"], "idle_resolve_secs": 5}),
                "group.idle_resolve_secs is 5; allowed 60",
            ),
            (
                json!({"by": ["alert_rule"], "max_listed": 0}),
                "group.max_listed is 0",
            ),
            (
                json!({"by": ["alert_rule"], "resolve": "last"}),
                "unknown variant `last`",
            ),
            (
                json!({"by": ["alert_rule"], "windw_secs": 5}),
                "unknown field `windw_secs`",
            ),
        ];
        for (v, want) in rows {
            let err = parse(v.clone()).unwrap_err();
            assert!(err.contains(want), "{v}: {err}");
        }
    }

    #[test]
    fn child_incidents_are_servicenow_only() {
        let p = parse(json!({"by": ["alert_rule"], "children": "incidents"})).unwrap();
        assert_eq!(p.check_for("servicenow"), Ok(()));
        for kind in ["bmc-helix", "jira"] {
            assert!(p.check_for(kind).unwrap_err().contains("takes \"notes\""));
        }
    }
}
