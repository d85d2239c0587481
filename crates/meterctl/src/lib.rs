//! `meterctl`, the operator CLI of the metering pipeline: quotas and plans,
//! a project's usage, adjustments and status, the projects over or near quota, webhook
//! dead letters, ClickHouse rollups, and a ClickHouse backfill from Kafka. Human tables by
//! default, `--json` for scripts; errors name the problem and exit non-zero.

mod adjust;
mod api;
mod backfill;
mod cycle;
mod rollup;
mod table;

pub use backfill::{backfill, BackfillReport};

use std::ffi::OsString;
use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use meter_core::cycle::parse_rfc3339;
use meter_core::Metric;
use serde_json::{json, Map, Value};

use crate::api::Api;

#[derive(Debug, Parser)]
#[command(name = "meterctl", about = "Operate the usage-metering pipeline", version)]
struct Cli {
    /// The api role's HTTP address.
    #[arg(long, env = "METER_API", default_value = "http://127.0.0.1:8080", global = true)]
    api: String,
    /// Bearer token for the api (when `security.tokens_file` is set).
    #[arg(long, env = "METER_API_TOKEN", hide_env_values = true, global = true)]
    token: Option<String>,
    /// A CA certificate (PEM) to trust for an https api with a private CA.
    #[arg(long, env = "METER_API_CA", global = true)]
    ca_cert: Option<std::path::PathBuf>,
    /// Print the API's JSON instead of tables.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Plans: named quota templates.
    Plan {
        #[command(subcommand)]
        cmd: PlanCmd,
    },
    /// A project's plan and quota overrides.
    Quota {
        #[command(subcommand)]
        cmd: QuotaCmd,
    },
    /// A project's usage this cycle, its quota and whether it is suspended.
    Status { project: String },
    /// Corrections of a project's usage, with why and by whom.
    Adjust {
        #[command(subcommand)]
        cmd: adjust::AdjustCmd,
    },
    /// Billing cycles: final or not, closing one.
    Cycle {
        #[command(subcommand)]
        cmd: cycle::CycleCmd,
    },
    /// A project's usage per hour, day or month.
    Usage {
        project: String,
        /// RFC 3339, e.g. 2026-11-01T00:00:00Z.
        #[arg(long)]
        from: String,
        #[arg(long)]
        to: String,
        #[arg(long, default_value = "daily")]
        granularity: String,
        /// Comma-separated metric names (all when absent).
        #[arg(long)]
        metrics: Option<String>,
    },
    /// Projects using at least --min-percent of some quota, most used first.
    OverQuota {
        #[arg(long, default_value_t = 100)]
        min_percent: u64,
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// Webhook endpoints and their deliveries.
    Webhooks {
        #[command(subcommand)]
        cmd: HookCmd,
    },
    /// Webhook deliveries that failed every attempt.
    DeadLetters {
        #[command(subcommand)]
        cmd: DeadCmd,
    },
    /// Final days compacted in ClickHouse: status, roll up now, roll up again.
    Rollup {
        #[command(subcommand)]
        cmd: rollup::RollupCmd,
    },
    /// Rebuild ClickHouse usage rows from Kafka for records ingested in [--from, --to).
    Backfill {
        /// meterd's configuration (for [kafka] and [clickhouse]); METER__* variables apply.
        #[arg(long)]
        config: Option<PathBuf>,
        #[arg(long)]
        from: String,
        #[arg(long)]
        to: String,
    },
}

#[derive(Debug, Subcommand)]
enum PlanCmd {
    /// Every plan with its quotas and thresholds.
    List,
    Get {
        name: String,
    },
    /// Create or replace a plan.
    Set {
        name: String,
        /// METRIC=LIMIT, repeated (0: no limit).
        #[arg(long = "quota", value_name = "METRIC=LIMIT")]
        quota: Vec<String>,
        /// Alert thresholds in percent, comma-separated (default 50,80,90,100).
        #[arg(long)]
        thresholds: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
enum QuotaCmd {
    Get {
        project: String,
    },
    /// Change a project's plan and/or single overrides, keeping the rest
    /// (PATCH; raising a quota above usage resumes it).
    Set {
        project: String,
        #[arg(long, conflicts_with = "no_plan")]
        plan: Option<String>,
        /// Leave the project without a plan.
        #[arg(long)]
        no_plan: bool,
        /// METRIC=LIMIT, repeated (0: no limit; `inherit`: drop the override).
        #[arg(long = "quota", value_name = "METRIC=LIMIT")]
        quota: Vec<String>,
    },
}

#[derive(Debug, Subcommand)]
enum HookCmd {
    /// Every endpoint (secrets redacted).
    List,
    /// Create or replace an endpoint.
    Set {
        id: String,
        #[arg(long)]
        url: String,
        /// `whsec_` and the base64 of 24-64 random bytes.
        #[arg(long)]
        secret: String,
        /// An event type it wants, repeated (all when absent).
        #[arg(long = "event-type")]
        event_types: Vec<String>,
    },
    /// Stop sending to it (its pending deliveries become dead letters).
    Disable { id: String },
    /// Send to it again (resend its dead letters with `resend` or `dead-letters replay`).
    Enable { id: String },
    /// Delete it (its pending deliveries are cancelled).
    Delete { id: String },
    /// Send it a signed webhook.test event.
    Test { id: String },
    /// Its recent deliveries, newest first, with the last attempt of each.
    Deliveries {
        id: String,
        #[arg(long)]
        event_type: Option<String>,
        #[arg(long)]
        project: Option<String>,
        /// pending, delivered, dead or cancelled.
        #[arg(long)]
        state: Option<String>,
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
    /// Send a delivery again from the start of the schedule (same webhook-id).
    Resend { id: String, delivery: String },
}

#[derive(Debug, Subcommand)]
enum DeadCmd {
    List,
    /// Deliver again (all when no key is given), with the same webhook-id.
    Replay {
        keys: Vec<String>,
    },
}

/// `METRIC=LIMIT` pairs as a quota object.
/// `--quota` pairs as a JSON object; with `inherit`, `METRIC=inherit` is
/// `null` (an override dropped by a merge patch).
fn quota_object(pairs: &[String], inherit: bool) -> anyhow::Result<Value> {
    let mut q = Map::new();
    for p in pairs {
        let (m, v) = p.split_once('=').with_context(|| format!("--quota {p:?}: expected METRIC=LIMIT"))?;
        let known: Vec<&str> = Metric::ALL.iter().map(|m| m.name()).collect();
        anyhow::ensure!(known.contains(&m), "--quota {p:?}: unknown metric {m:?}; known: {}", known.join(", "));
        if inherit && v == "inherit" {
            q.insert(m.to_owned(), Value::Null);
            continue;
        }
        let v: u64 = v.parse().with_context(|| format!("--quota {p:?}: {v:?} is not a whole number"))?;
        q.insert(m.to_owned(), json!(v));
    }
    Ok(Value::Object(q))
}

pub(crate) fn cell(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Metric, usage, quota rows of a status or quota answer.
fn metric_rows(usage: Option<&Value>, quota: &Value) -> Vec<Vec<String>> {
    Metric::ALL
        .iter()
        .map(|m| {
            let q = quota[m.name()].as_u64().filter(|q| *q > 0);
            let mut row = vec![m.name().to_owned()];
            if let Some(u) = usage {
                let u = u[m.name()].as_u64().unwrap_or(0);
                row.push(u.to_string());
                row.push(q.map_or("-".into(), |q| format!("{:.1} %", u as f64 * 100.0 / q as f64)));
            }
            row.push(q.map_or("unlimited".into(), |q| q.to_string()));
            row
        })
        .collect()
}

/// How a command's answer is shown as text.
pub(crate) type Render = dyn Fn(&Value, &mut dyn Write) -> anyhow::Result<()>;

/// Parses `args` (the first is the program name) and runs the command,
/// writing its output to `out`.
pub async fn run<I, T>(args: I, out: &mut dyn Write) -> anyhow::Result<()>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let cli = match Cli::try_parse_from(args) {
        Ok(c) => c,
        Err(e) if matches!(e.kind(), clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion) => {
            write!(out, "{e}")?;
            return Ok(());
        }
        Err(e) => anyhow::bail!("{}", e.render().to_string().trim_end()),
    };
    let api = Api::new(&cli.api, cli.token.as_deref(), cli.ca_cert.as_deref())?;
    let (body, render): (Value, Box<Render>) = match cli.cmd {
        Cmd::Plan { cmd: PlanCmd::List } => (api.get("/v1/plans").await?, Box::new(plans_table)),
        Cmd::Plan { cmd: PlanCmd::Get { name } } => {
            (api.get(&format!("/v1/plans/{name}")).await?, Box::new(plan_table))
        }
        Cmd::Plan { cmd: PlanCmd::Set { name, quota, thresholds } } => {
            let mut body = json!({"quota": quota_object(&quota, false)?});
            if let Some(t) = thresholds {
                let t: Result<Vec<u8>, _> = t.split(',').map(|x| x.trim().parse::<u8>()).collect();
                body["thresholds"] = json!(t.context("--thresholds: expected percents like 50,80,90,100")?);
            }
            (api.put(&format!("/v1/plans/{name}"), &body).await?, Box::new(plan_table))
        }
        Cmd::Quota { cmd: QuotaCmd::Get { project } } => {
            (api.get(&format!("/v1/projects/{project}/quota")).await?, Box::new(quota_table))
        }
        Cmd::Quota { cmd: QuotaCmd::Set { project, plan, no_plan, quota } } => {
            let mut body = json!({"quota": quota_object(&quota, true)?});
            if let Some(p) = plan {
                body["plan"] = json!(p);
            }
            if no_plan {
                body["plan"] = Value::Null;
            }
            (api.patch(&format!("/v1/projects/{project}/quota"), &body).await?, Box::new(quota_table))
        }
        Cmd::Status { project } => (api.get(&format!("/v1/projects/{project}/status")).await?, Box::new(status_table)),
        Cmd::Adjust { cmd } => adjust::adjust(&api, cmd).await?,
        Cmd::Cycle { cmd } => cycle::cycle(&api, cmd).await?,
        Cmd::Rollup { cmd } => rollup::rollup(cmd).await?,
        Cmd::Usage { project, from, to, granularity, metrics } => {
            let mut path =
                format!("/v1/projects/{project}/consumption_history?from={from}&to={to}&granularity={granularity}");
            if let Some(m) = metrics {
                path.push_str(&format!("&metrics={m}"));
            }
            (api.get(&path).await?, Box::new(usage_table))
        }
        Cmd::OverQuota { min_percent, limit } => (
            api.get(&format!("/v1/projects?min_percent={min_percent}&limit={limit}")).await?,
            Box::new(over_quota_table),
        ),
        Cmd::Webhooks { cmd } => webhooks(&api, cmd).await?,
        Cmd::DeadLetters { cmd: DeadCmd::List } => (api.get("/v1/webhooks/dead-letters").await?, Box::new(dead_table)),
        Cmd::DeadLetters { cmd: DeadCmd::Replay { keys } } => {
            let body = if keys.is_empty() { json!({}) } else { json!({"keys": keys}) };
            let r = api.post("/v1/webhooks/dead-letters/replay", &body).await?;
            (r, Box::new(|b: &Value, out: &mut dyn Write| Ok(writeln!(out, "replayed {}", cell(&b["replayed"]))?)))
        }
        Cmd::Backfill { config, from, to } => {
            let t = |name: &str, v: &str| {
                parse_rfc3339(v)
                    .with_context(|| format!("--{name} {v:?}: expected RFC 3339, e.g. 2026-11-01T00:00:00Z"))
            };
            let (from, to) = (t("from", &from)?, t("to", &to)?);
            let cfg: Sections = meter_runtime::load_config(config.as_deref(), "METER")?;
            let r = backfill(&cfg.kafka, &cfg.clickhouse, from, to, &mut std::io::stderr()).await?;
            let body = json!({"records": r.records, "rows_written": r.rows, "undecodable": r.undecodable, "adjustments_written": r.adjustments});
            (
                body,
                Box::new(|b: &Value, out: &mut dyn Write| {
                    Ok(writeln!(
                        out,
                        "backfill: {} records read, {} rows written ({} undecodable), {} adjustments written",
                        b["records"], b["rows_written"], b["undecodable"], b["adjustments_written"]
                    )?)
                }),
            )
        }
    };
    if cli.json {
        writeln!(out, "{}", serde_json::to_string_pretty(&body)?)?;
        Ok(())
    } else {
        render(&body, out)
    }
}

/// The sections of meterd's configuration the backfill needs (others ignored).
#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
struct Sections {
    kafka: meter_kafka::KafkaConfig,
    clickhouse: meter_store::StoreConfig,
}

fn plan_table(b: &Value, out: &mut dyn Write) -> anyhow::Result<()> {
    writeln!(out, "plan {}  thresholds {}", cell(&b["name"]), cell(&b["thresholds"]))?;
    Ok(table::write(out, &["METRIC", "QUOTA"], &metric_rows(None, &b["quota"]))?)
}

fn plans_table(b: &Value, out: &mut dyn Write) -> anyhow::Result<()> {
    for p in b["plans"].as_array().map(Vec::as_slice).unwrap_or_default() {
        plan_table(p, out)?;
        writeln!(out)?;
    }
    Ok(())
}

fn quota_table(b: &Value, out: &mut dyn Write) -> anyhow::Result<()> {
    writeln!(
        out,
        "project {}  plan {}  thresholds {}",
        cell(&b["project_id"]),
        cell(&b["plan"]),
        cell(&b["thresholds"])
    )?;
    Ok(table::write(out, &["METRIC", "QUOTA"], &metric_rows(None, &b["quota"]))?)
}

fn status_table(b: &Value, out: &mut dyn Write) -> anyhow::Result<()> {
    writeln!(
        out,
        "project {}  state {}  plan {}  cycle {} .. {}",
        cell(&b["project_id"]),
        cell(&b["state"]),
        cell(&b["plan"]),
        cell(&b["consumption_period_start"]),
        cell(&b["consumption_period_end"])
    )?;
    if let Some(s) = b["suspension"].as_object() {
        writeln!(
            out,
            "suspended since {} ({} {} >= {})",
            cell(&s["since"]),
            cell(&s["metric"]),
            cell(&s["usage"]),
            cell(&s["quota"])
        )?;
    }
    table::write(out, &["METRIC", "USAGE", "USED", "QUOTA"], &metric_rows(Some(&b["usage"]), &b["quota"]))?;
    // The storage quota applies to each branch.
    let branches = rows_of(&b["branches"], &["branch_id", "logical_size_bytes", "writes_blocked", "blocked_since"]);
    if !branches.is_empty() {
        writeln!(out)?;
        table::write(out, &["BRANCH", "LOGICAL_SIZE_BYTES", "WRITES_BLOCKED", "SINCE"], &branches)?;
    }
    Ok(())
}

fn usage_table(b: &Value, out: &mut dyn Write) -> anyhow::Result<()> {
    let metrics: Vec<String> = b["metrics"].as_array().map(|a| a.iter().map(cell).collect()).unwrap_or_default();
    let mut headers = vec!["TIMEFRAME_START"];
    headers.extend(metrics.iter().map(String::as_str));
    let rows: Vec<Vec<String>> = b["consumption"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|f| {
                    std::iter::once(cell(&f["timeframe_start"]))
                        .chain(metrics.iter().map(|m| cell(&f[m.as_str()])))
                        .collect()
                })
                .collect()
        })
        .unwrap_or_default();
    Ok(table::write(out, &headers, &rows)?)
}

/// The `keys` of each object of the array `list`, as table cells.
pub(crate) fn rows_of(list: &Value, keys: &[&str]) -> Vec<Vec<String>> {
    list.as_array().map(|a| a.iter().map(|o| keys.iter().map(|k| cell(&o[*k])).collect()).collect()).unwrap_or_default()
}

fn over_quota_table(b: &Value, out: &mut dyn Write) -> anyhow::Result<()> {
    let rows = rows_of(&b["projects"], &["project_id", "state", "metric", "usage", "quota", "percent"]);
    table::write(out, &["PROJECT", "STATE", "METRIC", "USAGE", "QUOTA", "PERCENT"], &rows)?;
    Ok(writeln!(out, "{} of {} matching projects shown", rows.len(), cell(&b["total"]))?)
}

/// The `webhooks` subcommands.
async fn webhooks(api: &Api, cmd: HookCmd) -> anyhow::Result<(Value, Box<Render>)> {
    let one = |b: Value| -> (Value, Box<Render>) { (json!({"webhooks": [b]}), Box::new(webhook_table)) };
    Ok(match cmd {
        HookCmd::List => (api.get("/v1/webhooks").await?, Box::new(webhook_table)),
        HookCmd::Set { id, url, secret, event_types } => one(api
            .put(&format!("/v1/webhooks/{id}"), &json!({"url": url, "secret": secret, "event_types": event_types}))
            .await?),
        HookCmd::Disable { id } => one(api.patch(&format!("/v1/webhooks/{id}"), &json!({"disabled": true})).await?),
        HookCmd::Enable { id } => one(api.patch(&format!("/v1/webhooks/{id}"), &json!({"disabled": false})).await?),
        HookCmd::Delete { id } => one(api.delete(&format!("/v1/webhooks/{id}")).await?),
        HookCmd::Test { id } => {
            let r = api.post(&format!("/v1/webhooks/{id}/test"), &json!({})).await?;
            (
                r,
                Box::new(|b: &Value, out: &mut dyn Write| {
                    Ok(writeln!(out, "sent {}; delivery {}", cell(&b["event_id"]), cell(&b["delivery_id"]))?)
                }),
            )
        }
        HookCmd::Deliveries { id, event_type, project, state, limit } => {
            let mut path = format!("/v1/webhooks/{id}/deliveries?limit={limit}");
            for (k, v) in [("event_type", event_type), ("project_id", project), ("state", state)] {
                if let Some(v) = v {
                    path.push_str(&format!("&{k}={v}"));
                }
            }
            (api.get(&path).await?, Box::new(deliveries_table))
        }
        HookCmd::Resend { id, delivery } => {
            let r = api.post(&format!("/v1/webhooks/{id}/deliveries/{delivery}/resend"), &json!({})).await?;
            (r, Box::new(|b: &Value, out: &mut dyn Write| Ok(writeln!(out, "resending {}", cell(&b["id"]))?)))
        }
    })
}

fn webhook_table(b: &Value, out: &mut dyn Write) -> anyhow::Result<()> {
    let rows = rows_of(&b["webhooks"], &["id", "url", "event_types", "disabled", "disabled_reason"]);
    Ok(table::write(out, &["ID", "URL", "EVENT_TYPES", "DISABLED", "WHY"], &rows)?)
}

fn deliveries_table(b: &Value, out: &mut dyn Write) -> anyhow::Result<()> {
    let rows: Vec<Vec<String>> = b["deliveries"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|d| {
                    let last = d["attempts"].as_array().and_then(|a| a.last()).cloned().unwrap_or(Value::Null);
                    let outcome = if last["status"].is_number() { cell(&last["status"]) } else { cell(&last["error"]) };
                    vec![
                        cell(&d["id"]),
                        cell(&d["type"]),
                        cell(&d["project_id"]),
                        cell(&d["state"]),
                        cell(&d["attempt_count"]),
                        outcome,
                        cell(&d["next_attempt_at"]),
                    ]
                })
                .collect()
        })
        .unwrap_or_default();
    Ok(table::write(out, &["DELIVERY", "TYPE", "PROJECT", "STATE", "ATTEMPTS", "LAST", "NEXT_ATTEMPT"], &rows)?)
}

