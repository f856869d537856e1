//! Subjects: `<prefix>.<host>.<session>.<event>`, each token made safe, and the default host.

/// A subject token made safe: no `.` (a token separator), `*` or `>` (wildcards), and no
/// whitespace or control characters (the protocol splits on them); each becomes `_`. An
/// empty token becomes `_` too.
///
/// ```
/// assert_eq!(sluice_nats_sink::token("a.b *>c\t"), "a_b___c_");
/// assert_eq!(sluice_nats_sink::token(""), "_");
/// ```
pub fn token(raw: &str) -> String {
    if raw.is_empty() {
        return "_".to_string();
    }
    raw.chars()
        .map(|c| match c {
            '.' | '*' | '>' => '_',
            c if c.is_whitespace() || c.is_control() => '_',
            c => c,
        })
        .collect()
}

/// A subject prefix made safe: tokens as [`token`] makes them, joined by `.`; empty tokens
/// (`a..b`, a leading or trailing dot) are dropped. `None` when nothing is left.
pub(crate) fn prefix(raw: &str) -> Option<String> {
    let tokens: Vec<String> = raw
        .split('.')
        .filter(|t| !t.is_empty())
        .map(token)
        .collect();
    (!tokens.is_empty()).then(|| tokens.join("."))
}

/// The subject of one event.
pub(crate) fn subject(prefix: &str, host: &str, session: &str, event: &str) -> String {
    let mut subject =
        String::with_capacity(prefix.len() + host.len() + session.len() + event.len() + 3);
    subject.push_str(prefix);
    for part in [host, session, event] {
        subject.push('.');
        subject.push_str(&token(part));
    }
    subject
}

/// The host token sluice uses by default: `SLUICE_HOST` when it is set and not empty, else
/// the machine's hostname (`uname`'s node name), else `_`. Read once, by the caller: the sink
/// itself reads no environment (see [`SinkBuilder::host`](crate::SinkBuilder::host)).
pub fn default_host() -> String {
    let host = match std::env::var("SLUICE_HOST") {
        Ok(host) if !host.is_empty() => host,
        _ => rustix::system::uname()
            .nodename()
            .to_string_lossy()
            .into_owned(),
    };
    if host.is_empty() {
        return "_".to_string();
    }
    host
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_lose_separators_wildcards_and_whitespace() {
        assert_eq!(token("pre_tool"), "pre_tool");
        assert_eq!(token("a.b"), "a_b");
        assert_eq!(token("*"), "_");
        assert_eq!(token(">"), "_");
        assert_eq!(token(" x\ny\u{a0}"), "_x_y_");
        assert_eq!(token(""), "_");
        assert_eq!(token("é-ü"), "é-ü");
    }

    #[test]
    fn a_subject_has_four_parts_and_more_only_from_the_prefix() {
        assert_eq!(
            subject("sluice.hooks", "h.1", "", "pre tool"),
            "sluice.hooks.h_1._.pre_tool"
        );
        assert_eq!(prefix(".a..b*.").as_deref(), Some("a.b_"));
        assert_eq!(prefix(".."), None);
    }

    #[test]
    fn the_default_host_is_never_empty() {
        assert!(!default_host().is_empty());
    }
}
