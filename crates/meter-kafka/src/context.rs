//! How our Kafka clients report librdkafka's log lines and error events.
//!
//! An operator alerts on ERROR and WARN. librdkafka reports a broker it
//! cannot reach (killed, restarting, a rolling upgrade) at ERROR, once per
//! reconnection attempt and per client: over a broker's restart, hundreds
//! of lines, while it reconnects on its own and the roles' metrics and
//! alerts (lag, readiness, under-replicated topics) say when it lasts. Those
//! are INFO here; everything else keeps its level (errors as WARN), and its
//! repeats are written once per interval (`throttle.rs`).

use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::ConsumerContext;
use rdkafka::error::KafkaError;
use rdkafka::producer::{DeliveryResult, ProducerContext};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::ClientContext;
use tracing::Level;

/// True for what a broker going away and coming back looks like from a
/// client: refused or dropped connections, which librdkafka retries.
fn transient_connection(fac: &str, message: &str) -> bool {
    matches!(fac, "FAIL" | "DISCONNECT" | "CONNECT" | "BROKERFAIL")
        || ["Connection refused", "Disconnected", "Connect to", "Broker transport failure"]
            .iter()
            .any(|m| message.contains(m))
}

/// The level a librdkafka log line is written at.
pub(crate) fn log_level(level: RDKafkaLogLevel, fac: &str, message: &str) -> Level {
    use RDKafkaLogLevel::*;
    match level {
        _ if (level as i32) <= (Warning as i32) && transient_connection(fac, message) => Level::INFO,
        Emerg | Alert | Critical | Error => Level::ERROR,
        Warning => Level::WARN,
        Notice | Info => Level::INFO,
        Debug => Level::DEBUG,
    }
}

/// `ClientContext::log` of this crate's contexts.
pub(crate) fn log(level: RDKafkaLogLevel, fac: &str, message: &str) {
    let throttled = || crate::throttle::once_in_a_while(&format!("librdkafka/{fac}"));
    match log_level(level, fac, message) {
        Level::ERROR => {
            if let Some(left_out) = throttled() {
                tracing::error!(fac, message, left_out, "kafka.librdkafka");
            }
        }
        Level::WARN => {
            if let Some(left_out) = throttled() {
                tracing::warn!(fac, message, left_out, "kafka.librdkafka");
            }
        }
        Level::INFO => tracing::info!(fac, message, "kafka.librdkafka"),
        _ => tracing::debug!(fac, message, "kafka.librdkafka"),
    }
}

/// The level an error event is written at: none for the end of a partition
/// (asked for with `enable.partition.eof`), INFO for an unreachable broker
/// (see above), WARN for anything else (librdkafka retries on its own).
pub(crate) fn error_level(error: &KafkaError, reason: &str) -> Option<Level> {
    if matches!(error, KafkaError::PartitionEOF(_)) {
        return None;
    }
    match error.rdkafka_error_code() {
        Some(RDKafkaErrorCode::PartitionEOF) => None,
        Some(RDKafkaErrorCode::BrokerTransportFailure) => Some(Level::INFO),
        _ if transient_connection("", reason) => Some(Level::INFO),
        _ => Some(Level::WARN),
    }
}

/// Writes Kafka trouble `event` of `client` (a consumer's name, or empty)
/// at its `error_level`; repeats of a WARN once per interval (every client
/// reports an outage again and again, on every poll).
pub(crate) fn report(event: &'static str, client: &str, error: &KafkaError, reason: &str) {
    match error_level(error, reason) {
        Some(Level::INFO) => tracing::info!(%error, reason, client, "{event}"),
        Some(_) => {
            if let Some(left_out) = crate::throttle::once_in_a_while(&format!("{event}/{client}/{error}")) {
                tracing::warn!(%error, reason, client, left_out, "{event}");
            }
        }
        None => {}
    }
}

/// The context of our clients that need no other: log lines and errors
/// reported as above.
#[derive(Debug, Default, Clone, Copy)]
pub struct Quiet;

impl ClientContext for Quiet {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        log(level, fac, message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        report("kafka.client_error", "", &error, reason);
    }
}

impl ConsumerContext for Quiet {}

impl ProducerContext for Quiet {
    type DeliveryOpaque = ();

    /// Delivery is checked by whoever sends (flush, transaction commit).
    fn delivery(&self, _: &DeliveryResult<'_>, _: ()) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unreachable_broker_is_info_and_other_trouble_keeps_its_level() {
        let refused = "127.0.0.1:19094/2: Connect to ipv4#127.0.0.1:19094 failed: Connection refused (after 0ms in state CONNECT)";
        assert_eq!(log_level(RDKafkaLogLevel::Error, "FAIL", refused), Level::INFO);
        assert_eq!(log_level(RDKafkaLogLevel::Error, "ERROR", refused), Level::INFO);
        let down = "127.0.0.1:19092/1: Disconnected (after 5021ms in state UP)";
        assert_eq!(log_level(RDKafkaLogLevel::Warning, "FAIL", down), Level::INFO);
        assert_eq!(log_level(RDKafkaLogLevel::Error, "TXNERR", "Current transaction failed: fenced"), Level::ERROR);
        assert_eq!(log_level(RDKafkaLogLevel::Warning, "CONFWARN", "Configuration property ignored"), Level::WARN);
        assert_eq!(log_level(RDKafkaLogLevel::Debug, "FAIL", refused), Level::DEBUG);

        let transport = KafkaError::Global(RDKafkaErrorCode::BrokerTransportFailure);
        assert_eq!(error_level(&transport, refused), Some(Level::INFO));
        let at_poll = KafkaError::MessageConsumption(RDKafkaErrorCode::BrokerTransportFailure);
        assert_eq!(error_level(&at_poll, ""), Some(Level::INFO));
        let all_down = KafkaError::Global(RDKafkaErrorCode::AllBrokersDown);
        assert_eq!(error_level(&all_down, "3/3 brokers are down"), Some(Level::WARN));
        assert_eq!(error_level(&KafkaError::PartitionEOF(3), ""), None);
        let fenced = KafkaError::Global(RDKafkaErrorCode::Fenced);
        assert_eq!(error_level(&fenced, "producer fenced"), Some(Level::WARN));
    }
}
