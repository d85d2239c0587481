//! The console's HTML: escaping, the page frame (navigation, styles) and
//! how numbers are shown. Pure functions; every page is built from them.

use std::fmt::Write;

use meter_core::Metric;

/// `s` safe to place in element text and in double-quoted attributes.
pub(crate) fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// `s` as one path segment or query value of a URL (RFC 3986 unreserved
/// characters kept, everything else percent-encoded).
pub(crate) fn url_part(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// A whole number with thousands separators: `1234567` -> `1,234,567`.
pub(crate) fn grouped(v: u64) -> String {
    let digits = v.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A metric's value as a person reads it: bytes in binary units, seconds
/// in hours past an hour; the exact number is always shown too (the
/// console is for billing questions).
pub(crate) fn amount(m: Metric, v: u64) -> String {
    let short = short_amount(m, v);
    let exact_already = match m {
        Metric::ActiveTimeSeconds | Metric::ComputeTimeSeconds => v < 3600,
        _ => v < 1024,
    };
    if exact_already {
        short
    } else {
        format!("{short} ({})", grouped(v))
    }
}

/// The short form alone (chart labels).
pub(crate) fn short_amount(m: Metric, v: u64) -> String {
    match m {
        Metric::ActiveTimeSeconds | Metric::ComputeTimeSeconds if v >= 3600 => {
            format!("{:.1} h", v as f64 / 3600.0)
        }
        Metric::ActiveTimeSeconds | Metric::ComputeTimeSeconds => format!("{} s", grouped(v)),
        _ => bytes(v),
    }
}

/// Bytes in binary units with one decimal: `1536` -> `1.5 KiB`.
pub(crate) fn bytes(v: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut x = v as f64;
    let mut unit = 0;
    while x >= 1024.0 && unit < UNITS.len() - 1 {
        x /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{v} B")
    } else {
        format!("{x:.1} {}", UNITS[unit])
    }
}

/// An RFC 3339 time as the console shows it: `2026-12-01 12:55:18 UTC`
/// (to the second; anything not of that shape is shown as it is).
pub(crate) fn when(rfc3339: &str) -> String {
    match (rfc3339.get(..10), rfc3339.get(11..19)) {
        (Some(d), Some(t)) if rfc3339.as_bytes().get(10) == Some(&b'T') => format!("{d} {t} UTC"),
        _ => rfc3339.to_owned(),
    }
}

/// A quota's limit of `m`, exact, or `unlimited`.
pub(crate) fn limit_text(q: &meter_core::Quota, m: Metric) -> String {
    q.limit(m).map_or_else(|| "unlimited".to_owned(), grouped)
}

/// A readable label of a metric.
pub(crate) fn metric_label(m: Metric) -> &'static str {
    match m {
        Metric::ActiveTimeSeconds => "Active time",
        Metric::ComputeTimeSeconds => "Compute time",
        Metric::WrittenDataBytes => "Written data",
        Metric::DataTransferBytes => "Data transfer",
        Metric::LogicalSizeBytes => "Storage",
    }
}

/// `used` of `quota` in whole percent (rounded down), `None` without a quota.
pub(crate) fn percent(used: u64, quota: Option<u64>) -> Option<u64> {
    Some(meter_core::quota::percent(used, quota.filter(|q| *q > 0)?))
}

/// A horizontal bar of `used` against `quota` (text alongside: colour is
/// never the only signal).
pub(crate) fn usage_bar(m: Metric, used: u64, quota: Option<u64>) -> String {
    let Some(pct) = percent(used, quota) else {
        return format!("<span class=\"muted\">{} used, no quota</span>", esc(&amount(m, used)));
    };
    let class = if pct >= 100 {
        "over"
    } else if pct >= 80 {
        "near"
    } else {
        "ok"
    };
    format!(
        "<div class=\"bar {class}\" role=\"meter\" aria-valuemin=\"0\" aria-valuemax=\"100\" aria-valuenow=\"{}\" \
         aria-label=\"{} {pct}% of quota\"><span style=\"width:{}%\"></span></div>\
         <span class=\"bar-text\">{pct}% &middot; {} of {}</span>",
        pct.min(100),
        metric_label(m),
        pct.min(100),
        esc(&amount(m, used)),
        esc(&amount(m, quota.unwrap_or(0))),
    )
}

/// The navigation's sections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Section {
    Fleet,
    Plans,
    Webhooks,
    None,
}

/// Who is looking, as the page frame shows it.
#[derive(Debug, Clone)]
pub(crate) struct Viewer {
    /// The credential's name (`None` when the api runs without tokens).
    pub(crate) name: Option<String>,
    /// Whether changes may be made (the `manage` scope).
    pub(crate) manage: bool,
}

