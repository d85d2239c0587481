//! Consumption history (modelled on Neon's `consumption_history`): which
//! timeframes a request covers, checked before any query runs.

use crate::cycle::{parse_rfc3339, Cycle};
use crate::{Metric, UnixMs};

const HOUR_MS: i64 = 3_600_000;
const DAY_MS: i64 = 86_400_000;

/// How usage is bucketed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum Granularity {
    Hourly,
    Daily,
    Monthly,
}

impl Granularity {
    /// Parses `hourly`, `daily` or `monthly`.
    pub fn parse(s: &str) -> Option<Granularity> {
        match s {
            "hourly" => Some(Granularity::Hourly),
            "daily" => Some(Granularity::Daily),
            "monthly" => Some(Granularity::Monthly),
            _ => None,
        }
    }

    /// The wire name.
    pub fn name(self) -> &'static str {
        match self {
            Granularity::Hourly => "hourly",
            Granularity::Daily => "daily",
            Granularity::Monthly => "monthly",
        }
    }

    /// The most timeframes one request may cover: 168 hours (a week), 366
    /// days, 36 months.
    pub fn max_timeframes(self) -> usize {
        match self {
            Granularity::Hourly => 168,
            Granularity::Daily => 366,
            Granularity::Monthly => 36,
        }
    }

    /// The start of the timeframe containing `t` (UTC).
    pub fn floor(self, t: UnixMs) -> UnixMs {
        match self {
            Granularity::Hourly => t.div_euclid(HOUR_MS) * HOUR_MS,
            Granularity::Daily => t.div_euclid(DAY_MS) * DAY_MS,
            Granularity::Monthly => Cycle::containing(t).start_ms,
        }
    }

    /// The end of the timeframe starting at `start`.
    pub fn next(self, start: UnixMs) -> UnixMs {
        match self {
            Granularity::Hourly => start + HOUR_MS,
            Granularity::Daily => start + DAY_MS,
            Granularity::Monthly => Cycle::containing(start).end_ms,
        }
    }
}

/// A bad history request: the parameter at fault and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryError {
    pub param: &'static str,
    pub message: String,
    /// The range is well formed but covers more timeframes than its
    /// granularity allows (Neon answers this with 406).
    pub too_long: bool,
}

impl std::fmt::Display for HistoryError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.param, self.message)
    }
}

fn err(param: &'static str, message: impl Into<String>) -> HistoryError {
    HistoryError { param, message: message.into(), too_long: false }
}

/// A checked request: `[from_ms, to_ms)` aligned to whole timeframes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryRange {
    pub from_ms: UnixMs,
    pub to_ms: UnixMs,
    pub granularity: Granularity,
    pub metrics: Vec<Metric>,
    /// Whether `logical_size_bytes_hour` (storage held over time, in
    /// byte-hours; derived, not a metric sources report) was asked for.
    pub byte_hours: bool,
}

/// The name of storage held over time, in byte-hours, as Neon names it.
pub const BYTE_HOURS: &str = "logical_size_bytes_hour";

impl HistoryRange {
    /// Checks the raw parameters. `from` and `to` are RFC 3339; `from` is
    /// rounded down and `to` up to whole timeframes (UTC); `metrics` is a
    /// comma-separated list of metric names and `logical_size_bytes_hour`
    /// (all when absent).
    pub fn parse(
        from: Option<&str>,
        to: Option<&str>,
        granularity: Option<&str>,
        metrics: Option<&str>,
    ) -> Result<HistoryRange, HistoryError> {
        let g = granularity.ok_or_else(|| err("granularity", "required: hourly, daily or monthly"))?;
        let granularity = Granularity::parse(g)
            .ok_or_else(|| err("granularity", format!("{g:?} is not one of hourly, daily, monthly")))?;
        let time = |name: &'static str, v: Option<&str>| -> Result<UnixMs, HistoryError> {
            let v = v.ok_or_else(|| err(name, "required, RFC 3339 (e.g. 2026-11-01T00:00:00Z)"))?;
            parse_rfc3339(v).ok_or_else(|| err(name, format!("{v:?} is not an RFC 3339 timestamp")))
        };
        let (from, to) = (time("from", from)?, time("to", to)?);
        if from >= to {
            return Err(err("to", "must be after from"));
        }
        let from_ms = granularity.floor(from);
        let to_ms = if granularity.floor(to) == to { to } else { granularity.next(granularity.floor(to)) };
        let (metrics, byte_hours) = parse_metrics(metrics)?;
        let range = HistoryRange { from_ms, to_ms, granularity, metrics, byte_hours };
        let max = granularity.max_timeframes();
        if range.timeframes().nth(max).is_some() {
            let message = format!(
                "the range covers more than {max} {} timeframes; ask for a coarser granularity or a shorter range",
                granularity.name()
            );
            return Err(HistoryError { too_long: true, ..err("to", message) });
        }
        Ok(range)
    }

    /// The timeframes `[start, end)` the range covers, in order.
    pub fn timeframes(&self) -> impl Iterator<Item = (UnixMs, UnixMs)> + '_ {
        let g = self.granularity;
        std::iter::successors(Some(self.from_ms), move |&s| Some(g.next(s)))
            .take_while(move |&s| s < self.to_ms)
            .map(move |s| (s, g.next(s)))
    }
}

