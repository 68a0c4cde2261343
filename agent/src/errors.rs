//! Rendering errors for logs, statuses and Events: an error and its sources on one line.
//! A leaf: every layer of the agent uses it, it uses nothing of the agent.

/// An error and its sources, `: `-separated.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// Like [`error_chain`], but a source whose text the line already contains is left out (for
/// errors that repeat their source in their own message, e.g. `#[error(transparent)]`).
pub fn error_chain_without_repeats(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        let s_text = s.to_string();
        if !out.contains(&s_text) {
            out.push_str(": ");
            out.push_str(&s_text);
        }
        cur = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("outer: {0}")]
    struct Outer(#[source] Inner);

    #[derive(Debug, thiserror::Error)]
    #[error("inner")]
    struct Inner;

    #[test]
    fn sources_are_joined_and_repeats_can_be_left_out() {
        assert_eq!(error_chain(&Outer(Inner)), "outer: inner: inner");
        assert_eq!(error_chain_without_repeats(&Outer(Inner)), "outer: inner");
    }
}
