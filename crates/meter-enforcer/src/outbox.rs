//! Reading an outbox topic: the next JSON record, skipping (and
//! committing past) what cannot be decoded.

use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::{BorrowedMessage, Message};
use serde::de::DeserializeOwned;

/// The next record of `consumer` and its decoded value; `None` when there
/// is none yet or the record was undecodable (logged and committed).
pub(crate) fn next_json<'c, T: DeserializeOwned>(
    consumer: &'c BaseConsumer,
    what: &'static str,
) -> anyhow::Result<Option<(BorrowedMessage<'c>, T)>> {
    let msg = match consumer.poll(Duration::from_millis(100)) {
        None => return Ok(None),
        Some(Err(e)) => {
            tracing::warn!(error = %e, what, "outbox.poll_error");
            return Ok(None);
        }
        Some(Ok(msg)) => msg,
    };
    match serde_json::from_slice(msg.payload().unwrap_or_default()) {
        Ok(v) => Ok(Some((msg, v))),
        Err(e) => {
            tracing::error!(error = %e, what, offset = msg.offset(), "outbox.undecodable_record");
            consumer.commit_message(&msg, CommitMode::Sync)?;
            Ok(None)
        }
    }
}
