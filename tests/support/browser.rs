//! A headless Chromium driven over the W3C WebDriver protocol (Debian's
//! `chromium` and `chromium-driver`; `deploy/local/prereqs` installs them),
//! for the console's browser tests. Only what the tests use: navigate, find
//! by CSS, click, type, read text and source, cookies, screenshots.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use base64::Engine;
use serde_json::{json, Value};

/// One browser session with its own chromedriver process (killed on drop).
#[derive(Debug)]
pub struct Browser {
    http: reqwest::Client,
    session: String,
    _driver: tokio::process::Child,
}

/// An element of the current page.
#[derive(Debug, Clone)]
pub struct Element(String);

const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";

impl Browser {
    /// Starts chromedriver on a free loopback port and a headless session
    /// in a 1366x900 window; `None` after a `skip` when either is missing.
    pub async fn start() -> Option<Browser> {
        let driver_bin = std::env::var("METER_CHROMEDRIVER").unwrap_or_else(|_| "chromedriver".into());
        let port = std::net::TcpListener::bind("127.0.0.1:0").ok()?.local_addr().ok()?.port();
        let child = match tokio::process::Command::new(&driver_bin)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
        {
            Ok(c) => c,
            Err(e) => {
                return crate::skip(&format!(
                    "{driver_bin} did not start ({e}); the console's browser tests need Debian's chromium and \
                     chromium-driver (deploy/local/prereqs installs them)"
                ))
            }
        };
        let base = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        let mut ready = false;
        for _ in 0..100 {
            let status = http.get(format!("{base}/status")).send().await;
            if let Ok(r) = status {
                if r.json::<Value>().await.is_ok_and(|v| v["value"]["ready"] == json!(true)) {
                    ready = true;
                    break;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(ready, "chromedriver on port {port} did not become ready within 10 s");
        let mut options = json!({"args": ["--headless=new", "--no-sandbox", "--disable-gpu",
            "--disable-dev-shm-usage", "--window-size=1366,900", "--hide-scrollbars"]});
        let binary = std::env::var("METER_CHROMIUM").ok().or_else(|| {
            ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
                .into_iter()
                .find(|p| Path::new(p).exists())
                .map(str::to_owned)
        });
        if let Some(b) = binary {
            options["binary"] = json!(b);
        }
        let caps = json!({"capabilities": {"alwaysMatch": {"browserName": "chrome", "goog:chromeOptions": options}}});
        let r: Value = http
            .post(format!("{base}/session"))
            .json(&caps)
            .send()
            .await
            .expect("chromedriver answers")
            .json()
            .await
            .expect("json");
        let session = r["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("chromedriver refused a session: {r}"))
            .to_owned();
        Some(Browser { http, session: format!("{base}/session/{session}"), _driver: child })
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut req = self.http.request(method, format!("{}{path}", self.session));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r: Value = req.send().await.expect("chromedriver answers").json().await.expect("json");
        if r["value"].get("error").is_some() {
            panic!("webdriver {path}: {}", r["value"]);
        }
        r["value"].clone()
    }

    /// Opens `url` and waits for it to load.
    pub async fn goto(&self, url: &str) {
        self.call(reqwest::Method::POST, "/url", Some(json!({"url": url}))).await;
    }

    pub async fn url(&self) -> String {
        self.call(reqwest::Method::GET, "/url", None).await.as_str().unwrap_or_default().to_owned()
    }

    pub async fn title(&self) -> String {
        self.call(reqwest::Method::GET, "/title", None).await.as_str().unwrap_or_default().to_owned()
    }

    /// The page's HTML as the browser holds it.
    pub async fn source(&self) -> String {
        self.call(reqwest::Method::GET, "/source", None).await.as_str().unwrap_or_default().to_owned()
    }

    /// The elements matching `css` (none is an empty list).
    pub async fn find_all(&self, css: &str) -> Vec<Element> {
        let v =
            self.call(reqwest::Method::POST, "/elements", Some(json!({"using": "css selector", "value": css}))).await;
        v.as_array()
            .map(|a| a.iter().filter_map(|e| e[ELEMENT_KEY].as_str()).map(|s| Element(s.to_owned())).collect())
            .unwrap_or_default()
    }

    /// The one element matching `css`; panics naming it when there is none.
    pub async fn find(&self, css: &str) -> Element {
        match self.find_all(css).await.into_iter().next() {
            Some(e) => e,
            None => panic!("no element matches {css:?} on {}: {}", self.url().await, self.source().await),
        }
    }

    /// The visible text of `css`'s first match.
    pub async fn text(&self, css: &str) -> String {
        let e = self.find(css).await;
        self.call(reqwest::Method::GET, &format!("/element/{}/text", e.0), None)
            .await
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    pub async fn click(&self, e: &Element) {
        self.call(reqwest::Method::POST, &format!("/element/{}/click", e.0), Some(json!({}))).await;
    }

    /// Clicks `css`'s first match (a submit button or a link) and waits until
    /// the next page has loaded (at most 30 s).
    pub async fn click_and_wait(&self, css: &str) {
        let e = self.find(css).await;
        self.script("window.__meterOld = true").await;
        self.click(&e).await;
        for _ in 0..300 {
            let v = self.script("return window.__meterOld === undefined && document.readyState === 'complete'").await;
            if v == json!(true) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("clicking {css:?} loaded no new page within 30 s (still {})", self.url().await);
    }

    /// Replaces the value of a form field.
    pub async fn fill(&self, css: &str, text: &str) {
        let e = self.find(css).await;
        self.call(reqwest::Method::POST, &format!("/element/{}/clear", e.0), Some(json!({}))).await;
        self.call(reqwest::Method::POST, &format!("/element/{}/value", e.0), Some(json!({"text": text}))).await;
    }

    /// The value of cookie `name` (HttpOnly ones included).
    pub async fn cookie(&self, name: &str) -> Option<String> {
        let v = self.call(reqwest::Method::GET, "/cookie", None).await;
        v.as_array()?.iter().find(|c| c["name"] == json!(name)).and_then(|c| c["value"].as_str()).map(str::to_owned)
    }

    /// Runs axe-core (`axe_js`: the source of `axe.min.js`) on the current
    /// page against WCAG 2.1 A and AA; returns each violation as `rule
    /// (impact): help, N elements: the first's HTML`. Empty: none found.
    pub async fn accessibility_violations(&self, axe_js: &str) -> Vec<String> {
        self.call(reqwest::Method::POST, "/execute/sync", Some(json!({"script": axe_js, "args": []}))).await;
        let run = "const done = arguments[arguments.length - 1];\
            axe.run(document, {runOnly: {type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa']}})\
              .then(r => done(r.violations.map(v => v.id + ' (' + v.impact + '): ' + v.help + ', ' +\
                 v.nodes.length + ' elements: ' + v.nodes[0].html)))\
              .catch(e => done(['axe failed: ' + e]));";
        let v = self.call(reqwest::Method::POST, "/execute/async", Some(json!({"script": run, "args": []}))).await;
        v.as_array().map(|a| a.iter().filter_map(|x| x.as_str().map(str::to_owned)).collect()).unwrap_or_default()
    }

    /// A Chrome DevTools Protocol command (chromedriver's extension).
    async fn cdp(&self, cmd: &str, params: Value) -> Value {
        self.call(reqwest::Method::POST, "/goog/cdp/execute", Some(json!({"cmd": cmd, "params": params}))).await
    }

    /// Runs `script` in the page and returns what it returns.
    pub async fn script(&self, script: &str) -> Value {
        self.call(reqwest::Method::POST, "/execute/sync", Some(json!({"script": script, "args": []}))).await
    }

    /// Saves a PNG of the whole page to `path` (folders made), beyond the
    /// window's height (Chrome DevTools' `Page.captureScreenshot`: resizing
    /// the window instead reloads a page that answered a form).
    pub async fn screenshot(&self, path: &Path) {
        let metrics = self.cdp("Page.getLayoutMetrics", json!({})).await;
        let size = &metrics["cssContentSize"];
        let clip = json!({"x": 0, "y": 0, "width": size["width"].as_f64().unwrap_or(1366.0),
            "height": size["height"].as_f64().unwrap_or(900.0).min(6000.0), "scale": 1});
        let v = self
            .cdp("Page.captureScreenshot", json!({"format": "png", "captureBeyondViewport": true, "clip": clip}))
            .await;
        let v = &v["data"];
        let png = base64::engine::general_purpose::STANDARD.decode(v.as_str().expect("base64 png")).expect("png");
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).expect("screenshot folder");
        }
        std::fs::write(path, png).expect("screenshot written");
    }

    /// Ends the session (the driver goes with the value).
    pub async fn quit(self) {
        let _ = self.http.delete(&self.session).send().await;
    }
}
