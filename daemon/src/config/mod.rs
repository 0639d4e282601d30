//! The daemon's configuration: one TOML file, parsed into typed structs and
//! validated *before* any port or device is opened.
//!
//! Loading collects every problem it can find — syntax, unknown keys, wrong
//! types, duplicate ids, dangling references — and reports them all at once,
//! each with the file, line, column and the dotted key, saying what is allowed.
//! `rollcalld check-config FILE` prints that list and exits 2.
//!
//! The schema lives in [`schema`]; the span-aware walk in [`load`].

mod load;
pub mod schema;

pub use load::{is_ident, load_file, load_str, parse_days, parse_hhmm, ConfigError, ConfigErrors};
pub use schema::*;

#[cfg(test)]
mod example_test;
#[cfg(test)]
mod tests;
