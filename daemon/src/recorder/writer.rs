//! The recorder thread and its handle.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::mpsc as std_mpsc;
use std::time::SystemTime;

use rollcall_hw::audio::AudioFrame;
use rollcall_hw::ogg::{Direction, OggOpusEncoder, RecordingTags, RecordingWriter};
use tokio::sync::mpsc;

use crate::events::{Bus, Event};
use crate::storage::Storage;

/// Identifies one open recording (allocated by the handle).
pub type RecKey = u64;

/// What a channel tells the recorder when a transmission starts.
#[derive(Debug, Clone)]
pub struct StartRecording {
    pub channel: String,
    pub link: String,
    pub direction: Direction,
    /// `rx`, or the transmitting source (`console`, `alert`, `rollcall`, `patch`).
    pub source: String,
    pub start: SystemTime,
}

// Frames are the common command (50 per second per recording): kept inline
// so the audio path does not allocate per frame.
#[allow(clippy::large_enum_variant)]
enum Command {
    Start(RecKey, StartRecording),
    Frame(RecKey, AudioFrame),
    Ani(RecKey, String, String, Option<String>),
    Finish(RecKey),
}

/// Cloneable, non-blocking front of the recorder thread.
#[derive(Clone)]
pub struct RecorderHandle {
    commands: std_mpsc::Sender<Command>,
    next: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl RecorderHandle {
    /// Starts a recording; frames follow with [`Self::frame`].
    pub fn start(&self, start: StartRecording) -> RecKey {
        let key = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let _ = self.commands.send(Command::Start(key, start));
        key
    }
    pub fn frame(&self, key: RecKey, frame: &AudioFrame) {
        let _ = self.commands.send(Command::Frame(key, *frame));
    }
    /// Notes the caller's identity (and roster guard) for the recording.
    pub fn ani(&self, key: RecKey, kind: &str, unit: &str, guard: Option<String>) {
        let _ = self
            .commands
            .send(Command::Ani(key, kind.to_owned(), unit.to_owned(), guard));
    }
    pub fn finish(&self, key: RecKey) {
        let _ = self.commands.send(Command::Finish(key));
    }
}

/// What the thread reports to the async indexer.
enum Report {
    Opened {
        key: RecKey,
        start: StartRecording,
        path: PathBuf,
    },
    Closed {
        key: RecKey,
        duration_ms: u64,
        bytes: u64,
        ani: Option<(String, String, Option<String>)>,
    },
    Failed {
        key: RecKey,
        error: String,
    },
}

/// Settings for the recorder thread.
#[derive(Debug, Clone)]
pub struct Recorder {
    pub dir: PathBuf,
    pub bitrate: i32,
    pub complexity: i32,
}

struct Open {
    writer: RecordingWriter,
    ani: Option<(String, String, Option<String>)>,
}

impl Recorder {
    /// Starts the thread and the indexer task. The thread ends when every
    /// handle is dropped, finishing the files still open.
    pub fn spawn(
        self,
        storage: Storage,
        bus: Bus,
    ) -> (
        RecorderHandle,
        std::thread::JoinHandle<()>,
        tokio::task::JoinHandle<()>,
    ) {
        let (tx, rx) = std_mpsc::channel::<Command>();
        let (report_tx, report_rx) = mpsc::unbounded_channel::<Report>();
        let thread = std::thread::Builder::new()
            .name("rollcalld-recorder".into())
            .spawn(move || self.thread_main(rx, report_tx))
            .expect("spawning the recorder thread");
        let indexer = tokio::spawn(indexer(storage, bus, report_rx));
        (
            RecorderHandle {
                commands: tx,
                next: std::sync::Arc::new(std::sync::atomic::AtomicU64::new(1)),
            },
            thread,
            indexer,
        )
    }

    fn thread_main(self, rx: std_mpsc::Receiver<Command>, reports: mpsc::UnboundedSender<Report>) {
        let mut open: HashMap<RecKey, Open> = HashMap::new();
        // Encoders are reused across recordings: libopus state is ~44 KB and
        // creating it per transmission is measurable at a hundred channels.
        let mut spare: Vec<OggOpusEncoder> = Vec::new();
        while let Ok(cmd) = rx.recv() {
            match cmd {
                Command::Start(key, start) => match self.open(&start, spare.pop()) {
                    Ok(writer) => {
                        let path = writer.path().to_owned();
                        open.insert(key, Open { writer, ani: None });
                        let _ = reports.send(Report::Opened { key, start, path });
                    }
                    Err(error) => {
                        let _ = reports.send(Report::Failed { key, error });
                    }
                },
                Command::Frame(key, frame) => {
                    if let Some(o) = open.get_mut(&key) {
                        if let Err(e) = o.writer.push_frame(&frame) {
                            open.remove(&key);
                            let _ = reports.send(Report::Failed {
                                key,
                                error: e.to_string(),
                            });
                        }
                    }
                }
                Command::Ani(key, kind, unit, guard) => {
                    if let Some(o) = open.get_mut(&key) {
                        // The first identity heard names the caller.
                        if o.ani.is_none() {
                            if let Err(e) = o.writer.set_ani(&format!("{kind}:{unit}")) {
                                tracing::warn!(error = %e, "cannot tag recording with ANI");
                            }
                            o.ani = Some((kind, unit, guard));
                        }
                    }
                }
                Command::Finish(key) => {
                    if let Some(o) = open.remove(&key) {
                        match o.writer.finish_and_recycle() {
                            Ok((summary, encoder)) => {
                                spare.push(encoder);
                                let _ = reports.send(Report::Closed {
                                    key,
                                    duration_ms: summary.duration_ms,
                                    bytes: summary.bytes,
                                    ani: o.ani,
                                });
                            }
                            Err(e) => {
                                let _ = reports.send(Report::Failed {
                                    key,
                                    error: e.to_string(),
                                });
                            }
                        }
                    }
                }
            }
        }
        for (key, o) in open {
            match o.writer.finish() {
                Ok(summary) => {
                    let _ = reports.send(Report::Closed {
                        key,
                        duration_ms: summary.duration_ms,
                        bytes: summary.bytes,
                        ani: o.ani,
                    });
                }
                Err(e) => {
                    let _ = reports.send(Report::Failed {
                        key,
                        error: e.to_string(),
                    });
                }
            }
        }
    }

