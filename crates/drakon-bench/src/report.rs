//! What a scenario found, in three forms: a table on the terminal, JSON in a file, and an SVG chart.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use hdrhistogram::Histogram;
use serde::Serialize;

use crate::steer::ReceiveSteering;
use crate::svg::{self, Chart, Scale, Series};

/// Latency summary in microseconds, with the percentile curve the chart draws.
#[derive(Debug, Clone, Serialize, Default)]
pub struct Latency {
    pub count: u64,
    pub min_us: u64,
    pub mean_us: f64,
    pub p50_us: u64,
    pub p90_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    pub max_us: u64,
    /// (percentile, microseconds) pairs from 0 to 100.
    pub percentiles: Vec<(f64, u64)>,
}

impl Latency {
    pub fn of(h: &Histogram<u64>) -> Option<Latency> {
        if h.is_empty() {
            return None;
        }
        let q = |p: f64| h.value_at_quantile(p);
        let mut percentiles: Vec<(f64, u64)> = h
            .iter_quantiles(2)
            .map(|v| (v.quantile_iterated_to() * 100.0, v.value_iterated_to()))
            .filter(|(p, _)| *p <= 99.9999)
            .collect();
        percentiles.dedup_by(|a, b| (a.0 - b.0).abs() < 1e-9);
        percentiles.push((100.0, h.max()));
        Some(Latency {
            count: h.len(),
            min_us: h.min(),
            mean_us: h.mean(),
            p50_us: q(0.5),
            p90_us: q(0.9),
            p99_us: q(0.99),
            p999_us: q(0.999),
            max_us: h.max(),
            percentiles,
        })
    }
}

/// One measured configuration against one server.
#[derive(Debug, Clone, Serialize, Default)]
pub struct Step {
    /// `drakon`, `node-ws` or `floor`.
    pub target: String,
    /// drakon nodes behind one Redis (`nodes` scenario).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nodes: Option<usize>,
    /// Connections asked for.
    pub connections: usize,
    pub connected: usize,
    pub failed_connections: usize,
    /// Subscriptions held over all connections (not counting writers).
    pub subscriptions: usize,
    /// Seconds from starting the workers to the last connection subscribed.
    pub connect_secs: f64,
    /// Handshake + subscribe rate over the connecting phase.
    pub connects_per_sec: f64,
    /// Connect → every subscribe answered, per connection.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connect_latency: Option<Latency>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub filters: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration_secs: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rss_before_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rss_after_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rss_per_connection_bytes: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub published: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub publish_failed: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub writes_ok: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub writes_failed: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub writes_per_sec: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expected: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delivered: Option<u64>,
    /// Every frame the connections received, stamped or not (`presence`: what a join costs in messages).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub frames: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub losses: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub closed_connections: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deliveries_per_sec: Option<f64>,
    /// Send → receive, for deliveries.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency: Option<Latency>,
    /// Request → reply, for writes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reply_latency: Option<Latency>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_cpu_secs: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub generator_cpu_secs: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_cpu_us_per_delivery: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub generator_cpu_us_per_delivery: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_cpu_us_per_write: Option<f64>,
    /// CPU used by everything else on the machine during the measured window (machine busy time minus server and
    /// generator): anything well above zero means other work shared the cores, and the figures are disturbed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub other_cpu_secs: Option<f64>,
    /// Connections the kernel dropped while connecting because the server's accept queue was full
    /// (`ListenOverflows`, machine-wide); each such client waits a second before it retries.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen_overflows: Option<u64>,
    /// Packets dropped at a full receive backlog during the measured window (machine-wide, `/proc/net/softnet_stat`);
    /// each is retransmitted by TCP at least 200 ms later.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backlog_drops: Option<u64>,
    /// Server CPU spent accepting, upgrading and subscribing, per connection.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_cpu_us_per_connection: Option<f64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

/// One figure of drakon next to the Node baseline's and the floor's of the same step, measured back to back.
#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    pub metric: String,
    pub connections: usize,
    pub drakon: f64,
    /// The Node baseline's figure.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub baseline: Option<f64>,
    /// drakon ÷ baseline.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ratio: Option<f64>,
    /// The floor's figure.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub floor: Option<f64>,
    /// drakon ÷ floor.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub floor_ratio: Option<f64>,
    /// Whether a lower or a higher figure is the better one.
    pub better: &'static str,
}

#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    pub cpus: usize,
    pub open_files_limit: u64,
    pub server_core: Option<usize>,
    pub generator_core: Option<usize>,
    pub pinned_with: Option<&'static str>,
    /// Whether loopback's receive processing ran on the generator's core (`--steer-receive`).
    pub receive_steering: ReceiveSteering,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub scenario: String,
    /// The command that reproduces this report.
    pub command: String,
    pub unix_time: u64,
    pub machine: Machine,
    pub settings: serde_json::Value,
    pub steps: Vec<Step>,
    pub comparison: Vec<Comparison>,
}

