use proptest::prelude::*;

use super::*;
use crate::domain::correlation::IncidentRef;
use crate::domain::ports::IncidentStatus;

const WINDOW: ChangeWindow = ChangeWindow {
    since: 100,
    until: 200,
    page_size: 3,
};

#[test]
fn cursors_read_back_what_they_wrote() {
    for c in [
        FeedCursor::From(150),
        FeedCursor::Within {
            second: 150,
            after: None,
        },
        FeedCursor::Within {
            second: 150,
            after: Some("INC000000000101|INC000000000101".into()),
        },
    ] {
        assert_eq!(FeedCursor::read(Some(&c.text()), WINDOW), Ok(c));
    }
    assert_eq!(FeedCursor::read(None, WINDOW), Ok(FeedCursor::From(100)));
    for bad in [
        "",
        "150",
        "from:x",
        "from:150:a",
        "within:150:a^ORb",
        "within:1:../x",
    ] {
        assert!(
            matches!(
                FeedCursor::read(Some(bad), WINDOW),
                Err(ItsmError::Rejected { .. })
            ),
            "{bad:?}"
        );
    }
}

#[test]
fn a_full_page_moves_on_by_time_or_reads_its_second_whole() {
    let from = FeedCursor::From(100);
    assert_eq!(from.next(Some((150, "b")), false, WINDOW), Ok(None));
    assert_eq!(
        from.next(Some((150, "b")), true, WINDOW),
        Ok(Some(FeedCursor::From(150))),
        "from the last second again, whole"
    );
    let stuck = FeedCursor::From(150);
    let within = FeedCursor::Within {
        second: 150,
        after: None,
    };
    assert_eq!(
        stuck.next(Some((150, "b")), true, WINDOW),
        Ok(Some(within.clone()))
    );
    assert_eq!(
        within.next(Some((150, "c")), true, WINDOW),
        Ok(Some(FeedCursor::Within {
            second: 150,
            after: Some("c".into())
        }))
    );
    assert_eq!(
        within.next(None, false, WINDOW),
        Ok(Some(FeedCursor::From(151)))
    );
    let last = FeedCursor::Within {
        second: 199,
        after: None,
    };
    assert_eq!(last.next(None, false, WINDOW), Ok(None), "the window ends");
    assert!(matches!(
        from.next(None, true, WINDOW),
        Err(ItsmError::Unavailable(_))
    ));
}

/// An ITSM as the feed sees it: records with an update second and an id.
#[derive(Debug, Clone)]
struct Record {
    at: i64,
    id: String,
}

/// What the ITSM answers for a query from `cursor`: `From` pages by time
/// with ties in an order of the ITSM's own (`shuffle` of them), `Within`
/// pages by id; and whether more came after.
fn answer(records: &[Record], cursor: &FeedCursor, shuffle: u64) -> (Vec<Record>, bool) {
    let mut rows: Vec<Record> = match cursor {
        FeedCursor::From(t) => records
            .iter()
            .filter(|r| r.at >= *t && r.at < WINDOW.until)
            .cloned()
            .collect(),
        FeedCursor::Within { second, after } => records
            .iter()
            .filter(|r| r.at == *second && after.as_ref().is_none_or(|a| r.id > *a))
            .cloned()
            .collect(),
    };
    let tie = |r: &Record| {
        let n: u64 = r.id[1..].parse().unwrap();
        n.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ shuffle
    };
    match cursor {
        FeedCursor::From(_) => rows.sort_by_key(|r| (r.at, tie(r))),
        FeedCursor::Within { .. } => rows.sort_by(|a, b| a.id.cmp(&b.id)),
    }
    let more = rows.len() > WINDOW.page_size;
    rows.truncate(WINDOW.page_size);
    (rows, more)
}

fn change(r: &Record) -> IncidentChange {
    IncidentChange {
        correlation_key: format!("azmon-{}", r.id),
        incident: IncidentRef {
            id: r.id.clone(),
            number: r.id.clone(),
        },
        status: IncidentStatus::Closed,
        status_label: "Resolved".into(),
        updated_at: r.at,
        updated_by: None,
    }
}

proptest! {
    /// Whatever people update or delete between page reads, every record
    /// that stayed in the window is read, and the pages end.
    #[test]
    fn no_page_skips_a_record_that_stayed(
        times in prop::collection::vec(95i64..205, 0..40),
        edits in prop::collection::vec((0usize..40, any::<bool>()), 0..20),
        shuffle in any::<u64>(),
    ) {
        let mut records: Vec<Record> = times
            .iter()
            .enumerate()
            .map(|(n, at)| Record { at: *at, id: format!("r{n:03}") })
            .collect();
        let mut stayed: Vec<String> = records
            .iter()
            .filter(|r| r.at >= WINDOW.since && r.at < WINDOW.until)
            .map(|r| r.id.clone())
            .collect();
        let mut seen: Vec<String> = Vec::new();
        let mut text: Option<String> = None;
        let mut edits = edits.into_iter();
        for page_no in 0.. {
            prop_assert!(page_no < 100, "the pages must end");
            let cursor = FeedCursor::read(text.as_deref(), WINDOW).unwrap();
            let (rows, more) = answer(&records, &cursor, shuffle);
            let page = change_page(
                &rows, &cursor, more, WINDOW,
                |r| Some((r.at, r.id.clone())),
                |r| Some(change(r)),
            ).unwrap();
            seen.extend(page.changes.iter().map(|c| c.incident.id.clone()));
            // Between two page reads someone updates (now: past the
            // window) or deletes a record.
            if let Some((n, delete)) = edits.next() && n < records.len() {
                let id = records[n].id.clone();
                stayed.retain(|s| *s != id);
                if delete {
                    records.remove(n);
                } else {
                    records[n].at = WINDOW.until + 5;
                }
            }
            match page.next {
                Some(next) => text = Some(next),
                None => break,
            }
        }
        for id in &stayed {
            prop_assert!(seen.contains(id), "{id} was skipped");
        }
    }
}
