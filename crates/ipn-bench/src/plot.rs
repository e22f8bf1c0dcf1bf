//! The sweep's picture: an SVG with, for each fan-out, receiver CPU per
//! frame and p99 latency against rate, one line per transport, both axes
//! logarithmic. Flat out is drawn at its own place right of the rates
//! (CPU only: its latency is a queue's). Written by hand: a few dozen
//! lines of SVG do not need a plotting library.

use std::fmt::Write;

use crate::sweep::{rate_name, Peer, Point};

const PANEL_W: f64 = 440.0;
const PANEL_H: f64 = 300.0;
const MARGIN_L: f64 = 70.0;
const MARGIN_T: f64 = 64.0;
const GAP: f64 = 40.0;
const LEGEND_H: f64 = 60.0;

/// One panel's value of a point.
type Metric = fn(&Point) -> Option<f64>;

/// The SVG for `points` (receiver counts in `fanouts`), `title` on top.
pub fn svg(points: &[Point], fanouts: &[u32], title: &str) -> String {
    let mut rates: Vec<u32> = points.iter().map(|p| p.rate).filter(|&r| r > 0).collect();
    rates.sort_unstable();
    rates.dedup();
    let flat_out = points.iter().any(|p| p.rate == 0);
    let width = MARGIN_L + 2.0 * (PANEL_W + GAP + MARGIN_L);
    let height = MARGIN_T + fanouts.len() as f64 * (PANEL_H + GAP + 40.0) + LEGEND_H;
    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0}" height="{height:.0}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(
        out,
        r#"<rect width="100%" height="100%" fill="white"/><text x="{:.0}" y="22" font-size="15" text-anchor="middle">{}</text>"#,
        width / 2.0,
        escape(title)
    );
    let metrics: [(&str, Metric, bool); 2] = [
        (
            "receiver CPU per frame (us)",
            |p| p.cpu_per_frame_ns().map(|ns| ns / 1000.0),
            true,
        ),
        (
            "latency p99 (us)",
            |p| p.p99_ns().map(|ns| ns as f64 / 1000.0),
            false,
        ),
    ];
    for (row, &receivers) in fanouts.iter().enumerate() {
        for (col, &(name, metric, with_flat)) in metrics.iter().enumerate() {
            let x0 = MARGIN_L + col as f64 * (PANEL_W + GAP + MARGIN_L);
            let y0 = MARGIN_T + row as f64 * (PANEL_H + GAP + 40.0);
            let panel = Panel {
                x0,
                y0,
                rates: &rates,
                flat_out: flat_out && with_flat,
            };
            let title = format!(
                "{name}, {receivers} receiver{}",
                if receivers == 1 { "" } else { "s" }
            );
            panel.draw(&mut out, &title, points, receivers, metric);
        }
    }
    let legend_y = height - LEGEND_H + 20.0;
    for (i, peer) in Peer::ALL.iter().enumerate() {
        let x = MARGIN_L + i as f64 * 150.0;
        let _ = writeln!(
            out,
            r#"<line x1="{x:.0}" y1="{legend_y:.0}" x2="{:.0}" y2="{legend_y:.0}" stroke="{}" stroke-width="3"/><text x="{:.0}" y="{:.0}">{}</text>"#,
            x + 24.0,
            peer.colour(),
            x + 30.0,
            legend_y + 4.0,
            escape(peer.label())
        );
    }
    out.push_str("</svg>\n");
    out
}

struct Panel<'a> {
    x0: f64,
    y0: f64,
    rates: &'a [u32],
    flat_out: bool,
}

