//! Reports over stored results: one run's table, per-company figures over a
//! date range, their CSV exports, and an SVG chart of each company's daily
//! answer rate. Read-only; computed from SQLite rows, never from live state,
//! so a report shows exactly what was committed.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use jiff::tz::TimeZone;
use jiff::Timestamp;
use rusqlite::{params, Connection};
use serde::Serialize;

use crate::storage::StorageError;

use super::store::{ms, RunRecord};

/// Quotes a CSV field when it needs it (RFC 4180).
fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}

fn iso(ms: Option<i64>) -> String {
    ms.and_then(|m| Timestamp::from_millisecond(m).ok())
        .map(|t| t.to_string())
        .unwrap_or_default()
}

/// The run's guards and outcomes as CSV (UTF-8, header line, CRLF-free).
pub fn run_csv(rec: &RunRecord) -> Vec<u8> {
    let mut out = String::from(
        "run_id,position,guard_id,guard_name,company,outcome,answered_at,answer_s,how,unit,attempts,recording_id\n",
    );
    for r in &rec.results {
        let fields = [
            rec.run.id.to_string(),
            r.position.to_string(),
            r.guard_id.clone(),
            r.guard_name.clone(),
            r.company.clone(),
            r.outcome.clone(),
            iso(r.answered_ms),
            r.offset_ms
                .map(|o| format!("{:.3}", o as f64 / 1000.0))
                .unwrap_or_default(),
            r.how_kind.clone().unwrap_or_default(),
            r.how_unit.clone().unwrap_or_default(),
            r.attempts.to_string(),
            r.recording_id.map(|i| i.to_string()).unwrap_or_default(),
        ];
        let line: Vec<String> = fields.iter().map(|f| csv_field(f)).collect();
        out.push_str(&line.join(","));
        out.push('\n');
    }
    out.into_bytes()
}

/// One company's figures over a range.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CompanyStats {
    pub company: String,
    /// Guard-calls in finished runs (interrupted guards are not counted:
    /// they were never given the full window).
    pub called: u32,
    /// On time plus late.
    pub answered: u32,
    pub late: u32,
    pub missed: u32,
    /// answered / called.
    pub answer_rate: f64,
    /// late / answered.
    pub late_rate: f64,
    /// Mean seconds from the run's start to the answer.
    pub mean_answer_s: Option<f64>,
}

