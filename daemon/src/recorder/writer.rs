//! The recorder thread and its handle.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::mpsc as std_mpsc;
use std::sync::Arc;
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

/// Frames one recorder thread may have queued before new ones are dropped
/// (about 5.5 MB; 2.5 s of 128 talking channels). Without a bound, a
/// recorder that falls behind (CPU starved, a disk stalled in fsync) grows
/// the daemon's memory without limit; past it the frame is dropped and
/// counted, and the recording has a gap, instead of the daemon being killed
/// for memory with every roll call in it.
const MAX_QUEUED_FRAMES: usize = 16_384;

/// At most this many recorder threads: Opus encoding is the recorder's cost
/// (~56 µs per frame), and one thread caps a station at ~350 talking
/// channels whatever its cores.
const MAX_THREADS: usize = 4;

/// The queue into one recorder thread.
struct Shard {
    commands: std_mpsc::Sender<Command>,
    state: Arc<ShardState>,
}

/// Shared with the thread, which holds no sender (it ends when the last
/// handle is dropped).
#[derive(Default)]
struct ShardState {
    /// Frames sent and not yet taken by the thread.
    queued: AtomicUsize,
    /// Set while frames are being dropped, so the log says it once.
    dropping: AtomicBool,
}

/// Cloneable, non-blocking front of the recorder threads. A channel's
/// recordings all go to one thread (chosen by its id), so file names within
/// a channel's directory are picked without races.
#[derive(Clone)]
pub struct RecorderHandle {
    shards: Arc<[Shard]>,
    next: Arc<AtomicU64>,
}

impl RecorderHandle {
    #[allow(clippy::type_complexity)]
    fn new(
        n: usize,
    ) -> (
        RecorderHandle,
        Vec<(std_mpsc::Receiver<Command>, Arc<ShardState>)>,
    ) {
        let (shards, receivers): (Vec<Shard>, Vec<_>) = (0..n.max(1))
            .map(|_| {
                let (tx, rx) = std_mpsc::channel();
                let state = Arc::new(ShardState::default());
                let shard = Shard {
                    commands: tx,
                    state: state.clone(),
                };
                (shard, (rx, state))
            })
            .unzip();
        let handle = RecorderHandle {
            shards: shards.into(),
            next: Arc::new(AtomicU64::new(1)),
        };
        (handle, receivers)
    }

    fn shard(&self, key: RecKey) -> &Shard {
        &self.shards[(key % self.shards.len() as u64) as usize]
    }

    /// Starts a recording; frames follow with [`Self::frame`].
    pub fn start(&self, start: StartRecording) -> RecKey {
        let n = self.shards.len() as u64;
        let shard = {
            use std::hash::{Hash, Hasher};
            let mut h = std::hash::DefaultHasher::new();
            start.channel.hash(&mut h);
            h.finish() % n
        };
        // The key names its thread: key % n == shard.
        let key = self.next.fetch_add(1, Relaxed) * n + shard;
        let _ = self.shard(key).commands.send(Command::Start(key, start));
        key
    }

    /// Queues a frame; `false` when it was dropped because the recorder
    /// thread is too far behind (see [`MAX_QUEUED_FRAMES`]).
    pub fn frame(&self, key: RecKey, frame: &AudioFrame) -> bool {
        let shard = &self.shard(key).state;
        if shard.queued.load(Relaxed) >= MAX_QUEUED_FRAMES {
            if !shard.dropping.swap(true, Relaxed) {
                tracing::warn!(
                    queued = MAX_QUEUED_FRAMES,
                    "recorder is behind: dropping recorded frames until it catches up"
                );
            }
            return false;
        }
        if shard.dropping.load(Relaxed)
            && shard.queued.load(Relaxed) < MAX_QUEUED_FRAMES / 2
            && shard.dropping.swap(false, Relaxed)
        {
            tracing::info!("recorder caught up");
        }
        shard.queued.fetch_add(1, Relaxed);
        if self
            .shard(key)
            .commands
            .send(Command::Frame(key, *frame))
            .is_err()
        {
            shard.queued.fetch_sub(1, Relaxed);
        }
        true
    }

    /// Notes the caller's identity (and roster guard) for the recording.
    pub fn ani(&self, key: RecKey, kind: &str, unit: &str, guard: Option<String>) {
        let _ = self.shard(key).commands.send(Command::Ani(
            key,
            kind.to_owned(),
            unit.to_owned(),
            guard,
        ));
    }

