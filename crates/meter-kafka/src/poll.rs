//! What a group consumer's loop does with a poll error.

use rdkafka::error::KafkaError;

/// Logs a poll error of the group consumer `consumer` (e.g. "enforcer") and
/// returns `Err` when it is fatal: librdkafka's consumer is then unusable
/// for good (a static member fenced by its own rejoin after the group
/// coordinator moved, seen under broker kills on a 3-broker cluster), so
/// the role must stop and its supervisor start it again, rather than poll
/// a dead consumer forever.
pub fn poll_error(consumer: &'static str, e: KafkaError) -> Result<(), KafkaError> {
    if matches!(e, KafkaError::MessageConsumptionFatal(_)) {
        tracing::error!(error = %e, consumer, "kafka.consumer_fatal");
        return Err(e);
    }
    crate::context::report("kafka.poll_error", consumer, &e, "");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::types::RDKafkaErrorCode;

    #[test]
    fn only_fatal_errors_stop_the_loop() {
        assert!(poll_error("t", KafkaError::MessageConsumption(RDKafkaErrorCode::BrokerTransportFailure)).is_ok());
        let fenced = KafkaError::MessageConsumptionFatal(RDKafkaErrorCode::FencedInstanceId);
        assert!(poll_error("t", fenced).is_err());
    }
}
