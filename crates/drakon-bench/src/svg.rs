//! Line charts as standalone SVG files, written by hand: a handful of axes, polylines and labels is all a report
//! needs, and a person opens the file in any browser.

use std::fmt::Write;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scale {
    Linear,
    Log,
}

#[derive(Debug, Clone)]
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
}

#[derive(Debug, Clone)]
pub struct Chart {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub x_scale: Scale,
    pub y_scale: Scale,
    /// Fixed x ticks with their labels; otherwise ticks are chosen from the data.
    pub x_ticks: Option<Vec<(f64, String)>>,
    pub series: Vec<Series>,
}

const COLORS: [&str; 8] = ["#d9480f", "#1c7ed6", "#2b8a3e", "#862e9c", "#e67700", "#0b7285", "#c2255c", "#5f3dc4"];
const W: f64 = 560.0;
const H: f64 = 340.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 20.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 50.0;

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// A compact number for tick labels: 1500 → "1.5k", 0.25 → "0.25".
pub fn short(v: f64) -> String {
    let a = v.abs();
    let (n, suffix) = if a >= 1e6 {
        (v / 1e6, "M")
    } else if a >= 1e3 {
        (v / 1e3, "k")
    } else {
        (v, "")
    };
    let s = if n.fract().abs() < 1e-9 {
        format!("{n:.0}")
    } else if n.abs() >= 10.0 {
        format!("{n:.1}")
    } else {
        format!("{n:.2}")
    };
    let s = if s.contains('.') { s.trim_end_matches('0').trim_end_matches('.').to_owned() } else { s };
    format!("{s}{suffix}")
}

struct Axis {
    scale: Scale,
    lo: f64,
    hi: f64,
}

impl Axis {
    fn new(scale: Scale, values: impl Iterator<Item = f64>) -> Axis {
        let values: Vec<f64> = values.filter(|v| v.is_finite() && (scale == Scale::Linear || *v > 0.0)).collect();
        let (mut lo, mut hi) = values.iter().fold((f64::MAX, f64::MIN), |(lo, hi), &v| (lo.min(v), hi.max(v)));
        if values.is_empty() {
            (lo, hi) = (1.0, 10.0);
        }
        match scale {
            Scale::Log => {
                lo = 10f64.powf(lo.log10().floor());
                hi = 10f64.powf(hi.log10().ceil());
                if hi <= lo {
                    hi = lo * 10.0;
                }
            }
            Scale::Linear => {
                lo = lo.min(0.0);
                if hi <= lo {
                    hi = lo + 1.0;
                }
                hi *= 1.08;
            }
        }
        Axis { scale, lo, hi }
    }

    fn frac(&self, v: f64) -> f64 {
        match self.scale {
            Scale::Linear => (v - self.lo) / (self.hi - self.lo),
            Scale::Log => (v.max(self.lo).log10() - self.lo.log10()) / (self.hi.log10() - self.lo.log10()),
        }
    }

    fn ticks(&self) -> Vec<(f64, String)> {
        match self.scale {
            Scale::Log => {
                let mut out = Vec::new();
                let mut v = self.lo;
                while v <= self.hi * 1.0001 {
                    out.push((v, short(v)));
                    v *= 10.0;
                }
                out
            }
            Scale::Linear => {
                let span = self.hi - self.lo;
                let raw = span / 5.0;
                let mag = 10f64.powf(raw.log10().floor());
                let step = [1.0, 2.0, 2.5, 5.0, 10.0].iter().map(|m| m * mag).find(|s| span / s <= 6.0).unwrap_or(mag);
                let mut out = Vec::new();
                let mut v = (self.lo / step).ceil() * step;
                while v <= self.hi {
                    out.push((v, short(v)));
                    v += step;
                }
                out
            }
        }
    }
}