/// A whole page: `<head>`, the navigation, `body` (already HTML) inside
/// `<main>`.
pub(crate) fn document(title: &str, section: Section, viewer: Option<&Viewer>, body: &str) -> String {
    let mut nav = String::new();
    if let Some(v) = viewer {
        for (s, href, label) in [
            (Section::Fleet, "/console", "Fleet"),
            (Section::Plans, "/console/plans", "Plans"),
            (Section::Webhooks, "/console/webhooks", "Webhooks"),
        ] {
            let current = if s == section { " aria-current=\"page\"" } else { "" };
            let _ = write!(nav, "<a href=\"{href}\"{current}>{label}</a>");
        }
        let who = match &v.name {
            Some(n) => format!("{} &middot; {}", esc(n), if v.manage { "manage" } else { "read only" }),
            None => "no tokens configured &middot; manage".to_owned(),
        };
        let _ = write!(
            nav,
            "<span class=\"who\">{who}</span><form method=\"post\" action=\"/console/logout\" class=\"inline\">\
             <button type=\"submit\" class=\"link\">Sign out</button></form>"
        );
    }
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{} &middot; meter console</title><style>{STYLE}</style></head><body>\
         <a class=\"skip\" href=\"#main\">Skip to content</a>\
         <header><span class=\"brand\">meter</span><nav aria-label=\"Sections\">{nav}</nav></header>\
         <main id=\"main\"><h1>{}</h1>{body}</main></body></html>",
        esc(title),
        esc(title)
    )
}

/// A document shown inside a page's frame: the styles, no navigation.
pub(crate) fn frame(title: &str, body: &str) -> String {
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{}</title><style>{STYLE}\
         body{{margin:0}}</style></head><body>{body}</body></html>",
        esc(title)
    )
}

/// The console's only style sheet (no fonts or scripts from anywhere).
const STYLE: &str = "\
:root{--fg:#1b1f24;--muted:#57606a;--line:#d0d7de;--bg:#fff;--accent:#0a58ca;--ok:#1a7f37;--near:#9a6700;--over:#cf222e}\
*{box-sizing:border-box}body{margin:0;font:15px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;color:var(--fg);background:var(--bg)}\
header{display:flex;align-items:center;gap:1.5rem;padding:.6rem 1.5rem;border-bottom:1px solid var(--line);background:#f6f8fa}\
.brand{font-weight:700}nav{display:flex;gap:1rem;align-items:center;flex:1}nav a{color:var(--fg);text-decoration:none;padding:.2rem .4rem;border-radius:4px}\
nav a[aria-current=page]{background:#dde4ee;font-weight:600}.who{margin-left:auto;color:var(--muted)}\
main{max-width:1200px;padding:1rem 1.5rem 3rem}h1{font-size:1.5rem;margin:.5rem 0 1rem}h2{font-size:1.15rem;margin:1.8rem 0 .6rem}\
a{color:var(--accent)}a:focus,button:focus,input:focus,select:focus{outline:3px solid #0969da;outline-offset:2px}\
table{border-collapse:collapse;width:100%;margin:.3rem 0}caption{text-align:left;padding:.2rem 0}th,td{text-align:left;padding:.35rem .6rem;border-bottom:1px solid var(--line);vertical-align:top}\
th{font-weight:600;background:#f6f8fa}td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}\
.muted{color:var(--muted)}.bar{display:inline-block;width:12rem;height:.8rem;background:#eaeef2;border-radius:3px;vertical-align:middle;overflow:hidden}\
.bar span{display:block;height:100%}.bar.ok span{background:var(--ok)}.bar.near span{background:var(--near)}.bar.over span{background:var(--over)}\
.bar-text{margin-left:.5rem;font-variant-numeric:tabular-nums}.state-suspended{color:var(--over);font-weight:600}.state-active{color:var(--ok)}\
.notice{padding:.6rem .9rem;border:1px solid var(--line);border-left:4px solid var(--accent);background:#f6f8fa;margin:.8rem 0}\
.notice.error{border-left-color:var(--over)}.notice.done{border-left-color:var(--ok)}\
form.inline{display:inline}button{font:inherit;padding:.3rem .8rem;border:1px solid #8c959f;border-radius:5px;background:#f6f8fa;cursor:pointer}\
button.primary{background:var(--accent);color:#fff;border-color:var(--accent)}button.danger{color:var(--over)}\
button.link{border:0;background:none;color:var(--accent);padding:0;text-decoration:underline}\
label{display:block;font-weight:600;margin:.6rem 0 .2rem}input,select{font:inherit;padding:.3rem .4rem;border:1px solid #8c959f;border-radius:4px}\
.hint{font-weight:400;color:var(--muted);font-size:.9em}.charts{display:grid;grid-template-columns:repeat(auto-fill,minmax(360px,1fr));gap:1rem}\
figure{margin:0;border:1px solid var(--line);border-radius:6px;padding:.5rem}figcaption{font-weight:600;margin-bottom:.3rem}\
svg .b{fill:#4078c0}svg .b:hover{fill:#0a3069}svg text{font-size:11px;fill:var(--muted)}dl{display:grid;grid-template-columns:max-content 1fr;gap:.3rem 1rem}\
dt{font-weight:600}dd{margin:0}td.id{overflow-wrap:anywhere;min-width:14rem}button{white-space:nowrap}.nowrap{white-space:nowrap}\
ol.attempts{margin:0;padding-left:1.2rem}.fields{display:grid;grid-template-columns:repeat(auto-fill,minmax(320px,1fr));gap:0 1.5rem}.charts-frame{width:100%;height:430px;border:0}.skip{position:absolute;left:-999px}.skip:focus{left:1rem;top:.5rem;background:#fff;padding:.3rem}\
";

