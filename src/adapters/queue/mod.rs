//! Delivery queue adapters: SQS FIFO in AWS, an outbox in the embedded
//! store locally. Both carry the same message: the alert as Azure sent it,
//! with the few facts delivery needs beside it.

mod intake;
mod outbox;
mod sqs;

pub use intake::EventSourceIntake;
pub use outbox::{Outbox, OutboxEntry};
pub use sqs::SqsQueue;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::domain::ports::{QueueError, QueuedNotification};

/// A queued notification on the wire. The alert rides as raw JSON (not a
/// string), so a 256 KB alert makes a message only a few hundred bytes
/// larger: the queue allows 1 MiB.
#[derive(Debug, Serialize, Deserialize)]
pub struct Message {
    /// Format version.
    pub v: u8,
    pub alert_id: String,
    pub group: String,
    pub seq: u64,
    pub digest: String,
    pub alert: Box<RawValue>,
}

impl Message {
    pub fn encode(n: &QueuedNotification<'_>) -> Result<String, QueueError> {
        // The webhook queues only bodies that parsed as JSON.
        let text =
            std::str::from_utf8(n.body).map_err(|_| QueueError("the alert is not UTF-8".into()))?;
        let alert: &RawValue = serde_json::from_str(text)
            .map_err(|e| QueueError(format!("the alert is not JSON: {e}")))?;
        #[derive(Serialize)]
        struct Out<'a> {
            v: u8,
            alert_id: &'a str,
            group: &'a str,
            seq: u64,
            digest: &'a str,
            alert: &'a RawValue,
        }
        serde_json::to_string(&Out {
            v: 1,
            alert_id: n.alert_id,
            group: n.group,
            seq: n.seq,
            digest: n.digest,
            alert,
        })
        .map_err(|e| QueueError(e.to_string()))
    }

    /// Reads a message this bridge wrote.
    ///
    /// # Errors
    /// A description of what is wrong, when the text is not such a message.
    pub fn decode(text: &str) -> Result<Message, String> {
        let m: Message =
            serde_json::from_str(text).map_err(|e| format!("not a queued notification: {e}"))?;
        if m.v != 1 {
            return Err(format!("queued notification format {} is not known", m.v));
        }
        Ok(m)
    }

    /// The SQS deduplication id: the notification (its digest) at its place
    /// in the alert's sequence. Sending the same queuing again (after a lost
    /// answer) collapses at the queue; Azure's repeats are caught before the
    /// queue, by the record's digest. Not the digest alone: a repeat of an
    /// older notification that the queue dropped would leave a number the
    /// worker waits for.
    pub fn dedup_id(group: &str, seq: u64, digest: &str) -> String {
        format!("{group}-{seq}-{digest}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip_with_the_alert_as_raw_json() {
        let body = br#"{"schemaId":"azureMonitorCommonAlertSchema","data":{"x":[1, 2]}}"#;
        let n = QueuedNotification {
            alert_id: "/a/1",
            group: "azmon-00",
            seq: 3,
            digest: "ab",
            body,
        };
        let text = Message::encode(&n).unwrap();
        assert!(text.contains(r#""alert":{"schemaId""#), "{text}");
        let m = Message::decode(&text).unwrap();
        assert_eq!(
            (m.alert_id.as_str(), m.seq, m.group.as_str()),
            ("/a/1", 3, "azmon-00")
        );
        assert_eq!(m.alert.get().as_bytes(), body);
        assert!(Message::decode(r#"{"v":2}"#).is_err());
        assert!(Message::decode(&text.replace(r#""v":1"#, r#""v":9"#)).is_err());
    }
}
