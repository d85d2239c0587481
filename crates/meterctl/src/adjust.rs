//! `meterctl adjust`: corrections of a project's usage, and their list.

use std::io::Write;

use clap::Subcommand;
use serde_json::{json, Value};

use crate::api::Api;
use crate::{cell, rows_of, table, Render};

#[derive(Debug, Subcommand)]
pub(crate) enum AdjustCmd {
    /// Add DELTA (negative: take usage away) to one counter of a project,
    /// with why; refused when it would take the cycle's counter below zero.
    Add {
        project: String,
        /// active_time_seconds, compute_time_seconds, written_data_bytes or data_transfer_bytes.
        #[arg(long)]
        metric: String,
        #[arg(long, allow_hyphen_values = true)]
        delta: i64,
        #[arg(long)]
        reason: String,
        /// The hour it is booked in (RFC 3339, on the hour); the current hour when neither this nor --cycle.
        #[arg(long, conflicts_with = "cycle")]
        hour: Option<String>,
        /// A whole cycle, YYYY-MM.
        #[arg(long)]
        cycle: Option<String>,
        /// Idempotency key: run again with the same key and it is applied once (default: a new random key).
        #[arg(long)]
        key: Option<String>,
    },
    /// A project's adjustments, newest first.
    List {
        project: String,
        /// Only this cycle, YYYY-MM.
        #[arg(long)]
        cycle: Option<String>,
    },
}

/// Runs an `adjust` subcommand.
pub(crate) async fn adjust(api: &Api, cmd: AdjustCmd) -> anyhow::Result<(Value, Box<Render>)> {
    Ok(match cmd {
        AdjustCmd::Add { project, metric, delta, reason, hour, cycle, key } => {
            let key = key.unwrap_or_else(|| meter_core::ids::uuid(rand::random(), 4));
            let mut body = json!({"metric": metric, "delta": delta, "reason": reason, "idempotency_key": key});
            if let Some(h) = hour {
                body["hour"] = json!(h);
            }
            if let Some(c) = cycle {
                body["cycle"] = json!(c);
            }
            (api.post(&format!("/v1/projects/{project}/adjustments"), &body).await?, Box::new(added))
        }
        AdjustCmd::List { project, cycle } => {
            let mut path = format!("/v1/projects/{project}/adjustments");
            if let Some(c) = cycle {
                path.push_str(&format!("?cycle={c}"));
            }
            (api.get(&path).await?, Box::new(list_table))
        }
    })
}

fn added(b: &Value, out: &mut dyn Write) -> anyhow::Result<()> {
    if b["status"] == "pending" {
        return Ok(writeln!(
            out,
            "written, not yet applied (the aggregator is behind); see `meterctl adjust list {}` (key {})",
            cell(&b["project_id"]),
            cell(&b["idempotency_key"])
        )?);
    }
    Ok(writeln!(
        out,
        "applied: {} {} of {} is now {} (key {})",
        cell(&b["project_id"]),
        cell(&b["metric"]),
        cell(&b["cycle"]),
        cell(&b["counter_after"]),
        cell(&b["idempotency_key"])
    )?)
}

fn list_table(b: &Value, out: &mut dyn Write) -> anyhow::Result<()> {
    let keys = ["created_at", "metric", "hour", "delta", "status", "refusal", "actor", "idempotency_key", "reason"];
    let rows = rows_of(&b["adjustments"], &keys);
    Ok(table::write(out, &["CREATED", "METRIC", "HOUR", "DELTA", "STATUS", "REFUSAL", "BY", "KEY", "REASON"], &rows)?)
}
