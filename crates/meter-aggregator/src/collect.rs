//! How the aggregator fills a transaction's batch from its consumer: the
//! policy alone, over any source of polled records, so it is tested
//! without a broker.

use std::time::{Duration, Instant};

use crate::process::{Pending, Record};

/// What one poll of the consumer gave.
#[derive(Debug)]
pub(crate) enum Polled {
    /// A record, and how long ago it was written to `usage.events` (its
    /// Kafka timestamp; zero when it has none or it looks newer than now).
    Record(Record, Duration),
    /// Nothing within the timeout (or an error that is not fatal).
    Nothing,
    /// The group was rebalanced: what was collected is dropped (the new
    /// assignment starts from the committed offsets); the record polled
    /// with the news, if any, is the new assignment's first and is kept.
    Reassigned(Option<Record>),
}

/// The bounds of one batch.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Bounds {
    pub(crate) max_records: usize,
    pub(crate) max_bytes: usize,
    /// The longest wait for records not yet fetched, counted from when
    /// the batch's first record was written.
    pub(crate) linger: Duration,
}

/// Polls until a bound is reached, or until the linger is over and nothing
/// more is already fetched: a record already fetched is taken past the
/// linger, so a lagging aggregator catches up in transactions as large as
/// the bounds allow instead of one per linger's worth of polling (issue 19:
/// ~125,000 events per transaction in the collectors' shape, ~675,000
/// after). `poll(timeout)` returns at once when a record is there.
///
/// The linger runs from when the batch's first record was written, not
/// from when collecting began: under load that record was written while
/// the previous transaction was applied and committed, it has waited
/// longer than the linger already, and the batch takes what is fetched
/// and goes (issue 15). A batch never waits longer than one linger from
/// its start.
pub(crate) fn collect(
    bounds: Bounds,
    cancelled: impl Fn() -> bool,
    mut poll: impl FnMut(Duration) -> anyhow::Result<Polled>,
) -> anyhow::Result<Pending> {
    let mut pending = Pending::default();
    let mut deadline = Instant::now() + bounds.linger;
    while pending.len() < bounds.max_records && pending.bytes < bounds.max_bytes && !cancelled() {
        let left = deadline.saturating_duration_since(Instant::now());
        match poll(left)? {
            Polled::Record(r, age) => {
                if pending.is_empty() {
                    deadline = deadline.min(Instant::now() + bounds.linger.saturating_sub(age));
                }
                pending.push(r);
            }
            Polled::Reassigned(first) => {
                pending = Pending::default();
                if let Some(r) = first {
                    pending.push(r);
                }
            }
            Polled::Nothing if left.is_zero() => break,
            Polled::Nothing => {}
        }
    }
    Ok(pending)
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;

    use super::*;

    /// A consumer whose fetched records are `ready`, each poll taking
    /// `per_poll` (a busy machine), and nothing else arriving.
    fn consumer(ready: usize, per_poll: Duration) -> impl FnMut(Duration) -> anyhow::Result<Polled> {
        let mut queue: VecDeque<Record> =
            (0..ready).map(|i| Record { partition: 0, offset: i as i64, payload: vec![0; 100] }).collect();
        move |timeout| {
            std::thread::sleep(per_poll);
            Ok(match queue.pop_front() {
                Some(r) => Polled::Record(r, Duration::ZERO),
                None => {
                    std::thread::sleep(timeout);
                    Polled::Nothing
                }
            })
        }
    }

    const BOUNDS: Bounds = Bounds { max_records: 20_000, max_bytes: 64 << 20, linger: Duration::from_millis(20) };

    #[test]
    fn a_backlog_already_fetched_is_taken_past_the_linger() {
        // 200 polls of 1 ms each: ten times the linger.
        let started = Instant::now();
        let batch = collect(BOUNDS, || false, consumer(200, Duration::from_millis(1))).expect("collect");
        assert_eq!(batch.len(), 200, "every fetched record in one batch");
        assert!(started.elapsed() >= Duration::from_millis(200));
        assert_eq!((batch.first[&0], batch.next[&0]), (0, 200));
    }

    #[test]
    fn the_bounds_still_end_a_batch() {
        let records = Bounds { max_records: 50, ..BOUNDS };
        assert_eq!(collect(records, || false, consumer(200, Duration::ZERO)).expect("collect").len(), 50);
        let bytes = Bounds { max_bytes: 1_000, ..BOUNDS };
        assert_eq!(collect(bytes, || false, consumer(200, Duration::ZERO)).expect("collect").len(), 10);
        assert!(collect(BOUNDS, || true, consumer(200, Duration::ZERO)).expect("collect").is_empty());
    }

    #[test]
    fn with_nothing_fetched_it_waits_the_linger_once() {
        let started = Instant::now();
        let batch = collect(BOUNDS, || false, consumer(0, Duration::ZERO)).expect("collect");
        assert!(batch.is_empty());
        let took = started.elapsed();
        assert!(took >= BOUNDS.linger, "{took:?}");
    }

    /// The timeout `collect` first waits with once nothing more is
    /// fetched, after three fetched records written `age` ago (a long
    /// linger; the wait itself is not slept).
    fn first_wait_after(age: Duration) -> Duration {
        let bounds = Bounds { linger: Duration::from_secs(600), ..BOUNDS };
        let polls = std::cell::Cell::new(0);
        let mut waits = Vec::new();
        let batch = collect(
            bounds,
            || polls.get() > 3,
            |timeout| {
                polls.set(polls.get() + 1);
                if polls.get() <= 3 {
                    return Ok(Polled::Record(Record { partition: 0, offset: polls.get(), payload: vec![1] }, age));
                }
                waits.push(timeout);
                Ok(Polled::Nothing)
            },
        )
        .expect("collect");
        assert_eq!(batch.len(), 3);
        waits[0]
    }

    #[test]
    fn a_batch_whose_first_record_waited_a_linger_already_goes_at_once() {
        // Written through the previous transaction: what is fetched goes.
        let wait = first_wait_after(Duration::from_secs(700));
        assert_eq!(wait, Duration::ZERO, "no wait once the first record is older than the linger");
    }

    #[test]
    fn a_fresh_first_record_waits_the_rest_of_the_linger() {
        let wait = first_wait_after(Duration::from_secs(200));
        assert!(wait > Duration::from_secs(390) && wait <= Duration::from_secs(400), "{wait:?}");
        // A record with no age (no timestamp) waits the whole linger.
        assert!(first_wait_after(Duration::ZERO) > Duration::from_secs(590));
    }

    #[test]
    fn a_rebalance_drops_what_was_collected() {
        let mut polls = 0;
        let batch = collect(
            BOUNDS,
            || false,
            |_| {
                polls += 1;
                Ok(match polls {
                    1..=3 => Polled::Record(Record { partition: 1, offset: polls, payload: vec![1] }, Duration::ZERO),
                    4 => Polled::Reassigned(Some(Record { partition: 2, offset: 6, payload: vec![1] })),
                    5 => Polled::Record(Record { partition: 2, offset: 7, payload: vec![1] }, Duration::ZERO),
                    _ => Polled::Nothing,
                })
            },
        )
        .expect("collect");
        assert_eq!(batch.len(), 2, "the record polled with the rebalance is kept");
        assert_eq!((batch.first[&2], batch.next[&2]), (6, 8));
        assert_eq!(batch.next.keys().copied().collect::<Vec<_>>(), vec![2]);
    }
}
