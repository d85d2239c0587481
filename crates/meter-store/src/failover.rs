//! Several replicas of one shard behind one client: connections go to the
//! replica that answered last, and when it refuses one (killed, restarting,
//! its host gone) to the next in the configured order, which then stays in
//! use. Every query and insert of the pipeline gets this without knowing:
//! the failover sits in the HTTP client's connector, below the ClickHouse
//! client. A replica that accepts connections but hangs is not left by this
//! (the caller's timeout and retry see it); a pooled connection to a replica
//! that died fails its request once, and the retry connects elsewhere.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use hyper::Uri;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A connector that tries `replicas` in turn, from the last that worked.
#[derive(Clone)]
pub(crate) struct Failover<C> {
    inner: C,
    replicas: Arc<[Uri]>,
    /// Index of the replica the last connection went to.
    current: Arc<AtomicUsize>,
}

impl<C> Failover<C> {
    /// `replicas` must not be empty.
    pub(crate) fn new(inner: C, replicas: Vec<Uri>) -> Self {
        assert!(!replicas.is_empty(), "a failover connector needs a replica");
        Failover { inner, replicas: replicas.into(), current: Arc::new(AtomicUsize::new(0)) }
    }
}

impl<C> tower_service::Service<Uri> for Failover<C>
where
    C: tower_service::Service<Uri> + Clone + Send + 'static,
    C::Future: Send,
    C::Response: Send,
    C::Error: Into<BoxError>,
{
    type Response = C::Response;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<C::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    /// The request's own address is ignored: it is the first replica's,
    /// which the client was built with.
    fn call(&mut self, _requested: Uri) -> Self::Future {
        let (mut inner, replicas, current) = (self.inner.clone(), self.replicas.clone(), self.current.clone());
        Box::pin(async move {
            let start = current.load(Ordering::Relaxed);
            let mut failed = Vec::new();
            for i in 0..replicas.len() {
                let k = (start + i) % replicas.len();
                std::future::poll_fn(|cx| inner.poll_ready(cx)).await.map_err(Into::into)?;
                match inner.call(replicas[k].clone()).await {
                    Ok(connection) => {
                        if k != start
                            && current.compare_exchange(start, k, Ordering::Relaxed, Ordering::Relaxed).is_ok()
                        {
                            // An operator should bring the replica left behind back.
                            tracing::warn!(from = %replicas[start], to = %replicas[k], "store.clickhouse_failover");
                        }
                        return Ok(connection);
                    }
                    Err(e) => {
                        let e: BoxError = e.into();
                        failed.push(format!("{}: {e}", replicas[k]));
                    }
                }
            }
            Err(format!("no ClickHouse replica accepted a connection ({})", failed.join("; ")).into())
        })
    }
}

#[cfg(test)]
mod tests {
    use std::net::TcpListener;

    use hyper_util::client::legacy::connect::HttpConnector;
    use tower_service::Service as _;

    use super::*;

    /// A loopback address nothing listens on.
    fn closed_port() -> Uri {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = l.local_addr().expect("addr").port();
        drop(l);
        format!("http://127.0.0.1:{port}").parse().expect("uri")
    }

    #[tokio::test]
    async fn a_refused_replica_is_left_for_the_next_which_stays_in_use() {
        let live = TcpListener::bind("127.0.0.1:0").expect("bind");
        let live_uri: Uri = format!("http://{}", live.local_addr().expect("addr")).parse().expect("uri");
        let dead = closed_port();
        let mut f = Failover::new(HttpConnector::new(), vec![dead.clone(), live_uri]);
        let requested = dead;
        let c = f.call(requested.clone()).await.expect("the live replica accepts");
        assert_eq!(c.inner().peer_addr().expect("peer"), live.local_addr().expect("addr"));
        assert_eq!(f.current.load(Ordering::Relaxed), 1, "the live replica is now the current one");
        // The next connection goes straight to it (nothing listens on the first anyway).
        let c = f.call(requested).await.expect("again");
        assert_eq!(c.inner().peer_addr().expect("peer"), live.local_addr().expect("addr"));
    }

    #[tokio::test]
    async fn every_replica_refusing_names_each() {
        let (a, b) = (closed_port(), closed_port());
        let mut f = Failover::new(HttpConnector::new(), vec![a.clone(), b.clone()]);
        let e = f.call(a.clone()).await.expect_err("nothing listens");
        let e = e.to_string();
        assert!(
            e.contains("no ClickHouse replica accepted") && e.contains(&a.to_string()) && e.contains(&b.to_string()),
            "{e}"
        );
    }
}
