//! The one identity event every signalling decoder and link emits: who keyed up.
//!
//! DTMF PTT-ID, 5-tone selcall, MDC1200, RFC 4733 telephone-events carried by
//! RoIP, and DMR source ids all end up as an [`AniEvent`], so the roll-call
//! engine and the alert tracker match one type against the roster.

/// How the identity reached us.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AniKind {
    /// DTMF digits decoded from audio (or RFC 4733 events on a RoIP link).
    Dtmf,
    /// A 5-tone selcall sequence (the standard is in [`AniEvent::detail`]).
    Selcall,
    /// An MDC1200 data burst; the unit id is four hex digits.
    Mdc1200,
    /// A DMR source id from the Homebrew network protocol.
    Dmr,
}

impl AniKind {
    /// Stable lower-case name used in config, storage, MQTT and gRPC.
    pub fn as_str(self) -> &'static str {
        match self {
            AniKind::Dtmf => "dtmf",
            AniKind::Selcall => "selcall",
            AniKind::Mdc1200 => "mdc1200",
            AniKind::Dmr => "dmr",
        }
    }

    /// Parses [`AniKind::as_str`] names.
    pub fn parse(s: &str) -> Option<AniKind> {
        Some(match s {
            "dtmf" => AniKind::Dtmf,
            "selcall" => AniKind::Selcall,
            "mdc1200" => AniKind::Mdc1200,
            "dmr" => AniKind::Dmr,
            _ => return None,
        })
    }
}

/// What the burst meant, beyond "this unit is keyed".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AniOp {
    /// Plain identification (PTT-ID at begin or end of transmission, selcall).
    Identify,
    /// PTT-ID sent before the voice (MDC1200 "pre").
    PttIdPre,
    /// PTT-ID sent after the voice (MDC1200 "post").
    PttIdPost,
    /// One-click alarm from the radio.
    Emergency,
    /// Radio-check request (sent to a unit).
    RadioCheckRequest,
    /// Radio-check acknowledgement (a unit answered).
    RadioCheckAck,
    /// Any other data burst: opcode and argument as received.
    Other { op: u8, arg: u8 },
}

/// One identity heard on a channel.
#[derive(Debug, Clone, PartialEq)]
pub struct AniEvent {
    pub kind: AniKind,
    /// The unit id as the roster stores it: DTMF digits, selcall digits,
    /// four hex digits for MDC1200, decimal for DMR.
    pub unit: String,
    pub op: AniOp,
    /// Extra detail, e.g. the selcall standard ("ccir") or MDC1200 opcode text.
    pub detail: Option<String>,
    /// First and last sample of the burst, counted at the decoder's input rate
    /// from the start of the stream.
    pub start_sample: u64,
    pub end_sample: u64,
    /// 0.0–1.0: how sure the decoder is (CRC-checked data is 1.0).
    pub confidence: f32,
}
