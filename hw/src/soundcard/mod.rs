//! Sound-card links: capture and playback on a named ALSA device through
//! cpal, with squelch from an external COR source (a serial or HID driver)
//! or from [`Vox`] when none is wired.
//!
//! The cpal streams live on their own OS thread (cpal streams are callback
//! driven and not meant to move between tasks); the callbacks only convert
//! samples through the sans-IO [`CaptureAdapter`] / [`PlaybackAdapter`] and
//! exchange whole 20 ms frames with the tokio side. The buffer is fixed at
//! `buffer_ms` (20 ms by default) instead of cpal's ~100 ms default, to keep
//! mouth-to-ear delay low. Devices are named by their ALSA PCM id
//! (`plughw:CARD=Device,DEV=0`, `default`, or a PCM from `~/.asoundrc`);
//! `plug` devices are preferred because the stream is always opened as
//! signed 16-bit and ALSA's plug layer converts what the card needs. A
//! missing device is an error that lists the devices ALSA offers.

pub mod resample;
pub mod vox;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use cpal::traits::{DeviceTrait, HostTrait, StreamTrait};
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;

use crate::audio::{AudioFrame, Framer, SAMPLE_RATE};
use crate::link::{BoxFuture, DriverIo, LinkCommand, LinkDriver, LinkError, LinkEvent};
pub use resample::Resampler;
pub use vox::{Vox, VoxConfig};

/// A squelch (COR) source wired next to the sound card: `true` = open.
pub type CorSource = watch::Receiver<bool>;
/// Where the driver reports PTT for the wire that keys the radio.
pub type PttSink = watch::Sender<bool>;

/// One sound-card link's settings.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SoundcardConfig {
    /// ALSA PCM id used for capture and playback.
    pub device: String,
    /// Device-side sample rate; resampled to 8 kHz at the edge.
    #[serde(default = "defaults::sample_rate")]
    pub sample_rate: u32,
    /// Device channels; capture uses the first, playback writes all.
    #[serde(default = "defaults::channels")]
    pub channels: u16,
    /// Fixed device buffer in milliseconds.
    #[serde(default = "defaults::buffer_ms")]
    pub buffer_ms: u32,
    /// VOX settings, used when no COR source is wired.
    #[serde(default)]
    pub vox: VoxConfig,
}

mod defaults {
    pub fn sample_rate() -> u32 {
        48_000
    }
    pub fn channels() -> u16 {
        1
    }
    pub fn buffer_ms() -> u32 {
        20
    }
}

impl SoundcardConfig {
    pub fn new(device: impl Into<String>) -> SoundcardConfig {
        SoundcardConfig {
            device: device.into(),
            sample_rate: defaults::sample_rate(),
            channels: defaults::channels(),
            buffer_ms: defaults::buffer_ms(),
            vox: VoxConfig::default(),
        }
    }

    fn buffer_frames(&self) -> u32 {
        (self.sample_rate * self.buffer_ms / 1000).max(1)
    }
}

/// Device samples (interleaved, any rate) → internal 20 ms frames.
#[derive(Debug)]
pub struct CaptureAdapter {
    channels: usize,
    resampler: Resampler,
    framer: Framer,
    mono: Vec<i16>,
    resampled: Vec<i16>,
}

impl CaptureAdapter {
    pub fn new(device_rate: u32, channels: u16) -> CaptureAdapter {
        CaptureAdapter {
            channels: channels.max(1) as usize,
            resampler: Resampler::new(device_rate, SAMPLE_RATE),
            framer: Framer::new(),
            mono: Vec::new(),
            resampled: Vec::new(),
        }
    }

    /// Feeds interleaved samples; returns the complete frames.
    pub fn push(&mut self, interleaved: &[i16]) -> Vec<AudioFrame> {
        self.mono.clear();
        self.mono
            .extend(interleaved.chunks(self.channels).map(|c| c[0]));
        self.resampled.clear();
        self.resampler.process(&self.mono, &mut self.resampled);
        self.framer.push(&self.resampled)
    }
}

