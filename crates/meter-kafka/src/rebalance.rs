//! A consumer context that counts rebalances, so a loop can tell that what
//! it holds belongs to an assignment that no longer holds.

use std::sync::atomic::{AtomicU64, Ordering};

use rdkafka::consumer::{BaseConsumer, ConsumerContext, Rebalance};
use rdkafka::ClientContext;

/// Counts rebalances so the loop can tell that its in-flight batch belongs
/// to an assignment that no longer holds.
#[derive(Debug, Default)]
pub struct RebalanceWatch {
    generation: AtomicU64,
}

impl RebalanceWatch {
    /// Changes at every revocation and assignment.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }
}

impl ClientContext for RebalanceWatch {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, message: &str) {
        crate::context::log(level, fac, message);
    }

    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        crate::context::report("kafka.client_error", "", &error, reason);
    }
}

impl ConsumerContext for RebalanceWatch {
    fn pre_rebalance(&self, _: &BaseConsumer<Self>, r: &Rebalance<'_>) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        if let Rebalance::Revoke(tpl) = r {
            tracing::info!(partitions = tpl.count(), "kafka.partitions_revoked");
        }
    }

    fn post_rebalance(&self, _: &BaseConsumer<Self>, r: &Rebalance<'_>) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        if let Rebalance::Assign(tpl) = r {
            let parts: Vec<i32> = tpl.elements().iter().map(|e| e.partition()).collect();
            tracing::info!(?parts, "kafka.partitions_assigned");
        }
    }
}
