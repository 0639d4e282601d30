//! The channel's transmission state machine, sans-IO: squelch changes, claims
//! and time pass in; actions (key/unkey a link, start/end a transmission,
//! time-outs) come out. The channel task executes the actions.
//!
//! Model:
//! - Each link has its own receive state: squelch open → *receiving*; squelch
//!   closed → *hang* for `hang` (a reopen inside it continues the same
//!   transmission) → idle. A received transmission is one recording.
//! - At most one **claim** holds the channel's transmitters at a time: a local
//!   source (console, alert, roll call) keys every link that is up, a patch
//!   keys every link except its source. A higher-priority claim pre-empts a
//!   lower one; an equal or lower one is refused while the channel is held.
//! - A merged channel patches the first link that starts receiving onto the
//!   others; the patch holds PTT until `patch_tail` after the source's squelch
//!   closes.
//! - Every claim is cut by `tx_timeout`; a timed-out patch source is locked
//!   out until its squelch closes, so a stuck squelch cannot hold PTT.
//! - A destination whose own squelch is open is *busy*: with
//!   [`BusyPolicy::Wait`] it is left unkeyed until it clears; with
//!   [`BusyPolicy::TalkOver`] it is keyed anyway.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::TxSource;
use crate::config::BusyPolicy;

#[derive(Debug, Clone, Copy)]
pub struct MachineConfig {
    pub hang: Duration,
    pub tx_timeout: Duration,
    pub patch_tail: Duration,
    pub merge: bool,
    pub busy_policy: BusyPolicy,
}

/// Identifies one grant; a stale release (after pre-emption) is ignored.
pub type ClaimId = u64;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Key (`true`) or unkey a link's transmitter.
    Key { link: usize, on: bool },
    /// A link started receiving a transmission.
    RxStarted { link: usize },
    /// A link's received transmission ended (hang time expired).
    RxEnded { link: usize },
    /// A claim started transmitting.
    TxStarted { claim: ClaimId, source: TxSource },
    /// A claim ended: released, pre-empted or timed out.
    TxEnded {
        claim: ClaimId,
        source: TxSource,
        reason: TxEndReason,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxEndReason {
    Released,
    Preempted(TxSource),
    TimedOut,
    /// Every destination went down.
    NoLinks,
}

/// The answer to a claim.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClaimResult {
    Granted(ClaimId),
    /// Held by an equal or higher priority source.
    Busy(TxSource),
    NoLinkUp,
}

#[derive(Debug, Clone, Default)]
struct LinkSlot {
    up: bool,
    cor: bool,
    /// Receiving, or in hang time until this instant.
    rx_active: bool,
    hang_until: Option<Instant>,
    keyed: bool,
    /// Squelch stuck open past the time-out: not patched until it closes.
    locked_out: bool,
}

#[derive(Debug, Clone)]
struct Claim {
    id: ClaimId,
    source: TxSource,
    /// The patched link, for patch claims.
    patch_from: Option<usize>,
    deadline: Instant,
    /// Patch tail: release at this instant.
    tail_until: Option<Instant>,
}

#[derive(Debug)]
pub struct ChannelMachine {
    cfg: MachineConfig,
    links: Vec<LinkSlot>,
    claim: Option<Claim>,
    next_claim: ClaimId,
    actions: VecDeque<Action>,
}

impl ChannelMachine {
    pub fn new(cfg: MachineConfig, links: usize) -> ChannelMachine {
        ChannelMachine {
            cfg,
            links: vec![LinkSlot::default(); links],
            claim: None,
            next_claim: 1,
            actions: VecDeque::new(),
        }
    }

    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// The current holder of the transmitters, if any.
    pub fn holder(&self) -> Option<(ClaimId, TxSource)> {
        self.claim.as_ref().map(|c| (c.id, c.source))
    }

    /// The link currently patched onto the others, if any.
    pub fn patch_source(&self) -> Option<usize> {
        self.claim.as_ref().and_then(|c| c.patch_from)
    }

