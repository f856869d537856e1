//! The server URLs: credentials taken out of them, so that no message can show a secret.

use std::fmt;

use crate::error::ConfigError;

/// Secrets a URL carried; never displayed.
#[derive(Clone, Default, PartialEq, Eq)]
pub(crate) enum UrlAuth {
    #[default]
    None,
    Token(String),
    UserPassword(String, String),
}

impl fmt::Debug for UrlAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::None => "None",
            Self::Token(_) => "Token(<redacted>)",
            Self::UserPassword(..) => "UserPassword(<redacted>)",
        })
    }
}

/// The servers of a `SLUICE_URL`-style list (`nats://user:pass@a:4222,nats://b:4222`),
/// without their credentials, and the credentials apart.
#[derive(Debug, Clone)]
pub(crate) struct Servers {
    /// Each server as `scheme://host:port`, without credentials, path or query.
    pub(crate) urls: Vec<String>,
    pub(crate) auth: UrlAuth,
    pub(crate) tls: bool,
}

impl Servers {
    pub(crate) fn parse(list: &str) -> Result<Self, ConfigError> {
        let mut urls = Vec::new();
        let mut auth = UrlAuth::None;
        let mut tls = false;
        for raw in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let parsed = url::Url::parse(raw).map_err(|_| ConfigError::Url {
                url: redact(raw),
                reason: "not a URL",
            })?;
            match parsed.scheme() {
                "nats" => {}
                "tls" => tls = true,
                _ => {
                    return Err(ConfigError::Url {
                        url: redact(raw),
                        reason: "the scheme must be nats:// or tls://",
                    })
                }
            }
            let host = parsed.host_str().ok_or_else(|| ConfigError::Url {
                url: redact(raw),
                reason: "no host",
            })?;
            let port = parsed.port().unwrap_or(4222);
            let these = match (parsed.username(), parsed.password()) {
                ("", None) => UrlAuth::None,
                (token, None) => UrlAuth::Token(decode(token)),
                (user, Some(password)) => UrlAuth::UserPassword(decode(user), decode(password)),
            };
            if these != UrlAuth::None {
                if auth != UrlAuth::None && auth != these {
                    return Err(ConfigError::Url {
                        url: redact(raw),
                        reason: "the servers of one list must carry the same credentials",
                    });
                }
                auth = these;
            }
            urls.push(format!("{}://{host}:{port}", parsed.scheme()));
        }
        if urls.is_empty() {
            return Err(ConfigError::Url {
                url: String::new(),
                reason: "no server",
            });
        }
        Ok(Self { urls, auth, tls })
    }

    /// The servers for messages: `nats://a:4222,nats://b:4222`.
    pub(crate) fn display(&self) -> String {
        self.urls.join(",")
    }
}

fn decode(part: &str) -> String {
    // `url` leaves user information percent-encoded; a password may hold `@` or `:` that way.
    percent_encoding::percent_decode_str(part)
        .decode_utf8_lossy()
        .into_owned()
}

/// A URL or list of URLs with any user information replaced by `***`, for messages about a
/// URL that could not be parsed: everything between `://` and the last `@` before the next
/// `/` goes.
pub fn redact(urls: &str) -> String {
    urls.split(',')
        .map(|url| {
            let (scheme, rest) = match url.split_once("://") {
                Some((scheme, rest)) => (Some(scheme), rest),
                None => (None, url),
            };
            let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
            let (authority, tail) = rest.split_at(authority_end);
            let authority = match authority.rfind('@') {
                Some(at) => format!("***@{}", &authority[at + 1..]),
                None => authority.to_string(),
            };
            match scheme {
                Some(scheme) => format!("{scheme}://{authority}{tail}"),
                None => format!("{authority}{tail}"),
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_leave_the_url() {
        let servers = Servers::parse("nats://alice:s%40cret@127.0.0.1:4333").unwrap();
        assert_eq!(servers.urls, ["nats://127.0.0.1:4333"]);
        assert_eq!(
            servers.auth,
            UrlAuth::UserPassword("alice".into(), "s@cret".into())
        );
        assert!(!format!("{servers:?}").contains("cret"));

        let servers = Servers::parse("tls://tok3n@nats.example:4222, nats://b").unwrap();
        assert_eq!(servers.urls, ["tls://nats.example:4222", "nats://b:4222"]);
        assert_eq!(servers.auth, UrlAuth::Token("tok3n".into()));
        assert!(servers.tls);
        assert!(!format!("{servers:?}").contains("tok3n"));
    }

    #[test]
    fn a_bad_url_is_named_without_its_secret() {
        for bad in [
            "http://u:pw@h:1",
            "nats://u:pw@",
            "u:pw@h:1",
            "nats://a:pw@h,nats://b:pw2@h",
        ] {
            let error = Servers::parse(bad).unwrap_err().to_string();
            assert!(!error.contains("pw"), "{error}");
        }
        assert_eq!(
            redact("nats://u:p@h:1/x,nats://h2"),
            "nats://***@h:1/x,nats://h2"
        );
        assert_eq!(redact("u:p@h"), "***@h");
    }
}
