//! The file shell around the sans-IO core: [`RecordingWriter`] writes one
//! transmission to one file, [`repair`] closes a file a crash left open, and
//! [`read_summary`] checks and describes a finished one.
//!
//! These calls block on the file system; the daemon runs them on a blocking
//! thread (`spawn_blocking`) or a dedicated recorder thread.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::audio::AudioFrame;

use super::encoder::{EncoderSettings, OggOpusEncoder};
use super::header::RecordingTags;
use super::stream::{RecordingInfo, RepairPlan};
use super::{RecordingError, RecordingSummary, RepairOutcome};

/// Writes one transmission as an Ogg Opus file.
///
/// Each page goes to the OS with one `write` as soon as it is complete (once a
/// second), with no user-space buffer in between, so killing the process loses
/// at most the page being filled. [`RecordingWriter::finish`] also syncs the
/// file to disk so the recordings index never points at data only the page
/// cache held. A writer dropped without `finish` leaves the file open-ended,
/// exactly like a crash; [`repair`] closes it.
#[derive(Debug)]
pub struct RecordingWriter {
    file: File,
    path: PathBuf,
    encoder: OggOpusEncoder,
    pending: Vec<u8>,
    poisoned: bool,
}

impl RecordingWriter {
    /// Creates `path` (it must not exist yet) and writes the header pages.
    /// `bitrate_bps` defaults to [`super::DEFAULT_BITRATE_BPS`]; complexity is
    /// 0..=10 ([`super::DEFAULT_COMPLEXITY`] suits most stations).
    pub fn create(
        path: impl AsRef<Path>,
        tags: &RecordingTags,
        bitrate_bps: Option<i32>,
        complexity: i32,
    ) -> Result<Self, RecordingError> {
        let settings = EncoderSettings::new(bitrate_bps, complexity)?;
        Self::with_encoder(path, tags, OggOpusEncoder::new(settings)?)
    }

    /// As [`Self::create`] with an encoder reused from an earlier recording
    /// (get it back with [`Self::finish_and_recycle`]): resetting one costs
    /// about 2 µs against about 38 µs for a new libopus state. Any stream the
    /// encoder was still in is dropped.
    pub fn with_encoder(
        path: impl AsRef<Path>,
        tags: &RecordingTags,
        mut encoder: OggOpusEncoder,
    ) -> Result<Self, RecordingError> {
        let path = path.as_ref().to_path_buf();
        encoder.abandon();
        let mut pending = Vec::with_capacity(4096);
        encoder.start(tags, rand::random(), &mut pending)?;
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)?;
        // Both header pages in one write: a crash cannot split them.
        file.write_all(&pending)?;
        pending.clear();
        Ok(RecordingWriter {
            file,
            path,
            encoder,
            pending,
            poisoned: false,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Encodes one 20 ms frame; writes a page through to the OS once a second.
    pub fn push_frame(&mut self, frame: &AudioFrame) -> Result<(), RecordingError> {
        self.check_usable()?;
        self.encoder.push_frame(frame, &mut self.pending)?;
        self.write_pending()
    }

    /// Writes the audio encoded so far to the OS now instead of at the next
    /// full page; for a caller whose frames stop arriving mid-transmission.
    pub fn flush_page(&mut self) -> Result<(), RecordingError> {
        self.check_usable()?;
        self.encoder.flush_page(&mut self.pending)?;
        self.write_pending()
    }

    /// Records the calling unit's identity in the file's `ANI=` tag, in place
    /// (for an ANI decoded after the recording started, e.g. EOT PTT-ID).
    pub fn set_ani(&mut self, ani: &str) -> Result<(), RecordingError> {
        self.check_usable()?;
        let (offset, page) = self.encoder.tags_page_with_ani(ani)?;
        self.file.write_all_at(&page, offset).inspect_err(|_| {
            self.poisoned = true;
        })?;
        Ok(())
    }

    /// Writes the end-of-stream page and syncs the file.
    pub fn finish(self) -> Result<RecordingSummary, RecordingError> {
        self.finish_and_recycle().map(|(summary, _)| summary)
    }

    /// As [`Self::finish`], also handing back the encoder for the next
    /// recording on the same channel.
    pub fn finish_and_recycle(
        mut self,
    ) -> Result<(RecordingSummary, OggOpusEncoder), RecordingError> {
        self.check_usable()?;
        let summary = self.encoder.finish(&mut self.pending)?;
        self.write_pending()?;
        self.file.sync_data()?;
        Ok((summary, self.encoder))
    }

    fn check_usable(&self) -> Result<(), RecordingError> {
        if self.poisoned {
            Err(RecordingError::Poisoned)
        } else {
            Ok(())
        }
    }

    fn write_pending(&mut self) -> Result<(), RecordingError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        // A failed write may have left part of a page behind; appending more
        // pages after it would bury it mid-file, so stop here and let repair
        // cut it off.
        if let Err(e) = self.file.write_all(&self.pending) {
            self.poisoned = true;
            self.encoder.abandon();
            return Err(e.into());
        }
        self.pending.clear();
        Ok(())
    }
}

/// Closes a recording a crash left open: cuts any partial trailing page, sets
/// the end-of-stream flag on the last complete page (recomputing its CRC) and
/// syncs. A file that already ends cleanly is left as it is. The file is read
/// whole: a recording is a few MB at most (an hour at 12 kbit/s is 5.4 MB). The outcome's
/// duration is what the daemon indexes. Files whose header pages are damaged
/// hold no audio and give [`RecordingError::Unrecoverable`].
pub fn repair(path: impl AsRef<Path>) -> Result<RepairOutcome, RecordingError> {
    let path = path.as_ref();
    let bytes = std::fs::read(path)?;
    let plan = RepairPlan::for_bytes(&bytes)?;
    if plan.keep_len == bytes.len() as u64 && plan.patch.is_none() {
        return Ok(plan.outcome);
    }
    let file = OpenOptions::new().write(true).open(path)?;
    file.set_len(plan.keep_len)?;
    if let Some((offset, page)) = &plan.patch {
        file.write_all_at(page, *offset)?;
    }
    file.sync_data()?;
    Ok(plan.outcome)
}

/// Reads and checks a whole recording.
pub fn read_summary(path: impl AsRef<Path>) -> Result<RecordingInfo, RecordingError> {
    let bytes = std::fs::read(path)?;
    Ok(RecordingInfo::parse(&bytes)?)
}