/// A table's start up to its body: one heading per column (a leading `#`
/// marks a numeric column, right-aligned), and `action`, when given, as a
/// last column (the controls `manage` viewers get).
pub(crate) fn table_head(columns: &[&str], action: Option<&str>) -> String {
    let mut out = String::from("<table><thead><tr>");
    for c in columns.iter().copied().chain(action) {
        match c.strip_prefix('#') {
            Some(n) => {
                let _ = write!(out, "<th scope=\"col\" class=\"num\">{n}</th>");
            }
            None => {
                let _ = write!(out, "<th scope=\"col\">{c}</th>");
            }
        }
    }
    out.push_str("</tr></thead><tbody>");
    out
}

/// What an HTTP call got: its status, or the error that stood for one.
pub(crate) fn call_outcome(status: Option<u16>, error: Option<&str>) -> String {
    match (status, error) {
        (Some(code), _) => format!("HTTP {code}"),
        (None, Some(e)) => esc(e),
        (None, None) => "—".to_owned(),
    }
}

/// A notice box; `kind` is `""`, `"error"` or `"done"`.
pub(crate) fn notice(kind: &str, text: &str) -> String {
    let role = if kind == "error" { "alert" } else { "status" };
    format!("<div class=\"notice {kind}\" role=\"{role}\">{}</div>", esc(text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped_for_elements_and_attributes() {
        assert_eq!(esc("<a href=\"x\">&'"), "&lt;a href=&quot;x&quot;&gt;&amp;&#39;");
        assert_eq!(url_part("p/1 x?&"), "p%2F1%20x%3F%26");
        assert_eq!(url_part("acme-p0001.a_b~"), "acme-p0001.a_b~");
    }

    #[test]
    fn numbers_read_well_and_stay_exact() {
        assert_eq!(grouped(0), "0");
        assert_eq!(grouped(999), "999");
        assert_eq!(grouped(1000), "1,000");
        assert_eq!(grouped(1234567), "1,234,567");
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(3 << 30), "3.0 GiB");
        assert_eq!(amount(Metric::ActiveTimeSeconds, 59), "59 s");
        assert_eq!(amount(Metric::ActiveTimeSeconds, 7200), "2.0 h (7,200)");
        assert_eq!(amount(Metric::WrittenDataBytes, 2048), "2.0 KiB (2,048)");
    }

    #[test]
    fn table_heads_mark_numeric_columns_and_the_action() {
        let h = table_head(&["Project", "#Usage"], Some("Replay"));
        assert_eq!(
            h,
            "<table><thead><tr><th scope=\"col\">Project</th><th scope=\"col\" class=\"num\">Usage</th>\
             <th scope=\"col\">Replay</th></tr></thead><tbody>"
        );
        assert_eq!(call_outcome(Some(503), Some("x")), "HTTP 503");
        assert_eq!(call_outcome(None, Some("<refused>")), "&lt;refused&gt;");
    }

    #[test]
    fn times_read_to_the_second() {
        assert_eq!(when("2026-12-01T12:55:18.471Z"), "2026-12-01 12:55:18 UTC");
        assert_eq!(when("soon"), "soon");
    }

    #[test]
    fn percent_rounds_down_and_needs_a_quota() {
        assert_eq!(percent(999, Some(1000)), Some(99));
        assert_eq!(percent(1000, Some(1000)), Some(100));
        assert_eq!(percent(u64::MAX, Some(1)), Some(u64::MAX));
        assert_eq!(percent(5, None), None);
        assert_eq!(percent(5, Some(0)), None);
    }

    #[test]
    fn bars_say_in_text_what_their_colour_says() {
        let b = usage_bar(Metric::ComputeTimeSeconds, 950, Some(1000));
        assert!(b.contains("class=\"bar near\"") && b.contains("95%"), "{b}");
        let b = usage_bar(Metric::ComputeTimeSeconds, 1500, Some(1000));
        assert!(b.contains("class=\"bar over\"") && b.contains("150%") && b.contains("width:100%"), "{b}");
        assert!(usage_bar(Metric::ComputeTimeSeconds, 5, None).contains("no quota"));
    }

    #[test]
    fn the_page_escapes_its_title_and_marks_the_current_section() {
        let v = Viewer { name: Some("<ops>".into()), manage: false };
        let p = document("a<b", Section::Plans, Some(&v), "<p>x</p>");
        assert!(p.contains("<title>a&lt;b"));
        assert!(p.contains("href=\"/console/plans\" aria-current=\"page\""));
        assert!(p.contains("&lt;ops&gt; &middot; read only"));
        assert!(!p.contains("<script"));
    }
}