fn chart(svg: &mut String, c: &Chart, ox: f64, oy: f64) {
    let x = Axis::new(c.x_scale, c.series.iter().flat_map(|s| s.points.iter().map(|p| p.0)));
    let y = Axis::new(c.y_scale, c.series.iter().flat_map(|s| s.points.iter().map(|p| p.1)));
    let (pw, ph) = (W - LEFT - RIGHT, H - TOP - BOTTOM);
    let px = |v: f64| ox + LEFT + x.frac(v) * pw;
    let py = |v: f64| oy + TOP + (1.0 - y.frac(v)) * ph;
    let _ = writeln!(svg, r#"<text x="{}" y="{}" class="title">{}</text>"#, ox + LEFT, oy + 22.0, esc(&c.title));
    let _ = writeln!(
        svg,
        r##"<rect x="{}" y="{}" width="{pw}" height="{ph}" fill="#fff" stroke="#adb5bd"/>"##,
        ox + LEFT,
        oy + TOP
    );
    for (v, label) in y.ticks() {
        let yy = py(v);
        let _ = writeln!(
            svg,
            r##"<line x1="{}" x2="{}" y1="{yy}" y2="{yy}" stroke="#e9ecef"/><text x="{}" y="{}" class="tick" text-anchor="end">{}</text>"##,
            ox + LEFT,
            ox + LEFT + pw,
            ox + LEFT - 6.0,
            yy + 4.0,
            esc(&label)
        );
    }
    for (v, label) in c.x_ticks.clone().unwrap_or_else(|| x.ticks()) {
        if v < x.lo || v > x.hi {
            continue;
        }
        let xx = px(v);
        let _ = writeln!(
            svg,
            r##"<line x1="{xx}" x2="{xx}" y1="{}" y2="{}" stroke="#e9ecef"/><text x="{xx}" y="{}" class="tick" text-anchor="middle">{}</text>"##,
            oy + TOP,
            oy + TOP + ph,
            oy + TOP + ph + 16.0,
            esc(&label)
        );
    }
    let _ = writeln!(
        svg,
        r#"<text x="{}" y="{}" class="label" text-anchor="middle">{}</text>"#,
        ox + LEFT + pw / 2.0,
        oy + H - 12.0,
        esc(&c.x_label)
    );
    let _ = writeln!(
        svg,
        r#"<text transform="translate({},{}) rotate(-90)" class="label" text-anchor="middle">{}</text>"#,
        ox + 16.0,
        oy + TOP + ph / 2.0,
        esc(&c.y_label)
    );
    for (i, s) in c.series.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let pts: Vec<String> = s
            .points
            .iter()
            .filter(|p| p.0.is_finite() && p.1.is_finite() && (c.y_scale == Scale::Linear || p.1 > 0.0))
            .map(|&(a, b)| format!("{:.1},{:.1}", px(a), py(b)))
            .collect();
        if pts.len() > 1 {
            let _ = writeln!(
                svg,
                r#"<polyline points="{}" fill="none" stroke="{color}" stroke-width="2"/>"#,
                pts.join(" ")
            );
        }
        for p in &pts {
            let (a, b) = p.split_once(',').expect("formatted above");
            let _ = writeln!(svg, r#"<circle cx="{a}" cy="{b}" r="3" fill="{color}"/>"#);
        }
    }
    if !c.series.is_empty() {
        let longest = c.series.iter().map(|s| s.name.chars().count()).max().unwrap_or(0) as f64;
        let _ = writeln!(
            svg,
            r##"<rect x="{}" y="{}" width="{}" height="{}" fill="#fff" fill-opacity="0.85" stroke="#dee2e6"/>"##,
            ox + LEFT + 4.0,
            oy + TOP + 2.0,
            longest * 6.6 + 30.0,
            c.series.len() as f64 * 16.0 + 6.0
        );
    }
    for (i, s) in c.series.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let ly = oy + TOP + 14.0 + i as f64 * 16.0;
        let _ = writeln!(
            svg,
            r#"<rect x="{}" y="{}" width="10" height="10" fill="{color}"/><text x="{}" y="{}" class="legend">{}</text>"#,
            ox + LEFT + 10.0,
            ly - 9.0,
            ox + LEFT + 26.0,
            ly,
            esc(&s.name)
        );
    }
}

/// One SVG document holding `charts` two per row, under `title`.
pub fn render(title: &str, subtitle: &str, charts: &[Chart]) -> String {
    let cols = charts.len().clamp(1, 2);
    let rows = charts.len().div_ceil(2).max(1);
    let (width, height) = (W * cols as f64, 60.0 + H * rows as f64);
    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" font-family="sans-serif">"#
    );
    svg.push_str(
        "<style>.title{font-size:14px;font-weight:bold}.tick{font-size:10px;fill:#495057}.label{font-size:11px;fill:#212529}.legend{font-size:11px}.head{font-size:16px;font-weight:bold}.sub{font-size:11px;fill:#495057}</style>\n",
    );
    let _ = writeln!(svg, r##"<rect width="{width}" height="{height}" fill="#f8f9fa"/>"##);
    let _ = writeln!(svg, r#"<text x="16" y="24" class="head">{}</text>"#, esc(title));
    let _ = writeln!(svg, r#"<text x="16" y="44" class="sub">{}</text>"#, esc(subtitle));
    for (i, c) in charts.iter().enumerate() {
        chart(&mut svg, c, (i % 2) as f64 * W, 60.0 + (i / 2) as f64 * H);
    }
    svg.push_str("</svg>\n");
    svg
}

/// The x position of percentile `p` (0–100) on a latency-distribution chart: the number of nines, so that 90, 99
/// and 99.9 are evenly spaced.
pub fn nines(p: f64) -> f64 {
    -(1.0 - (p / 100.0).min(0.999_999)).log10()
}

pub fn percentile_ticks() -> Vec<(f64, String)> {
    [0.0, 50.0, 90.0, 99.0, 99.9, 99.99, 99.999].iter().map(|&p| (nines(p), format!("{p}%"))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_numbers() {
        let table = [(1500.0, "1.5k"), (10_000.0, "10k"), (0.25, "0.25"), (3.0, "3"), (2_500_000.0, "2.5M")];
        for (v, want) in table {
            assert_eq!(short(v), want, "{v}");
        }
    }

    #[test]
    fn renders_a_well_formed_document() {
        let c = Chart {
            title: "p99 <latency>".into(),
            x_label: "subscribers".into(),
            y_label: "ms".into(),
            x_scale: Scale::Log,
            y_scale: Scale::Linear,
            x_ticks: None,
            series: vec![Series { name: "drakon".into(), points: vec![(1000.0, 1.0), (10_000.0, 4.0)] }],
        };
        let svg = render("fanout", "2 cores", &[c.clone(), c]);
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert!(svg.contains("p99 &lt;latency&gt;"));
        assert_eq!(svg.matches("<polyline").count(), 2);
    }

    #[test]
    fn nines_spread_the_tail() {
        assert!((nines(90.0) - 1.0).abs() < 1e-9);
        assert!((nines(99.0) - 2.0).abs() < 1e-9);
        assert_eq!(nines(0.0), 0.0);
    }
}