/// A compared figure: its name, whether lower or higher is better, and how to read it from a step.
pub type Metric<'a> = (&'a str, &'static str, fn(&Step) -> Option<f64>);

/// Pairs each drakon step with the baseline's and the floor's steps of the same size and rate, and compares
/// `metrics`.
pub fn compare(steps: &[Step], metrics: &[Metric<'_>]) -> Vec<Comparison> {
    let mut out = Vec::new();
    for d in steps.iter().filter(|s| s.target == "drakon") {
        let peer = |target: &str| {
            steps.iter().find(|s| s.target == target && s.connections == d.connections && s.rate == d.rate)
        };
        let (baseline, floor) = (peer("node-ws"), peer("floor"));
        for (metric, better, get) in metrics {
            let Some(dv) = get(d) else { continue };
            let (bv, fv) = (baseline.and_then(get), floor.and_then(get));
            if bv.is_none() && fv.is_none() {
                continue;
            }
            let ratio = |other: f64| if other == 0.0 { f64::NAN } else { dv / other };
            out.push(Comparison {
                metric: (*metric).to_owned(),
                connections: d.connections,
                drakon: dv,
                baseline: bv,
                ratio: bv.map(ratio),
                floor: fv,
                floor_ratio: fv.map(ratio),
                better,
            });
        }
    }
    out
}

/// A plain text table.
#[derive(Debug, Default)]
pub struct Table {
    pub title: String,
    pub headers: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(title: impl Into<String>, headers: &[&str]) -> Table {
        Table { title: title.into(), headers: headers.iter().map(|h| (*h).to_owned()).collect(), rows: Vec::new() }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    pub fn render(&self) -> String {
        let cols = self.headers.len();
        let mut width = vec![0; cols];
        for row in std::iter::once(&self.headers).chain(&self.rows) {
            for (i, cell) in row.iter().enumerate().take(cols) {
                width[i] = width[i].max(cell.chars().count());
            }
        }
        let line = |row: &[String]| {
            row.iter()
                .enumerate()
                .map(|(i, c)| if i == 0 { format!("{c:<w$}", w = width[i]) } else { format!("{c:>w$}", w = width[i]) })
                .collect::<Vec<_>>()
                .join("  ")
        };
        let mut out = format!("\n{}\n", self.title);
        out.push_str(&line(&self.headers));
        out.push('\n');
        out.push_str(&width.iter().map(|w| "-".repeat(*w)).collect::<Vec<_>>().join("  "));
        out.push('\n');
        for row in &self.rows {
            out.push_str(&line(row));
            out.push('\n');
        }
        out
    }
}

/// A figure with a unit, or "—" when it was not measured.
pub fn fmt(v: Option<f64>, decimals: usize) -> String {
    v.map_or_else(|| "—".to_owned(), |v| format!("{v:.decimals$}"))
}

pub fn ms(us: Option<u64>) -> String {
    us.map_or_else(|| "—".to_owned(), |us| format!("{:.2}", us as f64 / 1000.0))
}

/// drakon's figures next to the others', with a column pair (figure, drakon ÷ figure) for each server that ran.
pub fn comparison_table(comparison: &[Comparison]) -> Table {
    let with_baseline = comparison.iter().any(|c| c.baseline.is_some());
    let with_floor = comparison.iter().any(|c| c.floor.is_some());
    let mut headers = vec!["metric", "conns", "drakon"];
    let mut others = Vec::new();
    if with_baseline {
        headers.extend(["node-ws", "÷ node-ws"]);
        others.push("the Node ws baseline");
    }
    if with_floor {
        headers.extend(["floor", "÷ floor"]);
        others.push("the floor");
    }
    headers.push("better");
    let mut t = Table::new(format!("drakon next to {} (÷ = drakon's figure ÷ theirs)", others.join(" and ")), &headers);
    for c in comparison {
        let mut row = vec![c.metric.clone(), c.connections.to_string(), format!("{:.2}", c.drakon)];
        if with_baseline {
            row.extend([fmt(c.baseline, 2), fmt(c.ratio, 2)]);
        }
        if with_floor {
            row.extend([fmt(c.floor, 2), fmt(c.floor_ratio, 2)]);
        }
        row.push(c.better.to_owned());
        t.row(row);
    }
    t
}

/// The latency-distribution chart: one curve per step, percentile (in nines) against milliseconds.
pub fn latency_chart(title: &str, steps: &[Step], label: impl Fn(&Step) -> String) -> Chart {
    Chart {
        title: title.to_owned(),
        x_label: "percentile".into(),
        y_label: "latency (ms, log)".into(),
        x_scale: Scale::Linear,
        y_scale: Scale::Log,
        x_ticks: Some(svg::percentile_ticks()),
        series: steps
            .iter()
            .filter_map(|s| {
                let l = s.latency.as_ref()?;
                Some(Series {
                    name: label(s),
                    points: l.percentiles.iter().map(|&(p, us)| (svg::nines(p), us as f64 / 1000.0)).collect(),
                })
            })
            .collect(),
    }
}

/// `y(step)` against `x(step)`, one series per distinct `series(step)` (the target, say).
#[allow(clippy::too_many_arguments, reason = "a chart is its labels, its data and its scale")]
pub fn per_target_chart(
    title: &str,
    x_label: &str,
    y_label: &str,
    steps: &[Step],
    series_of: impl Fn(&Step) -> String,
    x: impl Fn(&Step) -> f64,
    y: impl Fn(&Step) -> Option<f64>,
    x_scale: Scale,
) -> Chart {
    let mut series: Vec<Series> = Vec::new();
    for s in steps {
        let Some(v) = y(s) else { continue };
        let name = series_of(s);
        match series.iter_mut().find(|se| se.name == name) {
            Some(se) => se.points.push((x(s), v)),
            None => series.push(Series { name, points: vec![(x(s), v)] }),
        }
    }
    Chart {
        title: title.to_owned(),
        x_label: x_label.to_owned(),
        y_label: y_label.to_owned(),
        x_scale,
        y_scale: Scale::Linear,
        x_ticks: None,
        series,
    }
}

/// Writes `<dir>/<stem>.json` and `<dir>/<stem>.svg`; returns their paths.
pub fn write(dir: &Path, stem: &str, report: &Report, svg: &str) -> Result<(PathBuf, PathBuf)> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let json = dir.join(format!("{stem}.json"));
    let chart = dir.join(format!("{stem}.svg"));
    std::fs::write(&json, serde_json::to_string_pretty(report)? + "\n")
        .with_context(|| format!("writing {}", json.display()))?;
    std::fs::write(&chart, svg).with_context(|| format!("writing {}", chart.display()))?;
    Ok((json, chart))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::worker::new_histogram;

    #[test]
    fn latency_summary_of_a_known_histogram() {
        let mut h = new_histogram();
        for v in 1..=1000u64 {
            h.record(v).unwrap();
        }
        let l = Latency::of(&h).unwrap();
        assert_eq!(l.count, 1000);
        assert_eq!(l.p50_us, 500);
        assert_eq!(l.p99_us, 990);
        assert_eq!(l.max_us, 1000);
        assert_eq!(l.percentiles.last(), Some(&(100.0, 1000)));
        assert!(l.percentiles.windows(2).all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1));
        assert!(Latency::of(&new_histogram()).is_none());
    }

    #[test]
    fn compares_steps_of_the_same_size() {
        let step = |target: &str, connections, kib| Step {
            target: target.into(),
            connections,
            rss_per_connection_bytes: Some(kib * 1024.0),
            ..Step::default()
        };
        let steps = [
            step("drakon", 10, 2.0),
            step("node-ws", 10, 8.0),
            step("floor", 10, 1.0),
            step("drakon", 20, 2.0),
            step("floor", 20, 0.5),
            step("drakon", 30, 2.0),
            step("node-ws", 40, 8.0),
        ];
        let c = compare(&steps, &[("KiB per connection", "lower", |s| s.rss_per_connection_bytes.map(|b| b / 1024.0))]);
        assert_eq!(c.len(), 2, "size 30 has no other server, size 40 no drakon: {c:?}");
        assert_eq!(c[0].connections, 10);
        assert!((c[0].ratio.unwrap() - 0.25).abs() < 1e-9);
        assert!((c[0].floor_ratio.unwrap() - 2.0).abs() < 1e-9);
        assert_eq!((c[1].connections, c[1].baseline, c[1].ratio), (20, None, None));
        assert!((c[1].floor_ratio.unwrap() - 4.0).abs() < 1e-9);

        let table = comparison_table(&c).render();
        assert!(table.contains("drakon next to the Node ws baseline and the floor"), "{table}");
        assert!(table.contains("÷ node-ws") && table.contains("÷ floor"), "{table}");
        let floor_only = comparison_table(&c[1..]).render();
        assert!(!floor_only.contains("node-ws"), "no baseline column without a baseline: {floor_only}");
    }

    #[test]
    fn tables_align() {
        let mut t = Table::new("t", &["a", "bbb"]);
        t.row(vec!["long".into(), "1".into()]);
        let text = t.render();
        assert!(text.contains("a     bbb\n"), "{text}");
        assert!(text.contains("long    1\n"), "{text}");
    }
}
