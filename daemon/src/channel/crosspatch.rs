//! Cross-channel patches, switched at run time: while a patch between
//! channels A and B is on, what A receives is transmitted on B and the
//! reverse, as patched traffic (the lowest priority, so consoles, alerts and
//! roll calls on B are never talked over).
//!
//! Each direction is a small task that listens to A's monitor feed, claims B
//! when A's squelch opens, forwards the frames, and releases B after a short
//! tail. Our own transmissions on A (monitor frames with no link) are never
//! forwarded, so two patches cannot feed each other into a loop.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;

use super::{Channels, TxSource};

/// Release the destination after this long without received audio.
const TAIL: Duration = Duration::from_millis(300);

#[derive(Clone, Default)]
pub struct CrossPatches {
    active: Arc<Mutex<BTreeMap<(String, String), CancellationToken>>>,
}

impl CrossPatches {
    /// Turns the patch between `a` and `b` on or off; returns the active
    /// patches afterwards as `"a<->b"`.
    pub fn set(
        &self,
        channels: &Arc<Channels>,
        a: &str,
        b: &str,
        enabled: bool,
        parent: &CancellationToken,
    ) -> Result<Vec<String>, String> {
        if a == b {
            return Err("a channel cannot be patched to itself".into());
        }
        for id in [a, b] {
            if channels.get(id).is_none() {
                return Err(format!("no channel \"{id}\""));
            }
        }
        let key = if a < b {
            (a.to_owned(), b.to_owned())
        } else {
            (b.to_owned(), a.to_owned())
        };
        let mut active = self.active.lock().unwrap_or_else(|p| p.into_inner());
        if enabled {
            if let std::collections::btree_map::Entry::Vacant(slot) = active.entry(key) {
                let token = parent.child_token();
                let (a, b) = slot.key().clone();
                spawn_direction(channels.clone(), &a, &b, token.clone());
                spawn_direction(channels.clone(), &b, &a, token.clone());
                slot.insert(token);
            }
        } else if let Some(token) = active.remove(&key) {
            token.cancel();
        }
        Ok(active.keys().map(|(a, b)| format!("{a}<->{b}")).collect())
    }
}

fn spawn_direction(channels: Arc<Channels>, from: &str, to: &str, cancel: CancellationToken) {
    let (Some(src), Some(dst)) = (channels.get(from).cloned(), channels.get(to).cloned()) else {
        return;
    };
    let mut feed = src.monitor();
    tokio::spawn(async move {
        let mut claim = None;
        loop {
            let next = tokio::select! {
                _ = cancel.cancelled() => break,
                f = tokio::time::timeout(TAIL, feed.recv()) => f,
            };
            match next {
                Ok(Ok(f)) if f.link.is_some() && f.cor => {
                    if claim.is_none() {
                        claim = dst.claim(TxSource::Patch).await.ok();
                    }
                    if let Some(c) = claim {
                        dst.frame(c, f.frame);
                    }
                }
                Ok(Ok(_)) | Ok(Err(RecvError::Lagged(_))) => {}
                Ok(Err(RecvError::Closed)) => break,
                Err(_) => {
                    // Quiet for the tail time: give the destination back.
                    if let Some(c) = claim.take() {
                        dst.release(c).await;
                    }
                }
            }
        }
        if let Some(c) = claim {
            dst.release(c).await;
        }
    });
}
