//! The api role's HTTP API, as the CLI uses it.

use anyhow::{bail, Context};
use serde_json::Value;

/// A client of one api role.
pub(crate) struct Api {
    base: String,
    http: reqwest::Client,
}

impl Api {
    /// A client of the api at `base`, sending `token` as a bearer token and
    /// trusting `ca_cert` (PEM) besides the bundled roots.
    pub(crate) fn new(base: &str, token: Option<&str>, ca_cert: Option<&std::path::Path>) -> anyhow::Result<Api> {
        let mut headers = reqwest::header::HeaderMap::new();
        if let Some(t) = token {
            let mut v: reqwest::header::HeaderValue =
                format!("Bearer {t}").parse().context("--token is not a valid header value")?;
            v.set_sensitive(true);
            headers.insert(reqwest::header::AUTHORIZATION, v);
        }
        let mut http = reqwest::Client::builder().timeout(std::time::Duration::from_secs(30)).default_headers(headers);
        if let Some(path) = ca_cert {
            let pem = std::fs::read(path).with_context(|| format!("--ca-cert: reading {}", path.display()))?;
            http = http.add_root_certificate(
                reqwest::Certificate::from_pem(&pem)
                    .with_context(|| format!("--ca-cert: {} is not PEM", path.display()))?,
            );
        }
        let http = http.build()?;
        Ok(Api { base: base.trim_end_matches('/').to_owned(), http })
    }

    /// Sends the request; a non-2xx answer becomes an error carrying the
    /// API's own message.
    async fn send(&self, req: reqwest::RequestBuilder, what: &str) -> anyhow::Result<Value> {
        let r = req.send().await.with_context(|| format!("{what}: the api at {} did not answer", self.base))?;
        let status = r.status();
        let text = r.text().await.unwrap_or_default();
        let body: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        if !status.is_success() {
            let msg = body["error"]["message"].as_str().map(str::to_owned).unwrap_or_else(|| body.to_string());
            bail!("{what}: {} {msg}", status.as_u16());
        }
        Ok(body)
    }

    pub(crate) async fn get(&self, path: &str) -> anyhow::Result<Value> {
        self.send(self.http.get(format!("{}{path}", self.base)), &format!("GET {path}")).await
    }

    pub(crate) async fn put(&self, path: &str, body: &Value) -> anyhow::Result<Value> {
        self.send(self.http.put(format!("{}{path}", self.base)).json(body), &format!("PUT {path}")).await
    }

    pub(crate) async fn patch(&self, path: &str, body: &Value) -> anyhow::Result<Value> {
        self.send(self.http.patch(format!("{}{path}", self.base)).json(body), &format!("PATCH {path}")).await
    }

    pub(crate) async fn delete(&self, path: &str) -> anyhow::Result<Value> {
        self.send(self.http.delete(format!("{}{path}", self.base)), &format!("DELETE {path}")).await
    }

    pub(crate) async fn post(&self, path: &str, body: &Value) -> anyhow::Result<Value> {
        self.send(self.http.post(format!("{}{path}", self.base)).json(body), &format!("POST {path}")).await
    }
}
