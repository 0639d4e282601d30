//! Roll calls: schedules, the run engine, results and reports.
pub mod schedule;
