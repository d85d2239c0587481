//! Corrections of usage: an adjustment adds a signed `delta` to one counter
//! of one project in the cycle of the hour it is booked in. It travels
//! through `usage.events` like usage, so the aggregator applies it in order
//! with the batches, in the same transaction as the totals the enforcer
//! reads: enforcement counts it like usage. It is refused when it would
//! take the cycle's counter below zero, or when that cycle is no longer
//! kept; one adjustment per (project, idempotency key), ever.

use crate::cycle::{parse_rfc3339, rfc3339};
use crate::{Cycle, Metric, ProjectId, UnixMs, HOUR_MS};

/// Longest `reason`, in characters.
pub const MAX_REASON_CHARS: usize = 500;
/// Longest idempotency key of an adjustment, in bytes.
pub const MAX_ADJUSTMENT_KEY_LEN: usize = 128;

/// A correction as asked for, checked.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Adjustment {
    pub project_id: ProjectId,
    pub metric: Metric,
    /// Start of the hour it is booked in (a cycle-wide one: the cycle's first).
    pub hour_ms: UnixMs,
    /// Asked for a whole cycle rather than an hour.
    pub cycle_wide: bool,
    pub delta: i64,
    pub reason: String,
    pub idempotency_key: String,
    /// The name of the credential that made it ("" without a tokens file).
    pub actor: String,
    pub created_ms: UnixMs,
    pub request_id: String,
}

impl Adjustment {
    /// The cycle whose counter it changes.
    pub fn cycle(&self) -> Cycle {
        Cycle::containing(self.hour_ms)
    }

    /// True when `other` asks for the same change (a retry with the same
    /// key): everything but who, when and the request id.
    pub fn same_change(&self, other: &Adjustment) -> bool {
        (&self.project_id, self.metric, self.hour_ms, self.cycle_wide, self.delta, &self.reason)
            == (&other.project_id, other.metric, other.hour_ms, other.cycle_wide, other.delta, &other.reason)
    }

    /// `same_change` for a retry whose request named neither an hour nor a
    /// cycle: each attempt is booked in the hour it arrives in, so a retry
    /// that arrives an hour later still asks for the change the first made.
    pub fn same_change_in_any_hour(&self, other: &Adjustment) -> bool {
        self.same_change(&Adjustment { hour_ms: self.hour_ms, ..other.clone() })
    }

    /// The key the project's key set remembers it by: apart from the keys
    /// of usage events, which the same client might reuse.
    pub fn key_for_dedup(&self) -> String {
        format!("adjustment\u{0}{}", self.idempotency_key)
    }
}

/// A bad adjustment request: the field at fault and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdjustmentError {
    pub field: &'static str,
    pub message: String,
}

fn bad(field: &'static str, message: impl Into<String>) -> AdjustmentError {
    AdjustmentError { field, message: message.into() }
}

/// What a client sends, before checking.
#[derive(Debug, Clone, Default)]
pub struct AdjustmentRequest<'a> {
    pub metric: &'a str,
    pub hour: Option<&'a str>,
    pub cycle: Option<&'a str>,
    pub delta: i64,
    pub reason: &'a str,
    pub idempotency_key: &'a str,
}

/// Parses a cycle name, `YYYY-MM`.
pub fn parse_cycle(s: &str) -> Option<Cycle> {
    let (y, m) = s.split_once('-')?;
    if y.len() != 4 || m.len() != 2 {
        return None;
    }
    let (y, m): (i64, u32) = (y.parse().ok()?, m.parse().ok()?);
    if !(1..=12).contains(&m) || !(1970..=9999).contains(&y) {
        return None;
    }
    Some(Cycle::containing(crate::cycle::days_from_civil(y, m, 1) * 86_400_000))
}

/// The name of a cycle, `YYYY-MM`.
pub fn cycle_name(c: Cycle) -> String {
    rfc3339(c.start_ms)[..7].to_owned()
}

