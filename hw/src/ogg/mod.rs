//! The recorder's file format: one Ogg Opus file (RFC 7845) per transmission,
//! written so that a crash loses at most the last second, and repaired at
//! start-up when it was left open.
//!
//! # Layout
//! - [`crc`]: the Ogg page checksum.
//! - [`page`]: Ogg page view, reader and emission (sans-IO).
//! - [`header`]: `OpusHead`, `OpusTags` and the recorder's tags
//!   (`CHANNEL`, `LINK`, `DIRECTION`, `START`, `ANI`, `ENCODER`).
//! - [`encoder`]: [`OggOpusMuxer`] (packets → pages) and [`OggOpusEncoder`]
//!   (20 ms frames → libopus → pages), both writing into a `Vec<u8>`.
//! - [`stream`]: [`RecordingInfo`] (a whole file checked and summarised) and
//!   [`RepairPlan`] (what to cut and rewrite in a crash-truncated file).
//! - [`file`](mod@file): the thin file shell — [`RecordingWriter`], [`repair`] and
//!   [`read_summary`].
//!
//! **Invariants:** parsing never panics on any input; pages are written whole
//! with one `write` each and never split a packet, so a file cut anywhere by a
//! crash holds a prefix of complete pages plus at most one partial page; the
//! audio part of a page spans at most [`PACKETS_PER_PAGE`] packets (1 s).

pub mod crc;
pub mod encoder;
pub mod file;
pub mod header;
pub mod page;
pub mod stream;

use thiserror::Error;

pub use encoder::{
    EncoderSettings, OggOpusEncoder, OggOpusMuxer, DEFAULT_BITRATE_BPS, DEFAULT_COMPLEXITY,
    GRANULE_RATE, PACKETS_PER_PAGE,
};
pub use file::{read_summary, repair, RecordingWriter};
pub use header::{Direction, HeaderError, OpusHead, OpusTags, RecordingTags, TagError};
pub use page::{OggPage, OggPageReader, PageError};
pub use stream::{RecordingInfo, RepairPlan, StreamError};

/// What a finished recording holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordingSummary {
    /// Length of the audio pushed, in milliseconds.
    pub duration_ms: u64,
    /// Size of the file.
    pub bytes: u64,
    /// Opus packets in the file, including the silent ones that flush the
    /// encoder's lookahead at the end.
    pub packets: u64,
}

/// What [`repair`] found and did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RepairOutcome {
    /// Audio the repaired file holds, in milliseconds.
    pub duration_ms: u64,
    /// Bytes cut off the end (a partial page, or junk after the last page).
    pub truncated_bytes: u64,
    /// True when the file already ended with its end-of-stream page.
    pub was_complete: bool,
}

/// Everything that can go wrong writing, reading or repairing a recording.
#[derive(Debug, Error)]
pub enum RecordingError {
    #[error("recording file I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("libopus: {0}")]
    Opus(#[from] opus::Error),
    #[error("bitrate {0} bit/s is out of range, 6000..=510000 is allowed")]
    BitrateOutOfRange(i32),
    #[error("complexity {0} is out of range, 0..=10 is allowed")]
    ComplexityOutOfRange(i32),
    #[error("libopus reported a lookahead of {0} samples, which does not fit a pre-skip")]
    BadLookahead(i32),
    #[error(transparent)]
    Tags(#[from] TagError),
    #[error("packet of {0} bytes does not fit on one Ogg page")]
    PacketTooLarge(usize),
    #[error("comment header changed length from {was} to {now} bytes, it must keep its length")]
    TagsLengthChanged { was: usize, now: usize },
    #[error("final granule {granule} is outside {min}..={max}")]
    FinalGranuleOutOfRange { granule: u64, min: u64, max: u64 },
    #[error("no stream is being written")]
    NotStarted,
    #[error("a stream is already being written, finish it first")]
    AlreadyStarted,
    #[error("an earlier write to this recording failed; the file is left for repair")]
    Poisoned,
    #[error(transparent)]
    Stream(#[from] StreamError),
    #[error("cannot repair: {0}")]
    Unrecoverable(StreamError),
}
