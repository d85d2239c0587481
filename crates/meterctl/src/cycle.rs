//! `meterctl cycle`: whether a billing cycle is final, and closing it.

use std::io::Write;

use clap::Subcommand;
use serde_json::{json, Value};

use crate::api::Api;
use crate::{cell, Render};

#[derive(Debug, Subcommand)]
pub(crate) enum CycleCmd {
    /// Whether a cycle (YYYY-MM) is final and closed.
    Show { cycle: String },
    /// Close a final cycle: its numbers never change again (adjustments of it are refused).
    Close { cycle: String },
}

/// Runs a `cycle` subcommand.
pub(crate) async fn cycle(api: &Api, cmd: CycleCmd) -> anyhow::Result<(Value, Box<Render>)> {
    let body = match cmd {
        CycleCmd::Show { cycle } => api.get(&format!("/v1/cycles/{cycle}")).await?,
        CycleCmd::Close { cycle } => api.post(&format!("/v1/cycles/{cycle}/close"), &json!({})).await?,
    };
    Ok((body, Box::new(cycle_line)))
}

fn cycle_line(b: &Value, out: &mut dyn Write) -> anyhow::Result<()> {
    let closed = if b["closed"] == true {
        format!("closed {} by {}", cell(&b["closed_at"]), cell(&b["closed_by"]))
    } else {
        "open".to_owned()
    };
    let fin = if b["final"] == true { "final" } else { "not final" };
    Ok(writeln!(out, "cycle {} ({} .. {}): {fin}, {closed}", cell(&b["cycle"]), cell(&b["start"]), cell(&b["end"]))?)
}