impl AdjustmentRequest<'_> {
    /// Checks every field; `now_ms` is when it is made. Neither `hour` nor
    /// `cycle`: the current hour.
    pub fn check(
        &self,
        project_id: ProjectId,
        actor: &str,
        request_id: &str,
        now_ms: UnixMs,
    ) -> Result<Adjustment, AdjustmentError> {
        let metric = Metric::from_name(self.metric).filter(|m| !m.is_gauge()).ok_or_else(|| {
            bad(
                "metric",
                format!(
                    "{:?} is not a counter; expected one of {}",
                    self.metric,
                    Metric::COUNTERS.map(Metric::name).join(", ")
                ),
            )
        })?;
        let (hour_ms, cycle_wide) = match (self.hour, self.cycle) {
            (Some(_), Some(_)) => return Err(bad("hour", "give an hour or a cycle, not both")),
            (Some(h), None) => {
                let t = parse_rfc3339(h).ok_or_else(|| bad("hour", format!("{h:?} is not an RFC 3339 time")))?;
                if t.rem_euclid(HOUR_MS) != 0 {
                    return Err(bad("hour", format!("{h:?} is not the start of an hour")));
                }
                if t >= now_ms {
                    return Err(bad("hour", format!("{h:?} has not begun yet")));
                }
                (t, false)
            }
            (None, Some(c)) => {
                let cycle = parse_cycle(c).ok_or_else(|| bad("cycle", format!("{c:?} is not a cycle (YYYY-MM)")))?;
                if cycle.start_ms > now_ms {
                    return Err(bad("cycle", format!("{c:?} has not begun yet")));
                }
                (cycle.start_ms, true)
            }
            (None, None) => (now_ms - now_ms.rem_euclid(HOUR_MS), false),
        };
        if self.delta == 0 {
            return Err(bad("delta", "must not be 0"));
        }
        let reason = self.reason.trim();
        if reason.is_empty() || reason.chars().count() > MAX_REASON_CHARS {
            return Err(bad("reason", format!("must be 1-{MAX_REASON_CHARS} characters saying why")));
        }
        let key = self.idempotency_key;
        if key.is_empty() || key.len() > MAX_ADJUSTMENT_KEY_LEN || !key.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(bad(
                "idempotency_key",
                format!("must be 1-{MAX_ADJUSTMENT_KEY_LEN} visible ASCII characters (one adjustment per key)"),
            ));
        }
        Ok(Adjustment {
            project_id,
            metric,
            hour_ms,
            cycle_wide,
            delta: self.delta,
            reason: reason.to_owned(),
            idempotency_key: key.to_owned(),
            actor: actor.to_owned(),
            created_ms: now_ms,
            request_id: request_id.to_owned(),
        })
    }
}

/// Why the aggregator refused an adjustment.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Refusal {
    /// The cycle's counter would go below zero.
    BelowZero,
    /// The cycle is no longer kept (its grace after the end has passed).
    CycleNotKept,
    /// The cycle was closed: its numbers never change again.
    CycleClosed,
}

impl Refusal {
    /// The error code the API answers with.
    pub fn code(self) -> &'static str {
        match self {
            Refusal::BelowZero => "below_zero",
            Refusal::CycleNotKept => "cycle_not_kept",
            Refusal::CycleClosed => "cycle_closed",
        }
    }

    pub fn message(self) -> &'static str {
        match self {
            Refusal::BelowZero => "the adjustment would take the cycle's counter below zero",
            Refusal::CycleNotKept => "the cycle is no longer kept; adjust a later cycle",
            Refusal::CycleClosed => "the cycle is closed; adjust a later cycle",
        }
    }
}

/// What applying an adjustment did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Adjusted {
    /// Added; the cycle's counter is now `counter`.
    Applied { counter: u64 },
    /// Not added; the cycle's counter stays `counter`.
    Refused { refusal: Refusal, counter: u64 },
    /// Its key was seen before: nothing done.
    Duplicate,
}

/// An adjustment and what became of it: the record of `meter.adjustments`
/// (key `<project>#<idempotency key>`), kept forever, and what
/// `GET /v1/projects/{id}/adjustments` lists.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AdjustmentOutcome {
    pub adjustment: Adjustment,
    /// `None`: applied.
    pub refusal: Option<Refusal>,
    /// The cycle's counter after it (or unchanged, when refused).
    pub counter_after: u64,
    /// When the aggregator applied or refused it (the record's time).
    pub decided_ms: UnixMs,
    /// The `usage.events` offset it was read from (the version of its
    /// ClickHouse row; 0 in records written before it was kept).
    #[serde(default)]
    pub events_offset: u64,
}