fn dead_table(b: &Value, out: &mut dyn Write) -> anyhow::Result<()> {
    let rows = rows_of(&b["dead_letters"], &["key", "type", "project_id", "attempts", "failed_at", "last_error"]);
    Ok(table::write(out, &["KEY", "TYPE", "PROJECT", "ATTEMPTS", "FAILED_AT", "LAST_ERROR"], &rows)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quota_pairs_are_checked() {
        assert_eq!(
            quota_object(&["active_time_seconds=10".into()], false).unwrap(),
            json!({"active_time_seconds": 10})
        );
        assert!(quota_object(&["cpu=1".into()], false).unwrap_err().to_string().contains("unknown metric \"cpu\""));
        assert!(quota_object(&["active_time_seconds".into()], false).unwrap_err().to_string().contains("METRIC=LIMIT"));
        assert!(quota_object(&["active_time_seconds=-1".into()], false)
            .unwrap_err()
            .to_string()
            .contains("whole number"));
        let inherit = ["active_time_seconds=inherit".to_owned()];
        assert_eq!(quota_object(&inherit, true).unwrap(), json!({"active_time_seconds": null}));
        assert!(quota_object(&inherit, false).unwrap_err().to_string().contains("whole number"));
    }

    #[tokio::test]
    async fn usage_errors_are_clear() {
        let mut out = Vec::new();
        let e = run(["meterctl", "status"], &mut out).await.unwrap_err().to_string();
        assert!(e.contains("<PROJECT>"), "{e}");
        let e = run(["meterctl", "--api", "http://127.0.0.1:1", "status", "p"], &mut out).await.unwrap_err();
        assert!(format!("{e:#}").contains("did not answer"), "{e:#}");
    }
}
