//! The consumption-history query parameters as the API receives them
//! (`from`, `to`, `granularity`, `metrics`, any text): never a panic; an
//! accepted range is aligned to whole timeframes, in order, and within the
//! granularity's limit.
#![no_main]

use libfuzzer_sys::fuzz_target;
use meter_core::history::HistoryRange;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut parts = text.splitn(4, '&');
    let (from, to, granularity, metrics) = (parts.next(), parts.next(), parts.next(), parts.next());
    let Ok(range) = HistoryRange::parse(from, to, granularity, metrics) else { return };
    let g = range.granularity;
    assert_eq!(g.floor(range.from_ms), range.from_ms);
    let frames: Vec<(i64, i64)> = range.timeframes().collect();
    assert!(!frames.is_empty() && frames.len() <= g.max_timeframes(), "{} frames", frames.len());
    assert!(frames.windows(2).all(|w| w[0].1 == w[1].0 && w[0].0 < w[0].1));
    assert_eq!(frames.last().map(|f| f.1), Some(range.to_ms));
});
