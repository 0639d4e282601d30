//! A bounded line buffer for the text protocols (CAT `;`, SA818 CRLF,
//! rigctld LF, SvxLink single characters need none).
//!
//! Bytes go in as they arrive, whole lines come out. A line longer than the
//! limit is reported once as [`FrameError::Overlong`] and skipped up to its
//! terminator, so garbage on the wire can never grow memory without bound.

/// What went wrong while framing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("line longer than {max} bytes without a terminator; skipped")]
    Overlong { max: usize },
}

/// Splits a byte stream into lines ending in `terminator`.
#[derive(Debug, Clone)]
pub struct LineBuffer {
    terminator: u8,
    max: usize,
    buf: Vec<u8>,
    /// Set while skipping the rest of an overlong line.
    discarding: bool,
}

impl LineBuffer {
    /// `max` bounds one line, terminator excluded.
    pub fn new(terminator: u8, max: usize) -> LineBuffer {
        LineBuffer {
            terminator,
            max,
            buf: Vec::new(),
            discarding: false,
        }
    }

    /// Appends received bytes. Call [`LineBuffer::next_line`] until it
    /// returns `None` afterwards.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next complete line without its terminator, an error for an
    /// overlong line, or `None` when more bytes are needed.
    pub fn next_line(&mut self) -> Option<Result<Vec<u8>, FrameError>> {
        loop {
            match self.buf.iter().position(|&b| b == self.terminator) {
                Some(end) => {
                    let line: Vec<u8> = self.buf.drain(..=end).take(end).collect();
                    if self.discarding {
                        // This terminator ends the overlong line already reported.
                        self.discarding = false;
                        continue;
                    }
                    if line.len() > self.max {
                        return Some(Err(FrameError::Overlong { max: self.max }));
                    }
                    return Some(Ok(line));
                }
                None => {
                    if self.buf.len() > self.max {
                        self.buf.clear();
                        if !self.discarding {
                            self.discarding = true;
                            return Some(Err(FrameError::Overlong { max: self.max }));
                        }
                    }
                    return None;
                }
            }
        }
    }

    /// Bytes held back waiting for a terminator.
    pub fn pending(&self) -> usize {
        self.buf.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(lb: &mut LineBuffer) -> Vec<Result<Vec<u8>, FrameError>> {
        std::iter::from_fn(|| lb.next_line()).collect()
    }

    #[test]
    fn splits_lines_across_pushes() {
        let mut lb = LineBuffer::new(b';', 16);
        lb.push(b"TX");
        assert!(lb.next_line().is_none());
        lb.push(b";RX;I");
        assert_eq!(drain(&mut lb), vec![Ok(b"TX".to_vec()), Ok(b"RX".to_vec())]);
        assert_eq!(lb.pending(), 1);
        lb.push(b"F;");
        assert_eq!(drain(&mut lb), vec![Ok(b"IF".to_vec())]);
    }

    #[test]
    fn overlong_line_is_reported_once_and_skipped() {
        let mut lb = LineBuffer::new(b'\n', 4);
        lb.push(b"abcdefgh");
        assert_eq!(drain(&mut lb), vec![Err(FrameError::Overlong { max: 4 })]);
        lb.push(b"ijklmnop");
        assert_eq!(drain(&mut lb), vec![]);
        lb.push(b"q\nok\n");
        assert_eq!(drain(&mut lb), vec![Ok(b"ok".to_vec())]);
        // Overlong but complete in one push.
        lb.push(b"123456\nx\n");
        assert_eq!(
            drain(&mut lb),
            vec![Err(FrameError::Overlong { max: 4 }), Ok(b"x".to_vec())]
        );
    }
}