    pub fn is_keyed(&self, link: usize) -> bool {
        self.links.get(link).is_some_and(|l| l.keyed)
    }

    pub fn is_receiving(&self, link: usize) -> bool {
        self.links.get(link).is_some_and(|l| l.rx_active)
    }

    /// Some link is receiving or in its hang time: the air is not clear.
    pub fn air_busy(&self) -> bool {
        self.links.iter().any(|l| l.rx_active)
    }

    /// `"idle"`, `"receiving"`, `"transmitting"` or `"hang"`, for status.
    pub fn state_name(&self) -> &'static str {
        if self.claim.is_some() {
            "transmitting"
        } else if self.links.iter().any(|l| l.cor) {
            "receiving"
        } else if self.links.iter().any(|l| l.rx_active) {
            "hang"
        } else {
            "idle"
        }
    }

    /// The earliest instant [`handle_timeout`](Self::handle_timeout) must run.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let hang = self.links.iter().filter_map(|l| l.hang_until).min();
        let claim = self
            .claim
            .as_ref()
            .map(|c| c.tail_until.map_or(c.deadline, |t| t.min(c.deadline)));
        [hang, claim].into_iter().flatten().min()
    }

    pub fn handle_link_up(&mut self, now: Instant, link: usize, up: bool) {
        let Some(slot) = self.links.get_mut(link) else {
            return;
        };
        slot.up = up;
        if !up {
            if slot.cor {
                self.handle_cor(now, link, false);
            }
            let slot = &mut self.links[link];
            // A link that went down has no transmitter state worth keeping.
            slot.keyed = false;
            if let Some(c) = &self.claim {
                if c.patch_from == Some(link) || !self.any_destination(c.patch_from) {
                    self.end_claim(TxEndReason::NoLinks);
                }
            }
        } else if let Some(c) = self.claim.clone() {
            // A link that came back joins the transmission in progress.
            if c.patch_from != Some(link) {
                self.key(link, true);
            }
        }
    }

    pub fn handle_cor(&mut self, now: Instant, link: usize, open: bool) {
        let Some(slot) = self.links.get_mut(link) else {
            return;
        };
        if slot.cor == open {
            return;
        }
        slot.cor = open;
        if open {
            slot.hang_until = None;
            if !slot.rx_active {
                slot.rx_active = true;
                self.actions.push_back(Action::RxStarted { link });
            }
            self.maybe_start_patch(now, link);
        } else {
            slot.hang_until = Some(now + self.cfg.hang);
            if slot.locked_out {
                slot.locked_out = false;
            }
            if let Some(c) = &mut self.claim {
                if c.patch_from == Some(link) {
                    c.tail_until = Some(now + self.cfg.patch_tail);
                }
            }
            // Busy destinations that cleared join the current claim.
            if let Some(c) = self.claim.clone() {
                if c.patch_from != Some(link) && !self.links[link].keyed && self.links[link].up {
                    self.key(link, true);
                }
            }
        }
    }

    /// Asks for the transmitters. Pre-empts a lower-priority holder.
    pub fn claim(&mut self, now: Instant, source: TxSource) -> ClaimResult {
        if let Some(c) = &self.claim {
            if c.source >= source {
                return ClaimResult::Busy(c.source);
            }
        }
        if !self.links.iter().any(|l| l.up) {
            return ClaimResult::NoLinkUp;
        }
        if self.claim.is_some() {
            self.end_claim(TxEndReason::Preempted(source));
        }
        ClaimResult::Granted(self.start_claim(now, source, None))
    }

    /// Releases a claim; ignored when `id` no longer holds the channel.
    pub fn release(&mut self, now: Instant, id: ClaimId) {
        if self.claim.as_ref().is_some_and(|c| c.id == id) {
            self.end_claim(TxEndReason::Released);
            // Traffic that waited behind the claim is patched now.
            if let Some(src) = self.links.iter().position(|l| l.cor && !l.locked_out) {
                self.maybe_start_patch(now, src);
            }
        }
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        for link in 0..self.links.len() {
            let slot = &mut self.links[link];
            if slot.hang_until.is_some_and(|t| t <= now) {
                slot.hang_until = None;
                slot.rx_active = false;
                self.actions.push_back(Action::RxEnded { link });
            }
        }
        let Some(c) = self.claim.clone() else {
            return;
        };
        if c.deadline <= now {
            if let Some(src) = c.patch_from {
                self.links[src].locked_out = true;
            }
            self.end_claim(TxEndReason::TimedOut);
        } else if c.tail_until.is_some_and(|t| t <= now) {
            self.end_claim(TxEndReason::Released);
            if let Some(src) = self.links.iter().position(|l| l.cor && !l.locked_out) {
                self.maybe_start_patch(now, src);
            }
        }
    }

    /// Links that should receive `link`'s audio right now (the patch).
    pub fn patch_destinations(&self, link: usize) -> impl Iterator<Item = usize> + '_ {
        let active = self.patch_source() == Some(link);
        self.links
            .iter()
            .enumerate()
            .filter(move |(i, l)| active && *i != link && l.keyed)
            .map(|(i, _)| i)
    }

    /// Links a local claim's audio goes to.
    pub fn keyed_links(&self) -> impl Iterator<Item = usize> + '_ {
        self.links
            .iter()
            .enumerate()
            .filter(|(_, l)| l.keyed)
            .map(|(i, _)| i)
    }

    fn maybe_start_patch(&mut self, now: Instant, link: usize) {
        if !self.cfg.merge || self.links.len() < 2 || self.links[link].locked_out {
            return;
        }
        match &mut self.claim {
            Some(c) if c.patch_from == Some(link) => {
                // Squelch reopened inside the tail: carry on.
                c.tail_until = None;
            }
            Some(_) => {}
            None => {
                if self.any_destination(Some(link)) {
                    self.start_claim(now, TxSource::Patch, Some(link));
                }
            }
        }
    }

    fn any_destination(&self, except: Option<usize>) -> bool {
        self.links
            .iter()
            .enumerate()
            .any(|(i, l)| Some(i) != except && l.up)
    }

    fn start_claim(
        &mut self,
        now: Instant,
        source: TxSource,
        patch_from: Option<usize>,
    ) -> ClaimId {
        let id = self.next_claim;
        self.next_claim += 1;
        self.claim = Some(Claim {
            id,
            source,
            patch_from,
            deadline: now + self.cfg.tx_timeout,
            tail_until: None,
        });
        self.actions
            .push_back(Action::TxStarted { claim: id, source });
        for link in 0..self.links.len() {
            let l = &self.links[link];
            let busy = l.cor && self.cfg.busy_policy == BusyPolicy::Wait;
            if Some(link) != patch_from && l.up && !busy {
                self.key(link, true);
            }
        }
        id
    }

    fn end_claim(&mut self, reason: TxEndReason) {
        let Some(c) = self.claim.take() else {
            return;
        };
        for link in 0..self.links.len() {
            if self.links[link].keyed {
                self.key(link, false);
            }
        }
        self.actions.push_back(Action::TxEnded {
            claim: c.id,
            source: c.source,
            reason,
        });
    }

    fn key(&mut self, link: usize, on: bool) {
        if self.links[link].keyed != on {
            self.links[link].keyed = on;
            self.actions.push_back(Action::Key { link, on });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> MachineConfig {
        MachineConfig {
            hang: Duration::from_millis(1500),
            tx_timeout: Duration::from_secs(60),
            patch_tail: Duration::from_millis(300),
            merge: true,
            busy_policy: BusyPolicy::Wait,
        }
    }

    fn drain(m: &mut ChannelMachine) -> Vec<Action> {
        std::iter::from_fn(|| m.poll_action()).collect()
    }

    fn two_links_up(t0: Instant) -> ChannelMachine {
        let mut m = ChannelMachine::new(cfg(), 2);
        m.handle_link_up(t0, 0, true);
        m.handle_link_up(t0, 1, true);
        drain(&mut m);
        m
    }

    const MS: fn(u64) -> Duration = Duration::from_millis;

    #[test]
    fn patch_follows_cor_with_tail_and_never_echoes_back() {
        let t0 = Instant::now();
        let mut m = two_links_up(t0);
        m.handle_cor(t0, 0, true);
        assert_eq!(
            drain(&mut m),
            vec![
                Action::RxStarted { link: 0 },
                Action::TxStarted {
                    claim: 1,
                    source: TxSource::Patch
                },
                Action::Key { link: 1, on: true },
            ]
        );
        assert_eq!(m.patch_destinations(0).collect::<Vec<_>>(), vec![1]);
        assert_eq!(
            m.patch_destinations(1).count(),
            0,
            "no echo back to the source"
        );
        assert!(!m.is_keyed(0));
        m.handle_cor(t0 + MS(2000), 0, false);
        assert_eq!(m.poll_timeout(), Some(t0 + MS(2300)));
        m.handle_timeout(t0 + MS(2299));
        assert!(m.is_keyed(1), "still in the tail");
        m.handle_timeout(t0 + MS(2300));
        assert_eq!(
            drain(&mut m),
            vec![
                Action::Key { link: 1, on: false },
                Action::TxEnded {
                    claim: 1,
                    source: TxSource::Patch,
                    reason: TxEndReason::Released
                },
            ]
        );
        assert_eq!(m.state_name(), "hang");
        m.handle_timeout(t0 + MS(3500));
        assert_eq!(drain(&mut m), vec![Action::RxEnded { link: 0 }]);
        assert_eq!(m.state_name(), "idle");
    }

    #[test]
    fn squelch_reopening_inside_hang_is_one_transmission() {
        let t0 = Instant::now();
        let mut m = two_links_up(t0);
        m.handle_cor(t0, 0, true);
        m.handle_cor(t0 + MS(1000), 0, false);
        m.handle_cor(t0 + MS(1200), 0, true);
        let actions = drain(&mut m);
        assert_eq!(
            actions
                .iter()
                .filter(|a| matches!(a, Action::RxStarted { .. }))
                .count(),
            1
        );
        assert_eq!(
            actions
                .iter()
                .filter(|a| matches!(a, Action::TxStarted { .. }))
                .count(),
            1
        );
        assert!(m.is_keyed(1), "the tail was cancelled by the reopen");
    }

    #[test]
    fn priorities_preempt_and_refuse() {
        let t0 = Instant::now();
        let mut m = two_links_up(t0);
        let rc = match m.claim(t0, TxSource::RollCall) {
            ClaimResult::Granted(id) => id,
            other => panic!("{other:?}"),
        };
        assert!(m.is_keyed(0) && m.is_keyed(1));
        // Patched traffic cannot take it.
        m.handle_cor(t0, 0, true);
        assert_eq!(m.holder(), Some((rc, TxSource::RollCall)));
        assert_eq!(
            m.claim(t0, TxSource::RollCall),
            ClaimResult::Busy(TxSource::RollCall)
        );
        // The console pre-empts the roll call.
        let console = match m.claim(t0, TxSource::Console) {
            ClaimResult::Granted(id) => id,
            other => panic!("{other:?}"),
        };
        let actions = drain(&mut m);
        assert!(actions.contains(&Action::TxEnded {
            claim: rc,
            source: TxSource::RollCall,
            reason: TxEndReason::Preempted(TxSource::Console)
        }));
        assert_eq!(
            m.claim(t0, TxSource::Alert),
            ClaimResult::Busy(TxSource::Console)
        );
        // A stale release by the pre-empted roll call changes nothing.
        m.release(t0, rc);
        assert_eq!(m.holder(), Some((console, TxSource::Console)));
        // Never two sources keyed at once: one holder at a time by construction.
        m.release(t0, console);
        // The waiting received traffic is patched as soon as the console is done.
        assert_eq!(m.holder().map(|h| h.1), Some(TxSource::Patch));
        assert_eq!(m.patch_source(), Some(0));
    }

    #[test]
    fn timeout_cuts_a_stuck_squelch_and_locks_it_out() {
        let t0 = Instant::now();
        let mut m = two_links_up(t0);
        m.handle_cor(t0, 0, true);
        drain(&mut m);
        assert_eq!(m.poll_timeout(), Some(t0 + Duration::from_secs(60)));
        m.handle_timeout(t0 + Duration::from_secs(60));
        assert_eq!(
            drain(&mut m),
            vec![
                Action::Key { link: 1, on: false },
                Action::TxEnded {
                    claim: 1,
                    source: TxSource::Patch,
                    reason: TxEndReason::TimedOut
                },
            ]
        );
        assert_eq!(m.holder(), None);
        // Still stuck: nothing restarts the patch.
        m.handle_timeout(t0 + Duration::from_secs(61));
        assert_eq!(m.holder(), None);
        // Squelch closes and reopens: a fresh transmission is patched again.
        m.handle_cor(t0 + Duration::from_secs(70), 0, false);
        m.handle_cor(t0 + Duration::from_secs(75), 0, true);
        assert_eq!(m.holder().map(|h| h.1), Some(TxSource::Patch));
    }

    #[test]
    fn console_timeout_applies_too() {
        let t0 = Instant::now();
        let mut m = two_links_up(t0);
        let ClaimResult::Granted(id) = m.claim(t0, TxSource::Console) else {
            panic!()
        };
        m.handle_timeout(t0 + Duration::from_secs(60));
        let actions = drain(&mut m);
        assert!(actions.contains(&Action::TxEnded {
            claim: id,
            source: TxSource::Console,
            reason: TxEndReason::TimedOut
        }));
        assert!(!m.is_keyed(0) && !m.is_keyed(1));
    }

    #[test]
    fn busy_destination_waits_then_joins() {
        let t0 = Instant::now();
        let mut m = ChannelMachine::new(cfg(), 3);
        for l in 0..3 {
            m.handle_link_up(t0, l, true);
        }
        m.handle_cor(t0, 2, true); // link 2 is busy with its own traffic
        drain(&mut m);
        let ClaimResult::Granted(_) = m.claim(t0, TxSource::Alert) else {
            panic!()
        };
        // Link 2's patch was pre-empted; under Wait the busy link is not keyed.
        assert!(m.is_keyed(0) && m.is_keyed(1) && !m.is_keyed(2));
        m.handle_cor(t0 + MS(500), 2, false);
        assert!(m.is_keyed(2), "joins once clear");

        let mut over = cfg();
        over.busy_policy = BusyPolicy::TalkOver;
        let mut m = ChannelMachine::new(over, 2);
        m.handle_link_up(t0, 0, true);
        m.handle_link_up(t0, 1, true);
        m.handle_cor(t0, 1, true);
        let _ = m.claim(t0, TxSource::Console);
        assert!(m.is_keyed(1), "talk-over keys a busy link");
    }

    #[test]
    fn no_links_up_refuses_and_down_link_ends_patch() {
        let t0 = Instant::now();
        let mut m = ChannelMachine::new(cfg(), 2);
        assert_eq!(m.claim(t0, TxSource::Console), ClaimResult::NoLinkUp);
        m.handle_link_up(t0, 0, true);
        m.handle_link_up(t0, 1, true);
        m.handle_cor(t0, 0, true);
        drain(&mut m);
        m.handle_link_up(t0, 1, false);
        let actions = drain(&mut m);
        assert!(actions.iter().any(|a| matches!(
            a,
            Action::TxEnded {
                reason: TxEndReason::NoLinks,
                ..
            }
        )));
    }

    #[test]
    fn unmerged_channel_does_not_patch() {
        let t0 = Instant::now();
        let mut c = cfg();
        c.merge = false;
        let mut m = ChannelMachine::new(c, 2);
        m.handle_link_up(t0, 0, true);
        m.handle_link_up(t0, 1, true);
        m.handle_cor(t0, 0, true);
        assert_eq!(m.holder(), None);
    }
}
