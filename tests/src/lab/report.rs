//! The lab's HTML report: a timeline plot (answers per second by each host, with
//! failure, recovery and admin events marked) and a summary table. Self-contained:
//! inline SVG and CSS, no script, so it opens anywhere.

use std::fmt::Write as _;

use super::population::Fate;

/// Answers per second by one host over time.
#[derive(Clone, Debug)]
pub struct Series {
    pub name: String,
    /// (seconds since the start, answers per second)
    pub points: Vec<(f64, f64)>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    Failure,
    Recovery,
    Admin,
}

/// Something the lab did, marked on the plot.
#[derive(Clone, Debug)]
pub struct Event {
    pub at: f64,
    pub label: String,
    pub kind: EventKind,
}

/// One row of the summary table.
#[derive(Clone, Debug)]
pub struct Row {
    pub event: String,
    pub prefix: String,
    pub change: String,
    pub detection_ms: Option<f64>,
    pub switch_us: Option<u64>,
    pub outage_ms: Option<f64>,
    pub lost: Option<u64>,
    /// What the event did to long-lived TCP connections.
    pub clients: Option<Fate>,
}

/// One plot: the answers of one stream, by host.
#[derive(Clone, Debug)]
pub struct Panel {
    pub title: String,
    pub series: Vec<Series>,
}

#[derive(Clone, Debug)]
pub struct Report {
    pub title: String,
    pub subtitle: String,
    /// One plot each, sharing the time axis and the events.
    pub panels: Vec<Panel>,
    pub events: Vec<Event>,
    pub rows: Vec<Row>,
    /// Free text shown under the table (machine, settings).
    pub notes: Vec<String>,
}

const COLORS: [&str; 8] = [
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
];

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn opt<T: std::fmt::Display>(value: Option<T>) -> String {
    value.map_or_else(|| "–".to_owned(), |v| v.to_string())
}

/// A "nice" axis step for `range` split into about `ticks` parts.
fn step(range: f64, ticks: f64) -> f64 {
    let raw = (range / ticks).max(f64::MIN_POSITIVE);
    let magnitude = 10f64.powf(raw.log10().floor());
    let normalized = raw / magnitude;
    let nice = if normalized <= 1.0 {
        1.0
    } else if normalized <= 2.0 {
        2.0
    } else if normalized <= 5.0 {
        5.0
    } else {
        10.0
    };
    nice * magnitude
}

fn plot(report: &Report, panel: &Panel, t_max: f64) -> String {
    let (width, height) = (960.0, 380.0);
    let (left, right, top, bottom) = (60.0, 20.0, 20.0, 150.0);
    let y_max = panel
        .series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.1))
        .fold(1.0_f64, f64::max)
        * 1.1;
    let x = |t: f64| left + t / t_max * (width - left - right);
    let y = |v: f64| height - bottom - v / y_max * (height - top - bottom);
    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="{width}" height="{height}" font-family="sans-serif" font-size="11">"#
    );
    let _ = write!(
        svg,
        r##"<rect x="0" y="0" width="{width}" height="{height}" fill="#fff"/>"##
    );
    // Axes and grid.
    let y_step = step(y_max, 5.0);
    let mut v = 0.0;
    while v <= y_max {
        let _ = write!(
            svg,
            r##"<line x1="{left}" x2="{}" y1="{py}" y2="{py}" stroke="#eee"/><text x="{}" y="{}" text-anchor="end">{v}</text>"##,
            width - right,
            left - 4.0,
            y(v) + 4.0,
            py = y(v)
        );
        v += y_step;
    }
    let t_step = step(t_max, 10.0);
    let mut t = 0.0;
    while t <= t_max + 1e-9 {
        let _ = write!(
            svg,
            r##"<line x1="{px}" x2="{px}" y1="{top}" y2="{}" stroke="#eee"/><text x="{px}" y="{}" text-anchor="middle">{t:.0}s</text>"##,
            height - bottom,
            height - bottom + 14.0,
            px = x(t)
        );
        t += t_step;
    }
    let _ = write!(
        svg,
        r##"<line x1="{left}" x2="{left}" y1="{top}" y2="{b}" stroke="#333"/><line x1="{left}" x2="{}" y1="{b}" y2="{b}" stroke="#333"/>"##,
        width - right,
        b = height - bottom
    );
    let _ = write!(
        svg,
        r#"<text x="14" y="{}" transform="rotate(-90 14 {})" text-anchor="middle">answers per second</text>"#,
        (height - bottom) / 2.0,
        (height - bottom) / 2.0
    );
    // Events.
    for event in &report.events {
        let color = match event.kind {
            EventKind::Failure => "#d62728",
            EventKind::Recovery => "#2ca02c",
            EventKind::Admin => "#555",
        };
        let px = x(event.at);
        let _ = write!(
            svg,
            r#"<line x1="{px}" x2="{px}" y1="{top}" y2="{}" stroke="{color}" stroke-dasharray="4 3"/><text x="{px}" y="{}" transform="rotate(30 {px} {})" fill="{color}">{}</text>"#,
            height - bottom,
            height - bottom + 24.0,
            height - bottom + 24.0,
            escape(&event.label)
        );
    }
    // Series.
    for (i, series) in panel.series.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let points: Vec<String> = series
            .points
            .iter()
            .map(|&(t, v)| format!("{:.1},{:.1}", x(t), y(v)))
            .collect();
        let _ = write!(
            svg,
            r#"<polyline fill="none" stroke="{color}" stroke-width="1.6" points="{}"/>"#,
            points.join(" ")
        );
        let lx = left + 10.0 + i as f64 * 110.0;
        let _ = write!(
            svg,
            r#"<rect x="{lx}" y="{}" width="12" height="4" fill="{color}"/><text x="{}" y="{}">{}</text>"#,
            top + 2.0,
            lx + 16.0,
            top + 7.0,
            escape(&series.name)
        );
    }
    svg.push_str("</svg>");
    svg
}

