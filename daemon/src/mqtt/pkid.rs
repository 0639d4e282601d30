//! Matching broker PubAcks to outbox rows, as a pure type.
//!
//! rumqttc assigns packet ids itself and only reports them afterwards, as
//! `Outgoing::Publish(pkid)` events in the order the requests entered its
//! channel. So the bridge records one entry per request it queues (the
//! outbox row, or `None` for a message that is not in the outbox), in
//! order; each outgoing-publish event pops the oldest entry and binds it to
//! the packet id; the PubAck for that id yields the row to delete. Nothing
//! here does I/O.

use std::collections::{HashMap, VecDeque};

#[derive(Debug, Default)]
pub struct PkidMap {
    /// One entry per request queued and not yet reported, oldest first.
    queued: VecDeque<Option<i64>>,
    /// Packet id → outbox row, awaiting PubAck.
    inflight: HashMap<u16, i64>,
    /// A publish rumqttc held back on a packet-id collision (reported as
    /// `AwaitAck(pkid)`); its later `Publish(pkid)` is the same request and
    /// must not consume a second entry.
    collided: Option<u16>,
}

impl PkidMap {
    /// A request was queued in rumqttc's channel.
    pub fn queued(&mut self, row: Option<i64>) {
        self.queued.push_back(row);
    }

    /// rumqttc reported `Outgoing::Publish(pkid)` (pkid 0 for QoS 0).
    pub fn outgoing(&mut self, pkid: u16) {
        if self.collided == Some(pkid) {
            self.collided = None;
            return;
        }
        self.bind(pkid);
    }

    /// rumqttc reported `Outgoing::AwaitAck(pkid)`.
    pub fn await_ack(&mut self, pkid: u16) {
        self.collided = Some(pkid);
        self.bind(pkid);
    }

    fn bind(&mut self, pkid: u16) {
        if let Some(Some(row)) = self.queued.pop_front() {
            if pkid != 0 {
                self.inflight.insert(pkid, row);
            }
        }
    }

    /// The broker acknowledged `pkid`: the row that may now be deleted.
    pub fn puback(&mut self, pkid: u16) -> Option<i64> {
        self.inflight.remove(&pkid)
    }

    /// The connection is gone: rumqttc's queue is discarded, so is ours.
    pub fn reset(&mut self) {
        self.queued.clear();
        self.inflight.clear();
        self.collided = None;
    }

    pub fn in_flight(&self) -> usize {
        self.inflight.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_follow_their_packet_ids_past_qos0_messages() {
        let mut m = PkidMap::default();
        m.queued(None); // status, QoS 1 but not in the outbox
        m.queued(Some(10));
        m.queued(None); // an event, QoS 0
        m.queued(Some(11));
        m.outgoing(1);
        m.outgoing(2);
        m.outgoing(0);
        m.outgoing(3);
        assert_eq!(m.in_flight(), 2);
        // Acks out of order are fine.
        assert_eq!(m.puback(3), Some(11));
        assert_eq!(m.puback(1), None, "status is not an outbox row");
        assert_eq!(m.puback(2), Some(10));
        assert_eq!(m.puback(2), None, "a second ack deletes nothing");
    }

    #[test]
    fn a_collision_consumes_one_entry() {
        let mut m = PkidMap::default();
        m.queued(Some(1));
        m.queued(Some(2));
        m.await_ack(5); // request for row 1 held back on pkid 5
        m.outgoing(5); // … and sent once 5 was freed
        m.outgoing(6);
        assert_eq!(m.puback(5), Some(1));
        assert_eq!(m.puback(6), Some(2));
    }

    #[test]
    fn reset_forgets_everything() {
        let mut m = PkidMap::default();
        m.queued(Some(1));
        m.outgoing(1);
        m.queued(Some(2));
        m.reset();
        m.queued(Some(3));
        m.outgoing(1);
        assert_eq!(m.puback(1), Some(3), "the old binding of pkid 1 is gone");
        assert_eq!(m.in_flight(), 0);
    }
}
