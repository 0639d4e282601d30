//! The recorder: every transmission on a recorded channel, received or sent,
//! becomes one Ogg Opus file under
//! `recordings/<channel>/<yyyy-mm-dd>/<hhmmss>-<id>.opus` (UTC), with a row in
//! the `recordings` table.
//!
//! Encoding and file writes run on dedicated threads (`rollcalld-recorder`,
//! one per core up to four; a channel always on the same one) fed by
//! non-blocking, bounded queues, so the channel tasks never wait on a disk; a
//! thread too far behind drops frames (counted per link) rather than grow
//! memory.
//! The row is inserted with `complete = 0` when a file opens and completed
//! when it closes; at start-up every incomplete row is a crash survivor, and
//! its file is repaired (cut at the last complete page, at most a second of
//! audio lost) and indexed. Retention deletes by age and total size, oldest
//! first, never a pinned recording.

mod index;
mod retention;
mod writer;

pub use index::{get, search, RecordingRow, SearchFilter};
pub use retention::{enforce as enforce_retention, pin, unpin_owner, RetentionPolicy};
pub use writer::{RecKey, Recorder, RecorderHandle, StartRecording};

/// Repairs and indexes recordings a crash left open. Runs before channels
/// start.
pub use index::repair_incomplete;
