//! Session rules: when a visit continues the current session and when it
//! starts a new one.

use super::{ClientId, Identity};

/// GA4's rule: a session ends after a period of inactivity (30 minutes by
/// default); the next hit starts a new one whose id is the unix time of that
/// hit.
#[derive(Clone, Copy, Debug)]
pub struct SessionPolicy {
    /// Inactivity after which the next hit starts a new session, in seconds.
    pub timeout_secs: i64,
}

impl Default for SessionPolicy {
    fn default() -> Self {
        Self {
            timeout_secs: 30 * 60,
        }
    }
}

impl SessionPolicy {
    /// A brand-new identity: first session, starting now.
    pub fn new_identity(&self, client_id: ClientId, now: i64) -> Identity {
        Identity {
            client_id,
            session_id: now,
            session_number: 1,
            user_id: None,
            last_seen: now,
        }
    }

    /// Records a hit at `now` on `identity`; returns true when it starts a
    /// new session.
    ///
    /// A hit that claims to come from before the session started (clock skew
    /// between sidecars) continues the session rather than rewinding it.
    pub fn touch(&self, identity: &mut Identity, now: i64) -> bool {
        if now.saturating_sub(identity.last_seen) >= self.timeout_secs {
            identity.session_id = now;
            identity.session_number = identity.session_number.saturating_add(1);
            identity.last_seen = now;
            true
        } else {
            identity.last_seen = identity.last_seen.max(now);
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inactivity_starts_a_new_session() {
        let p = SessionPolicy::default();
        let mut id = p.new_identity(ClientId::from_parts(7, 1000), 1000);
        assert!(!p.touch(&mut id, 1000 + 1799));
        assert_eq!(
            (id.session_id, id.session_number, id.last_seen),
            (1000, 1, 2799)
        );
        // 30 minutes after the last hit, not after the session start.
        assert!(!p.touch(&mut id, 2799 + 1799));
        assert!(p.touch(&mut id, 4598 + 1800));
        assert_eq!((id.session_id, id.session_number), (6398, 2));
    }

    #[test]
    fn clock_skew_never_rewinds() {
        let p = SessionPolicy::default();
        let mut id = p.new_identity(ClientId::from_parts(7, 1000), 5000);
        assert!(!p.touch(&mut id, 4000));
        assert_eq!((id.session_id, id.last_seen), (5000, 5000));
    }
}
