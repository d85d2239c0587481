//! Billing cycles: calendar months in UTC. Civil-date arithmetic after
//! Howard Hinnant's `days_from_civil` / `civil_from_days`.

use crate::UnixMs;

const DAY_MS: i64 = 86_400_000;

/// A billing cycle, `[start_ms, end_ms)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Cycle {
    pub start_ms: UnixMs,
    pub end_ms: UnixMs,
}

impl Cycle {
    /// The calendar month (UTC) that contains `t`.
    pub fn containing(t: UnixMs) -> Cycle {
        let (y, m, _) = civil_from_days(t.div_euclid(DAY_MS));
        let (ny, nm) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
        Cycle { start_ms: days_from_civil(y, m, 1) * DAY_MS, end_ms: days_from_civil(ny, nm, 1) * DAY_MS }
    }

    /// True when `t` falls in this cycle.
    pub fn contains(&self, t: UnixMs) -> bool {
        self.start_ms <= t && t < self.end_ms
    }

    /// A stable id of this cycle for `scope` (a project id, or the account):
    /// a UUID (version 8) from a SHA-256 of both, so every instance and
    /// every call names the same billing period the same way.
    pub fn period_id(&self, scope: &str) -> String {
        use sha2::Digest;
        let digest = sha2::Sha256::new()
            .chain_update(b"meter.period\0")
            .chain_update(scope.as_bytes())
            .chain_update(b"\0")
            .chain_update(self.start_ms.to_be_bytes())
            .finalize();
        let mut bytes = [0u8; 16];
        bytes.copy_from_slice(&digest[..16]);
        crate::ids::uuid(bytes, 8)
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date `(year, month, day)` of a count of days since 1970-01-01.
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// RFC 3339 in UTC with milliseconds: `2026-11-25T19:38:00.000Z`.
pub fn rfc3339(ms: UnixMs) -> String {
    let (y, m, d) = civil_from_days(ms.div_euclid(DAY_MS));
    let in_day = ms.rem_euclid(DAY_MS);
    let (h, min, s, milli) = (in_day / 3_600_000, in_day / 60_000 % 60, in_day / 1000 % 60, in_day % 1000);
    format!("{y:04}-{m:02}-{d:02}T{h:02}:{min:02}:{s:02}.{milli:03}Z")
}

/// Parses an RFC 3339 timestamp (`2026-11-25T19:38:00Z`, fractional seconds
/// and a `+hh:mm` offset allowed) into Unix milliseconds, truncating finer
/// fractions. The one parser of timestamps: the `time` crate's RFC 3339.
pub fn parse_rfc3339(s: &str) -> Option<UnixMs> {
    let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok()?;
    i64::try_from(t.unix_timestamp_nanos().div_euclid(1_000_000)).ok()
}

/// Unix milliseconds as an HTTP-date (`Wed, 25 Nov 2026 19:38:00 GMT`,
/// RFC 9110's IMF-fixdate; the milliseconds are dropped).
pub fn format_http_date(ms: UnixMs) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"]; // 1970-01-01 was a Thursday
    const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    let days = ms.div_euclid(DAY_MS);
    let (y, m, d) = civil_from_days(days);
    let in_day = ms.rem_euclid(DAY_MS);
    let (h, min, s) = (in_day / 3_600_000, in_day / 60_000 % 60, in_day / 1000 % 60);
    let weekday = DAYS[days.rem_euclid(7) as usize];
    let month = MONTHS[(m - 1) as usize];
    format!("{weekday}, {d:02} {month} {y:04} {h:02}:{min:02}:{s:02} GMT")
}

/// Parses an HTTP-date (`Sun, 06 Nov 1994 08:49:37 GMT`, RFC 9110's
/// IMF-fixdate, as in `Retry-After`) into Unix milliseconds, with the
/// `time` crate's RFC 2822 parser (which the fixdate is a case of).
pub fn parse_http_date(s: &str) -> Option<UnixMs> {
    let t = time::OffsetDateTime::parse(s.trim(), &time::format_description::well_known::Rfc2822).ok()?;
    t.unix_timestamp().checked_mul(1000)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn period_ids_are_stable_per_scope_and_cycle() {
        let nov = Cycle::containing(parse_rfc3339("2026-11-15T00:00:00Z").unwrap());
        let dec = Cycle::containing(parse_rfc3339("2026-12-15T00:00:00Z").unwrap());
        assert_eq!(nov.period_id("p-1"), nov.period_id("p-1"));
        assert_ne!(nov.period_id("p-1"), dec.period_id("p-1"));
        assert_ne!(nov.period_id("p-1"), nov.period_id("p-2"));
        assert_eq!(&nov.period_id("p-1")[14..15], "8");
    }

    #[test]
    fn parses_http_dates() {
        assert_eq!(parse_http_date("Wed, 25 Nov 2026 19:38:00 GMT"), Some(1_795_635_480_000));
        assert_eq!(parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT"), Some(784_111_777_000));
        assert_eq!(parse_http_date("120"), None);
        assert_eq!(format_http_date(1_795_635_480_999), "Wed, 25 Nov 2026 19:38:00 GMT");
        assert_eq!(format_http_date(784_111_777_000), "Sun, 06 Nov 1994 08:49:37 GMT");
        for ms in [0, 951_782_400_000, 1_798_761_599_000] {
            assert_eq!(parse_http_date(&format_http_date(ms)), Some(ms), "{}", format_http_date(ms));
        }
        assert_eq!(parse_http_date("2026-11-25T19:38:00Z"), None);
    }

    #[test]
    fn parses_rfc3339() {
        assert_eq!(parse_rfc3339("2026-11-25T19:38:00Z"), Some(1_795_635_480_000));
        assert_eq!(parse_rfc3339("2026-11-25T19:38:00.123Z"), Some(1_795_635_480_123));
        assert_eq!(parse_rfc3339("2026-11-25T20:38:00+01:00"), Some(1_795_635_480_000));
        assert_eq!(parse_rfc3339("2026-11-25T19:38:00.5Z"), Some(1_795_635_480_500));
        for bad in [
            "",
            "2026-11-25",
            "2026-11-25T19:38:00",
            "2026-02-30T00:00:00Z",
            "2026-13-01T00:00:00Z",
            "x026-11-25T19:38:00Z",
            "2026-11-25T19:38:00.Z",
            "2026-11-25T19:38:00+0100",
            "2026-11-25T19:38:00+99:99",
            "2026-11-25T19:38:00+0\u{e9}:00",
            "2026-11-25T19:38:00\u{e9}",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
        // Neon's emitters send nanoseconds.
        assert_eq!(parse_rfc3339("2022-12-28T11:07:19.317310284Z"), Some(1_672_225_639_317));
    }

    #[test]
    fn rfc3339_formats_utc() {
        assert_eq!(rfc3339(1_795_635_480_123), "2026-11-25T19:38:00.123Z");
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
    }

    #[test]
    fn known_months() {
        // 2026-11-25T19:38:00Z
        let c = Cycle::containing(1_795_635_480_000);
        assert_eq!(c.start_ms, 1_793_491_200_000); // 2026-11-01
        assert_eq!(c.end_ms, 1_796_083_200_000); // 2026-12-01
                                                 // February of a leap year.
        let feb = Cycle::containing(days_from_civil(2028, 2, 15) * DAY_MS);
        assert_eq!((feb.end_ms - feb.start_ms) / DAY_MS, 29);
        // December rolls into January.
        let dec = Cycle::containing(days_from_civil(2026, 12, 31) * DAY_MS + 1);
        assert_eq!(dec.end_ms, days_from_civil(2027, 1, 1) * DAY_MS);
    }

    proptest! {
        #[test]
        fn parses_any_text_without_panicking(s in "\\PC{0,40}") {
            let _ = parse_rfc3339(&s);
        }

        #[test]
        fn rfc3339_round_trips(t in 0i64..10_000_000_000_000) {
            prop_assert_eq!(parse_rfc3339(&rfc3339(t)), Some(t));
        }

        #[test]
        fn civil_round_trips(z in -1_000_000i64..1_000_000) {
            let (y, m, d) = civil_from_days(z);
            prop_assert_eq!(days_from_civil(y, m, d), z);
        }

        #[test]
        fn cycle_contains_its_instant_and_starts_on_day_one(t in -10_000_000_000_000i64..10_000_000_000_000) {
            let c = Cycle::containing(t);
            prop_assert!(c.contains(t));
            prop_assert_eq!(civil_from_days(c.start_ms / DAY_MS).2, 1);
            prop_assert_eq!(Cycle::containing(c.end_ms).start_ms, c.end_ms);
            prop_assert!((28..=31).contains(&((c.end_ms - c.start_ms) / DAY_MS)));
        }
    }
}
