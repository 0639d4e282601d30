//! Being written: simulated serial radios on PTY pairs.
