//! Adjustments on the wire: in `usage.events` (an `EventsRecord` of their
//! own, in their project's partition) and in `usage.rows` (the applied ones,
//! for ClickHouse).

use meter_core::adjust::Adjustment;
use meter_core::partition::partition_of;
use meter_core::{BatchError, Metric, ProjectId};
use prost::Message;

use crate::batch::{metric_from_wire, metric_to_wire, DecodeError};
use crate::report::EventsRecord;
use crate::v1;

/// The wire form of an adjustment.
pub fn adjustment_to_wire(a: &Adjustment) -> v1::Adjustment {
    v1::Adjustment {
        project_id: a.project_id.to_string(),
        metric: metric_to_wire(a.metric) as i32,
        hour_unix_s: a.hour_ms / 1000,
        cycle_wide: a.cycle_wide,
        delta: a.delta,
        reason: a.reason.clone(),
        idempotency_key: a.idempotency_key.clone(),
        actor: a.actor.clone(),
        created_unix_ms: a.created_ms,
        request_id: a.request_id.clone(),
    }
}

/// An adjustment read back; its project and metric checked.
pub fn adjustment_from_wire(w: v1::Adjustment) -> Result<Adjustment, DecodeError> {
    let invalid = |field, message: String| DecodeError::Invalid(BatchError::batch(field, message));
    let project_id = ProjectId::new(w.project_id).map_err(|e| invalid("project_id", e.to_string()))?;
    let metric = metric_from_wire(w.metric)
        .filter(|m: &Metric| !m.is_gauge())
        .ok_or_else(|| invalid("metric", format!("adjustment of metric code {}", w.metric)))?;
    Ok(Adjustment {
        project_id,
        metric,
        hour_ms: w.hour_unix_s * 1000,
        cycle_wide: w.cycle_wide,
        delta: w.delta,
        reason: w.reason,
        idempotency_key: w.idempotency_key,
        actor: w.actor,
        created_ms: w.created_unix_ms,
        request_id: w.request_id,
    })
}

/// The `usage.events` record of one adjustment among `partitions`
/// partitions, keyed by its project.
pub fn adjustment_record(a: &Adjustment, partitions: i32) -> EventsRecord {
    EventsRecord {
        partition: partition_of(a.project_id.as_str(), partitions),
        key: a.project_id.to_string(),
        value: v1::EventsRecord { adjustments: vec![adjustment_to_wire(a)], ..Default::default() }.encode_to_vec(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_adjustment_goes_to_its_projects_partition_and_back() {
        let a = Adjustment {
            project_id: ProjectId::new("acme-prod").unwrap(),
            metric: Metric::DataTransferBytes,
            hour_ms: 1_796_083_200_000,
            cycle_wide: true,
            delta: -42,
            reason: "egress double-billed".into(),
            idempotency_key: "k-1".into(),
            actor: "billing".into(),
            created_ms: 1_796_083_200_123,
            request_id: "req".into(),
        };
        let rec = adjustment_record(&a, 8);
        assert_eq!(rec.partition, partition_of("acme-prod", 8));
        let d = crate::events::decode_events(&rec.value).expect("decodes");
        assert!(d.batches.is_empty());
        assert_eq!(d.adjustments, vec![a]);
        // Readers of batches alone see none in it.
        assert!(crate::decode_record(&rec.value).expect("decodes").is_empty());
    }

    #[test]
    fn an_adjustment_of_the_gauge_is_refused_on_read() {
        let w = v1::Adjustment {
            project_id: "p".into(),
            metric: v1::Metric::LogicalSizeBytes as i32,
            ..Default::default()
        };
        assert!(adjustment_from_wire(w).unwrap_err().to_string().contains("metric code 5"));
    }
}
