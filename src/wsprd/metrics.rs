//! `GET /metrics`: the daemon's state in the OpenMetrics text format (the
//! text format Prometheus scrapes), made with `prometheus-client`.
//!
//! Two kinds of figures:
//! - what `/health` reports (pipes, servers, flows, threads, workers,
//!   pipes opened, errors, limits reached), read from the daemon's own
//!   counters at each scrape: one source for both pages, and a figure
//!   added to `/health` shows up here too;
//! - JavaScript's calls, counted here as they end: by outcome, and their
//!   durations in a histogram. At `debug` each call also logs one line.

use std::time::Instant;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};
use serde_json::Value;

use crate::error::{Error, ids};

/// The media type of the exposition.
pub(crate) const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// A call's outcome as a label: one of a fixed set, so that a peer's
/// error ids cannot grow the label values without bound.
type Outcome = [(&'static str, &'static str); 1];

/// JavaScript's calls that have ended.
pub(crate) struct CallMetrics {
    calls: Family<Outcome, Counter>,
    /// Seconds from the call's arrival to its end.
    duration: Histogram,
}

impl Default for CallMetrics {
    fn default() -> Self {
        CallMetrics {
            calls: Family::default(),
            // 100 µs to about 18 s, each bucket 3 times the one before.
            duration: Histogram::new(exponential_buckets(0.0001, 3.0, 12)),
        }
    }
}

/// The label value of an outcome: `ok`, the name of one of the
/// contract's ids, or `application` for an id of the application's own.
fn outcome(err: Option<&Error>) -> &'static str {
    let Some(e) = err else { return "ok" };
    match e.id() {
        ids::ABORTED => "Aborted",
        ids::BAD_ARG => "BadArg",
        ids::BAD_PROTOCOL => "BadProtocol",
        ids::EXISTS => "Exists",
        ids::INTERNAL => "Internal",
        ids::NO_ACCESS => "NoAccess",
        ids::NO_EXIST => "NoExist",
        ids::TIMEOUT => "Timeout",
        ids::UNKNOWN => "Unknown",
        _ => "application",
    }
}

impl CallMetrics {
    /// A call of JavaScript's has ended (`err`: how it failed). `what` is
    /// `name.method` when debug logging is on (see [`call_label`]).
    pub(crate) fn ended(
        &self,
        pipe: u64,
        what: Option<&str>,
        started: Instant,
        err: Option<&Error>,
    ) {
        let took = started.elapsed();
        self.calls.get_or_create(&[("outcome", outcome(err))]).inc();
        self.duration.observe(took.as_secs_f64());
        if let Some(what) = what {
            log::debug!(
                "pipe {pipe}: call {what}: {} in {:.1} ms",
                err.map_or("ok", Error::id),
                took.as_secs_f64() * 1000.0
            );
        }
    }
}

/// `name.method` for the call's log line, made only when debug logging is
/// on (nothing is kept per call otherwise).
pub(crate) fn call_label(name: &str, method: &str) -> Option<String> {
    log::log_enabled!(log::Level::Debug).then(|| format!("{name}.{method}"))
}

/// `pipesOpened` as `pipes_opened`.
fn snake(key: &str) -> String {
    let mut out = String::with_capacity(key.len() + 4);
    for c in key.chars() {
        if c.is_ascii_uppercase() {
            out.push('_');
            out.push(c.to_ascii_lowercase());
        } else if c.is_ascii_alphanumeric() {
            out.push(c);
        } else {
            out.push('_');
        }
    }
    out
}

