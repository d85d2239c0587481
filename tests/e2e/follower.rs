//! A follower of several topics through one consumer (the api's views)
//! is caught up once it has read every partition to where it ended when it
//! started: past committed and aborted transactions, over empty
//! partitions, and without waiting for a transaction still open (its
//! records come when it commits).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use meter_e2e::{eventually, Pipeline};
use meter_kafka::{commit_transaction, on_record, send_in_transaction, transactional_producer, Follower};
use rdkafka::producer::{BaseRecord, FutureProducer, FutureRecord, Producer};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_consumer_catches_up_on_every_topic_past_markers_and_open_transactions() {
    let Some(p) = Pipeline::start("follower").await else { return };
    let k = p.kafka.clone();
    let (plain, txns, empty, open) = (
        k.config_history_topic.clone(),
        k.calls_topic.clone(),
        k.dead_letters_topic.clone(),
        k.deliveries_topic.clone(),
    );

    let producer: FutureProducer = k.client_config().create().expect("producer");
    for i in 0..3 {
        let key = format!("plain-{i}");
        producer.send(FutureRecord::to(&plain).key(&key).payload("v"), Duration::from_secs(10)).await.expect("sent");
    }
    let tx = transactional_producer(&k, "follower-test").expect("transactional producer");
    let send = |topic: &str, key: &str| {
        send_in_transaction(&tx, BaseRecord::to(topic).partition(1).key(key).payload("v")).expect("sent")
    };
    tx.begin_transaction().expect("begin");
    send(&txns, "committed-1");
    send(&txns, "committed-2");
    commit_transaction(&tx, Duration::from_secs(10)).expect("committed");
    tx.begin_transaction().expect("begin");
    send(&txns, "aborted-1");
    tx.flush(Duration::from_secs(10)).expect("flushed");
    tx.abort_transaction(Duration::from_secs(10)).expect("aborted");
    // A transaction left open while the follower starts.
    let late = transactional_producer(&k, "follower-test-open").expect("transactional producer");
    late.begin_transaction().expect("begin");
    send_in_transaction(&late, BaseRecord::to(&open).partition(0).key("late").payload("v")).expect("sent");
    late.flush(Duration::from_secs(10)).expect("flushed");

    let seen: Arc<Mutex<BTreeMap<String, Vec<String>>>> = Arc::default();
    let topics = [&plain, &txns, &empty, &open]
        .into_iter()
        .map(|t| {
            let seen = seen.clone();
            let apply = on_record(move |(topic, _, key, _)| {
                let key = String::from_utf8_lossy(key).into_owned();
                seen.lock().expect("seen").entry(topic.to_owned()).or_default().push(key);
            });
            (t.clone(), apply)
        })
        .collect();
    let follower = Follower::start_topics(&k, topics).expect("follower");
    assert!(follower.wait_caught_up(Duration::from_secs(20)).await, "caught up without the open transaction");
    {
        let seen = seen.lock().expect("seen");
        assert_eq!(seen.get(&plain).map(Vec::len), Some(3), "{seen:?}");
        assert_eq!(seen.get(&txns), Some(&vec!["committed-1".to_owned(), "committed-2".to_owned()]), "{seen:?}");
        assert!(!seen.contains_key(&open) && !seen.contains_key(&empty), "{seen:?}");
    }
    commit_transaction(&late, Duration::from_secs(10)).expect("committed");
    eventually(Duration::from_secs(20), "the open transaction's record once committed", || async {
        match seen.lock().expect("seen").get(&open) {
            Some(keys) if keys == &["late".to_owned()] => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    drop(follower);
    p.shutdown().await;
}
