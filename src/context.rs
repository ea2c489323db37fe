//! What a backend tells us about the HTTP request, checked once at the edge
//! so the rest of the service works with values it can trust.

use std::net::IpAddr;

use url::Url;

use crate::identity::Consent;

/// Limits on every field, in bytes. Generous for real browsers, small enough
/// that a hostile caller cannot make one request expensive.
pub mod limits {
    pub const HOST: usize = 253 + 6;
    pub const URL: usize = 8192;
    pub const REFERER: usize = 8192;
    pub const USER_AGENT: usize = 1024;
    pub const COOKIE_HEADER: usize = 8192;
    pub const CLIENT_IP: usize = 64;
    pub const ACCEPT_LANGUAGE: usize = 256;
}

/// One bad field, named by its path in the request message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldViolation {
    pub field: String,
    pub description: String,
}

impl FieldViolation {
    pub fn new(field: impl Into<String>, description: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            description: description.into(),
        }
    }
}

/// The request context as the wire gives it, before checking. Field paths in
/// errors are prefixed with `prefix` (`context.` for every RPC).
#[derive(Debug, Default, Clone)]
pub struct RawContext<'a> {
    pub host: &'a str,
    pub url: &'a str,
    pub referer: &'a str,
    pub user_agent: &'a str,
    pub cookie_header: &'a str,
    pub client_ip: &'a str,
    pub accept_language: &'a str,
    /// None when the caller did not state it.
    pub consent: Option<Consent>,
}

/// A checked request context.
#[derive(Debug, Clone)]
pub struct RequestContext {
    /// Lower-case host name or IP literal, without port.
    pub host: String,
    /// The host as a name (None for an IP literal): cookie scopes need one.
    pub host_is_domain: bool,
    pub url: Option<Url>,
    pub referer: Option<Url>,
    pub user_agent: String,
    pub cookie_header: String,
    pub client_ip: Option<IpAddr>,
    pub accept_language: String,
    /// The consent in force: the one stated, or the configured default.
    pub consent: Consent,
    /// The consent the backend stated, if it did; a stated consent outranks
    /// the one a hand-off token carries.
    pub consent_stated: Option<Consent>,
}

fn no_controls(s: &str) -> bool {
    !s.chars().any(char::is_control)
}

/// Splits `host[:port]` and `[v6]:port`; the port, if any, must be digits.
fn strip_port(host: &str) -> Option<&str> {
    if let Some(rest) = host.strip_prefix('[') {
        let (inner, after) = rest.split_once(']')?;
        return match after {
            "" => Some(&host[..inner.len() + 2]),
            p if p.starts_with(':')
                && p.len() > 1
                && p[1..].bytes().all(|b| b.is_ascii_digit()) =>
            {
                Some(&host[..inner.len() + 2])
            }
            _ => None,
        };
    }
    match host.rsplit_once(':') {
        Some((name, port)) if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => {
            Some(name)
        }
        Some(_) => None,
        None => Some(host),
    }
}

/// Parses a Host header value into a lower-case host name or IP literal.
pub fn parse_host(host: &str) -> Result<(String, bool), &'static str> {
    let name =
        strip_port(host).ok_or("must be a host name or IP address, optionally with :port")?;
    if name.is_empty() {
        return Err("must not be empty");
    }
    match url::Host::parse(name) {
        Ok(url::Host::Domain(d)) => {
            // WHATWG host parsing lets through characters DNS names never
            // have (`"`, `,`, `;`, `=`…): only letters, digits, `-` and `_`
            // in labels (international names arrive here as punycode).
            let ldh = |label: &str| {
                label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
            };
            if d.len() > 253
                || d.split('.')
                    .any(|label| label.is_empty() || label.len() > 63 || !ldh(label))
            {
                return Err("is not a valid host name");
            }
            Ok((d, true))
        }
        Ok(url::Host::Ipv4(ip)) => Ok((ip.to_string(), false)),
        Ok(url::Host::Ipv6(ip)) => Ok((ip.to_string(), false)),
        Err(_) => Err("is not a valid host name"),
    }
}

/// Parses an absolute http(s) URL with a host.
pub fn parse_web_url(s: &str) -> Result<Url, &'static str> {
    let url = Url::parse(s).map_err(|_| "must be an absolute URL")?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err("must be an http or https URL with a host");
    }
    Ok(url)
}

