//! The api's config writes, in Kafka transactions: a quota or plan change and its
//! entry in the trail (`meter.config.history`) commit together or not at
//! all, so the trail holds every change that took effect and no other.
//! Readers of both topics read committed records only.

use std::sync::Mutex;
use std::time::Duration;

use meter_kafka::{commit_transaction, send_in_transaction as send, transactional_producer, KafkaConfig, TxProducer};
use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseRecord, Producer};

const TIMEOUT: Duration = Duration::from_secs(10);

/// One transactional producer per api instance, one write at a time
/// (config changes are rare).
pub(crate) struct ConfigWriter {
    kafka: KafkaConfig,
    /// `None` after a fatal error: made again by the next write.
    producer: Mutex<Option<TxProducer>>,
}

impl std::fmt::Debug for ConfigWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ConfigWriter")
    }
}

impl ConfigWriter {
    /// A writer whose producer is ready (its transactions initialised).
    pub(crate) fn new(kafka: &KafkaConfig) -> anyhow::Result<ConfigWriter> {
        let producer = transactional_producer(kafka, &prefix(kafka))?;
        Ok(ConfigWriter { kafka: kafka.clone(), producer: Mutex::new(Some(producer)) })
    }

    /// Writes `value` under `key` to the config topic (`None`: a tombstone)
    /// and, when given, the trail entry `(key, value)` to the history topic,
    /// in one transaction. Blocks: call it off the async runtime.
    pub(crate) fn write(
        &self,
        key: &str,
        value: Option<&[u8]>,
        trail: Option<(String, Vec<u8>)>,
    ) -> anyhow::Result<()> {
        let mut guard = self.producer.lock().expect("config writer");
        if guard.is_none() {
            *guard = Some(transactional_producer(&self.kafka, &prefix(&self.kafka))?);
        }
        let p = guard.as_ref().expect("made above");
        let written = (|| -> Result<(), KafkaError> {
            p.begin_transaction()?;
            let record = BaseRecord::<str, [u8]>::to(&self.kafka.config_topic).key(key);
            send(p, if let Some(v) = value { record.payload(v) } else { record })?;
            if let Some((k, v)) = &trail {
                send(p, BaseRecord::to(&self.kafka.config_history_topic).key(k.as_str()).payload(v.as_slice()))?;
            }
            commit_transaction(p, TIMEOUT)
        })();
        if let Err(e) = &written {
            let fatal = matches!(e, KafkaError::Transaction(rd) if rd.is_fatal());
            if fatal || p.abort_transaction(TIMEOUT).is_err() {
                *guard = None;
            }
        }
        Ok(written?)
    }
}

/// The transactional ids of the api's config writes start with this.
fn prefix(kafka: &KafkaConfig) -> String {
    format!("{}.api", kafka.config_topic)
}
