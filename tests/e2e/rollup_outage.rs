//! The rollup job under ClickHouse outages that begin mid-job: the load
//! role reaches ClickHouse through a proxy that lets a number of requests
//! through and then drops every connection and refuses new ones. Cut after
//! 1, 4, 7, ... requests of the job (so at every step of rolling a day and
//! copying a month), the reads, which reach ClickHouse directly, equal the
//! ground truth; once ClickHouse is back, the job finishes the final days.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use meter_core::finality::{day_floor, DAY_MS};
use meter_e2e::{eventually, now_ms, Pipeline};
use meter_store::StoreConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use crate::fleet::{assert_exact, simulated_fleet};
use crate::rollup::{assert_history, not_across_midnight, past_days};

/// A TCP proxy that forwards `budget` more HTTP requests, then cuts.
struct Cuttable {
    url: String,
    budget: Arc<AtomicI64>,
    open: Arc<Mutex<CancellationToken>>,
}

impl Cuttable {
    async fn start(upstream: &str) -> Cuttable {
        let upstream = upstream.trim_start_matches("http://").trim_end_matches('/').to_owned();
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let budget = Arc::new(AtomicI64::new(i64::MAX));
        let open = Arc::new(Mutex::new(CancellationToken::new()));
        let (b, o) = (budget.clone(), open.clone());
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let token = o.lock().expect("lock").clone();
                if b.load(Ordering::SeqCst) <= 0 || token.is_cancelled() {
                    continue; // refused: dropped at once
                }
                let Ok(server) = TcpStream::connect(&upstream).await else { continue };
                tokio::spawn(forward(client, server, b.clone(), token));
            }
        });
        Cuttable { url, budget, open }
    }

    /// Lets `n` more requests through, then cuts.
    fn allow(&self, n: i64) {
        *self.open.lock().expect("lock") = CancellationToken::new();
        self.budget.store(n, Ordering::SeqCst);
    }

    fn is_cut(&self) -> bool {
        self.open.lock().expect("lock").is_cancelled()
    }
}

/// Copies both ways until either side closes or the cut; a request past
/// the budget is not forwarded: it cuts every connection.
async fn forward(client: TcpStream, server: TcpStream, budget: Arc<AtomicI64>, cut: CancellationToken) {
    let (mut cr, mut cw) = client.into_split();
    let (mut sr, mut sw) = server.into_split();
    let up = {
        let cut = cut.clone();
        async move {
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                let n = match cr.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => n,
                };
                let requests = buf[..n].windows(5).filter(|w| w == b"POST " || w == b"GET /").count() as i64;
                if requests > 0 && budget.fetch_sub(requests, Ordering::SeqCst) - requests < 0 {
                    cut.cancel();
                    return;
                }
                if sw.write_all(&buf[..n]).await.is_err() {
                    return;
                }
            }
        }
    };
    let down = async move {
        let _ = tokio::io::copy(&mut sr, &mut cw).await;
    };
    tokio::select! {
        _ = cut.cancelled() => {}
        _ = async { tokio::join!(up, down) } => {}
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rollup_job_cut_off_from_clickhouse_mid_job_leaves_reads_exact_and_finishes_after() {
    not_across_midnight().await;
    let Some(mut p) = Pipeline::start("rollcut").await else { return };
    p.start_api().await;
    let proxy = Cuttable::start(&p.store_cfg.url).await;
    let via = StoreConfig { url: proxy.url.clone(), ..p.store_cfg.clone() };
    let load = meter_aggregator::LoadConfig {
        linger_ms: 50,
        rollup_interval_seconds: 1,
        keep_batches_days: 0,
        ..Default::default()
    };
    p.start_load_config(&via, load);
    let mut truth = simulated_fleet(&p, "rc").await;
    past_days(&p, &mut truth).await;
    assert_exact(&p, "rc", &truth).await;

    // A week on: three days final; the job starts on them, and is cut.
    p.clock.jump_to(now_ms() + 7 * DAY_MS + 65_000);
    let today = day_floor(now_ms());
    let mut cuts = 0;
    for i in 0..14 {
        proxy.allow(1 + 3 * i);
        let cut = tokio::time::timeout(Duration::from_secs(5), async {
            while !proxy.is_cut() {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
        cuts += usize::from(cut.is_ok());
        assert_history(&p, &truth, &format!("cut after {} requests", 1 + 3 * i)).await;
    }
    assert!(cuts >= 10, "the job was cut mid-way only {cuts} times");

    // ClickHouse back: the job rolls every final day, and reads stay exact.
    proxy.allow(i64::MAX);
    eventually(Duration::from_secs(60), "the final days rolled up after the outages", || async {
        match p.store.rolled_through().await.map_err(|e| e.to_string())? {
            Some(t) if t == today => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    assert_history(&p, &truth, "after the outages").await;
    p.shutdown().await;
}
