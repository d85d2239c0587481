//! Ingest security: tokens, their bindings, revocation without a restart,
//! per-source rate limits, size limits, and bounded work when Kafka is down.

use std::time::Duration;

use meter_core::auth::TokenHash;
use meter_e2e::{eventually, Pipeline};
use meter_ingest::IngestConfig;
use meter_proto::v1::ingest_client::IngestClient;
use meter_proto::v1::{Metric, ReportRequest};
use meter_runtime::{Auth, SecurityConfig};
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;
use tonic::Code;

use crate::helpers::{await_usage, inc, report, usage_of};

/// A tokens file with an ingest credential `eu` (sources `sec-eu-*`,
/// projects `sec-acme-*`) and an api credential.
fn tokens_file(dir: &std::path::Path, eu_token: &str) -> std::path::PathBuf {
    let path = dir.join("tokens.toml");
    let text = format!(
        "[[ingest]]\nname = \"eu\"\nsha256 = \"{}\"\nsources = [\"sec-eu-*\"]\nprojects = [\"sec-acme-*\"]\n\n\
         [[api]]\nname = \"billing\"\nsha256 = \"{}\"\nscopes = [\"read\"]\n",
        TokenHash::of(eu_token).to_hex(),
        TokenHash::of("api-token").to_hex()
    );
    std::fs::write(&path, text).expect("write tokens");
    path
}