/// Parses a comma-separated list of metric names and `BYTE_HOURS` (whether
/// it was named); all when absent.
pub fn parse_metrics(s: Option<&str>) -> Result<(Vec<Metric>, bool), HistoryError> {
    let Some(s) = s.filter(|s| !s.is_empty()) else { return Ok((Metric::ALL.to_vec(), true)) };
    let (mut out, mut byte_hours) = (Vec::new(), false);
    for name in s.split(',').map(str::trim) {
        if name == BYTE_HOURS {
            byte_hours = true;
            continue;
        }
        let m = Metric::ALL.into_iter().find(|m| m.name() == name).ok_or_else(|| {
            let known: Vec<&str> = Metric::ALL.iter().map(|m| m.name()).chain([BYTE_HOURS]).collect();
            err("metrics", format!("unknown metric {name:?}; known: {}", known.join(", ")))
        })?;
        if !out.contains(&m) {
            out.push(m);
        }
    }
    Ok((out, byte_hours))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(from: &str, to: &str, g: &str) -> Result<HistoryRange, HistoryError> {
        HistoryRange::parse(Some(from), Some(to), Some(g), None)
    }

    #[test]
    fn ranges_round_out_to_whole_timeframes() {
        let r = parse("2026-11-25T10:30:00Z", "2026-11-25T12:00:01Z", "hourly").unwrap();
        assert_eq!(r.from_ms, parse_rfc3339("2026-11-25T10:00:00Z").unwrap());
        assert_eq!(r.to_ms, parse_rfc3339("2026-11-25T13:00:00Z").unwrap());
        assert_eq!(r.timeframes().count(), 3);
        let m = parse("2026-01-15T00:00:00Z", "2026-03-01T00:00:00Z", "monthly").unwrap();
        let frames: Vec<_> = m.timeframes().collect();
        assert_eq!(frames.len(), 2);
        assert_eq!(
            frames[1],
            (parse_rfc3339("2026-02-01T00:00:00Z").unwrap(), parse_rfc3339("2026-03-01T00:00:00Z").unwrap())
        );
        let d = parse("2026-11-01T00:00:00Z", "2026-12-01T00:00:00Z", "daily").unwrap();
        assert_eq!(d.timeframes().count(), 30);
    }

    #[test]
    fn maximum_ranges_per_granularity() {
        assert!(parse("2026-11-01T00:00:00Z", "2026-11-08T00:00:00Z", "hourly").is_ok()); // 168 h
        let e = parse("2026-11-01T00:00:00Z", "2026-11-08T01:00:00Z", "hourly").unwrap_err();
        assert_eq!((e.param, e.too_long), ("to", true));
        assert!(e.message.contains("168"), "{e}");
        assert!(parse("2026-01-01T00:00:00Z", "2027-01-01T00:00:00Z", "daily").is_ok());
        assert!(parse("2026-01-01T00:00:00Z", "2028-01-02T00:00:00Z", "daily").is_err());
        assert!(parse("2024-01-01T00:00:00Z", "2027-01-01T00:00:00Z", "monthly").is_ok());
        assert!(parse("2024-01-01T00:00:00Z", "2027-01-02T00:00:00Z", "monthly").is_err());
    }

    #[test]
    fn bad_parameters_are_named() {
        let e = |r: Result<HistoryRange, HistoryError>| r.unwrap_err().param;
        assert_eq!(e(parse("2026-11-01T00:00:00Z", "2026-11-02T00:00:00Z", "weekly")), "granularity");
        assert_eq!(
            e(HistoryRange::parse(Some("2026-11-01T00:00:00Z"), Some("2026-11-02T00:00:00Z"), None, None)),
            "granularity"
        );
        assert_eq!(e(parse("yesterday", "2026-11-02T00:00:00Z", "daily")), "from");
        assert_eq!(e(HistoryRange::parse(Some("2026-11-01T00:00:00Z"), None, Some("daily"), None)), "to");
        assert_eq!(e(parse("2026-11-02T00:00:00Z", "2026-11-01T00:00:00Z", "daily")), "to");
        assert_eq!(e(parse("2026-11-02T00:00:00Z", "2026-11-02T00:00:00Z", "daily")), "to");
        let m = HistoryRange::parse(
            Some("2026-11-01T00:00:00Z"),
            Some("2026-11-02T00:00:00Z"),
            Some("daily"),
            Some("cpu_seconds"),
        );
        assert_eq!(e(m), "metrics");
    }

    #[test]
    fn metrics_lists() {
        assert_eq!(parse_metrics(None).unwrap(), (Metric::ALL.to_vec(), true));
        assert_eq!(
            parse_metrics(Some("written_data_bytes, active_time_seconds,written_data_bytes")).unwrap(),
            (vec![Metric::WrittenDataBytes, Metric::ActiveTimeSeconds], false)
        );
        assert_eq!(parse_metrics(Some("logical_size_bytes_hour")).unwrap(), (vec![], true));
    }
}
