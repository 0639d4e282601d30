//! The recorder thread and its handle.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::mpsc as std_mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use rollcall_hw::audio::AudioFrame;
use rollcall_hw::ogg::{Direction, OggOpusEncoder, RecordingTags, RecordingWriter};
use tokio::sync::mpsc;

use crate::events::{Bus, Event};
use crate::storage::Storage;

/// Identifies one open recording (allocated by the handle).
pub type RecKey = u64;

/// The first identity heard on a recording: kind, unit, roster guard.
type Caller = (String, String, Option<String>);

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
        let target = self.shard(key);
        let shard = &target.state;
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
        if target.commands.send(Command::Frame(key, *frame)).is_err() {
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
        ani: Option<Caller>,
    },
    Failed {
        key: RecKey,
        error: String,
    },
    Paused {
        reason: String,
        free_bytes: u64,
    },
    Resumed {
        paused_ms: u64,
        free_bytes: u64,
    },
}

/// Settings for the recorder thread.
#[derive(Debug, Clone)]
pub struct Recorder {
    pub dir: PathBuf,
    pub bitrate: i32,
    pub complexity: i32,
    /// Recording pauses while the recordings' file system has less free
    /// space than this (`recorder.min_free_mb`).
    pub min_free_bytes: u64,
}

/// How often the thread reads the free space (statvfs: one cheap syscall).
const SPACE_CHECK: Duration = Duration::from_millis(500);

/// The pause/resume rule, with hysteresis so a disk hovering at the floor
/// does not flap.
#[derive(Debug, Clone, Copy)]
struct SpaceFloor {
    min_free: u64,
}

impl SpaceFloor {
    fn should_pause(self, free: u64) -> bool {
        free < self.min_free
    }
    /// An eighth above the floor, and at least 1 MiB, so a floor of 0 (pause
    /// only on failed writes) does not retry a full disk every check.
    fn resume_at(self) -> u64 {
        (self.min_free + self.min_free / 8).max(1 << 20)
    }
    fn may_resume(self, free: u64) -> bool {
        free >= self.resume_at()
    }
}

/// Bytes available to the daemon on the file system holding `dir`.
fn free_bytes(dir: &std::path::Path) -> std::io::Result<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes())
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
    // SAFETY: statvfs only writes into the zeroed struct we pass, and `c` is
    // a valid NUL-terminated path for the duration of the call.
    let mut v: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(c.as_ptr(), &mut v) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(v.f_bavail as u64 * v.f_frsize as u64)
}

/// The recorder thread's state.
struct ThreadState {
    open: HashMap<RecKey, Open>,
    /// Encoders are reused across recordings: libopus state is ~44 KB and
    /// creating it per transmission is measurable at a hundred channels.
    spare: Vec<OggOpusEncoder>,
    /// Since when recording is paused for lack of space.
    paused: Option<Instant>,
    /// Transmissions that started (or were cut) while paused and are still
    /// on the air.
    waiting: HashMap<RecKey, StartRecording>,
    /// Files whose write failed on a full disk, repaired on resume.
    broken: Vec<(RecKey, PathBuf, Option<Caller>)>,
    reports: mpsc::UnboundedSender<Report>,
}

impl ThreadState {
    fn close(&mut self, key: RecKey, o: Open) {
        let report = match o.writer.finish_and_recycle() {
            Ok((summary, encoder)) => {
                self.spare.push(encoder);
                Report::Closed {
                    key,
                    duration_ms: summary.duration_ms,
                    bytes: summary.bytes,
                    ani: o.ani,
                }
            }
            Err(e) => Report::Failed {
                key,
                error: e.to_string(),
            },
        };
        let _ = self.reports.send(report);
    }
}

struct Open {
    writer: RecordingWriter,
    ani: Option<Caller>,
    /// Kept so a transmission cut by a pause continues in a new file.
    start: StartRecording,
}