/// The exposition: `health` (what `/health` answers) and the call figures.
pub(crate) fn render(health: &Value, calls: &CallMetrics) -> String {
    let mut reg = Registry::with_prefix("wsprd");
    let fields = health.as_object().cloned().unwrap_or_default();
    for (key, value) in &fields {
        match (key.as_str(), value) {
            ("pipes", Value::Number(n)) => reg.register(
                "pipes",
                "Open pipes (websocket connections)",
                ConstGauge::new(n.as_i64().unwrap_or(0)),
            ),
            ("servers", Value::Number(n)) => reg.register(
                "servers",
                "Servers whose objects live in JavaScript",
                ConstGauge::new(n.as_i64().unwrap_or(0)),
            ),
            ("flows", Value::Number(n)) => reg.register(
                "flows",
                "Flows in flight on every pipe (calls, requests, lookups)",
                ConstGauge::new(n.as_i64().unwrap_or(0)),
            ),
            ("threads", Value::Number(n)) => reg.register(
                "threads",
                "Threads of the process",
                ConstGauge::new(n.as_i64().unwrap_or(0)),
            ),
            ("workers", Value::Number(n)) => reg.register(
                "workers",
                "Worker threads running JavaScript's requests",
                ConstGauge::new(n.as_i64().unwrap_or(0)),
            ),
            ("pipesOpened", Value::Number(n)) => reg.register(
                "pipes_opened",
                "Pipes opened since the daemon started",
                ConstCounter::new(n.as_u64().unwrap_or(0)),
            ),
            ("errors", Value::Number(n)) => reg.register(
                "errors",
                "Errors answered to JavaScript",
                ConstCounter::new(n.as_u64().unwrap_or(0)),
            ),
            ("limitsReached", Value::Object(limits)) => {
                let family = Family::<[(&'static str, String); 1], Counter>::default();
                for (limit, n) in limits {
                    family
                        .get_or_create(&[("limit", limit.clone())])
                        .inc_by(n.as_u64().unwrap_or(0));
                }
                reg.register(
                    "limits_reached",
                    "Times a limit was reached (a request refused, a pipe closed), by limit",
                    family,
                );
            }
            ("settingUp", Value::Object(listeners)) => {
                let family = Family::<[(&'static str, String); 1], Gauge>::default();
                for (listener, n) in listeners {
                    family
                        .get_or_create(&[("listener", listener.clone())])
                        .set(n.as_i64().unwrap_or(0));
                }
                reg.register(
                    "setting_up",
                    "Connections not yet through their HTTP request or RPC handshake, by listener",
                    family,
                );
            }
            // Any other figure of /health, as it is.
            (key, Value::Number(n)) => {
                let help = format!("The /health figure {key}");
                match n.as_i64() {
                    Some(i) => reg.register(snake(key), help, ConstGauge::new(i)),
                    None => {
                        reg.register(snake(key), help, ConstGauge::new(n.as_f64().unwrap_or(0.0)))
                    }
                }
            }
            _ => {}
        }
    }
    reg.register(
        "calls",
        "Calls of JavaScript's that have ended, by outcome: ok, the name of the error id, or application (an id of the application's own)",
        calls.calls.clone(),
    );
    reg.register_with_unit(
        "call_duration",
        "Time from a call's arrival to its end",
        Unit::Seconds,
        calls.duration.clone(),
    );
    let mut out = String::new();
    // (Writing to a String cannot fail.)
    let _ = encode(&mut out, &reg);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn health_and_calls_in_the_exposition() {
        let calls = CallMetrics::default();
        let t = Instant::now();
        calls.ended(1, None, t, None);
        calls.ended(1, None, t, Some(&Error::no_exist("x")));
        calls.ended(1, None, t, Some(&Error::new("app.Mine", "y")));
        let health = json!({
            "namespaceRoots": ["/x"], "pipes": 2, "servers": 1, "flows": 3,
            "threads": 9, "workers": 1, "pipesOpened": 5, "errors": 4,
            "limitsReached": {"flowsPerPipe": 7, "pipes": 0},
            "hostsRefused": 6,
        });
        let text = render(&health, &calls);
        for line in [
            "# TYPE wsprd_pipes gauge",
            "wsprd_pipes 2",
            "wsprd_pipes_opened_total 5",
            "wsprd_errors_total 4",
            "wsprd_limits_reached_total{limit=\"flowsPerPipe\"} 7",
            "wsprd_limits_reached_total{limit=\"pipes\"} 0",
            "wsprd_hosts_refused 6",
            "wsprd_calls_total{outcome=\"ok\"} 1",
            "wsprd_calls_total{outcome=\"NoExist\"} 1",
            "wsprd_calls_total{outcome=\"application\"} 1",
            "# TYPE wsprd_call_duration_seconds histogram",
            "wsprd_call_duration_seconds_count 3",
            "# EOF",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "{line:?} missing from:\n{text}"
            );
        }
        assert!(!text.contains("namespace"), "strings are not figures");
    }
}
