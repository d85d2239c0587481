//! Sending one batch until ingest acknowledges it, with the one retry
//! policy (`meter_core::retry`).

use std::time::Duration;

use meter_core::retry::RetryPolicy;
use meter_proto::v1::ingest_client::IngestClient;
use meter_proto::v1::ReportRequest;
use rand::Rng;
use tokio_util::sync::CancellationToken;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::Channel;
use tonic::Code;

/// What became of a batch.
#[derive(Debug)]
pub enum Delivery {
    /// Ingest acknowledged it: Kafka has it.
    Acked,
    /// Refused for good (bad input, no permission): resending cannot help.
    Rejected(tonic::Status),
    /// `stop` was cancelled before an acknowledgement.
    Stopped,
}

/// True for statuses worth retrying with the same batch: ingest or Kafka
/// unavailable, overloaded, rate-limited, or an answer lost on the way.
pub fn retryable(code: Code) -> bool {
    matches!(
        code,
        Code::Unavailable
            | Code::ResourceExhausted
            | Code::DeadlineExceeded
            | Code::Unknown
            | Code::Internal
            | Code::Aborted
    )
}

/// A gRPC connection to ingest, with the source's token.
#[derive(Debug, Clone)]
pub struct Sender {
    client: IngestClient<Channel>,
    authorization: Option<MetadataValue<Ascii>>,
    policy: RetryPolicy,
    timeout: Duration,
}

impl Sender {
    /// A sender over `channel`, sending `token` as a bearer token if given.
    pub fn new(channel: Channel, token: Option<&str>) -> Self {
        Sender {
            client: IngestClient::new(channel).max_decoding_message_size(64 << 20),
            authorization: token.and_then(|t| format!("Bearer {t}").parse().ok()),
            policy: RetryPolicy { initial: Duration::from_millis(50), max: Duration::from_secs(2) },
            timeout: Duration::from_secs(15),
        }
    }

    /// The same connection, sending `token` as a bearer token.
    pub fn with_token(mut self, token: Option<&str>) -> Self {
        self.authorization = token.and_then(|t| format!("Bearer {t}").parse().ok());
        self
    }

    /// One attempt.
    pub async fn try_send(&mut self, req: &ReportRequest) -> Result<(), tonic::Status> {
        let mut call = tonic::Request::new(req.clone());
        call.set_timeout(self.timeout);
        if let Some(a) = &self.authorization {
            call.metadata_mut().insert("authorization", a.clone());
        }
        self.client.report(call).await.map(|_| ())
    }

    /// Sends `req` until it is acknowledged or refused for good, or `stop`
    /// is cancelled, waiting between attempts as the policy (and a
    /// `retry-after-ms` hint) says. `on_retry` sees each retryable failure.
    pub async fn send_until_acked(
        &mut self,
        req: &ReportRequest,
        stop: &CancellationToken,
        mut on_retry: impl FnMut(&tonic::Status),
    ) -> Delivery {
        let mut attempt = 0u32;
        loop {
            match self.try_send(req).await {
                Ok(()) => return Delivery::Acked,
                Err(s) if retryable(s.code()) => {
                    on_retry(&s);
                    let hint = s
                        .metadata()
                        .get(meter_proto::RETRY_AFTER_MS)
                        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
                        .map(|ms| Duration::from_millis(ms.min(60_000)));
                    let wait = self.policy.delay(attempt, rand::rng().random::<f64>(), hint);
                    attempt = attempt.saturating_add(1);
                    tokio::select! {
                        _ = stop.cancelled() => return Delivery::Stopped,
                        _ = tokio::time::sleep(wait) => {}
                    }
                }
                Err(s) => return Delivery::Rejected(s),
            }
        }
    }
}