    fn open(
        &self,
        start: &StartRecording,
        mut encoder: Option<OggOpusEncoder>,
    ) -> Result<RecordingWriter, String> {
        let ts = jiff::Timestamp::try_from(start.start).map_err(|e| e.to_string())?;
        let utc = ts.to_zoned(jiff::tz::TimeZone::UTC);
        let day_dir = self
            .dir
            .join(sanitize(&start.channel))
            .join(utc.strftime("%Y-%m-%d").to_string());
        std::fs::create_dir_all(&day_dir)
            .map_err(|e| format!("cannot create {}: {e}", day_dir.display()))?;
        let stem = format!("{}-{}", utc.strftime("%H%M%S%.3f"), sanitize(&start.link));
        let tags = RecordingTags {
            channel: start.channel.clone(),
            link: start.link.clone(),
            direction: start.direction,
            start: start.start,
            ani: None,
        };
        // Two transmissions may start in the same millisecond on one channel
        // (two links): a numeric suffix keeps names unique.
        for n in 0..100u32 {
            let path = day_dir.join(if n == 0 {
                format!("{stem}.opus")
            } else {
                format!("{stem}-{n}.opus")
            });
            if path.exists() {
                continue;
            }
            let result = match encoder.take() {
                Some(enc) => RecordingWriter::with_encoder(&path, &tags, enc),
                None => RecordingWriter::create(&path, &tags, Some(self.bitrate), self.complexity),
            };
            return result.map_err(|e| format!("cannot create {}: {e}", path.display()));
        }
        Err(format!(
            "no free file name for {stem} in {}",
            day_dir.display()
        ))
    }
}

fn sanitize(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Turns thread reports into index rows and bus events.
async fn indexer(storage: Storage, bus: Bus, mut reports: mpsc::UnboundedReceiver<Report>) {
    let mut rows: HashMap<RecKey, (i64, StartRecording, PathBuf)> = HashMap::new();
    while let Some(report) = reports.recv().await {
        match report {
            Report::Opened { key, start, path } => {
                let s = start.clone();
                let p = path.to_string_lossy().into_owned();
                let start_ms = jiff::Timestamp::try_from(start.start)
                    .map(|t| t.as_millisecond())
                    .unwrap_or(0);
                let res = storage
                    .call(move |c| {
                        c.execute(
                            "INSERT INTO recordings (channel, link, direction, source, start_ms, path, complete)
                             VALUES (?1, ?2, ?3, ?4, ?5, ?6, 0)",
                            rusqlite::params![s.channel, s.link, s.direction.as_str(), s.source, start_ms, p],
                        )?;
                        Ok(c.last_insert_rowid())
                    })
                    .await;
                match res {
                    Ok(id) => {
                        rows.insert(key, (id, start, path));
                    }
                    Err(e) => {
                        tracing::error!(error = %e, path = %path.display(), "cannot index recording")
                    }
                }
            }
            Report::Closed {
                key,
                duration_ms,
                bytes,
                ani,
            } => {
                let Some((id, start, path)) = rows.remove(&key) else {
                    continue;
                };
                let (ani_kind, ani_unit, guard) = match ani.clone() {
                    Some((k, u, g)) => (Some(k), Some(u), g),
                    None => (None, None, None),
                };
                let (k2, u2, g2) = (ani_kind.clone(), ani_unit.clone(), guard.clone());
                let res = storage
                    .call(move |c| {
                        c.execute(
                            "UPDATE recordings SET duration_ms = ?2, bytes = ?3, ani_kind = ?4, ani = ?5,
                             guard = ?6, complete = 1 WHERE id = ?1",
                            rusqlite::params![id, duration_ms as i64, bytes as i64, k2, u2, g2],
                        )?;
                        Ok(())
                    })
                    .await;
                if let Err(e) = res {
                    tracing::error!(error = %e, id, "cannot complete recording row");
                    continue;
                }
                bus.publish(Event::RecordingWritten {
                    id,
                    channel: start.channel,
                    link: start.link,
                    direction: start.direction.as_str().into(),
                    path: path.to_string_lossy().into_owned(),
                    duration_ms,
                    bytes,
                    ani: ani_unit,
                    guard,
                });
            }
            Report::Failed { key, error } => {
                rows.remove(&key);
                tracing::error!(%error, "recording failed");
                bus.publish(Event::Error {
                    source: "recorder".into(),
                    message: error,
                });
            }
        }
    }
    tracing::info!(task = "recorder index", "stopped");
}