/// Internal frames → device samples, with a bounded queue between the
/// transmit side and the playback callback.
#[derive(Debug, Clone)]
pub struct PlaybackAdapter {
    channels: usize,
    resampler: Resampler,
    queue: VecDeque<i16>,
    max_queue: usize,
    underruns: u64,
}

impl PlaybackAdapter {
    /// `max_queue_ms` bounds the delay a slow consumer can build up; older
    /// audio is dropped beyond it.
    pub fn new(device_rate: u32, channels: u16, max_queue_ms: u32) -> PlaybackAdapter {
        PlaybackAdapter {
            channels: channels.max(1) as usize,
            resampler: Resampler::new(SAMPLE_RATE, device_rate),
            queue: VecDeque::new(),
            max_queue: (device_rate as usize * max_queue_ms as usize / 1000).max(1),
            underruns: 0,
        }
    }

    pub fn push_frame(&mut self, frame: &AudioFrame) {
        let mut out = Vec::new();
        self.resampler.process(&frame.samples, &mut out);
        self.queue.extend(out);
        while self.queue.len() > self.max_queue {
            self.queue.pop_front();
        }
    }

    /// Fills an interleaved device buffer; silence where nothing is queued.
    pub fn fill(&mut self, interleaved: &mut [i16]) {
        let mut short = false;
        for chunk in interleaved.chunks_mut(self.channels) {
            let s = match self.queue.pop_front() {
                Some(s) => s,
                None => {
                    short = true;
                    0
                }
            };
            chunk.fill(s);
        }
        if short {
            self.underruns += 1;
        }
    }

    pub fn queued_samples(&self) -> usize {
        self.queue.len()
    }

    pub fn clear(&mut self) {
        self.queue.clear();
    }
}

/// The PCM ids ALSA offers, for error messages and `--list-devices`.
pub fn list_devices() -> Vec<String> {
    let host = cpal::default_host();
    let mut names: Vec<String> = match host.devices() {
        Ok(devices) => devices
            .filter_map(|d| d.id().ok())
            .map(|id| id.id().to_string())
            .collect(),
        Err(_) => Vec::new(),
    };
    names.dedup();
    names
}

fn find_device(name: &str) -> Result<cpal::Device, String> {
    let host = cpal::default_host();
    let devices = host.devices().map_err(|e| e.to_string())?;
    for device in devices {
        if device.id().is_ok_and(|id| id.id() == name) {
            return Ok(device);
        }
    }
    let available = list_devices();
    Err(format!(
        "no ALSA device named {name:?}; available: {}",
        if available.is_empty() {
            "none".to_string()
        } else {
            available.join(", ")
        }
    ))
}

/// The sound-card [`LinkDriver`].
#[derive(Debug)]
pub struct SoundcardDriver {
    cfg: SoundcardConfig,
    cor: Option<CorSource>,
    ptt: Option<PttSink>,
}

impl SoundcardDriver {
    /// `cor`: the squelch wire, if one is connected; VOX otherwise.
    pub fn new(cfg: SoundcardConfig, cor: Option<CorSource>) -> SoundcardDriver {
        SoundcardDriver {
            cfg,
            cor,
            ptt: None,
        }
    }

    /// Reports PTT to the wire that keys the radio (serial RTS, CM108 GPIO).
    pub fn with_ptt(mut self, ptt: PttSink) -> SoundcardDriver {
        self.ptt = Some(ptt);
        self
    }

