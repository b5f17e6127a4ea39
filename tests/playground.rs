//! The playground page in a real headless Chromium, driven through the DevTools protocol over
//! its WebSocket: the page is opened from a real server, a prompt is typed and Generate
//! clicked with mouse events, and the streamed text, the probability bars and the loss chart
//! are read back from the page. Screenshots at desktop and phone width are kept in
//! `target/screenshots/`. Needs Debian's `chromium` package (or `CHROMIUM=/path/to/chrome`).

use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use e2e::{root, scratch, train_small};
use serde_json::{Value, json};
use tungstenite::stream::MaybeTlsStream;
use tungstenite::{Message, WebSocket};

use crate::serving::start;

/// A headless Chromium with one page, spoken to through the DevTools protocol.
struct Browser {
    child: Child,
    socket: WebSocket<MaybeTlsStream<TcpStream>>,
    next_id: u64,
}

/// The Chromium binary: `$CHROMIUM`, or the first of the usual names on the `PATH`.
fn chromium() -> PathBuf {
    if let Some(path) = std::env::var_os("CHROMIUM") {
        return path.into();
    }
    let names = ["chromium", "chromium-browser", "google-chrome"];
    std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .flat_map(|dir| names.map(|name| dir.join(name)))
        .find(|path| path.is_file())
        .expect(
            "the playground test needs Chromium: `apt install chromium` (Debian), \
             or CHROMIUM=/path/to/chrome",
        )
}

