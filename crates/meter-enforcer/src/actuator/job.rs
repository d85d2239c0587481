//! What one queued entry of the actuator does, given how to make a call:
//! a record's call, a call handed over in process (see `handoff`), a record
//! whose call was handed over, or an undecodable record skipped.

use std::future::Future;
use std::sync::Arc;

use meter_core::enforce::Action;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

#[derive(Clone)]
pub(crate) enum Job {
    /// A record's call.
    Call(Action),
    /// A call handed over in process; tells its record's entry once done.
    Handed(Action, Arc<watch::Sender<bool>>),
    /// A record whose call was handed over: done when that call is. If it
    /// never ran (a rebalance cleared the queue before it started), or
    /// stopped unfinished, the record makes it.
    AwaitHanded(Action, watch::Receiver<bool>),
    /// An undecodable record, skipped in its place.
    Skip,
}

/// Runs `job`, making calls with `call` (true: done, false: stopped
/// first); true when the entry is done and its offset may be committed.
pub(crate) async fn finish<F, Fut>(job: Job, call: F, stop: &CancellationToken) -> bool
where
    F: Fn(Action) -> Fut,
    Fut: Future<Output = bool>,
{
    match job {
        Job::Call(action) => call(action).await,
        Job::Handed(action, done) => {
            let finished = call(action).await;
            done.send_replace(finished);
            finished
        }
        Job::AwaitHanded(action, mut done) => {
            let made = tokio::select! {
                biased; // stopping wins: no call is started once it is
                _ = stop.cancelled() => return false,
                made = done.wait_for(|d| *d) => made.is_ok(),
            };
            made || call(action).await
        }
        Job::Skip => true,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use meter_core::enforce::ActionKind;
    use meter_core::Metric;

    use super::*;

    fn action() -> Action {
        Action {
            kind: ActionKind::Suspend,
            project_id: "p".into(),
            branch_id: None,
            idempotency_key: "suspend.p.1".into(),
            metric: Metric::ComputeTimeSeconds,
            reason: "quota_exceeded".into(),
            crossing_ingested_ms: 0,
            decided_ms: 0,
        }
    }

    /// A call that counts itself and answers `answer`.
    fn counting(calls: &AtomicUsize, answer: bool) -> impl Fn(Action) -> std::future::Ready<bool> + '_ {
        move |_| {
            calls.fetch_add(1, Ordering::SeqCst);
            std::future::ready(answer)
        }
    }

    #[tokio::test]
    async fn a_record_waits_for_its_handed_call_and_does_not_call_again() {
        let (stop, calls) = (CancellationToken::new(), AtomicUsize::new(0));
        let (tx, rx) = watch::channel(false);
        let waiting = finish(Job::AwaitHanded(action(), rx), counting(&calls, true), &stop);
        let handed = async {
            tokio::time::sleep(Duration::from_millis(20)).await;
            finish(Job::Handed(action(), Arc::new(tx)), counting(&calls, true), &stop).await
        };
        assert_eq!(tokio::join!(waiting, handed), (true, true));
        assert_eq!(calls.load(Ordering::SeqCst), 1, "made once");
    }

    #[tokio::test]
    async fn a_handed_call_dropped_unmade_or_stopped_is_made_by_its_record() {
        let (stop, calls) = (CancellationToken::new(), AtomicUsize::new(0));
        let (tx, rx) = watch::channel(false);
        drop(Job::Handed(action(), Arc::new(tx))); // cleared from the queue before it ran
        assert!(finish(Job::AwaitHanded(action(), rx), counting(&calls, true), &stop).await);
        assert_eq!(calls.load(Ordering::SeqCst), 1);

        let (tx, rx) = watch::channel(false);
        assert!(!finish(Job::Handed(action(), Arc::new(tx)), counting(&calls, false), &stop).await);
        assert!(finish(Job::AwaitHanded(action(), rx), counting(&calls, true), &stop).await);
        assert_eq!(calls.load(Ordering::SeqCst), 3, "the stopped call, then the record's");
    }

    #[tokio::test]
    async fn a_waiting_record_is_not_done_at_a_stop() {
        let (stop, calls) = (CancellationToken::new(), AtomicUsize::new(0));
        let (_tx, rx) = watch::channel(false);
        stop.cancel();
        assert!(!finish(Job::AwaitHanded(action(), rx), counting(&calls, true), &stop).await);
        // Nor does it start the call when its handed call also went.
        let (tx, rx) = watch::channel(false);
        drop(tx);
        for _ in 0..20 {
            assert!(!finish(Job::AwaitHanded(action(), rx.clone()), counting(&calls, true), &stop).await);
        }
        assert_eq!(calls.load(Ordering::SeqCst), 0);
    }
}