/// The whole page.
pub fn render_html(report: &Report) -> String {
    let mut html = String::new();
    let _ = write!(
        html,
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{title}</title><style>\
         body{{font-family:sans-serif;margin:2em;color:#222}}table{{border-collapse:collapse}}\
         td,th{{border:1px solid #ccc;padding:4px 8px;text-align:right}}td:first-child,td:nth-child(2),td:nth-child(3){{text-align:left}}\
         th{{background:#f4f4f4}}</style></head><body><h1>{title}</h1><p>{subtitle}</p>",
        title = escape(&report.title),
        subtitle = escape(&report.subtitle)
    );
    let t_max = report
        .panels
        .iter()
        .flat_map(|p| p.series.iter().flat_map(|s| s.points.iter().map(|p| p.0)))
        .chain(report.events.iter().map(|e| e.at))
        .fold(1.0_f64, f64::max);
    for panel in &report.panels {
        let _ = write!(html, "<h3>{}</h3>", escape(&panel.title));
        html.push_str(&plot(report, panel, t_max));
    }
    html.push_str(
        "<h2>Events</h2><table><tr><th>event</th><th>prefix</th><th>owner change</th>\
         <th>detection (ms)</th><th>switch (µs)</th><th>outage (ms)</th><th>requests lost</th>\
         <th>TCP connections reset or ended</th><th>TCP connections stalled &gt; 1 s</th></tr>",
    );
    for row in &report.rows {
        let of = |n: fn(&Fate) -> usize| {
            row.clients
                .as_ref()
                .map(|c| format!("{} of {}", n(c), c.connections))
        };
        let _ = write!(
            html,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>\
             <td>{}</td><td>{}</td></tr>",
            escape(&row.event),
            escape(&row.prefix),
            escape(&row.change),
            opt(row.detection_ms.map(|v| format!("{v:.1}"))),
            opt(row.switch_us),
            opt(row.outage_ms.map(|v| format!("{v:.1}"))),
            opt(row.lost),
            opt(of(|c| c.reset + c.ended)),
            opt(of(|c| c.stalled))
        );
    }
    html.push_str("</table><ul>");
    for note in &report.notes {
        let _ = write!(html, "<li>{}</li>", escape(note));
    }
    html.push_str("</ul></body></html>\n");
    html
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_holds_every_series_event_and_row() {
        let report = Report {
            title: "lab <1>".into(),
            subtitle: "test".into(),
            panels: vec![Panel {
                title: "stream".into(),
                series: vec![
                    Series {
                        name: "host1".into(),
                        points: vec![(0.0, 10.0), (1.0, 20.0)],
                    },
                    Series {
                        name: "host2".into(),
                        points: vec![(0.0, 0.0), (1.0, 5.0)],
                    },
                ],
            }],
            events: vec![Event {
                at: 0.5,
                label: "host2 killed".into(),
                kind: EventKind::Failure,
            }],
            rows: vec![Row {
                event: "host2 killed".into(),
                prefix: "192.168.1.64/27".into(),
                change: "host2 → host3".into(),
                detection_ms: Some(31.26),
                switch_us: Some(120),
                outage_ms: Some(40.0),
                lost: Some(3),
                clients: Some(Fate {
                    connections: 8,
                    reset: 2,
                    ended: 1,
                    stalled: 4,
                }),
            }],
            notes: vec!["machine".into()],
        };
        let html = render_html(&report);
        assert!(html.contains("lab &lt;1&gt;"), "title escaped");
        assert_eq!(html.matches("<polyline").count(), 2);
        assert!(html.contains("host2 killed"));
        assert!(
            html.contains("<td>31.3</td>")
                && html.contains("<td>120</td>")
                && html.contains("<td>3</td>")
                && html.contains("<td>3 of 8</td>")
                && html.contains("<td>4 of 8</td>")
        );
    }

    #[test]
    fn axis_steps_are_round() {
        assert_eq!(step(100.0, 5.0), 20.0);
        assert_eq!(step(7.0, 10.0), 1.0);
        assert!((step(0.3, 5.0) - 0.1).abs() < 1e-12);
    }
}