    async fn run_once(
        &mut self,
        io: &mut DriverIo,
        cancel: CancellationToken,
    ) -> Result<(), LinkError> {
        let what = format!("sound card {}", self.cfg.device);
        let (frames_tx, mut frames_rx) = mpsc::channel::<AudioFrame>(64);
        let (error_tx, mut error_rx) = mpsc::channel::<String>(4);
        let playback = Arc::new(Mutex::new(PlaybackAdapter::new(
            self.cfg.sample_rate,
            self.cfg.channels,
            200,
        )));
        let (ready_tx, ready_rx) = oneshot::channel();
        let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
        let cfg = self.cfg.clone();
        let thread_playback = playback.clone();
        let thread = std::thread::Builder::new()
            .name(format!("cpal {}", cfg.device))
            .spawn(move || {
                match open_streams(&cfg, frames_tx, error_tx, thread_playback) {
                    Ok(streams) => {
                        let _ = ready_tx.send(Ok(()));
                        // Hold the streams until the driver stops.
                        let _ = stop_rx.recv();
                        drop(streams);
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                    }
                }
            })
            .map_err(|source| LinkError::Open {
                what: what.clone(),
                source,
            })?;
        let stop = move || {
            let _ = stop_tx.send(());
            let _ = thread.join();
        };
        match ready_rx.await {
            Ok(Ok(())) => {}
            Ok(Err(message)) => {
                stop();
                return Err(LinkError::Open {
                    what,
                    source: std::io::Error::new(std::io::ErrorKind::NotFound, message),
                });
            }
            Err(_) => {
                stop();
                return Err(LinkError::Protocol(format!("{what}: audio thread died")));
            }
        }
        io.emit(LinkEvent::Up).await;
        let mut vox = Vox::new(self.cfg.vox);
        let mut cor_open = self.cor.as_ref().is_some_and(|c| *c.borrow());
        if cor_open {
            io.emit(LinkEvent::Cor(true)).await;
        }
        let mut keyed = false;
        let result = loop {
            let cor_changed = async {
                match self.cor.as_mut() {
                    Some(c) => c.changed().await.map(|_| *c.borrow_and_update()),
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = cancel.cancelled() => break Ok(()),
                frame = frames_rx.recv() => {
                    let Some(frame) = frame else {
                        break Err(LinkError::Protocol(format!("{what}: capture stopped")));
                    };
                    if self.cor.is_none() {
                        if let Some(open) = vox.process(&frame) {
                            cor_open = open;
                            io.emit(LinkEvent::Cor(open)).await;
                        }
                    }
                    io.emit(LinkEvent::Audio { frame, cor: cor_open }).await;
                }
                changed = cor_changed => match changed {
                    Ok(open) if open != cor_open => {
                        cor_open = open;
                        io.emit(LinkEvent::Cor(open)).await;
                    }
                    Ok(_) => {}
                    Err(_) => break Err(LinkError::Protocol(format!("{what}: COR source closed"))),
                },
                error = error_rx.recv() => {
                    let message = error.unwrap_or_else(|| "audio thread ended".into());
                    break Err(LinkError::Io {
                        what: what.clone(),
                        source: std::io::Error::other(message),
                    });
                }
                command = io.commands.recv() => match command {
                    None => break Ok(()),
                    Some(LinkCommand::Ptt(on)) if on != keyed => {
                        keyed = on;
                        if !on {
                            lock(&playback).clear();
                        }
                        if let Some(ptt) = &self.ptt {
                            let _ = ptt.send(on);
                        }
                        io.emit(LinkEvent::Ptt(on)).await;
                    }
                    Some(LinkCommand::Ptt(_)) => {}
                    Some(LinkCommand::Transmit(frame)) => {
                        if keyed {
                            lock(&playback).push_frame(&frame);
                        }
                    }
                },
            }
        };
        if keyed {
            if let Some(ptt) = &self.ptt {
                let _ = ptt.send(false);
            }
            io.emit(LinkEvent::Ptt(false)).await;
        }
        tokio::task::spawn_blocking(stop).await.ok();
        result
    }
}

/// Locks the playback queue, recovering from a poisoned lock (a panicking
/// audio callback must not take the link down for good).
fn lock(m: &Mutex<PlaybackAdapter>) -> std::sync::MutexGuard<'_, PlaybackAdapter> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Opens capture and playback streams; runs on the audio thread.
fn open_streams(
    cfg: &SoundcardConfig,
    frames_tx: mpsc::Sender<AudioFrame>,
    error_tx: mpsc::Sender<String>,
    playback: Arc<Mutex<PlaybackAdapter>>,
) -> Result<(cpal::Stream, cpal::Stream), String> {
    let device = find_device(&cfg.device)?;
    let stream_config = cpal::StreamConfig {
        channels: cfg.channels,
        sample_rate: cfg.sample_rate,
        buffer_size: cpal::BufferSize::Fixed(cfg.buffer_frames()),
    };
    let mut capture = CaptureAdapter::new(cfg.sample_rate, cfg.channels);
    let capture_errors = error_tx.clone();
    let input = device
        .build_input_stream::<i16, _, _>(
            stream_config,
            move |data, _| {
                for frame in capture.push(data) {
                    // A full queue means the daemon is behind: drop, never block
                    // the audio thread.
                    let _ = frames_tx.try_send(frame);
                }
            },
            move |e| {
                let _ = capture_errors.try_send(format!("capture: {e}"));
            },
            None,
        )
        .map_err(|e| format!("cannot open {:?} for capture: {e}", cfg.device))?;
    let output = device
        .build_output_stream::<i16, _, _>(
            stream_config,
            move |data, _| lock(&playback).fill(data),
            move |e| {
                let _ = error_tx.try_send(format!("playback: {e}"));
            },
            None,
        )
        .map_err(|e| format!("cannot open {:?} for playback: {e}", cfg.device))?;
    input
        .play()
        .map_err(|e| format!("cannot start capture: {e}"))?;
    output
        .play()
        .map_err(|e| format!("cannot start playback: {e}"))?;
    Ok((input, output))
}

impl LinkDriver for SoundcardDriver {
    fn describe(&self) -> String {
        format!(
            "sound card {} ({})",
            self.cfg.device,
            if self.cor.is_some() {
                "COR wire"
            } else {
                "VOX"
            }
        )
    }