async fn call(
    client: &mut IngestClient<Channel>,
    token: Option<&str>,
    req: ReportRequest,
) -> Result<tonic::Response<meter_proto::v1::ReportResponse>, tonic::Status> {
    let mut r = tonic::Request::new(req);
    if let Some(t) = token {
        r.metadata_mut().insert("authorization", format!("Bearer {t}").parse().expect("header"));
    }
    client.report(r).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_bind_sources_to_projects_and_can_be_revoked_live() {
    let dir = std::env::temp_dir().join(format!("meter-sec-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let path = tokens_file(&dir, "eu-token-1");
    let cfg = SecurityConfig { tokens_file: Some(path.clone()), tokens_reload_ms: 200, ..SecurityConfig::default() };
    let stop = CancellationToken::new();
    let auth = Auth::start(&cfg, "ingest", "127.0.0.1:0", stop.clone()).expect("tokens load");
    let Some(mut p) = Pipeline::start("sec").await else { return };
    p.start_ingest_with(IngestConfig::default(), auth).await;
    let mut c = p.client().await;
    let ok = |seq| report("sec-eu-1", seq, vec![inc("sec-acme-1", Metric::ActiveTimeSeconds, 10)]);

    // Who is refused, and with what.
    let cases: Vec<(&str, Option<&str>, ReportRequest, Code, &str)> = vec![
        ("no token", None, ok(1), Code::Unauthenticated, "authorization: Bearer"),
        ("wrong token", Some("eu-token-2"), ok(1), Code::Unauthenticated, "unknown or revoked token"),
        ("an api token", Some("api-token"), ok(1), Code::Unauthenticated, "unknown or revoked token"),
        (
            "foreign project, with an allowed one",
            Some("eu-token-1"),
            report(
                "sec-eu-1",
                1,
                vec![
                    inc("sec-acme-1", Metric::ActiveTimeSeconds, 1000),
                    inc("sec-other", Metric::ActiveTimeSeconds, 1),
                ],
            ),
            Code::PermissionDenied,
            "may not report for project \"sec-other\"",
        ),
        ("foreign source", Some("eu-token-1"), report("sec-us-1", 1, ok(1).events), Code::PermissionDenied, "source"),
    ];
    for (what, token, req, code, text) in cases {
        let err = call(&mut c, token, req).await.expect_err(what);
        assert_eq!(err.code(), code, "{what}: {err:?}");
        assert!(err.message().contains(text), "{what}: {:?} lacks {text:?}", err.message());
    }
    call(&mut c, Some("eu-token-1"), ok(2)).await.expect("the bound token reports for its project");
    await_usage(&p.store, "sec-acme-1", |u| u.active_time_seconds, 10, "only the accepted batch is counted").await;
    assert_eq!(usage_of(&p.store, "sec-other").await, None, "an event of a refused batch was counted");

    // Rotate: the new token works and the old one stops, without a restart.
    std::fs::write(
        &path,
        std::fs::read_to_string(&path)
            .expect("read")
            .replace(&TokenHash::of("eu-token-1").to_hex(), &TokenHash::of("eu-token-2").to_hex()),
    )
    .expect("rotate");
    eventually(Duration::from_secs(10), "the revoked token is refused", || {
        let mut c = c.clone();
        async move {
            match call(&mut c, Some("eu-token-1"), ok(3)).await {
                Err(e) if e.code() == Code::Unauthenticated => Ok(()),
                other => Err(format!("{other:?}")),
            }
        }
    })
    .await;
    call(&mut c, Some("eu-token-2"), ok(3)).await.expect("the added token is accepted");
    stop.cancel();
    p.shutdown().await;
    std::fs::remove_dir_all(&dir).ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_noisy_source_is_throttled_and_others_still_report() {
    let Some(mut p) = Pipeline::start("rate").await else { return };
    let cfg = IngestConfig {
        rate_limit_events_per_second: 100,
        rate_limit_burst_events: 1000,
        max_message_bytes: 64 << 10,
        ..IngestConfig::default()
    };
    p.start_ingest(cfg).await;
    let mut c = p.client().await;
    let batch = |source: &str, seq| {
        report(source, seq, (0..1000).map(|_| inc("rate-p", Metric::WrittenDataBytes, 1)).collect())
    };
    c.report(batch("rate-noisy", 1)).await.expect("within the burst");
    c.report(batch("rate-noisy", 2)).await.expect("the bucket was not in debt yet");
    let err = c.report(batch("rate-noisy", 3)).await.expect_err("over the rate");
    assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");
    assert!(err.message().contains("exceeds 100 events/s"), "{}", err.message());
    let retry: u64 = err
        .metadata()
        .get(meter_ingest::RETRY_AFTER_MS)
        .and_then(|v| v.to_str().ok()?.parse().ok())
        .expect("a retry-after-ms hint");
    // 1,000 events of debt at 100/s: 10 s, less what refilled while the calls ran.
    assert!((5_000..=10_000).contains(&retry), "1,000 events of debt at 100/s: about 10 s, got {retry} ms");
    c.report(batch("rate-quiet", 1)).await.expect("another source is not throttled");

    // A request above max_message_bytes is refused before it is decoded.
    let big = report("rate-big", 1, (0..3000).map(|_| inc("rate-p", Metric::WrittenDataBytes, 1)).collect());
    let err = c.report(big).await.expect_err("64 KiB limit");
    assert_eq!(err.code(), Code::OutOfRange, "{err:?}");
    await_usage(&p.store, "rate-p", |u| u.written_data_bytes, 3000, "the two noisy and one quiet batch are counted")
        .await;
    p.shutdown().await;
}

/// An API credential table: `reader` (read) and `ops` (manage).
fn api_credentials() -> meter_core::auth::Credentials {
    serde_json::from_value(serde_json::json!({"api": [
        {"name": "reader", "sha256": TokenHash::of("r-tok").to_hex(), "scopes": ["read"]},
        {"name": "ops", "sha256": TokenHash::of("m-tok").to_hex(), "scopes": ["manage"]},
    ]}))
    .expect("credentials")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_tokens_need_the_scope_of_the_call() {
    let Some(mut p) = Pipeline::start("apisec").await else { return };
    p.start_api_with(Auth::fixed(api_credentials())).await;
    let api = p.api_url.clone();
    let http = reqwest::Client::new();
    let quota_url = format!("{api}/v1/projects/apisec-p/quota");
    let body = serde_json::json!({"plan": null, "quota": {"active_time_seconds": 100}});
    let cases = [
        ("GET, no token", http.get(format!("{api}/v1/projects")), 401, "authorization: Bearer"),
        ("GET, unknown token", http.get(format!("{api}/v1/projects")).bearer_auth("x-tok"), 401, "unknown or revoked"),
        ("GET, read", http.get(format!("{api}/v1/projects")).bearer_auth("r-tok"), 200, ""),
        ("PUT, read only", http.put(&quota_url).json(&body).bearer_auth("r-tok"), 403, "lacks the manage scope"),
        ("PUT, no token", http.put(&quota_url).json(&body), 401, "authorization: Bearer"),
        ("PUT, manage", http.put(&quota_url).json(&body).bearer_auth("m-tok"), 200, ""),
        ("GET, manage includes read", http.get(&quota_url).bearer_auth("m-tok"), 200, ""),
        ("the OpenAPI document is public", http.get(format!("{api}/v1/openapi.json")), 200, ""),
    ];
    for (what, req, status, text) in cases {
        let r = req.send().await.expect("api reachable");
        assert_eq!(r.status().as_u16(), status, "{what}");
        if status == 401 {
            assert_eq!(r.headers().get("www-authenticate").and_then(|v| v.to_str().ok()), Some("Bearer"), "{what}");
        }
        let v: serde_json::Value = r.json().await.expect("a JSON body");
        if status >= 400 {
            let msg = v["error"]["message"].as_str().unwrap_or_default();
            assert!(msg.contains(text), "{what}: {v}");
            assert_eq!(v["error"]["code"], if status == 401 { "unauthenticated" } else { "permission_denied" });
        }
    }
    let mut grpc = meter_proto::v1::quota_client::QuotaClient::new(
        tonic::transport::Endpoint::from_shared(p.api_grpc_url.clone()).expect("url").connect_lazy(),
    );
    let ask = |token: Option<&str>| {
        let mut r = tonic::Request::new(meter_proto::v1::CheckQuotaRequest { project_id: "apisec-p".into() });
        if let Some(t) = token {
            r.metadata_mut().insert("authorization", format!("Bearer {t}").parse().expect("header"));
        }
        r
    };
    let err = grpc.check_quota(ask(None)).await.expect_err("no token");
    assert_eq!(err.code(), Code::Unauthenticated, "{err:?}");
    grpc.check_quota(ask(Some("r-tok"))).await.expect("a read token may check quotas");
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_to_internal_addresses_are_refused() {
    // The test pipeline allows loopback (its receivers), nothing else.
    let Some(mut p) = Pipeline::start("ssrf").await else { return };
    p.start_api().await;
    let secret = crate::helpers::SECRET;
    for (url, class) in [
        ("http://10.1.2.3/hook", "private"),
        ("http://192.168.0.10:8080/hook", "private"),
        ("http://169.254.169.254/latest/meta-data/", "metadata"),
        ("http://[fe80::1]/hook", "link-local"),
        ("http://0.0.0.0:9/hook", "unroutable"),
    ] {
        let (s, v) = crate::helpers::api_put(
            &format!("{}/v1/webhooks/ssrf-1", p.api_url),
            serde_json::json!({"url": url, "secret": secret}),
        )
        .await;
        assert_eq!(s, 400, "{url}: {v}");
        let msg = v["error"]["message"].as_str().unwrap_or_default();
        assert!(msg.starts_with("url: ") && msg.contains(class), "{url}: {msg}");
    }
    let (s, v) = crate::helpers::api_put(
        &format!("{}/v1/webhooks/ssrf-1", p.api_url),
        serde_json::json!({"url": "http://127.0.0.1:9/hook", "secret": secret}),
    )
    .await;
    assert_eq!(s, 200, "loopback is allowed in this configuration: {v}");
    p.shutdown().await;
}

/// Runs openssl (the test fails loudly without it).
fn openssl(dir: &std::path::Path, args: &[&str]) {
    let out = std::process::Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl is needed for the mTLS test (deploy/local/prereqs installs it)");
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// A CA, a server certificate for localhost, and client certificates
/// `good` and `other`, all made by openssl in `dir`.
fn make_certs(dir: &std::path::Path) {
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
    let ca: Vec<&str> = ["req", "-x509"]
        .into_iter()
        .chain(ec)
        .chain(["-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=meter-test-ca"])
        .chain(["-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign"])
        .collect();
    openssl(dir, &ca);
    std::fs::write(dir.join("server.ext"), "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n")
        .expect("ext");
    std::fs::write(dir.join("client.ext"), "extendedKeyUsage=clientAuth\n").expect("ext");
    for (name, ext) in [("server", "server.ext"), ("good", "client.ext"), ("other", "client.ext")] {
        let (key, csr, pem, der) =
            (format!("{name}.key"), format!("{name}.csr"), format!("{name}.pem"), format!("{name}.der"));
        let req: Vec<&str> =
            ["req"].into_iter().chain(ec).chain(["-keyout", &key, "-out", &csr, "-subj", "/CN=meter-test"]).collect();
        openssl(dir, &req);
        openssl(
            dir,
            &["x509", "-req", "-in", &csr, "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial"]
                .into_iter()
                .chain(["-out", &pem, "-days", "2", "-extfile", ext])
                .collect::<Vec<_>>(),
        );
        openssl(dir, &["x509", "-in", &pem, "-outform", "der", "-out", &der]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_certificates_identify_sources() {
    use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};
    let dir = std::env::temp_dir().join(format!("meter-mtls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    make_certs(&dir);
    let read = |f: &str| std::fs::read(dir.join(f)).expect("cert file");
    // The `good` certificate is a credential bound to sec-tls-* projects.
    let creds: meter_core::auth::Credentials = serde_json::from_value(serde_json::json!({"ingest": [{
        "name": "tls-node", "sha256": TokenHash::of_bytes(&read("good.der")).to_hex(),
        "sources": ["tls-*"], "projects": ["tls-p*"],
    }]}))
    .expect("credentials");
    let cfg = IngestConfig {
        tls_cert_file: Some(dir.join("server.pem")),
        tls_key_file: Some(dir.join("server.key")),
        tls_client_ca_file: Some(dir.join("ca.pem")),
        ..IngestConfig::default()
    };
    let Some(mut p) = Pipeline::start("tls").await else { return };
    p.start_ingest_with(cfg, Auth::fixed(creds)).await;
    let url = p.ingest_url.replace("http://127.0.0.1", "https://localhost");
    let client = |identity: Option<&str>| {
        let mut tls =
            ClientTlsConfig::new().ca_certificate(Certificate::from_pem(read("ca.pem"))).domain_name("localhost");
        if let Some(name) = identity {
            tls = tls.identity(Identity::from_pem(read(&format!("{name}.pem")), read(&format!("{name}.key"))));
        }
        let channel = Endpoint::from_shared(url.clone()).expect("url").tls_config(tls).expect("tls").connect_lazy();
        IngestClient::new(channel)
    };
    let batch = |project: &str| report("tls-node-1", 1, vec![inc(project, Metric::ActiveTimeSeconds, 7)]);

    client(Some("good")).report(batch("tls-p1")).await.expect("the bound certificate reports without a token");
    let err = client(Some("good")).report(batch("tls-other")).await.expect_err("foreign project");
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
    let err = client(Some("other")).report(batch("tls-p1")).await.expect_err("a certificate of no credential");
    assert_eq!(err.code(), Code::Unauthenticated, "{err:?}");
    let err = client(None).report(batch("tls-p1")).await.expect_err("no client certificate: no connection");
    assert_ne!(err.code(), Code::Ok);
    await_usage(&p.store, "tls-p1", |u| u.active_time_seconds, 7, "the certificate's batch is counted").await;
    p.shutdown().await;
    std::fs::remove_dir_all(&dir).ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_serves_tls() {
    let dir = std::env::temp_dir().join(format!("meter-apitls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    make_certs(&dir);
    let read = |f: &str| std::fs::read(dir.join(f)).expect("cert file");
    let cfg = meter_api::ApiConfig {
        tls_cert_file: Some(dir.join("server.pem")),
        tls_key_file: Some(dir.join("server.key")),
        ..meter_api::ApiConfig::default()
    };
    let Some(mut p) = Pipeline::start("apitls").await else { return };
    p.start_api_config(cfg, Auth::fixed(api_credentials())).await;
    let https = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&read("ca.pem")).expect("ca"))
        .build()
        .expect("client");
    let url = format!("{}/v1/projects", p.api_url);
    let status = eventually(Duration::from_secs(60), "the api answers over TLS", || async {
        https.get(&url).bearer_auth("r-tok").send().await.map(|r| r.status().as_u16()).map_err(|e| format!("{e:?}"))
    })
    .await;
    assert_eq!(status, 200);
    // The operator CLI over TLS with the private CA and a manage token.
    let ca = dir.join("ca.pem");
    let mut out = Vec::new();
    let args = ["meterctl", "--api", &p.api_url, "--ca-cert", ca.to_str().expect("path"), "--token", "m-tok"];
    meterctl::run(args.into_iter().chain(["quota", "set", "apitls-p", "--quota", "active_time_seconds=100"]), &mut out)
        .await
        .expect("meterctl over TLS");
    let plain = url.replace("https://localhost", "http://127.0.0.1");
    assert!(reqwest::Client::new().get(&plain).send().await.is_err(), "plain HTTP must not be answered");
    let untrusting = reqwest::Client::new().get(&url).send().await;
    assert!(untrusting.is_err(), "a client that does not trust the CA must fail the handshake");
    let tls = tonic::transport::ClientTlsConfig::new()
        .ca_certificate(tonic::transport::Certificate::from_pem(read("ca.pem")))
        .domain_name("localhost");
    let channel = tonic::transport::Endpoint::from_shared(p.api_grpc_url.clone())
        .expect("url")
        .tls_config(tls)
        .expect("tls")
        .connect_lazy();
    let req = tonic::Request::new(meter_proto::v1::CheckQuotaRequest { project_id: "apitls-p".into() });
    // Through TLS and the token check, for the project meterctl configured over TLS.
    let answer = eventually(Duration::from_secs(30), "CheckQuota over TLS knows the project", || {
        let (channel, mut req) = (channel.clone(), tonic::Request::new(req.get_ref().clone()));
        req.metadata_mut().insert("authorization", "Bearer r-tok".parse().expect("header"));
        async move {
            let mut c = meter_proto::v1::quota_client::QuotaClient::new(channel);
            c.check_quota(req).await.map(|r| r.into_inner()).map_err(|e| format!("{e:?}"))
        }
    })
    .await;
    assert!(answer.allowed, "{answer:?}");
    p.shutdown().await;
    std::fs::remove_dir_all(&dir).ok();
}