/// Per-company figures for runs started in `[from, to)`.
pub fn company_report(
    conn: &Connection,
    from: Timestamp,
    to: Timestamp,
) -> Result<Vec<CompanyStats>, StorageError> {
    let mut stmt = conn.prepare_cached(
        "SELECT r.company,
                COUNT(*),
                SUM(r.outcome IN ('answered', 'late')),
                SUM(r.outcome = 'late'),
                SUM(r.outcome = 'missed'),
                AVG(CASE WHEN r.outcome IN ('answered', 'late') THEN r.offset_ms END)
         FROM rollcall_results r JOIN rollcall_runs u ON u.id = r.run_id
         WHERE u.started_ms >= ?1 AND u.started_ms < ?2
           AND r.outcome IN ('answered', 'late', 'missed')
         GROUP BY r.company ORDER BY r.company",
    )?;
    let rows = stmt
        .query_map(params![ms(from), ms(to)], |r| {
            let called: u32 = r.get(1)?;
            let answered: u32 = r.get(2)?;
            let late: u32 = r.get(3)?;
            let mean: Option<f64> = r.get(5)?;
            Ok(CompanyStats {
                company: r.get(0)?,
                called,
                answered,
                late,
                missed: r.get(4)?,
                answer_rate: ratio(answered, called),
                late_rate: ratio(late, answered),
                mean_answer_s: mean.map(|m| m / 1000.0),
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

fn ratio(a: u32, b: u32) -> f64 {
    if b == 0 {
        0.0
    } else {
        f64::from(a) / f64::from(b)
    }
}

pub fn company_csv(stats: &[CompanyStats]) -> Vec<u8> {
    let mut out =
        String::from("company,called,answered,late,missed,answer_rate,late_rate,mean_answer_s\n");
    for s in stats {
        let _ = writeln!(
            out,
            "{},{},{},{},{},{:.4},{:.4},{}",
            csv_field(&s.company),
            s.called,
            s.answered,
            s.late,
            s.missed,
            s.answer_rate,
            s.late_rate,
            s.mean_answer_s
                .map(|m| format!("{m:.3}"))
                .unwrap_or_default()
        );
    }
    out.into_bytes()
}

/// Per company, per local day: (answered, called).
pub type DailyRates = BTreeMap<String, BTreeMap<jiff::civil::Date, (u32, u32)>>;

/// Each company's answer rate per local day (in `tz`) over `[from, to)`.
pub fn daily_answer_rates(
    conn: &Connection,
    from: Timestamp,
    to: Timestamp,
    tz: &TimeZone,
) -> Result<DailyRates, StorageError> {
    let mut stmt = conn.prepare_cached(
        "SELECT r.company, u.started_ms, r.outcome IN ('answered', 'late')
         FROM rollcall_results r JOIN rollcall_runs u ON u.id = r.run_id
         WHERE u.started_ms >= ?1 AND u.started_ms < ?2
           AND r.outcome IN ('answered', 'late', 'missed')",
    )?;
    let mut out = DailyRates::new();
    let rows = stmt.query_map(params![ms(from), ms(to)], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, i64>(1)?,
            r.get::<_, bool>(2)?,
        ))
    })?;
    for row in rows {
        let (company, started, answered) = row?;
        let Ok(t) = Timestamp::from_millisecond(started) else {
            continue;
        };
        let day = t.to_zoned(tz.clone()).date();
        let e = out.entry(company).or_default().entry(day).or_default();
        e.1 += 1;
        if answered {
            e.0 += 1;
        }
    }
    Ok(out)
}

/// A line chart (SVG 1.1, no scripts) of each company's daily answer rate.
pub fn answer_rate_svg(rates: &DailyRates) -> String {
    const W: f64 = 720.0;
    const H: f64 = 320.0;
    const L: f64 = 48.0;
    const R: f64 = 140.0;
    const T: f64 = 16.0;
    const B: f64 = 32.0;
    const COLOURS: [&str; 8] = [
        "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf",
    ];
    let days: Vec<jiff::civil::Date> = {
        let mut d: Vec<_> = rates.values().flat_map(|m| m.keys().copied()).collect();
        d.sort();
        d.dedup();
        d
    };
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{W}\" height=\"{H}\" viewBox=\"0 0 {W} {H}\" font-family=\"sans-serif\" font-size=\"11\">\n"
    );
    let pw = W - L - R;
    let ph = H - T - B;
    let _ = writeln!(
        svg,
        "<rect x=\"{L}\" y=\"{T}\" width=\"{pw}\" height=\"{ph}\" fill=\"none\" stroke=\"#888\"/>"
    );
    for pct in [0, 25, 50, 75, 100] {
        let y = T + ph * (1.0 - f64::from(pct) / 100.0);
        let _ = writeln!(
            svg,
            "<line x1=\"{L}\" y1=\"{y:.1}\" x2=\"{:.1}\" y2=\"{y:.1}\" stroke=\"#ddd\"/><text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{pct}%</text>",
            L + pw,
            L - 4.0,
            y + 4.0
        );
    }
    let x_of = |i: usize| {
        if days.len() <= 1 {
            L + pw / 2.0
        } else {
            L + pw * i as f64 / (days.len() - 1) as f64
        }
    };
    if let (Some(first), Some(last)) = (days.first(), days.last()) {
        let _ = writeln!(
            svg,
            "<text x=\"{L}\" y=\"{:.1}\">{first}</text><text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{last}</text>",
            H - 10.0,
            L + pw,
            H - 10.0
        );
    }
    for (n, (company, per_day)) in rates.iter().enumerate() {
        let colour = COLOURS[n % COLOURS.len()];
        let mut points = Vec::new();
        for (i, d) in days.iter().enumerate() {
            if let Some(&(a, c)) = per_day.get(d) {
                let y = T + ph * (1.0 - ratio(a, c));
                points.push(format!("{:.1},{y:.1}", x_of(i)));
            }
        }
        let _ = writeln!(
            svg,
            "<polyline fill=\"none\" stroke=\"{colour}\" stroke-width=\"2\" points=\"{}\"/>",
            points.join(" ")
        );
        let ly = T + 14.0 * (n as f64 + 1.0);
        let _ = writeln!(
            svg,
            "<text x=\"{:.1}\" y=\"{ly:.1}\" fill=\"{colour}\">{}</text>",
            L + pw + 8.0,
            xml_escape(company)
        );
    }
    svg.push_str("</svg>\n");
    svg
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::super::engine::{Counts, Outcome, RunGuard, RunState, StoreOp};
    use super::super::schedule::RunOptions;
    use super::super::store::{apply, create_run, load_run, NewRun};
    use super::*;
    use crate::config::RollcallMode;

    fn g(id: &str, company: &str) -> RunGuard {
        RunGuard {
            id: id.into(),
            name: format!("Guard, \"{id}\""),
            company: company.into(),
            supervisor: None,
            call: None,
            codes: vec![],
            app_id: Some(format!("app-{id}")),
        }
    }

    /// One run per day with fixed outcomes; returns its id.
    fn run(c: &mut Connection, day: &str, outcomes: &[(&str, &str, Outcome, Option<i64>)]) -> i64 {
        let start: Timestamp = format!("{day}T00:00:00Z").parse().unwrap();
        let guards: Vec<RunGuard> = outcomes.iter().map(|(id, co, _, _)| g(id, co)).collect();
        let opts = RunOptions {
            reply_window_s: 8,
            window_s: 600,
            on_time_s: 300,
            retries: 0,
            escalate: false,
        };
        let id = create_run(
            c,
            &NewRun {
                due: None,
                channel: "ch1",
                groups: &[],
                modes: &[RollcallMode::App],
                options: &opts,
                started: start,
                resume_until: start,
                guards: &guards,
            },
        )
        .unwrap()
        .unwrap();
        let mut ops: Vec<(i64, StoreOp)> = outcomes
            .iter()
            .map(|(gid, _, o, off)| {
                (
                    id,
                    StoreOp::Outcome {
                        guard: gid.to_string(),
                        outcome: *o,
                        at: off.map(|ms| start + jiff::SignedDuration::from_millis(ms)),
                        offset_ms: *off,
                        kind: off.map(|_| "app".into()),
                        unit: off.map(|_| format!("app-{gid}")),
                    },
                )
            })
            .collect();
        ops.push((
            id,
            StoreOp::Finish {
                state: RunState::Finished,
                at: start,
                counts: Counts::default(),
            },
        ));
        apply(c, &ops).unwrap();
        id
    }

    #[test]
    fn company_figures_csv_and_chart() {
        let mut c = Connection::open_in_memory().unwrap();
        crate::storage::migrate(&mut c).unwrap();
        let r1 = run(
            &mut c,
            "2026-05-04",
            &[
                ("a1", "acme", Outcome::Answered, Some(10_000)),
                ("a2", "acme", Outcome::Late, Some(400_000)),
                ("b1", "bolt", Outcome::Missed, None),
                ("b2", "bolt", Outcome::Interrupted, None),
            ],
        );
        run(
            &mut c,
            "2026-05-05",
            &[
                ("a1", "acme", Outcome::Missed, None),
                ("a2", "acme", Outcome::Answered, Some(40_000)),
                ("b1", "bolt", Outcome::Answered, Some(20_000)),
            ],
        );
        // Outside the range: not counted.
        run(
            &mut c,
            "2026-06-01",
            &[("a1", "acme", Outcome::Missed, None)],
        );
        let from: Timestamp = "2026-05-01T00:00:00Z".parse().unwrap();
        let to: Timestamp = "2026-05-31T00:00:00Z".parse().unwrap();
        let stats = company_report(&c, from, to).unwrap();
        assert_eq!(stats.len(), 2);
        let acme = &stats[0];
        assert_eq!(
            (acme.called, acme.answered, acme.late, acme.missed),
            (4, 3, 1, 1)
        );
        assert!((acme.answer_rate - 0.75).abs() < 1e-9);
        assert!((acme.late_rate - 1.0 / 3.0).abs() < 1e-9);
        assert!((acme.mean_answer_s.unwrap() - 150.0).abs() < 1e-9);
        let bolt = &stats[1];
        // The interrupted guard is not counted: he never had the full window.
        assert_eq!(
            (bolt.called, bolt.answered, bolt.late, bolt.missed),
            (2, 1, 0, 1)
        );
        assert_eq!(bolt.mean_answer_s, Some(20.0));
        assert_eq!(
            String::from_utf8(company_csv(&stats)).unwrap(),
            "company,called,answered,late,missed,answer_rate,late_rate,mean_answer_s\n\
             acme,4,3,1,1,0.7500,0.3333,150.000\n\
             bolt,2,1,0,1,0.5000,0.0000,20.000\n"
        );
        // Run CSV: quoted names, answer times, empty cells for the silent.
        let rec = load_run(&c, r1).unwrap().unwrap();
        let csv = String::from_utf8(run_csv(&rec)).unwrap();
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(lines.len(), 5);
        assert_eq!(
            lines[1],
            format!("{r1},0,a1,\"Guard, \"\"a1\"\"\",acme,answered,2026-05-04T00:00:10Z,10.000,app,app-a1,0,")
        );
        assert_eq!(
            lines[4],
            format!("{r1},3,b2,\"Guard, \"\"b2\"\"\",bolt,interrupted,,,,,0,")
        );
        // Chart: one line per company over the two days.
        let rates = daily_answer_rates(&c, from, to, &jiff::tz::TimeZone::UTC).unwrap();
        assert_eq!(rates["acme"].len(), 2);
        let svg = answer_rate_svg(&rates);
        assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
        assert_eq!(svg.matches("<polyline").count(), 2);
        assert!(svg.contains(">2026-05-04</text>") && svg.contains(">2026-05-05</text>"));
    }
}