impl Panel<'_> {
    /// x of a rate (0: flat out, right of the last rate).
    fn x(&self, rate: u32) -> f64 {
        let (lo, hi) = self.log_range_x();
        let v = if rate == 0 {
            hi
        } else {
            f64::from(rate).log10()
        };
        self.x0 + (v - lo) / (hi - lo).max(1e-9) * PANEL_W
    }

    fn log_range_x(&self) -> (f64, f64) {
        let lo = f64::from(*self.rates.first().unwrap_or(&1)).log10();
        let last = f64::from(*self.rates.last().unwrap_or(&10)).log10();
        (lo, if self.flat_out { last + 1.0 } else { last })
    }

    fn draw(
        &self,
        out: &mut String,
        title: &str,
        points: &[Point],
        receivers: u32,
        metric: Metric,
    ) {
        let values: Vec<(u32, Peer, f64)> = points
            .iter()
            .filter(|p| p.receivers == receivers && (p.rate > 0 || self.flat_out))
            .filter_map(|p| metric(p).filter(|v| *v > 0.0).map(|v| (p.rate, p.peer, v)))
            .collect();
        let lo = values.iter().map(|v| v.2).fold(f64::INFINITY, f64::min);
        let hi = values.iter().map(|v| v.2).fold(0.0, f64::max);
        let (lo, hi) = if values.is_empty() {
            (0.0, 1.0)
        } else {
            (
                lo.log10().floor(),
                hi.log10().ceil().max(lo.log10().floor() + 1.0),
            )
        };
        let y = |v: f64| self.y0 + PANEL_H - (v.log10() - lo) / (hi - lo) * PANEL_H;
        let _ = writeln!(
            out,
            r#"<rect x="{:.0}" y="{:.0}" width="{PANEL_W}" height="{PANEL_H}" fill="none" stroke="black"/><text x="{:.0}" y="{:.0}" text-anchor="middle" font-weight="bold">{}</text>"#,
            self.x0,
            self.y0,
            self.x0 + PANEL_W / 2.0,
            self.y0 - 8.0,
            escape(title)
        );
        // Decades on y, rates on x, with grid lines.
        for decade in (lo as i32)..=(hi as i32) {
            let v = 10f64.powi(decade);
            let yy = y(v);
            let _ = writeln!(
                out,
                r##"<line x1="{:.0}" y1="{yy:.1}" x2="{:.0}" y2="{yy:.1}" stroke="#ddd"/><text x="{:.0}" y="{:.1}" text-anchor="end">{}</text>"##,
                self.x0,
                self.x0 + PANEL_W,
                self.x0 - 6.0,
                yy + 4.0,
                decade_label(decade)
            );
        }
        let mut ticks: Vec<u32> = self.rates.to_vec();
        if self.flat_out {
            ticks.push(0);
        }
        for rate in ticks {
            let xx = self.x(rate);
            let _ = writeln!(
                out,
                r##"<line x1="{xx:.1}" y1="{:.0}" x2="{xx:.1}" y2="{:.0}" stroke="#ddd"/><text x="{xx:.1}" y="{:.0}" text-anchor="middle">{}</text>"##,
                self.y0,
                self.y0 + PANEL_H,
                self.y0 + PANEL_H + 16.0,
                escape(&rate_name(rate))
            );
        }
        let _ = writeln!(
            out,
            r#"<text x="{:.0}" y="{:.0}" text-anchor="middle">rate, frames/s (log)</text>"#,
            self.x0 + PANEL_W / 2.0,
            self.y0 + PANEL_H + 32.0
        );
        for peer in Peer::ALL {
            let mut line: Vec<(f64, f64)> = values
                .iter()
                .filter(|v| v.1 == peer)
                .map(|v| (self.x(v.0), y(v.2)))
                .collect();
            line.sort_by(|a, b| a.0.total_cmp(&b.0));
            if line.is_empty() {
                continue;
            }
            let path: Vec<String> = line.iter().map(|(x, y)| format!("{x:.1},{y:.1}")).collect();
            let _ = writeln!(
                out,
                r#"<polyline points="{}" fill="none" stroke="{}" stroke-width="2"/>"#,
                path.join(" "),
                peer.colour()
            );
            for (x, y) in line {
                let _ = writeln!(
                    out,
                    r#"<circle cx="{x:.1}" cy="{y:.1}" r="3" fill="{}"/>"#,
                    peer.colour()
                );
            }
        }
    }
}

fn decade_label(decade: i32) -> String {
    if decade >= 0 {
        format!("{}", 10u64.pow(decade as u32))
    } else {
        format!("{}", 10f64.powi(decade))
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}
