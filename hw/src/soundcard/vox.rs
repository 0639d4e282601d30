//! VOX: squelch from the audio level, for sound-card links with no COR wire.
//!
//! Sans-IO: frames in, squelch state out. Opens when a frame's level reaches
//! `open_dbfs`; closes after `hang` of frames below it, so pauses between
//! words do not chop a transmission. Time is counted in frames (20 ms each),
//! so nothing here reads a clock.

use std::time::Duration;

use crate::audio::{AudioFrame, FRAME_MS};

/// VOX settings.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct VoxConfig {
    /// Level that opens the squelch, in dBFS (−35 suits a radio's speaker
    /// output with the noise squelched).
    pub open_dbfs: f32,
    /// How long the squelch stays open after the last loud frame.
    pub hang_ms: u32,
}

impl Default for VoxConfig {
    fn default() -> Self {
        VoxConfig {
            open_dbfs: -35.0,
            hang_ms: 500,
        }
    }
}

/// The VOX state machine.
#[derive(Debug, Clone)]
pub struct Vox {
    open_dbfs: f32,
    hang_frames: u32,
    quiet_frames: u32,
    open: bool,
}

impl Vox {
    pub fn new(cfg: VoxConfig) -> Vox {
        Vox {
            open_dbfs: cfg.open_dbfs,
            hang_frames: cfg.hang_ms.div_ceil(FRAME_MS),
            quiet_frames: 0,
            open: false,
        }
    }

    pub fn is_open(&self) -> bool {
        self.open
    }

    /// Feeds one frame; returns `Some(new state)` when the squelch changed.
    pub fn process(&mut self, frame: &AudioFrame) -> Option<bool> {
        if frame.level_dbfs() >= self.open_dbfs {
            self.quiet_frames = 0;
            if !self.open {
                self.open = true;
                return Some(true);
            }
        } else if self.open {
            self.quiet_frames += 1;
            if self.quiet_frames >= self.hang_frames {
                self.open = false;
                return Some(false);
            }
        }
        None
    }

    pub fn hang(&self) -> Duration {
        Duration::from_millis((self.hang_frames * FRAME_MS) as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_on_level_and_closes_after_hang() {
        let mut vox = Vox::new(VoxConfig {
            open_dbfs: -30.0,
            hang_ms: 100,
        });
        let loud = AudioFrame::from_slice(&[3000; 160]); // about −21 dBFS
        let quiet = AudioFrame::from_slice(&[100; 160]); // about −50 dBFS
        assert_eq!(vox.process(&quiet), None);
        assert_eq!(vox.process(&loud), Some(true));
        // A 60 ms pause between words keeps it open.
        for _ in 0..3 {
            assert_eq!(vox.process(&quiet), None);
        }
        assert_eq!(vox.process(&loud), None);
        let changes: Vec<_> = (0..5).map(|_| vox.process(&quiet)).collect();
        assert_eq!(changes, vec![None, None, None, None, Some(false)]);
        assert!(!vox.is_open());
        assert_eq!(vox.hang(), Duration::from_millis(100));
    }
}