    fn run<'a>(
        &'a mut self,
        io: &'a mut DriverIo,
        cancel: CancellationToken,
    ) -> BoxFuture<'a, Result<(), LinkError>> {
        Box::pin(self.run_once(io, cancel))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capture_adapter_takes_first_channel_and_frames_at_8k() {
        let mut capture = CaptureAdapter::new(48_000, 2);
        // 100 ms of stereo: left a 1 kHz tone, right full-scale noise-ish.
        let interleaved: Vec<i16> = (0..4800)
            .flat_map(|i| {
                let left = (8000.0
                    * (2.0 * std::f32::consts::PI * 1000.0 * i as f32 / 48_000.0).sin())
                    as i16;
                [left, if i % 2 == 0 { 30000 } else { -30000 }]
            })
            .collect();
        let frames = capture.push(&interleaved);
        assert_eq!(frames.len(), 5);
        let level = frames[4].level_dbfs();
        // A 8000-peak sine is about −15.2 dBFS; the right channel is ignored.
        assert!((level + 15.2).abs() < 1.0, "{level}");
    }

    #[test]
    fn playback_adapter_upsamples_fills_channels_and_bounds_its_queue() {
        let mut playback = PlaybackAdapter::new(48_000, 2, 100);
        playback.push_frame(&AudioFrame::from_slice(&[1000; 160]));
        assert!((playback.queued_samples() as i64 - 960).abs() <= 1);
        let mut out = vec![7i16; 2 * 2000];
        playback.fill(&mut out);
        assert_eq!(out[1800], out[1801], "both channels carry the sample");
        assert!(out[1800] > 900 && out[1800] < 1100, "{}", out[1800]);
        assert_eq!(out[3998], 0, "underrun plays silence");
        assert_eq!(playback.underruns, 1);
        for _ in 0..20 {
            playback.push_frame(&AudioFrame::SILENCE);
        }
        assert_eq!(playback.queued_samples(), 4800);
    }
}