impl Recorder {
    /// Starts the recorder threads (one per core, at most [`MAX_THREADS`],
    /// joined through the returned handle) and the indexer task. The threads
    /// end when every handle is dropped, finishing the files still open.
    /// Each thread watches the free space itself; the indexer turns their
    /// pauses into one `recording_paused` / `recording_resumed` pair.
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
        let _ = std::fs::create_dir_all(&self.dir);
        let mut st = ThreadState {
            open: HashMap::new(),
            spare: Vec::new(),
            paused: None,
            waiting: HashMap::new(),
            broken: Vec::new(),
            reports,
        };
        let mut next_check = Instant::now();
        loop {
            let wait = next_check.saturating_duration_since(Instant::now());
            let cmd = match rx.recv_timeout(wait) {
                Ok(cmd) => Some(cmd),
                Err(std_mpsc::RecvTimeoutError::Timeout) => None,
                Err(std_mpsc::RecvTimeoutError::Disconnected) => break,
            };
            if Instant::now() >= next_check {
                self.check_space(&mut st, None);
                next_check = Instant::now() + SPACE_CHECK;
            }
            if let Some(cmd) = cmd {
                if matches!(cmd, Command::Frame(..)) {
                    shard.queued.fetch_sub(1, Relaxed);
                }
                self.handle(&mut st, cmd);
            }
        }
        for (key, o) in st.open {
            match o.writer.finish() {
                Ok(summary) => {
                    let _ = st.reports.send(Report::Closed {
                        key,
                        duration_ms: summary.duration_ms,
                        bytes: summary.bytes,
                        ani: o.ani,
                    });
                }
                Err(e) => {
                    let _ = st.reports.send(Report::Failed {
                        key,
                        error: e.to_string(),
                    });
                }
            }
        }
    }

    fn handle(&self, st: &mut ThreadState, cmd: Command) {
        match cmd {
            Command::Start(key, start) => {
                if st.paused.is_some() {
                    // Opened when space returns, if still on the air.
                    st.waiting.insert(key, start);
                    return;
                }
                match self.open(&start, st.spare.pop()) {
                    Ok(writer) => {
                        let path = writer.path().to_owned();
                        st.open.insert(
                            key,
                            Open {
                                writer,
                                ani: None,
                                start: start.clone(),
                            },
                        );
                        let _ = st.reports.send(Report::Opened { key, start, path });
                    }
                    Err(error) => {
                        // A full disk pauses (and the transmission waits);
                        // any other failure loses this recording only.
                        if !self.check_space(st, Some(&error)) {
                            let _ = st.reports.send(Report::Failed { key, error });
                        } else {
                            st.waiting.insert(key, start);
                        }
                    }
                }
            }
            Command::Frame(key, frame) => {
                if let Some(o) = st.open.get_mut(&key) {
                    if let Err(e) = o.writer.push_frame(&frame) {
                        let o = st.open.remove(&key).expect("just looked up");
                        let error = e.to_string();
                        // The file ends in a partial page: repaired (cut at
                        // its last whole page) and indexed when space is
                        // back, or at the next start.
                        st.broken
                            .push((key, o.writer.path().to_owned(), o.ani.clone()));
                        if self.check_space(st, Some(&error)) {
                            st.waiting.insert(key, o.start);
                        } else {
                            st.broken.pop();
                            let _ = st.reports.send(Report::Failed { key, error });
                        }
                    }
                }
            }
            Command::Ani(key, kind, unit, guard) => {
                if let Some(o) = st.open.get_mut(&key) {
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
                st.waiting.remove(&key);
                if let Some(o) = st.open.remove(&key) {
                    st.close(key, o);
                }
            }
        }
    }

    /// Checks the free space on the recordings' file system and pauses or
    /// resumes. `failure` is a write that just failed: it pauses even above
    /// the floor when the disk says it is full. Returns whether recording
    /// is paused afterwards.
    fn check_space(&self, st: &mut ThreadState, failure: Option<&str>) -> bool {
        let free = match free_bytes(&self.dir) {
            Ok(f) => f,
            Err(e) => {
                tracing::warn!(dir = %self.dir.display(), error = %e, "cannot read free space");
                return st.paused.is_some();
            }
        };
        let floor = SpaceFloor {
            min_free: self.min_free_bytes,
        };
        match st.paused {
            None => {
                let disk_full = failure.is_some_and(|_| free < floor.resume_at());
                if !floor.should_pause(free) && !disk_full {
                    return false;
                }
                let reason = match failure {
                    Some(e) if disk_full => format!("disk full: {e}"),
                    _ => format!(
                        "free space {} KiB is below the floor of {} KiB (recorder.min_free_mb)",
                        free / 1024,
                        floor.min_free / 1024
                    ),
                };
                tracing::error!(%reason, dir = %self.dir.display(), "recording paused");
                // Close what is open now, while the floor still leaves room;
                // those transmissions continue in new files on resume.
                let keys: Vec<RecKey> = st.open.keys().copied().collect();
                for key in keys {
                    let o = st.open.remove(&key).expect("listed above");
                    st.waiting.insert(key, o.start.clone());
                    st.close(key, o);
                }
                st.paused = Some(Instant::now());
                let _ = st.reports.send(Report::Paused {
                    reason,
                    free_bytes: free,
                });
                true
            }
            Some(since) => {
                if !floor.may_resume(free) {
                    return true;
                }
                let paused_ms = since.elapsed().as_millis() as u64;
                st.paused = None;
                tracing::info!(paused_ms, free_kib = free / 1024, "recording resumed");
                let _ = st.reports.send(Report::Resumed {
                    paused_ms,
                    free_bytes: free,
                });
                for (key, path, ani) in std::mem::take(&mut st.broken) {
                    let report = match rollcall_hw::ogg::repair(&path) {
                        Ok(o) => Report::Closed {
                            key,
                            duration_ms: o.duration_ms,
                            bytes: std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0),
                            ani,
                        },
                        Err(e) => Report::Failed {
                            key,
                            error: format!("cannot repair {}: {e}", path.display()),
                        },
                    };
                    let _ = st.reports.send(report);
                }
                // Transmissions still on the air get a file from now on.
                let mut waiting: Vec<(RecKey, StartRecording)> = st.waiting.drain().collect();
                waiting.sort_by_key(|(k, _)| *k);
                for (key, mut start) in waiting {
                    start.start = SystemTime::now();
                    self.handle(st, Command::Start(key, start));
                }
                st.paused.is_some()
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
    // Every recorder thread pauses and resumes on its own: the station is
    // paused from the first thread's pause to the last one's resume.
    let mut paused_threads = 0usize;
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
            Report::Paused { reason, free_bytes } => {
                paused_threads += 1;
                if paused_threads == 1 {
                    bus.publish(Event::RecordingPaused { reason, free_bytes });
                }
            }
            Report::Resumed {
                paused_ms,
                free_bytes,
            } => {
                paused_threads = paused_threads.saturating_sub(1);
                if paused_threads == 0 {
                    bus.publish(Event::RecordingResumed {
                        paused_ms,
                        free_bytes,
                    });
                }
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

    #[test]
    fn the_floor_pauses_below_and_resumes_an_eighth_above() {
        let f = SpaceFloor { min_free: 8 << 20 };
        assert!(f.should_pause((8 << 20) - 1));
        assert!(!f.should_pause(8 << 20));
        assert!(!f.may_resume(8 << 20), "no flapping at the floor");
        assert!(f.may_resume(9 << 20));
        // A floor of 0 never pauses on its own, and after a failed write
        // waits for 1 MiB rather than retrying a full disk at once.
        let zero = SpaceFloor { min_free: 0 };
        assert!(!zero.should_pause(0));
        assert!(!zero.may_resume(4096));
        assert!(zero.may_resume(1 << 20));
    }

    #[test]
    fn free_space_is_read_from_the_file_system() {
        let dir = crate::storage::tests_support::tempdir();
        assert!(free_bytes(&dir).unwrap() > 0);
        assert!(free_bytes(&dir.join("missing")).is_err());
        std::fs::remove_dir_all(dir).unwrap();
    }

    /// Below the floor nothing is opened, the pause is an event, and the
    /// transmission is neither indexed nor reported as failed.
    #[tokio::test]
    async fn below_the_floor_recording_pauses_with_an_event() {
        let dir = crate::storage::tests_support::tempdir();
        let (storage, thread) = crate::storage::open(&dir.join("db")).unwrap();
        let cancel = tokio_util::sync::CancellationToken::new();
        let (bus, bus_task) = Bus::spawn(storage.clone(), cancel.clone());
        let mut rx = bus.subscribe();
        let recordings = dir.join("rec");
        let (handle, rec_thread, indexer) = Recorder {
            dir: recordings.clone(),
            bitrate: 12_000,
            complexity: 0,
            min_free_bytes: u64::MAX / 2,
        }
        .spawn(storage.clone(), bus.clone());
        let key = handle.start(StartRecording {
            channel: "ch".into(),
            link: "l".into(),
            direction: Direction::Rx,
            source: "rx".into(),
            start: SystemTime::now(),
        });
        for _ in 0..10 {
            handle.frame(key, &AudioFrame::SILENCE);
        }
        handle.finish(key);
        let n = tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .unwrap()
            .unwrap();
        let Event::RecordingPaused { reason, free_bytes } = &n.event else {
            panic!("expected a pause, got {:?}", n.event);
        };
        assert!(reason.contains("recorder.min_free_mb"), "{reason}");
        assert!(*free_bytes > 0);
        drop(handle);
        rec_thread.join().unwrap();
        indexer.await.unwrap();
        let files = std::fs::read_dir(&recordings).unwrap().count();
        assert_eq!(files, 0, "nothing written while paused");
        let rows: i64 = storage
            .call(|c| Ok(c.query_row("SELECT count(*) FROM recordings", [], |r| r.get(0))?))
            .await
            .unwrap();
        assert_eq!(rows, 0);
        cancel.cancel();
        bus_task.await.unwrap();
        let kinds: Vec<String> = crate::events::read_after(&storage, 0, 10)
            .await
            .unwrap()
            .into_iter()
            .map(|r| r.2)
            .collect();
        assert_eq!(kinds, vec!["recording_paused"], "no error event either");
        drop((bus, storage));
        thread.join().unwrap();
        std::fs::remove_dir_all(dir).unwrap();
    }

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
            min_free_bytes: 0,
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
