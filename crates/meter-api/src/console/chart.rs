//! Bar charts as inline SVG, drawn on the server: no script, nothing
//! fetched. Each bar carries its exact value as a tooltip, and the figure a
//! text summary for screen readers.

use std::fmt::Write;

use meter_core::Metric;

use super::html::{esc, grouped, metric_label, short_amount};

/// One bar: its label (a timeframe) and value.
#[derive(Debug, Clone)]
pub(crate) struct Bar {
    pub(crate) label: String,
    pub(crate) value: u64,
}

const WIDTH: u32 = 360;
const HEIGHT: u32 = 140;
const LEFT: u32 = 4;
const TOP: u32 = 16;
const BOTTOM: u32 = 18;

/// A figure with `m`'s values over `bars` (in time order).
pub(crate) fn bar_chart(m: Metric, bars: &[Bar]) -> String {
    let max = bars.iter().map(|b| b.value).max().unwrap_or(0);
    let total: u128 = bars.iter().map(|b| u128::from(b.value)).sum();
    let summary = if bars.is_empty() {
        format!("{}: no timeframes", metric_label(m))
    } else {
        format!(
            "{}: {} timeframes from {} to {}, highest {}",
            metric_label(m),
            bars.len(),
            bars[0].label,
            bars[bars.len() - 1].label,
            short_amount(m, max)
        )
    };
    let mut svg =
        format!("<svg viewBox=\"0 0 {WIDTH} {HEIGHT}\" width=\"100%\" role=\"img\" aria-label=\"{}\">", esc(&summary));
    let plot_h = HEIGHT - TOP - BOTTOM;
    let slot = f64::from(WIDTH - LEFT * 2) / bars.len().max(1) as f64;
    for (i, b) in bars.iter().enumerate() {
        let h = if max == 0 { 0.0 } else { b.value as f64 / max as f64 * f64::from(plot_h) };
        let x = f64::from(LEFT) + slot * i as f64;
        let _ = write!(
            svg,
            "<rect class=\"b\" x=\"{x:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{h:.1}\"><title>{}: {}</title></rect>",
            f64::from(TOP + plot_h) - h,
            (slot * 0.85).max(0.5),
            esc(&b.label),
            grouped(b.value)
        );
    }
    let _ = write!(
        svg,
        "<text x=\"{LEFT}\" y=\"11\">max {}</text><line x1=\"{LEFT}\" x2=\"{}\" y1=\"{}\" y2=\"{}\" stroke=\"#8c959f\"/>",
        esc(&short_amount(m, max)),
        WIDTH - LEFT,
        TOP + plot_h,
        TOP + plot_h
    );
    if let (Some(first), Some(last)) = (bars.first(), bars.last()) {
        let _ = write!(
            svg,
            "<text x=\"{LEFT}\" y=\"{}\">{}</text><text x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text>",
            HEIGHT - 4,
            esc(&first.label),
            WIDTH - LEFT,
            HEIGHT - 4,
            esc(&last.label)
        );
    }
    svg.push_str("</svg>");
    format!(
        "<figure><figcaption>{} <span class=\"muted\">&middot; total {}</span></figcaption>{svg}</figure>",
        metric_label(m),
        if m.is_gauge() { "n/a (a gauge)".to_owned() } else { esc(&grouped_u128(total)) }
    )
}

fn grouped_u128(v: u128) -> String {
    u64::try_from(v).map_or_else(|_| v.to_string(), grouped)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bars(values: &[u64]) -> Vec<Bar> {
        values.iter().enumerate().map(|(i, v)| Bar { label: format!("d{i}"), value: *v }).collect()
    }

    #[test]
    fn the_highest_bar_fills_the_plot_and_each_carries_its_exact_value() {
        let svg = bar_chart(Metric::WrittenDataBytes, &bars(&[0, 50, 100]));
        assert_eq!(svg.matches("<rect").count(), 3);
        assert!(svg.contains("height=\"106.0\""), "{svg}");
        assert!(svg.contains("height=\"0.0\""));
        assert!(svg.contains("<title>d1: 50</title>"));
        assert!(svg.contains("total 150"));
        assert!(svg.contains("aria-label=\"Written data: 3 timeframes from d0 to d2, highest 100 B\""), "{svg}");
    }

    #[test]
    fn empty_and_all_zero_charts_draw_without_dividing_by_zero() {
        assert!(bar_chart(Metric::ActiveTimeSeconds, &[]).contains("no timeframes"));
        let svg = bar_chart(Metric::ActiveTimeSeconds, &bars(&[0, 0]));
        assert!(!svg.contains("NaN") && !svg.contains("inf"), "{svg}");
    }

    #[test]
    fn labels_are_escaped() {
        let svg = bar_chart(Metric::ActiveTimeSeconds, &[Bar { label: "<x>".into(), value: 1 }]);
        assert!(svg.contains("&lt;x&gt;") && !svg.contains("<x>"));
    }
}
