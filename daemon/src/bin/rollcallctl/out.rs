//! Output and argument helpers shared by the commands: aligned tables, local
//! times, date arguments, and the error type that picks the exit code.

use std::fmt;

/// Why a command failed; decides the exit code (2 = usage, 1 = the rest).
#[derive(Debug)]
pub enum CmdError {
    /// The daemon refused or failed the call.
    Rpc(tonic::Status),
    /// Bad arguments clap could not catch (dates, combinations).
    Usage(String),
    /// Local trouble: writing an output file, a broken stream.
    Local(String),
}

impl From<tonic::Status> for CmdError {
    fn from(s: tonic::Status) -> Self {
        CmdError::Rpc(s)
    }
}

impl CmdError {
    pub fn exit_code(&self) -> u8 {
        match self {
            CmdError::Usage(_) => 2,
            _ => 1,
        }
    }
}

impl fmt::Display for CmdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CmdError::Rpc(s) => {
                write!(f, "{}", code_name(s.code()))?;
                if !s.message().is_empty() {
                    write!(f, ": {}", s.message())?;
                }
                Ok(())
            }
            CmdError::Usage(m) | CmdError::Local(m) => f.write_str(m),
        }
    }
}

/// A short name for a gRPC failure an operator can act on.
pub fn code_name(code: tonic::Code) -> &'static str {
    match code {
        tonic::Code::Unauthenticated => "unauthenticated (give --token)",
        tonic::Code::PermissionDenied => "permission denied",
        tonic::Code::NotFound => "not found",
        tonic::Code::InvalidArgument => "invalid argument",
        tonic::Code::AlreadyExists => "already exists",
        tonic::Code::Unavailable => "daemon unavailable",
        tonic::Code::DeadlineExceeded => "timed out",
        tonic::Code::FailedPrecondition => "refused",
        tonic::Code::ResourceExhausted => "busy",
        tonic::Code::Unimplemented => "not supported by this daemon",
        tonic::Code::Internal => "daemon error",
        _ => "error",
    }
}

pub type CmdResult = Result<(), CmdError>;

/// Prints one JSON document on its own line.
pub fn print_json(v: &serde_json::Value) {
    println!("{v}");
}

/// A table printed with columns padded to their widest cell.
pub struct Table {
    header: Vec<&'static str>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(header: &[&'static str]) -> Table {
        Table {
            header: header.to_vec(),
            rows: Vec::new(),
        }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    pub fn print(&self) {
        let mut widths: Vec<usize> = self.header.iter().map(|h| h.chars().count()).collect();
        for r in &self.rows {
            for (i, c) in r.iter().enumerate() {
                if let Some(w) = widths.get_mut(i) {
                    *w = (*w).max(c.chars().count());
                }
            }
        }
        let line = |cells: &mut dyn Iterator<Item = &str>| {
            let mut s = String::new();
            for (i, c) in cells.enumerate() {
                if i > 0 {
                    s.push_str("  ");
                }
                s.push_str(c);
                let pad = widths.get(i).copied().unwrap_or(0);
                s.extend(std::iter::repeat_n(
                    ' ',
                    pad.saturating_sub(c.chars().count()),
                ));
            }
            println!("{}", s.trim_end());
        };
        line(&mut self.header.iter().copied());
        for r in &self.rows {
            line(&mut r.iter().map(String::as_str));
        }
    }
}

/// Unix ms as local wall time, "-" for 0 (never).
pub fn when(ms: i64) -> String {
    if ms == 0 {
        return "-".into();
    }
    match jiff::Timestamp::from_millisecond(ms) {
        Ok(t) => t
            .to_zoned(jiff::tz::TimeZone::system())
            .strftime("%Y-%m-%d %H:%M:%S")
            .to_string(),
        Err(_) => ms.to_string(),
    }
}

/// Milliseconds as "12.3s" / "4m05s".
pub fn secs(ms: i64) -> String {
    if ms < 60_000 {
        format!("{:.1}s", ms as f64 / 1000.0)
    } else {
        format!("{}m{:02}s", ms / 60_000, ms / 1000 % 60)
    }
}

pub fn human_duration(secs: u64) -> String {
    let (d, h, m, s) = (secs / 86400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    if d > 0 {
        format!("{d}d{h}h{m}m")
    } else if h > 0 {
        format!("{h}h{m}m")
    } else {
        format!("{m}m{s}s")
    }
}

/// Parses a `--from`/`--to` argument into Unix ms: a date `YYYY-MM-DD` in
/// the local zone (its start, or with `end_of_day` the start of the next day
/// so `--to` includes the whole day), a local `YYYY-MM-DD HH:MM[:SS]`, or an
/// RFC 3339 instant.
pub fn parse_when(arg: &str, flag: &str, end_of_day: bool) -> Result<i64, CmdError> {
    let tz = jiff::tz::TimeZone::system();
    let bad = || {
        CmdError::Usage(format!(
            "{flag} \"{arg}\" is not a date (YYYY-MM-DD), local time (YYYY-MM-DD HH:MM) or RFC 3339 instant"
        ))
    };
    if let Ok(t) = arg.parse::<jiff::Timestamp>() {
        return Ok(t.as_millisecond());
    }
    // jiff reads a date out of a longer string too; only a bare date means
    // a whole day.
    let bare_date = arg.len() == 10;
    if let Some(d) = bare_date
        .then(|| arg.parse::<jiff::civil::Date>().ok())
        .flatten()
    {
        let d = if end_of_day {
            d.tomorrow().map_err(|_| bad())?
        } else {
            d
        };
        let z = d.to_zoned(tz).map_err(|_| bad())?;
        return Ok(z.timestamp().as_millisecond());
    }
    let dt = arg
        .replacen(' ', "T", 1)
        .parse::<jiff::civil::DateTime>()
        .map_err(|_| bad())?;
    Ok(dt
        .to_zoned(tz)
        .map_err(|_| bad())?
        .timestamp()
        .as_millisecond())
}

pub fn opt_when(arg: &Option<String>, flag: &str, end_of_day: bool) -> Result<i64, CmdError> {
    arg.as_deref()
        .map(|a| parse_when(a, flag, end_of_day))
        .transpose()
        .map(|v| v.unwrap_or(0))
}

/// Writes an output file whole: to a sibling temp file, then renamed, so a
/// failed write never leaves a truncated report under the asked name.
pub fn write_file(path: &std::path::Path, data: &[u8]) -> CmdResult {
    let tmp = tmp_path(path);
    std::fs::write(&tmp, data)
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            CmdError::Local(format!("cannot write {}: {e}", path.display()))
        })
}

pub fn tmp_path(path: &std::path::Path) -> std::path::PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".part");
    path.with_file_name(name)
}

pub fn join(v: &[String]) -> String {
    if v.is_empty() {
        "-".into()
    } else {
        v.join(",")
    }
}

pub fn dash(s: &str) -> String {
    if s.is_empty() {
        "-".into()
    } else {
        s.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_cover_whole_days() {
        let from = parse_when("2026-03-01", "--from", false).unwrap();
        let to = parse_when("2026-03-01", "--to", true).unwrap();
        assert_eq!(to - from, 86_400_000);
        assert_eq!(
            parse_when("2026-03-01T00:00:00Z", "--from", false).unwrap(),
            1_772_323_200_000
        );
        assert!(parse_when("yesterday", "--from", false).is_err());
        let t = parse_when("2026-03-01 06:30", "--from", false).unwrap();
        assert_eq!(t - from, (6 * 60 + 30) * 60_000);
    }
}
