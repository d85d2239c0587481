//! rust-rdkafka's poll loops as vendored (vendor/README.md): a timed poll
//! that sees nothing waits out its timeout instead of spinning through its
//! last millisecond, and a producer's polling thread, idle, stays idle.
//! Against librdkafka's in-process mock cluster: no broker needed.

use std::path::Path;
use std::time::Duration;

use meter_kafka::Quiet;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::BaseConsumer;
use rdkafka::producer::ThreadedProducer;

/// Nanoseconds a thread has run: the first field of its `schedstat`.
fn run_ns(task: &Path) -> u64 {
    let text = std::fs::read_to_string(task.join("schedstat")).expect("schedstat of a thread");
    text.split_whitespace().next().and_then(|v| v.parse().ok()).expect("a run time")
}

fn mock_cluster() -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("test.mock.num.brokers", "1");
    c
}

/// A timeout that is not whole milliseconds, as the aggregator's (what is
/// left of its linger): upstream, each of these polls waited 29 ms, then
/// polled with a 0 ms timeout until the deadline, ~0.5 ms of CPU per poll.
#[test]
fn a_timed_poll_that_sees_nothing_waits_without_spinning() {
    let consumer: BaseConsumer<Quiet> =
        mock_cluster().set("group.id", "poll-cpu").create_with_context(Quiet).expect("a consumer");
    let me = Path::new("/proc/thread-self");
    let before = run_ns(me);
    for _ in 0..20 {
        assert!(consumer.poll(Duration::from_micros(29_500)).is_none(), "nothing is subscribed");
    }
    let used = run_ns(me) - before;
    assert!(used < 4_000_000, "20 polls of 29.5 ms used {:.1} ms of CPU", used as f64 / 1e6);
}

/// Upstream, the polling thread spun through the last millisecond of every
/// 100 ms poll: ~10 ms of CPU per second, idle.
#[test]
fn an_idle_producers_polling_thread_stays_idle() {
    let producer: ThreadedProducer<Quiet> = mock_cluster().create_with_context(Quiet).expect("a producer");
    std::thread::sleep(Duration::from_millis(300));
    let pollers: Vec<_> = std::fs::read_dir("/proc/self/task")
        .expect("this process's threads")
        .flatten()
        .map(|t| t.path())
        .filter(|t| std::fs::read_to_string(t.join("comm")).is_ok_and(|c| c.starts_with("producer pollin")))
        .collect();
    assert_eq!(pollers.len(), 1, "one producer, one polling thread");
    let before = run_ns(&pollers[0]);
    std::thread::sleep(Duration::from_secs(1));
    let used = run_ns(&pollers[0]) - before;
    assert!(used < 3_000_000, "the idle polling thread used {:.1} ms of CPU in 1 s", used as f64 / 1e6);
    drop(producer);
}
