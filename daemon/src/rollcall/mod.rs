//! Roll calls: schedules that fire exactly once per due time, the run engine
//! that calls guards and collects their answers, results in SQLite, and
//! reports.
//!
//! - [`schedule`]: pure cron arithmetic in IANA zones and the [`Scheduler`].
//! - [`engine`]: the pure run state machine ([`Run`]).
//! - [`store`]: the SQLite rows (runs, results, fired set, schedules).
//! - [`report`]: per-run and per-company reports, CSV and SVG.
//! - [`service`]: the async shell and the API ([`RollcallService`]).

pub mod engine;
pub mod report;
pub mod schedule;
pub mod service;
pub mod store;

pub use engine::{Outcome, Run, RunGuard, RunPlan};
pub use report::CompanyStats;
pub use schedule::{RunOptions, ScheduleSpec, Scheduler};
pub use service::{
    Deps, RadioCheck, RollcallError, RollcallService, StartRun, SystemClock, WallClock,
};
pub use store::{RunFilter, RunRecord, RunSummary};

#[cfg(test)]
mod tests;