impl Browser {
    /// Starts Chromium with a fresh profile under `profile` and a `width` x `height` window,
    /// and connects to its page.
    fn launch(profile: &Path, width: u32, height: u32) -> Self {
        let mut child = Command::new(chromium())
            .args([
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--no-default-browser-check",
                "--hide-scrollbars",
                "--remote-debugging-port=0",
                &format!("--window-size={width},{height}"),
                &format!("--user-data-dir={}", profile.display()),
                "about:blank",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start Chromium");
        // Chromium prints `DevTools listening on ws://127.0.0.1:PORT/devtools/browser/ID`.
        let stderr = BufReader::new(child.stderr.take().unwrap());
        let port = stderr
            .lines()
            .map_while(Result::ok)
            .find_map(|line| {
                let url = line.strip_prefix("DevTools listening on ws://")?.to_owned();
                url.split(['/', ':']).nth(1).map(str::to_owned)
            })
            .expect("Chromium did not print its DevTools address");
        let targets: Value = ureq::get(&format!("http://127.0.0.1:{port}/json/list"))
            .call()
            .expect("DevTools target list")
            .into_json()
            .unwrap();
        let page = targets
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["type"] == "page")
            .expect("a page target");
        let url = page["webSocketDebuggerUrl"].as_str().unwrap();
        let (socket, _) = tungstenite::connect(url).expect("DevTools WebSocket");
        Self {
            child,
            socket,
            next_id: 0,
        }
    }

    /// Sends one protocol command and waits for its result (events on the way are skipped).
    fn call(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let message = json!({"id": id, "method": method, "params": params});
        self.socket
            .send(Message::Text(message.to_string().into()))
            .unwrap();
        loop {
            let Message::Text(text) = self.socket.read().expect("DevTools message") else {
                continue;
            };
            let answer: Value = serde_json::from_str(text.as_str()).unwrap();
            if answer["id"] == id {
                assert!(answer["error"].is_null(), "{method}: {answer}");
                return answer["result"].clone();
            }
        }
    }

    /// The value of the JavaScript expression `js` in the page.
    fn eval(&mut self, js: &str) -> Value {
        let params = json!({"expression": js, "returnByValue": true});
        let result = self.call("Runtime.evaluate", params);
        assert!(result["exceptionDetails"].is_null(), "{js}: {result}");
        result["result"]["value"].clone()
    }

    /// Polls `js` until it is true; panics naming `what` after 60 s.
    fn wait_for(&mut self, js: &str, what: &str) {
        let start = Instant::now();
        while self.eval(js) != json!(true) {
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "waited for {what}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Opens `url` and waits for the page's first next-word bars (its data has arrived).
    fn open(&mut self, url: &str) {
        self.call("Page.navigate", json!({"url": url}));
        self.wait_for(
            "document.querySelectorAll('#next-cold .bar').length > 0",
            "the page's first next-word bars",
        );
    }

    /// A left click with the mouse at the middle of the element `selector` names.
    fn click(&mut self, selector: &str) {
        let js = format!(
            "(() => {{ const r = document.querySelector('{selector}').getBoundingClientRect(); \
             return [r.x + r.width / 2, r.y + r.height / 2]; }})()"
        );
        let at = self.eval(&js);
        for kind in ["mousePressed", "mouseReleased"] {
            let params =
                json!({"type": kind, "x": at[0], "y": at[1], "button": "left", "clickCount": 1});
            self.call("Input.dispatchMouseEvent", params);
        }
    }

    /// Types `text` into the field `selector` names, replacing what it held, as keyboard input.
    fn type_into(&mut self, selector: &str, text: &str) {
        self.click(selector);
        self.eval(&format!("document.querySelector('{selector}').select()"));
        self.call("Input.insertText", json!({"text": text}));
    }

    /// Saves a PNG of the page's viewport at `path`.
    fn screenshot(&mut self, path: &Path) {
        let shot = self.call("Page.captureScreenshot", json!({"format": "png"}));
        let png = base64::engine::general_purpose::STANDARD
            .decode(shot["data"].as_str().unwrap())
            .unwrap();
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, png).unwrap();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The widths of the first bar at temperature 1.0 and at 0.2, in percent.
const TOP_BARS: &str = "['#next-hot', '#next-cold'].map(t => \
    parseFloat(document.querySelector(t + ' .fill').style.width))";

#[test]
fn the_playground_streams_text_and_draws_bars_and_curves() {
    let (run, _) = train_small("playground", |c| {
        c.train.epochs = 3;
        c.data.validation = 0.1;
    });
    let addr = start(&run, &[]);
    let dir = scratch("playground-browser");
    let mut browser = Browser::launch(&dir.join("profile"), 1280, 1300);
    browser.open(&format!("http://{addr}/"));

    // The run's first prompt is filled in; typing another refreshes the tables.
    assert_eq!(
        browser.eval("document.getElementById('prompt').value"),
        "recipe for"
    );
    browser.eval("document.querySelector('#next-hot .bars').replaceChildren()");
    browser.type_into("#prompt", "recipe for chocolate");
    browser.wait_for(
        "document.querySelectorAll('#next-hot .bar').length === 8 \
         && document.querySelectorAll('#next-cold .bar').length === 8",
        "eight bars per temperature for the new prompt",
    );
    // A lower temperature sharpens the distribution: its most likely word gets a longer bar.
    let bars = browser.eval(TOP_BARS);
    let (hot, cold) = (bars[0].as_f64().unwrap(), bars[1].as_f64().unwrap());
    assert!(0.0 < hot && hot < cold && cold <= 100.0, "{bars}");

    // Generate streams text into the page piece by piece.
    browser.click("#generate");
    browser.wait_for(
        "document.getElementById('output').dataset.state === 'done'",
        "the generation to finish",
    );
    let generated = browser.eval("document.getElementById('generated').textContent");
    let chunks = browser.eval("Number(document.getElementById('output').dataset.chunks)");
    assert!(generated.as_str().unwrap().trim().len() > 5, "{generated}");
    assert!(chunks.as_u64().unwrap() > 1, "{chunks} pieces");
    let status = browser.eval("document.getElementById('status').textContent");
    assert!(status.as_str().unwrap().contains("finish:"), "{status}");

    browser.screenshot(&root().join("target/screenshots/playground.png"));

    // Stop ends a generation in flight and gives Generate back.
    browser.eval(
        "document.getElementById('max_tokens').value = 1000; \
         document.getElementById('generate').click(); \
         document.getElementById('stop').click()",
    );
    browser.wait_for(
        "document.getElementById('output').dataset.state === 'stopped' \
         && !document.getElementById('generate').disabled",
        "Stop to end the generation",
    );

    // The loss chart: a training and a validation curve, one point per epoch; the samples.
    let curves = browser.eval(
        "[...document.querySelectorAll('#curves polyline.curve')]\
         .map(p => p.getAttribute('points').split(' ').length)",
    );
    assert_eq!(curves, json!([3, 3]));
    let samples = browser.eval("document.querySelectorAll('#samples li').length");
    assert!(samples.as_u64().unwrap() >= 3, "{samples} samples");

    // At a phone's width the panels stack and nothing spills sideways.
    let phone = json!({"width": 390, "height": 1700, "deviceScaleFactor": 1, "mobile": true});
    browser.call("Emulation.setDeviceMetricsOverride", phone);
    browser.open(&format!("http://{addr}/"));
    let layout = browser.eval(
        "[document.documentElement.scrollWidth, \
          ...[...document.querySelectorAll('section')].map(s => s.getBoundingClientRect().left)]",
    );
    let layout: Vec<f64> = serde_json::from_value(layout).unwrap();
    assert!(layout[0] <= 390.0, "page is {} px wide", layout[0]);
    assert!(layout[1..].windows(2).all(|w| w[0] == w[1]), "{layout:?}");
    browser.screenshot(&root().join("target/screenshots/playground-phone.png"));
}
