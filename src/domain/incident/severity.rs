//! Severity → the ITSM's impact and urgency (or Jira's priority level): a
//! leaf of the domain, configured by `SEVERITY_MAP`.

use crate::domain::alert::Severity;

/// Severity → (impact, urgency) on the ITSM's scale: ServiceNow's 1 High …
/// 3 Low, or BMC's 1 … 4.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeverityTable {
    entries: Vec<(Severity, u8, u8)>,
    max: u8,
}

impl Default for SeverityTable {
    fn default() -> Self {
        SeverityTable::servicenow()
    }
}

impl SeverityTable {
    pub fn servicenow() -> SeverityTable {
        use Severity::*;
        let entries = vec![
            (Sev0, 1, 1),
            (Sev1, 1, 2),
            (Sev2, 2, 2),
            (Sev3, 2, 3),
            (Sev4, 3, 3),
            (Unknown, 3, 3),
        ];
        SeverityTable { entries, max: 3 }
    }

    pub fn bmc() -> SeverityTable {
        use Severity::*;
        let entries = vec![
            (Sev0, 1, 1),
            (Sev1, 2, 2),
            (Sev2, 3, 3),
            (Sev3, 4, 3),
            (Sev4, 4, 4),
            (Unknown, 4, 4),
        ];
        SeverityTable { entries, max: 4 }
    }

    /// Jira's five priorities: the impact level picks the priority name
    /// (1 the first of `JIRA_PRIORITIES`); urgency is not used.
    pub fn jira() -> SeverityTable {
        use Severity::*;
        let entries = vec![
            (Sev0, 1, 1),
            (Sev1, 2, 2),
            (Sev2, 3, 3),
            (Sev3, 4, 4),
            (Sev4, 5, 5),
            (Unknown, 3, 3),
        ];
        SeverityTable { entries, max: 5 }
    }

    /// Applies overrides such as `Sev0=1/1,Sev4=3/3,unknown=3/3` to this table.
    pub fn with(mut self, spec: &str) -> Result<SeverityTable, String> {
        let max = self.max;
        for item in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let bad = || format!("{item:?} is not SevN=IMPACT/URGENCY with values 1 to {max}");
            let (sev, levels) = item.split_once('=').ok_or_else(bad)?;
            let (impact, urgency) = levels.split_once('/').ok_or_else(bad)?;
            let severity = Severity::parse(sev);
            if severity == Severity::Unknown && !sev.trim().eq_ignore_ascii_case("unknown") {
                return Err(bad());
            }
            let level = |s: &str| {
                s.trim()
                    .parse::<u8>()
                    .ok()
                    .filter(|n| (1..=max).contains(n))
            };
            let (impact, urgency) = (
                level(impact).ok_or_else(bad)?,
                level(urgency).ok_or_else(bad)?,
            );
            for entry in self.entries.iter_mut().filter(|e| e.0 == severity) {
                *entry = (severity, impact, urgency);
            }
        }
        Ok(self)
    }

    /// The scale's lowest level (3 for ServiceNow, 4 for BMC).
    pub fn max(&self) -> u8 {
        self.max
    }

    pub fn levels(&self, severity: Severity) -> (u8, u8) {
        self.entries
            .iter()
            .find(|e| e.0 == severity)
            .map_or((3, 3), |e| (e.1, e.2))
    }
}