impl RawContext<'_> {
    /// Checks every field and reports all violations at once, so a caller
    /// fixes its integration in one round.
    pub fn check(
        &self,
        prefix: &str,
        default_consent: Consent,
    ) -> Result<RequestContext, Vec<FieldViolation>> {
        let mut bad = Vec::new();
        let mut violation = |field: &str, what: &str| {
            bad.push(FieldViolation::new(format!("{prefix}{field}"), what))
        };
        let mut text = |field: &str, value: &str, max: usize| -> bool {
            if value.len() > max {
                violation(
                    field,
                    &format!("must be at most {max} bytes, got {}", value.len()),
                );
                false
            } else if !no_controls(value) {
                violation(
                    field,
                    "must not contain control characters (CR, LF, NUL, ...)",
                );
                false
            } else {
                true
            }
        };

        let host_ok = text("host", self.host, limits::HOST);
        let url_ok = text("url", self.url, limits::URL);
        let referer_ok = text("referer", self.referer, limits::REFERER);
        text("user_agent", self.user_agent, limits::USER_AGENT);
        text("cookie_header", self.cookie_header, limits::COOKIE_HEADER);
        let ip_ok = text("client_ip", self.client_ip, limits::CLIENT_IP);
        text(
            "accept_language",
            self.accept_language,
            limits::ACCEPT_LANGUAGE,
        );

        let mut host = (String::new(), false);
        if host_ok {
            if self.host.is_empty() {
                violation("host", "is required: forward the request's Host header");
            } else {
                match parse_host(self.host) {
                    Ok(h) => host = h,
                    Err(what) => violation("host", what),
                }
            }
        }
        let mut url = None;
        if url_ok && !self.url.is_empty() {
            match parse_web_url(self.url) {
                Ok(u) => url = Some(u),
                Err(what) => violation("url", what),
            }
        }
        let mut referer = None;
        if referer_ok && !self.referer.is_empty() {
            match parse_web_url(self.referer) {
                Ok(u) => referer = Some(u),
                Err(what) => violation("referer", what),
            }
        }
        let mut client_ip = None;
        if ip_ok && !self.client_ip.is_empty() {
            match self.client_ip.parse::<IpAddr>() {
                Ok(ip) => client_ip = Some(ip),
                Err(_) => violation("client_ip", "must be an IPv4 or IPv6 address"),
            }
        }
        if let Some(u) = &url {
            if let Ok((url_host, _)) = parse_host(u.host_str().unwrap_or_default()) {
                if !host.0.is_empty() && url_host != host.0 {
                    violation(
                        "url",
                        "its host differs from `host`: pass the URL of the request being served",
                    );
                }
            }
        }
        if !bad.is_empty() {
            return Err(bad);
        }
        Ok(RequestContext {
            host: host.0,
            host_is_domain: host.1,
            url,
            referer,
            user_agent: self.user_agent.to_string(),
            cookie_header: self.cookie_header.to_string(),
            client_ip,
            accept_language: self.accept_language.to_string(),
            consent: self.consent.unwrap_or(default_consent),
            consent_stated: self.consent,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_lose_their_port_and_case() {
        assert_eq!(
            parse_host("Shop.Example.COM:8443").unwrap(),
            ("shop.example.com".into(), true)
        );
        assert_eq!(
            parse_host("127.0.0.1:80").unwrap(),
            ("127.0.0.1".into(), false)
        );
        assert_eq!(parse_host("[::1]:443").unwrap(), ("::1".into(), false));
        for bad in [
            "",
            ":80",
            "exa mple.com",
            "a/b",
            "host:port",
            "[::1",
            "a..b",
            // Found by the request_context fuzz target.
            "\",",
            "a;b",
            "a=b.com",
        ] {
            assert!(parse_host(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn every_violation_is_reported_with_its_path() {
        let raw = RawContext {
            host: "",
            url: "not a url",
            user_agent: "bad\r\nua",
            client_ip: "300.1.1.1",
            ..Default::default()
        };
        let err = raw.check("context.", Consent::Granted).unwrap_err();
        let fields: Vec<&str> = err.iter().map(|v| v.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "context.user_agent",
                "context.host",
                "context.url",
                "context.client_ip"
            ]
        );
    }
}
