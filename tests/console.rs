//! The operator console in a real browser: headless Chromium driven over WebDriver
//! (chromedriver) against a running engine. It logs in, sees events arrive on the overview
//! without reloading, finds an event by its key and reads its timeline, replays a dead letter
//! and sees it delivered, uploads a good and a bad plugin version (the refusal names the
//! failing fixture), rolls back, and reads the configuration with its secrets masked; on a
//! phone's width nothing overflows, the keyboard reaches the content, and the refreshing
//! overview does not shift.
//!
//! Each view's screenshot is written to `docs/console/` (the README shows them).
//!
//! Needs `chromium` and `chromedriver` (Debian's `chromium` and `chromium-driver`; `scripts/test`
//! installs them); `CHROMEDRIVER` and `CHROMIUM` name other binaries.

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use sync_engine_tests::{Receiver, TestEngine, on_nats, post_json};
use test_components::component_path;

const ADMIN: &str = "console-admin-token-0123456789";
const DESTINATION_SECRET: &str = "destination-header-secret-4711";
const QUERY_SECRET: &str = "query-secret-0815";
const WEBHOOK_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// A headless Chromium under chromedriver; both end with it.
struct Browser {
    client: Client,
    driver: Child,
    _profile: tempfile::TempDir,
}

impl Browser {
    async fn start() -> Browser {
        let chromedriver = std::env::var("CHROMEDRIVER").unwrap_or_else(|_| "chromedriver".into());
        let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let driver = Command::new(&chromedriver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start `{chromedriver}` ({e}): install Debian's chromium and \
                     chromium-driver (scripts/test does), or set CHROMEDRIVER"
                )
            });
        let profile = tempfile::tempdir().unwrap();
        let mut capabilities = serde_json::Map::new();
        capabilities.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": chromium,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--window-size=1280,900", "--force-device-scale-factor=1",
                    "--hide-scrollbars", "--lang=en-US",
                    format!("--user-data-dir={}", profile.path().display()),
                ],
            }),
        );
        let url = format!("http://127.0.0.1:{port}");
        let started = Instant::now();
        let client = loop {
            let connector = hyper_util::client::legacy::connect::HttpConnector::new();
            match ClientBuilder::new(connector)
                .capabilities(capabilities.clone())
                .connect(&url)
                .await
            {
                Ok(client) => break client,
                Err(e) if started.elapsed() < Duration::from_secs(30) => {
                    tracing::debug!(error = %e, "chromedriver not up yet");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => panic!("chromedriver at {url} did not start a browser: {e}"),
            }
        };
        Browser {
            client,
            driver,
            _profile: profile,
        }
    }

    async fn stop(mut self) {
        let _ = self.client.close().await;
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// Where the screenshots go: `docs/console/` in the checkout.
fn screenshots() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/console");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

async fn screenshot(client: &Client, name: &str) {
    // No focus ring in the pictures.
    client
        .execute(
            "document.activeElement && document.activeElement.blur()",
            vec![],
        )
        .await
        .unwrap();
    let png = client.screenshot().await.unwrap();
    std::fs::write(screenshots().join(format!("{name}.png")), png).unwrap();
}

/// The text of the first element `css` selects.
async fn text(client: &Client, css: &str) -> String {
    match client.find(Locator::Css(css)).await {
        Ok(element) => element.text().await.unwrap(),
        Err(e) => {
            let url = client.current_url().await;
            panic!("no `{css}` on {url:?}: {e}")
        }
    }
}

/// Waits (without reloading) until the text of `css` satisfies `done`; answers it.
async fn wait_text(client: &Client, css: &str, done: impl Fn(&str) -> bool) -> String {
    let started = Instant::now();
    loop {
        let now = match client.find(Locator::Css(css)).await {
            Ok(element) => element.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        };
        if done(&now) {
            return now;
        }
        if started.elapsed() > Duration::from_secs(45) {
            let url = client.current_url().await;
            let page = client.source().await.unwrap_or_default();
            panic!("`{css}` still reads {now:?} on {url:?}, which shows:\n{page}");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

async fn fill(client: &Client, css: &str, value: &str) {
    let input = client.find(Locator::Css(css)).await.unwrap();
    input.clear().await.unwrap();
    input.send_keys(value).await.unwrap();
}

async fn click(client: &Client, css: &str) {
    client
        .find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("no `{css}`: {e}"))
        .click()
        .await
        .unwrap();
}

/// The engine: one transformer route to a destination that carries secrets, one signed
/// webhook, the admin API on.
async fn engine(destination: &Receiver) -> TestEngine {
    let yaml = format!(
        r#"
admin:
  token: {ADMIN}
retry:
  initialDelay: 100ms
  maxAttempts: 1
plugins:
  tax-rate-outbound:
    path: {outbound}
  tax-rate-inbound:
    path: {inbound}
    config:
      event-type: tax.rate.updated
core:
  url: {core}
destinations:
  state-api:
    url: {url}?key={QUERY_SECRET}
    headers:
      authorization: Bearer {DESTINATION_SECRET}
hmsEvents:
  - event: tax.rate.updated
    handler: tax-rate-outbound
    destination: state-api
    conflict:
      strategy: last-write-wins
externalWebhooks:
  - path: /webhook/tax-rate
    handler: tax-rate-inbound
    system: state-api
    secrets: [{WEBHOOK_SECRET}]
"#,
        outbound = component_path("tax-rate-outbound").display(),
        inbound = component_path("tax-rate-inbound").display(),
        url = destination.url("/rates"),
        core = destination.url("/hms"),
    );
    TestEngine::start(&yaml).await
}

/// A bus event about `key`.
async fn publish(engine: &TestEngine, key: &str, rate: f64, year: u16) {
    let (status, answer) = post_json(
        &engine.url("/events/tax.rate.updated"),
        &format!(r#"{{"rate": {rate}, "year": {year}}}"#),
        &[("hms-key", key)],
    )
    .await;
    assert_eq!(status, 202, "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_watches_finds_replays_and_swaps_from_a_browser() {
    if on_nats() {
        // The console reads the admin API, which the store suites cover on both backends; a
        // second browser run would show nothing new.
        return;
    }
    let destination = Receiver::start().await;
    let engine = engine(&destination).await;
    let browser = Browser::start().await;
    let c = &browser.client;

    // Logging in: the console sends a stranger to the login form, refuses a wrong token, and
    // lets the right one in, back to where it was going.
    c.goto(&engine.url("/console/overview")).await.unwrap();
    assert!(
        c.current_url()
            .await
            .unwrap()
            .path()
            .ends_with("/console/login")
    );
    fill(c, "#token", "not-the-token").await;
    click(c, "form[action='/console/login'] button").await;
    wait_text(c, "#login-error", |t| t.contains("not the admin token")).await;
    screenshot(c, "login").await;
    fill(c, "#token", ADMIN).await;
    click(c, "form[action='/console/login'] button").await;
    wait_text(c, "h1", |t| t == "Overview").await;
    assert_eq!(c.current_url().await.unwrap().path(), "/console/overview");
    let cookies = c.get_all_cookies().await.unwrap();
    let session = cookies
        .iter()
        .find(|cookie| cookie.name() == "sync_console")
        .expect("a session cookie");
    assert_eq!(session.http_only(), Some(true));
    assert_eq!(
        session.same_site().map(|s| s.to_string()).as_deref(),
        Some("Strict")
    );

    // The keyboard: the first Tab reaches the skip link, which leads into the content.
    c.execute(
        "document.activeElement && document.activeElement.blur()",
        vec![],
    )
    .await
    .unwrap();
    let body = c.find(Locator::Css("body")).await.unwrap();
    body.send_keys("\u{E004}").await.unwrap(); // Tab
    let focused = c.active_element().await.unwrap();
    assert_eq!(focused.text().await.unwrap(), "Skip to content");

    // Events arrive: the overview counts them without a reload, and nothing on it shifts.
    c.execute(
        "window.__shift = 0; new PerformanceObserver((list) => { for (const e of \
         list.getEntries()) if (!e.hadRecentInput) window.__shift += e.value; })\
         .observe({type: 'layout-shift', buffered: false});",
        vec![],
    )
    .await
    .unwrap();
    for (i, year) in (2031..2036).enumerate() {
        publish(
            &engine,
            &format!("rates-{year}"),
            0.05 + i as f64 / 100.0,
            year,
        )
        .await;
    }
    wait_text(c, "#total-accepted strong", |t| t == "5").await;
    wait_text(c, "#total-delivered strong", |t| t == "5").await;
    assert!(text(c, "#destinations").await.contains("state-api"));
    // One more refresh after the counts settle, then the shifts it caused (none).
    tokio::time::sleep(Duration::from_secs(6)).await;
    let shift = c
        .execute("return window.__shift;", vec![])
        .await
        .unwrap()
        .as_f64()
        .unwrap();
    assert!(
        shift < 0.01,
        "the overview shifted by {shift} while refreshing"
    );
    screenshot(c, "overview").await;

    // A phone's width: the page does not scroll sideways (wide tables scroll in their box).
    c.set_window_size(390, 844).await.unwrap();
    for page in ["overview", "events", "config"] {
        c.goto(&engine.url(&format!("/console/{page}")))
            .await
            .unwrap();
        let overflow = c
            .execute(
                "return document.documentElement.scrollWidth - document.documentElement.clientWidth;",
                vec![],
            )
            .await
            .unwrap()
            .as_i64()
            .unwrap();
        assert!(
            overflow <= 0,
            "/console/{page} is {overflow}px wider than a phone"
        );
        if page == "overview" {
            screenshot(c, "overview-phone").await;
        }
    }
    c.set_window_size(1280, 900).await.unwrap();

    // Find an event by its entity key; its timeline shows the run and the delivery.
    c.goto(&engine.url("/console/events")).await.unwrap();
    fill(c, "#f-key", "rates-2033").await;
    click(c, "form[role=search] button").await;
    wait_text(c, "#events caption", |t| t.ends_with("found")).await;
    let rows = c.find_all(Locator::Css("#events tbody tr")).await.unwrap();
    assert_eq!(rows.len(), 1, "{}", text(c, "#events").await);
    screenshot(c, "events").await;
    click(c, "#events tbody tr a").await;
    let history = wait_text(c, "#history", |t| t.contains("Now: done")).await;
    assert!(
        history.contains("Plugin tax-rate-outbound ran"),
        "{history}"
    );
    assert!(
        history.contains("Deliver to state-api: delivered"),
        "{history}"
    );
    assert!(history.contains("rates-2033"), "{history}");
    screenshot(c, "event").await;

    // A delivery that fails for good becomes a dead letter; replayed from the console, it
    // lands, and the page shows it land.
    destination.script([500]);
    publish(&engine, "rates-2040", 0.09, 2040).await;
    c.goto(&engine.url("/console/dead-letters")).await.unwrap();
    let started = Instant::now();
    while c
        .find_all(Locator::Css("input[name=ids]"))
        .await
        .unwrap()
        .is_empty()
    {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no dead letter"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
        c.refresh().await.unwrap();
    }
    assert!(text(c, "#dead-letters").await.contains("HTTP 500"));
    screenshot(c, "dead-letters").await;
    click(c, "input[name=ids]").await;
    click(c, "button[value=selected]").await;
    wait_text(c, "#notice", |t| t.starts_with("Replayed 1 dead letter")).await;
    wait_text(c, "#dead-letters tbody", |t| t.contains("delivered")).await;
    screenshot(c, "dead-letters-replayed").await;
    assert!(
        destination
            .received()
            .iter()
            .any(|r| r.json()["effectiveYear"] == 2040),
        "the replayed delivery reached the destination"
    );

    // Plugins: a new version that passes the fixtures goes live, with each case listed; one
    // that fails them is refused, naming the case; a rollback brings the first back.
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../plugins/tax-rate-outbound.fixtures.json")
        .canonicalize()
        .unwrap();
    c.goto(&engine.url("/console/plugins/tax-rate-outbound"))
        .await
        .unwrap();
    let first = text(c, "#active-version").await;
    let upload = |component: PathBuf, outcome: &'static str| {
        let fixtures = fixtures.clone();
        async move {
            fill(c, "#component", &component.display().to_string()).await;
            fill(c, "#fixtures", &fixtures.display().to_string()).await;
            click(c, "form.upload button").await;
            wait_text(c, "#notice", |t| t.contains(outcome)).await
        }
    };
    let good = upload(
        component_path("tax-rate-outbound-js"),
        "is now the active version",
    )
    .await;
    assert!(good.contains("passed: the seed's payload"), "{good}");
    let second = text(c, "#active-version").await;
    assert_ne!(first, second);
    let bad = upload(component_path("swap-two"), "The new version was refused").await;
    assert!(bad.contains("failed: the seed's payload"), "{bad}");
    assert_eq!(text(c, "#active-version").await, second, "still active");
    screenshot(c, "plugin-refused").await;
    // Every version is listed; the refused one was never stored.
    assert_eq!(
        c.find_all(Locator::Css("#versions tbody tr"))
            .await
            .unwrap()
            .len(),
        2
    );
    click(c, "form[action$='/rollback'] button").await;
    c.accept_alert().await.unwrap();
    wait_text(c, "#notice", |t| t.starts_with("Rolled back")).await;
    assert_eq!(text(c, "#active-version").await, first);
    screenshot(c, "plugin").await;
    // The other stored version can be made active again by hand, and, once it is not active,
    // deleted; the active one offers neither.
    let inactive = |action: &'static str| {
        format!("#versions form[action$='/{action}'] input[name=hash][value^='{second}']")
    };
    c.find(Locator::Css(&inactive("activate")))
        .await
        .expect("the inactive version can be activated");
    for active in [&second, &first] {
        // Each notice names the version it made active, so the wait sees the new page.
        click(c, "#versions form[action$='/activate'] button").await;
        let activated = format!("Activated: {active} is now the active version");
        wait_text(c, "#notice", |t| t.starts_with(&activated)).await;
        assert_eq!(&text(c, "#active-version").await, active);
    }
    click(c, "#versions form[action$='/delete'] button").await;
    c.accept_alert().await.unwrap();
    wait_text(c, "#notice", |t| t.starts_with("Deleted version")).await;
    assert_eq!(
        c.find_all(Locator::Css("#versions tbody tr"))
            .await
            .unwrap()
            .len(),
        1
    );
    assert!(
        c.find_all(Locator::Css("#versions form"))
            .await
            .unwrap()
            .is_empty(),
        "the active version cannot be activated or deleted"
    );
    // Before shipping: a dry run of a candidate on the stored events, then it as a shadow and
    // as a canary beside the active version.
    let candidate = component_path("tax-rate-rounded").display().to_string();
    fill(c, "#candidate", &candidate).await;
    click(c, "#rollout-form button[formaction$='/try']").await;
    let summary = wait_text(c, "#trial-summary", |t| t.contains("stored event")).await;
    // Six stored events (one a dead letter); a rate such as 0.06999999999999999 is rounded.
    assert!(summary.starts_with("On 6 stored events"), "{summary}");
    assert!(summary.contains(" 0 failed"), "{summary}");
    assert!(summary.contains("Nothing was delivered"), "{summary}");
    screenshot(c, "trial").await;
    c.goto(&engine.url("/console/plugins/tax-rate-outbound"))
        .await
        .unwrap();
    fill(c, "#candidate", &candidate).await;
    click(c, "#rollout-form button[formaction$='/shadow']").await;
    wait_text(c, "#notice", |t| t.starts_with("Shadow ")).await;
    assert!(text(c, "#shadow").await.contains("running"));
    fill(c, "#candidate", &candidate).await;
    fill(c, "#percent", "20").await;
    click(c, "#rollout-form button[formaction$='/canary']").await;
    wait_text(c, "#notice", |t| t.starts_with("Canary ")).await;
    assert!(text(c, "#canary").await.contains("On 20% of keys"));
    c.execute(
        "document.getElementById('rollout-title').scrollIntoView()",
        vec![],
    )
    .await
    .unwrap();
    screenshot(c, "plugin-rollout").await;
    click(c, "form[action$='/canary-stop'] button").await;
    wait_text(c, "#notice", |t| t.starts_with("The canary stopped")).await;
    assert!(text(c, "#canary").await.contains("stopped"));
    click(c, "form[action$='/shadow-stop'] button").await;
    wait_text(c, "#notice", |t| t.starts_with("The shadow stopped")).await;
    assert!(
        c.find(Locator::Css("#shadow")).await.is_err(),
        "no shadow runs"
    );
    c.goto(&engine.url("/console/plugins")).await.unwrap();
    screenshot(c, "plugins").await;

    // The configuration: every route as a diagram, no secret anywhere on the page.
    c.goto(&engine.url("/console/config")).await.unwrap();
    let routes = text(c, "#routes").await;
    assert!(routes.contains("tax.rate.updated"), "{routes}");
    assert!(routes.contains("/webhook/tax-rate"), "{routes}");
    assert!(routes.contains("conflict: last-write-wins"), "{routes}");
    let source = c.source().await.unwrap();
    for secret in [ADMIN, DESTINATION_SECRET, QUERY_SECRET, WEBHOOK_SECRET] {
        assert!(
            !source.contains(secret),
            "the configuration page shows {secret}"
        );
    }
    assert!(source.contains("key=***"), "the URL's query is masked");
    screenshot(c, "config").await;

    // Logging out ends the session: the console asks for the token again.
    click(c, "form.logout button").await;
    wait_text(c, "main", |t| t.contains("You are logged out")).await;
    c.goto(&engine.url("/console/events")).await.unwrap();
    assert!(
        c.current_url()
            .await
            .unwrap()
            .path()
            .ends_with("/console/login")
    );

    browser.stop().await;
    engine.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_forms_refuse_other_sites_and_the_cookie_alone() {
    if on_nats() {
        return;
    }
    let destination = Receiver::start().await;
    let engine = engine(&destination).await;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    // Without a session a page sends the browser to log in and come back; a form goes back
    // to the overview, its action not done.
    let page = http
        .get(engine.url("/console/events?key=k"))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 303);
    assert_eq!(
        page.headers()["location"],
        "/console/login?next=%2Fconsole%2Fevents%3Fkey%3Dk"
    );
    let form = http
        .post(engine.url("/console/dead-letters/replay"))
        .form(&[("scope", "matching")])
        .send()
        .await
        .unwrap();
    assert_eq!(form.status(), 303);
    assert_eq!(
        form.headers()["location"],
        "/console/login?next=%2Fconsole%2Foverview"
    );
    // Behind a TLS proxy the cookie is Secure.
    let login = http
        .post(engine.url("/console/login"))
        .header("x-forwarded-proto", "https")
        .form(&[("token", ADMIN), ("next", "/console/plugins")])
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), 303);
    assert_eq!(login.headers()["location"], "/console/plugins");
    let set_cookie = login.headers()["set-cookie"].to_str().unwrap().to_owned();
    for attribute in ["HttpOnly", "SameSite=Strict", "Secure", "Path=/"] {
        assert!(set_cookie.contains(attribute), "{set_cookie}");
    }
    let cookie = set_cookie.split(';').next().unwrap().to_owned();

    // The session reads the admin API…
    let overview = http
        .get(engine.url("/admin/overview"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(overview.status(), 200);
    let overview: serde_json::Value = overview.json().await.unwrap();
    assert_eq!(overview["minutes"].as_array().unwrap().len(), 60);
    // …but changes nothing without its CSRF token, there or in the console.
    let replay = http
        .post(engine.url("/admin/dead-letters/replay"))
        .header("cookie", &cookie)
        .json(&json!({"all": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(replay.status(), 403);
    // A rollback posted with the session cookie, a CSRF token and an origin (if any).
    let rollback = |csrf: String, origin: Option<&'static str>| {
        let mut request = http
            .post(engine.url("/console/plugins/tax-rate-outbound/rollback"))
            .header("cookie", &cookie)
            .form(&[("csrf", csrf)]);
        if let Some(origin) = origin {
            request = request.header("origin", origin);
        }
        async move { request.send().await.unwrap().status() }
    };
    let plugin_page = || async {
        http.get(engine.url("/console/plugins/tax-rate-outbound"))
            .header("cookie", &cookie)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    };
    assert_eq!(rollback("guessed".into(), None).await, 403);
    // The right token from another site is refused too.
    let page = plugin_page().await;
    let csrf = page
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("a CSRF field")
        .to_owned();
    assert_eq!(
        rollback(csrf.clone(), Some("https://attacker.example")).await,
        403
    );
    // From the console itself, the action runs (and is refused for its own reason: there is
    // nothing to roll back to), and says so on the next page.
    assert_eq!(rollback(csrf, None).await, 303);
    let next = plugin_page().await;
    assert!(next.contains("Nothing was rolled back."), "{next}");
    // The assets are the engine's own, and pages keep scripts to them.
    let css = http
        .get(engine.url("/console/assets/vendor/uplot/LICENSE"))
        .send()
        .await
        .unwrap();
    assert_eq!(css.status(), 200);
    assert!(css.text().await.unwrap().contains("MIT"));
    let headers = http
        .get(engine.url("/console/login"))
        .send()
        .await
        .unwrap()
        .headers()
        .clone();
    assert!(
        headers["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("script-src 'self'")
    );
    engine.stop().await;
}
