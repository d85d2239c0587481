//! The five metrics of Neon's consumption model.

use std::fmt;

/// A usage metric. Four are counters (summed per billing cycle); one,
/// `LogicalSizeBytes`, is a gauge (latest value wins, never resets).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    /// Compute uptime, seconds.
    ActiveTimeSeconds,
    /// CPU seconds (CU-seconds).
    ComputeTimeSeconds,
    /// Bytes written.
    WrittenDataBytes,
    /// Egress bytes.
    DataTransferBytes,
    /// Storage size in bytes (gauge).
    LogicalSizeBytes,
}

impl Metric {
    /// Every metric, in a fixed order.
    pub const ALL: [Metric; 5] = [
        Metric::ActiveTimeSeconds,
        Metric::ComputeTimeSeconds,
        Metric::WrittenDataBytes,
        Metric::DataTransferBytes,
        Metric::LogicalSizeBytes,
    ];

    /// The four counters, in the order used by `CycleCounters`.
    pub const COUNTERS: [Metric; 4] =
        [Metric::ActiveTimeSeconds, Metric::ComputeTimeSeconds, Metric::WrittenDataBytes, Metric::DataTransferBytes];

    /// Neon's field name, also the name used in ClickHouse and the API.
    pub const fn name(self) -> &'static str {
        match self {
            Metric::ActiveTimeSeconds => "active_time_seconds",
            Metric::ComputeTimeSeconds => "compute_time_seconds",
            Metric::WrittenDataBytes => "written_data_bytes",
            Metric::DataTransferBytes => "data_transfer_bytes",
            Metric::LogicalSizeBytes => "logical_size_bytes",
        }
    }

    /// Parses Neon's field name.
    pub fn from_name(name: &str) -> Option<Metric> {
        Metric::ALL.into_iter().find(|m| m.name() == name)
    }

    /// True for the gauge, false for the counters.
    pub const fn is_gauge(self) -> bool {
        matches!(self, Metric::LogicalSizeBytes)
    }

    /// Position of a counter in `Metric::COUNTERS`; `None` for the gauge.
    pub const fn counter_index(self) -> Option<usize> {
        match self {
            Metric::ActiveTimeSeconds => Some(0),
            Metric::ComputeTimeSeconds => Some(1),
            Metric::WrittenDataBytes => Some(2),
            Metric::DataTransferBytes => Some(3),
            Metric::LogicalSizeBytes => None,
        }
    }
}

impl fmt::Display for Metric {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for m in Metric::ALL {
            assert_eq!(Metric::from_name(m.name()), Some(m));
        }
        assert_eq!(Metric::from_name("cpu_seconds"), None);
    }

    #[test]
    fn counters_are_indexed_in_order() {
        for (i, m) in Metric::COUNTERS.into_iter().enumerate() {
            assert_eq!(m.counter_index(), Some(i));
            assert!(!m.is_gauge());
        }
        assert_eq!(Metric::LogicalSizeBytes.counter_index(), None);
    }
}