/// The key of an outcome in `meter.adjustments`.
pub fn outcome_key(project_id: &str, idempotency_key: &str) -> String {
    format!("{project_id}#{idempotency_key}")
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: UnixMs = 1_796_083_200_000 + 30 * 60_000; // 2026-12-01T00:30:00Z

    fn req<'a>() -> AdjustmentRequest<'a> {
        AdjustmentRequest {
            metric: "compute_time_seconds",
            hour: Some("2026-11-30T10:00:00Z"),
            cycle: None,
            delta: -3600,
            reason: " double-counted during incident 42 ",
            idempotency_key: "inc-42",
        }
    }

    fn check(r: AdjustmentRequest<'_>) -> Result<Adjustment, AdjustmentError> {
        r.check(ProjectId::new("p1").unwrap(), "billing", "req-1", NOW)
    }

    #[test]
    fn a_good_request_is_kept_with_who_and_when() {
        let a = check(req()).expect("valid");
        assert_eq!(rfc3339(a.hour_ms), "2026-11-30T10:00:00.000Z");
        assert_eq!(
            (a.delta, a.reason.as_str(), a.actor.as_str(), a.created_ms),
            (-3600, "double-counted during incident 42", "billing", NOW)
        );
        assert_eq!(cycle_name(a.cycle()), "2026-11");
        assert!(!a.cycle_wide);
    }

    #[test]
    fn a_cycle_books_at_its_first_hour_and_nothing_books_now() {
        let a = check(AdjustmentRequest { hour: None, cycle: Some("2026-11"), ..req() }).unwrap();
        assert_eq!((rfc3339(a.hour_ms).as_str(), a.cycle_wide), ("2026-11-01T00:00:00.000Z", true));
        let a = check(AdjustmentRequest { hour: None, ..req() }).unwrap();
        assert_eq!(rfc3339(a.hour_ms), "2026-12-01T00:00:00.000Z");
    }

    #[test]
    fn each_bad_field_is_named() {
        let field = |r| check(r).expect_err("refused").field;
        assert_eq!(field(AdjustmentRequest { metric: "logical_size_bytes", ..req() }), "metric");
        assert_eq!(field(AdjustmentRequest { metric: "cpu", ..req() }), "metric");
        assert_eq!(field(AdjustmentRequest { cycle: Some("2026-11"), ..req() }), "hour");
        assert_eq!(field(AdjustmentRequest { hour: Some("2026-11-30T10:30:00Z"), ..req() }), "hour");
        assert_eq!(field(AdjustmentRequest { hour: Some("2026-12-01T01:00:00Z"), ..req() }), "hour");
        assert_eq!(field(AdjustmentRequest { hour: Some("yesterday"), ..req() }), "hour");
        assert_eq!(field(AdjustmentRequest { hour: None, cycle: Some("2026-13"), ..req() }), "cycle");
        assert_eq!(field(AdjustmentRequest { hour: None, cycle: Some("2027-01"), ..req() }), "cycle");
        assert_eq!(field(AdjustmentRequest { delta: 0, ..req() }), "delta");
        assert_eq!(field(AdjustmentRequest { reason: "  ", ..req() }), "reason");
        assert_eq!(field(AdjustmentRequest { idempotency_key: "", ..req() }), "idempotency_key");
        assert_eq!(field(AdjustmentRequest { idempotency_key: "a b", ..req() }), "idempotency_key");
    }

    #[test]
    fn cycles_parse_and_print() {
        let c = parse_cycle("2026-02").unwrap();
        assert_eq!(
            (rfc3339(c.start_ms).as_str(), rfc3339(c.end_ms).as_str()),
            ("2026-02-01T00:00:00.000Z", "2026-03-01T00:00:00.000Z")
        );
        assert_eq!(cycle_name(c), "2026-02");
        for bad in ["2026-2", "26-02", "2026-00", "2026/02", ""] {
            assert_eq!(parse_cycle(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_retry_is_the_same_change_whoever_sends_it() {
        let a = check(req()).unwrap();
        let mut b = a.clone();
        (b.actor, b.created_ms, b.request_id) = ("other".into(), NOW + 5, "req-2".into());
        assert!(a.same_change(&b));
        b.delta = -3599;
        assert!(!a.same_change(&b));
    }

    #[test]
    fn a_retry_without_an_hour_matches_in_a_later_hour() {
        let at = |now_ms: i64| {
            AdjustmentRequest {
                metric: "written_data_bytes",
                hour: None,
                cycle: None,
                delta: 5,
                reason: "r",
                idempotency_key: "k",
            }
            .check(ProjectId::new("p").unwrap(), "", "req", now_ms)
            .unwrap()
        };
        let (first, retry) = (at(10 * HOUR_MS - 1), at(10 * HOUR_MS + 1));
        assert!(!first.same_change(&retry), "booked in different hours");
        assert!(first.same_change_in_any_hour(&retry));
        let other = Adjustment { delta: 6, ..retry };
        assert!(!first.same_change_in_any_hour(&other), "a different delta is another change");
    }
}