    pub fn finish(&self, key: RecKey) {
        let _ = self.shard(key).commands.send(Command::Finish(key));
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
    /// Starts the recorder threads (one per core, at most [`MAX_THREADS`],
    /// joined through the returned handle) and the indexer task. The threads
    /// end when every handle is dropped, finishing the files still open.
    pub fn spawn(
        self,
        storage: Storage,
        bus: Bus,
    ) -> (
        RecorderHandle,
        std::thread::JoinHandle<()>,
        tokio::task::JoinHandle<()>,
    ) {
        let n = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .min(MAX_THREADS);
        let (handle, receivers) = RecorderHandle::new(n);
        let (report_tx, report_rx) = mpsc::unbounded_channel::<Report>();
        // The first thread records too and joins the others, so the caller
        // has one thread to join.
        let thread = std::thread::Builder::new()
            .name("rollcalld-recorder".into())
            .spawn(move || {
                std::thread::scope(|scope| {
                    let mut receivers = receivers.into_iter().enumerate();
                    let (_, (first, state)) =
                        receivers.next().expect("at least one recorder thread");
                    for (i, (rx, state)) in receivers {
                        let (me, reports) = (&self, report_tx.clone());
                        std::thread::Builder::new()
                            .name(format!("rollcalld-recorder-{i}"))
                            .spawn_scoped(scope, move || me.thread_main(rx, reports, &state))
                            .expect("spawning a recorder thread");
                    }
                    self.thread_main(first, report_tx, &state);
                })
            })
            .expect("spawning the recorder thread");
        let indexer = tokio::spawn(indexer(storage, bus, report_rx));
        (handle, thread, indexer)
    }

    fn thread_main(
        &self,
        rx: std_mpsc::Receiver<Command>,
        reports: mpsc::UnboundedSender<Report>,
        shard: &ShardState,
    ) {
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
                    shard.queued.fetch_sub(1, Relaxed);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn start(channel: &str) -> StartRecording {
        StartRecording {
            channel: channel.into(),
            link: "l".into(),
            direction: Direction::Rx,
            source: "rx".into(),
            start: SystemTime::now(),
        }
    }

    /// A channel's recordings always go to the same thread, keys are unique.
    #[test]
    fn a_channel_sticks_to_one_thread() {
        let (h, rx) = RecorderHandle::new(3);
        let keys: Vec<RecKey> = (0..10).map(|_| h.start(start("police"))).collect();
        let shard = keys[0] % 3;
        assert!(keys.iter().all(|k| k % 3 == shard), "{keys:?}");
        let mut unique = keys.clone();
        unique.dedup();
        assert_eq!(unique.len(), keys.len());
        let starts = rx[shard as usize].0.try_iter().count();
        assert_eq!(starts, 10);
    }

    /// Every thread records its channels and they all end, files closed
    /// and indexed, once the last handle is dropped.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn threads_record_then_end_when_the_handles_go() {
        let dir = crate::storage::tests_support::tempdir();
        let (storage, _thread) = crate::storage::open(&dir.join("db")).unwrap();
        let (bus, _bus_task) =
            Bus::spawn(storage.clone(), tokio_util::sync::CancellationToken::new());
        let (h, thread, indexer) = Recorder {
            dir: dir.join("rec"),
            bitrate: 12000,
            complexity: 5,
        }
        .spawn(storage.clone(), bus);
        for ch in ["a", "b", "c", "d", "e"] {
            let key = h.start(start(ch));
            for _ in 0..50 {
                assert!(h.frame(key, &AudioFrame::SILENCE));
            }
            h.finish(key);
        }
        drop(h);
        tokio::time::timeout(
            std::time::Duration::from_secs(20),
            tokio::task::spawn_blocking(move || thread.join().unwrap()),
        )
        .await
        .expect("the recorder threads end")
        .unwrap();
        indexer.await.unwrap();
        let rows: Vec<(String, i64, i64)> = storage
            .call(|c| {
                let mut st = c.prepare(
                    "SELECT channel, duration_ms, complete FROM recordings ORDER BY channel",
                )?;
                let rows = st
                    .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(rows)
            })
            .await
            .unwrap();
        let want: Vec<(String, i64, i64)> = ["a", "b", "c", "d", "e"]
            .iter()
            .map(|c| (c.to_string(), 1000, 1))
            .collect();
        assert_eq!(rows, want);
        std::fs::remove_dir_all(dir).unwrap();
    }

    /// A recorder thread that does not keep up makes frames drop (reported
    /// to the caller) instead of memory grow; control commands still queue,
    /// and frames flow again once it has caught up.
    #[test]
    fn a_stalled_thread_drops_frames_not_memory() {
        let (h, rx) = RecorderHandle::new(1);
        let key = h.start(start("c"));
        let accepted = (0..MAX_QUEUED_FRAMES + 100)
            .filter(|_| h.frame(key, &AudioFrame::SILENCE))
            .count();
        assert_eq!(accepted, MAX_QUEUED_FRAMES);
        h.finish(key);
        let cmds: Vec<Command> = rx[0].0.try_iter().collect();
        assert_eq!(cmds.len(), 1 + MAX_QUEUED_FRAMES + 1);
        assert!(matches!(cmds.last(), Some(Command::Finish(k)) if *k == key));
        // The thread takes the frames (as thread_main does): room again.
        rx[0].1.queued.fetch_sub(MAX_QUEUED_FRAMES, Relaxed);
        assert!(h.frame(key, &AudioFrame::SILENCE));
        assert!(!rx[0].1.dropping.load(Relaxed));
    }
}
