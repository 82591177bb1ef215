//! A service's request counts and latency histogram, answered in Prometheus's text format on the container's `triage.io/metrics-listen` address.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// The histogram's upper bounds, seconds (from half a millisecond to ten seconds).
const BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// What a serving container counts, from any of its threads.
#[derive(Debug, Default)]
pub struct RequestMetrics {
    served: AtomicU64,
    failed: AtomicU64,
    overloaded: AtomicU64,
    /// Requests the guest handled (served or failed), per bucket: not cumulative here.
    buckets: [AtomicU64; BUCKETS.len()],
    /// Those slower than the last bound.
    beyond: AtomicU64,
    sum_nanos: AtomicU64,
}

/// How a request the guest handled ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handled {
    /// It answered.
    Served,
    /// It trapped or set no response (the host answered 500).
    Failed,
}

impl RequestMetrics {
    /// A request the guest handled in `took`.
    pub fn handled(&self, outcome: Handled, took: Duration) {
        match outcome {
            Handled::Served => &self.served,
            Handled::Failed => &self.failed,
        }
        .fetch_add(1, Ordering::Relaxed);
        let seconds = took.as_secs_f64();
        match BUCKETS.iter().position(|bound| seconds <= *bound) {
            Some(bucket) => self.buckets[bucket].fetch_add(1, Ordering::Relaxed),
            None => self.beyond.fetch_add(1, Ordering::Relaxed),
        };
        self.sum_nanos.fetch_add(
            u64::try_from(took.as_nanos()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }

    /// A request answered `503` at the container's bound, without the guest.
    pub fn overloaded(&self) {
        self.overloaded.fetch_add(1, Ordering::Relaxed);
    }

    /// (served, overloaded, failed) so far.
    pub fn counts(&self) -> (u64, u64, u64) {
        (
            self.served.load(Ordering::Relaxed),
            self.overloaded.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
        )
    }

    /// The metrics of container `id`, with `in_flight` requests now, in Prometheus's text
    /// exposition format (version 0.0.4).
    pub fn render(&self, id: &str, in_flight: usize) -> String {
        let label = format!("container=\"{}\"", escape(id));
        let (served, overloaded, failed) = self.counts();
        let mut text = String::new();
        let _ = writeln!(
            text,
            "# HELP triage_http_requests_total Requests to the service, by how they ended: served by the guest, failed in the guest (500), refused at the container's bound (503).\n# TYPE triage_http_requests_total counter"
        );
        for (outcome, count) in [
            ("served", served),
            ("failed", failed),
            ("overloaded", overloaded),
        ] {
            let _ = writeln!(
                text,
                "triage_http_requests_total{{{label},outcome=\"{outcome}\"}} {count}"
            );
        }
        let _ = writeln!(
            text,
            "# HELP triage_http_requests_in_flight Requests the guest is handling now.\n# TYPE triage_http_requests_in_flight gauge\ntriage_http_requests_in_flight{{{label}}} {in_flight}"
        );
        let _ = writeln!(
            text,
            "# HELP triage_http_request_duration_seconds Time from a request's admission to the guest's response head (a fresh instance included).\n# TYPE triage_http_request_duration_seconds histogram"
        );
        let mut cumulative = 0;
        for (bound, count) in BUCKETS.iter().zip(&self.buckets) {
            cumulative += count.load(Ordering::Relaxed);
            let _ = writeln!(
                text,
                "triage_http_request_duration_seconds_bucket{{{label},le=\"{bound}\"}} {cumulative}"
            );
        }
        cumulative += self.beyond.load(Ordering::Relaxed);
        let sum = self.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
        let _ = writeln!(
            text,
            "triage_http_request_duration_seconds_bucket{{{label},le=\"+Inf\"}} {cumulative}\ntriage_http_request_duration_seconds_sum{{{label}}} {sum}\ntriage_http_request_duration_seconds_count{{{label}}} {cumulative}"
        );
        text
    }
}

/// A label value as the text format writes it.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_a_cumulative_histogram_in_the_text_format() {
        let metrics = RequestMetrics::default();
        metrics.handled(Handled::Served, Duration::from_micros(300));
        metrics.handled(Handled::Served, Duration::from_millis(3));
        metrics.handled(Handled::Failed, Duration::from_secs(20));
        metrics.overloaded();
        let text = metrics.render("svc\"1", 2);
        for line in [
            "triage_http_requests_total{container=\"svc\\\"1\",outcome=\"served\"} 2",
            "triage_http_requests_total{container=\"svc\\\"1\",outcome=\"failed\"} 1",
            "triage_http_requests_total{container=\"svc\\\"1\",outcome=\"overloaded\"} 1",
            "triage_http_requests_in_flight{container=\"svc\\\"1\"} 2",
            "triage_http_request_duration_seconds_bucket{container=\"svc\\\"1\",le=\"0.0005\"} 1",
            "triage_http_request_duration_seconds_bucket{container=\"svc\\\"1\",le=\"0.0025\"} 1",
            "triage_http_request_duration_seconds_bucket{container=\"svc\\\"1\",le=\"0.005\"} 2",
            "triage_http_request_duration_seconds_bucket{container=\"svc\\\"1\",le=\"10\"} 2",
            "triage_http_request_duration_seconds_bucket{container=\"svc\\\"1\",le=\"+Inf\"} 3",
            "triage_http_request_duration_seconds_count{container=\"svc\\\"1\"} 3",
            "triage_http_request_duration_seconds_sum{container=\"svc\\\"1\"} 20.0033",
        ] {
            assert!(text.lines().any(|l| l == line), "no {line:?} in:\n{text}");
        }
    }
}
