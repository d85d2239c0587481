//! The gRPC face of the API: `meter.v1.Quota/CheckQuota` for control planes
//! that speak gRPC.

use meter_proto::v1::quota_server::Quota;
use meter_proto::v1::{CheckQuotaRequest, CheckQuotaResponse};
use tonic::{Request, Response, Status};

use crate::handlers::check_quota;
use crate::App;

/// Serves CheckQuota from the same views as the HTTP API.
#[derive(Clone)]
pub(crate) struct QuotaService(pub(crate) App);

#[tonic::async_trait]
impl Quota for QuotaService {
    async fn check_quota(&self, request: Request<CheckQuotaRequest>) -> Result<Response<CheckQuotaResponse>, Status> {
        let c = check_quota(&self.0, &request.into_inner().project_id)?;
        Ok(Response::new(CheckQuotaResponse {
            allowed: c.allowed,
            reason: c.reason.map(|r| r.name().to_owned()).unwrap_or_default(),
            metric: c.metric.map(|m| m.name().to_owned()).unwrap_or_default(),
        }))
    }
}
