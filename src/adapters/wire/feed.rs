//! Paging an ITSM's change feed so that no page can skip a change while
//! people update incidents between page reads.
//!
//! An update moves an incident's update time to now, past the round's
//! window, so it leaves the result: an offset counted before would then
//! overshoot and skip whatever slid into its place. So no page is read by
//! offset. Each page is a fresh query from a point the previous page
//! proved it had reached:
//!
//! - [`FeedCursor::From`] `t`: changes updated at or after second `t`,
//!   oldest first. A full page whose last change is at `l > t` continues
//!   from `l` again, whole: the changes of second `l` it already held come
//!   again (the port allows repeats), none is skipped.
//! - A full page that never left second `t` cannot move on by time: second
//!   `t` is then read whole by record id, [`FeedCursor::Within`] `t` after
//!   the last id seen (a strict keyset, whatever order the ITSM kept within
//!   the second on the pages before), then on from `t + 1`.
//!
//! The ITSM must order `From` pages by update time and `Within` pages by
//! record id, and say whether more came after a page.

use crate::domain::ports::{ChangePage, ChangeWindow, IncidentChange, ItsmError};

use super::checked_id;

/// Where the next page of a change feed starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FeedCursor {
    /// Changes updated at or after this second, to the window's end.
    From(i64),
    /// Changes updated in this very second, by record id, after `after`
    /// (from the first when `None`).
    Within { second: i64, after: Option<String> },
}

impl FeedCursor {
    /// The cursor a page's `next` carried, or the window's start.
    ///
    /// # Errors
    /// `Rejected` for text this module did not write.
    pub fn read(text: Option<&str>, window: ChangeWindow) -> Result<FeedCursor, ItsmError> {
        let Some(text) = text else {
            return Ok(FeedCursor::From(window.since));
        };
        let bad = || ItsmError::Rejected {
            status: 0,
            message: format!("not a change feed cursor: {text:?}"),
        };
        let mut parts = text.splitn(3, ':');
        let kind = parts.next().unwrap_or_default();
        let second: i64 = parts.next().and_then(|s| s.parse().ok()).ok_or_else(bad)?;
        match (kind, parts.next()) {
            ("from", None) => Ok(FeedCursor::From(second)),
            ("within", None) => Ok(FeedCursor::Within {
                second,
                after: None,
            }),
            ("within", Some(id)) => {
                let id = checked_id("the change feed", id).map_err(|_| bad())?;
                Ok(FeedCursor::Within {
                    second,
                    after: Some(id.to_string()),
                })
            }
            _ => Err(bad()),
        }
    }

    /// As `read` takes it back.
    pub fn text(&self) -> String {
        match self {
            FeedCursor::From(t) => format!("from:{t}"),
            FeedCursor::Within {
                second,
                after: None,
            } => format!("within:{second}"),
            FeedCursor::Within {
                second,
                after: Some(id),
            } => format!("within:{second}:{id}"),
        }
    }

    /// The cursor after a page read from `self`: `last` is the update
    /// second and id of the page's last record that had both, `more`
    /// whether the ITSM holds more after the page. `None`: the window is
    /// done.
    ///
    /// # Errors
    /// `Unavailable` when the ITSM said there is more but no record of the
    /// page had an update time and an id to go on from.
    pub fn next(
        &self,
        last: Option<(i64, &str)>,
        more: bool,
        window: ChangeWindow,
    ) -> Result<Option<FeedCursor>, ItsmError> {
        let on = |second: i64| (second < window.until).then_some(FeedCursor::From(second));
        match (self, more) {
            (FeedCursor::From(_), false) => Ok(None),
            (FeedCursor::Within { second, .. }, false) => Ok(on(second + 1)),
            (_, true) => {
                let (at, id) = last.ok_or_else(|| {
                    ItsmError::Unavailable(
                        "the ITSM answered a full page of changes without update times or \
                         record ids to page on from"
                            .into(),
                    )
                })?;
                Ok(Some(match self {
                    FeedCursor::From(t) if at > *t => FeedCursor::From(at),
                    FeedCursor::From(t) => FeedCursor::Within {
                        second: *t,
                        after: None,
                    },
                    FeedCursor::Within { second, .. } => FeedCursor::Within {
                        second: *second,
                        after: Some(id.to_string()),
                    },
                }))
            }
        }
    }
}

/// One page of an ITSM's change feed from its `records`, read from
/// `from`: `key` gives a record's update second and id, `change` the
/// change it carries (if it is one the sync role acts on), `more` whether
/// the ITSM holds more records after these.
///
/// # Errors
/// As [`FeedCursor::next`].
pub fn change_page<T>(
    records: &[T],
    from: &FeedCursor,
    more: bool,
    window: ChangeWindow,
    key: impl Fn(&T) -> Option<(i64, String)>,
    change: impl Fn(&T) -> Option<IncidentChange>,
) -> Result<ChangePage, ItsmError> {
    let last = records
        .iter()
        .rev()
        .filter_map(&key)
        .find(|(_, id)| checked_id("the ITSM", id).is_ok());
    let next = from.next(last.as_ref().map(|(t, id)| (*t, id.as_str())), more, window)?;
    Ok(ChangePage {
        changes: records.iter().filter_map(change).collect(),
        next: next.map(|c| c.text()),
    })
}

#[cfg(test)]
mod tests;
