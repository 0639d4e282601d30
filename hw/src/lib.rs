//! Everything in rollcalld that touches radio hardware or its wire formats.
//!
//! # Layout
//! - [`audio`]: the internal audio frame (20 ms, mono, i16, 8 kHz) and helpers.
//! - [`ani`]: the identity event (`AniEvent`) all signalling decoders and links emit.
//! - [`signalling`]: DTMF, 5-tone selcall and MDC1200 decoders and encoders.
//! - [`wav`]: WAV file reading and resampling to the internal rate.
//! - [`link`]: the link model — the handle every link driver hides behind, the
//!   events it yields, and the supervisor that restarts failed drivers.
//! - [`rtp`]: RTP wire format, G.711, RFC 4733 events and the jitter buffer.
//! - [`roip`]: the RoIP link driver (RTP over UDP).
//! - [`soundcard`]: cpal capture/playback and VOX.
//! - [`serial`]: control interfaces — modem lines, CM108 HID, SvxLink PTY,
//!   Kenwood CAT, SA818, Hamlib rigctld.
//! - [`dmr`]: the Homebrew (MMDVM) master protocol, DMR call tracking and
//!   radio checks (CSBK with BPTC/Golay coding), and its UDP link driver.
//! - [`ogg`]: the Ogg Opus file writer and crash repair used by the recorder.
//! - [`sim`]: simulated base stations and guards (`radiosim`).
//!
//! Decoders and wire formats are sans-IO: samples or bytes in, values out, time
//! passed in. Only the driver modules do I/O, and they stay thin.
//!
//! **Invariant:** this crate never imports `rollcalld` or `rollcall-proto`.

pub mod ani;
pub mod audio;
pub mod dmr;
pub mod link;
pub mod ogg;
pub mod roip;
pub mod rtp;
pub mod serial;
pub mod signalling;
pub mod sim;
pub mod soundcard;
pub mod wav;
