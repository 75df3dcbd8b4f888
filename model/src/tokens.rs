//! Token rules: when a token is live, the per-user cap on live API tokens,
//! and which of a node's one-time agent tokens a new one displaces. Pure;
//! the stores read the token rows and write what these functions say, and
//! the application layer checks expiry with [`is_live`] too.

use super::Seconds;

/// Whether a token expiring at `expires_at` (`None`: never) is live at
/// `now`: it expires at that second.
pub fn is_live(expires_at: Option<Seconds>, now: Seconds) -> bool {
    expires_at.is_none_or(|at| at > now)
}

/// Whether a user whose unrevoked tokens expire at `expiries` may have one
/// more: fewer than `max_live` of them are live at `now`.
pub fn may_add_token(expiries: impl IntoIterator<Item = Option<Seconds>>, now: Seconds, max_live: i64) -> bool {
    let live = expiries.into_iter().filter(|&at| is_live(at, now)).count();
    i64::try_from(live).unwrap_or(i64::MAX) < max_live
}

/// One of a node's stored agent tokens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AgentToken<'a> {
    pub sha256: &'a str,
    pub created_at: Seconds,
    pub expires_at: Seconds,
    pub used: bool,
}

/// The tokens of a node to delete once `minted` is stored beside them
/// (`stored` includes it): the expired ones, used or not, and the unused
/// ones beyond the `keep` newest, the one just minted counting as the
/// newest (then newer creation first, then the larger hash).
pub fn displaced_agent_tokens<'a>(stored: &[AgentToken<'a>], minted: &str, keep: u32, now: Seconds) -> Vec<&'a str> {
    let (expired, live): (Vec<&AgentToken<'a>>, Vec<&AgentToken<'a>>) = stored.iter().partition(|t| t.expires_at <= now);
    let mut unused: Vec<&AgentToken<'a>> = live.into_iter().filter(|t| !t.used).collect();
    unused.sort_by(|a, b| (b.sha256 == minted, b.created_at, b.sha256).cmp(&(a.sha256 == minted, a.created_at, a.sha256)));
    let keep = usize::try_from(keep).unwrap_or(usize::MAX);
    expired.into_iter().chain(unused.into_iter().skip(keep)).map(|t| t.sha256).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_expires_at_its_second() {
        assert!(is_live(None, 1_000));
        assert!(is_live(Some(1_001), 1_000));
        assert!(!is_live(Some(1_000), 1_000));
        assert!(!is_live(Some(999), 1_000));
    }

    #[test]
    fn the_cap_counts_live_tokens_only() {
        assert!(may_add_token([], 100, 1));
        assert!(!may_add_token([None], 100, 1));
        assert!(may_add_token([None, Some(50), Some(100)], 100, 2), "two expired, one live");
        assert!(!may_add_token([None, Some(101)], 100, 2));
        assert!(!may_add_token([], 100, 0));
    }

    fn token(sha256: &str, created_at: Seconds, expires_at: Seconds, used: bool) -> AgentToken<'_> {
        AgentToken { sha256, created_at, expires_at, used }
    }

    #[test]
    fn the_newest_unused_tokens_are_kept() {
        let stored =
            [token("a", 10, 1_000, false), token("b", 20, 1_000, false), token("c", 30, 1_000, false), token("new", 40, 1_000, false)];
        assert_eq!(displaced_agent_tokens(&stored, "new", 2, 40), vec!["b", "a"]);
        assert!(displaced_agent_tokens(&stored, "new", 4, 40).is_empty());
    }

    #[test]
    fn the_minted_token_is_kept_among_tokens_of_the_same_second() {
        let stored = [token("zz", 40, 1_000, false), token("yy", 40, 1_000, false), token("aa", 40, 1_000, false)];
        assert_eq!(displaced_agent_tokens(&stored, "aa", 1, 40), vec!["zz", "yy"]);
        assert_eq!(displaced_agent_tokens(&stored, "aa", 2, 40), vec!["yy"]);
    }

    #[test]
    fn expired_tokens_go_and_used_ones_stay_until_they_expire() {
        let stored =
            [token("old", 1, 40, false), token("spent", 2, 40, true), token("used", 3, 1_000, true), token("new", 40, 1_000, false)];
        assert_eq!(displaced_agent_tokens(&stored, "new", 1, 40), vec!["old", "spent"]);
    }
}
