//! Being written: simulated DMR Homebrew hotspot.
