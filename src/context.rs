//! What a backend tells us about the HTTP request, checked once at the edge
//! so the rest of the service works with values it can trust.

use std::net::IpAddr;

use url::Url;

use crate::identity::{Consent, ConsentMode, Input, Rejected, Rejection, StatedConsent};

/// The configured consent defaults.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConsentDefaults {
    /// Every signal a request does not state (`default_consent`).
    pub default: Consent,
    /// Global Privacy Control denies analytics storage too.
    pub gpc_denies_analytics: bool,
}

impl ConsentDefaults {
    /// The consent in force when no token carries any: stated, else the
    /// default, after Global Privacy Control.
    pub fn in_force(&self, stated: &StatedConsent, carried: Option<ConsentMode>) -> ConsentMode {
        stated.in_force(
            carried.unwrap_or(ConsentMode::all(self.default)),
            self.gpc_denies_analytics,
        )
    }
}

/// Limits on the fields the browser controls, in bytes. A value past its
/// limit is ignored and reported, never a reason to fail the call; the
/// Cookie header has none but the message size, so the own cookie is found
/// among any number of third-party cookies.
pub mod limits {
    pub const HOST: usize = 253 + 6;
    pub const URL: usize = 8192;
    pub const REFERER: usize = 8192;
    pub const USER_AGENT: usize = 1024;
    pub const CLIENT_IP: usize = 64;
    pub const ACCEPT_LANGUAGE: usize = 1024;
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
    /// `http` or `https` for an origin-form `url` (`/path?query`); empty
    /// for https.
    pub scheme: &'a str,
    pub referer: &'a str,
    pub user_agent: &'a str,
    pub cookie_header: &'a str,
    pub client_ip: &'a str,
    pub accept_language: &'a str,
    /// The consent signals the caller stated, and Global Privacy Control.
    pub consent: StatedConsent,
}

/// A checked request context.
#[derive(Debug, Clone)]
pub struct RequestContext {
    /// Lower-case host name or IP literal, without port or trailing dot.
    pub host: String,
    /// The host as a name (None for an IP literal): cookie scopes need one.
    pub host_is_domain: bool,
    pub url: Option<Url>,
    pub referer: Option<Url>,
    pub user_agent: String,
    pub cookie_header: String,
    pub client_ip: Option<IpAddr>,
    pub accept_language: String,
    /// The analytics consent in force: the one stated, or the configured
    /// default (after Global Privacy Control).
    pub consent: Consent,
    /// The analytics consent the backend stated (or Global Privacy Control
    /// imposed), if any; a stated consent outranks the one a hand-off token
    /// carries.
    pub consent_stated: Option<Consent>,
    /// Every signal the request stated, and Global Privacy Control.
    pub stated: StatedConsent,
    /// The configured default and the Global Privacy Control policy.
    pub defaults: ConsentDefaults,
    /// Browser input that was unusable and left out, for `rejected`.
    pub ignored: Vec<Rejected>,
}

fn has_controls(s: &str) -> bool {
    s.chars().any(char::is_control)
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

/// Parses a Host header value into a lower-case host name or IP literal;
/// a port and one trailing dot (the fully qualified form) are dropped.
pub fn parse_host(host: &str) -> Result<(String, bool), &'static str> {
    let name =
        strip_port(host).ok_or("must be a host name or IP address, optionally with :port")?;
    let name = name.strip_suffix('.').unwrap_or(name);
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

/// Parses the client address as proxies and frameworks hand it out: `ip`,
/// `ip:port`, `[v6]` and `[v6]:port`; IPv4-mapped IPv6 becomes IPv4. A list
/// (`a, b`) is refused: which element to trust is the backend's decision,
/// and taking the first is exactly what a spoofed X-Forwarded-For wants.
pub fn parse_client_ip(s: &str) -> Result<IpAddr, &'static str> {
    let s = s.trim();
    if s.contains(',') {
        return Err("is a list of addresses: pass the one your trusted proxies give");
    }
    let ip = if let Ok(ip) = s.parse::<IpAddr>() {
        ip
    } else if let Ok(sa) = s.parse::<std::net::SocketAddr>() {
        sa.ip()
    } else if let Some(inner) = s.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
        inner
            .parse::<std::net::Ipv6Addr>()
            .map(IpAddr::V6)
            .map_err(|_| "is not an IP address")?
    } else {
        return Err("is not an IP address");
    };
    Ok(match ip {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(IpAddr::V4)
            .unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    })
}

impl RawContext<'_> {
    /// Checks the context. Only what the caller itself gets wrong fails the
    /// call (`host`, `scheme`); everything the browser controls is used
    /// when usable, and otherwise left out and reported in `ignored`.
    pub fn check(
        &self,
        prefix: &str,
        default_consent: Consent,
    ) -> Result<RequestContext, Vec<FieldViolation>> {
        self.check_with(
            prefix,
            ConsentDefaults {
                default: default_consent,
                gpc_denies_analytics: false,
            },
        )
    }

    /// [`RawContext::check`] with the whole consent configuration.
    pub fn check_with(
        &self,
        prefix: &str,
        defaults: ConsentDefaults,
    ) -> Result<RequestContext, Vec<FieldViolation>> {
        let mut bad = Vec::new();
        let mut ignored = Vec::new();
        let mut ignore = |input: Input, reason: Rejection, detail: String| {
            ignored.push(Rejected::input(input, reason, detail));
        };
        let too_large = |max: usize, len: usize| format!("over {max} bytes ({len}): ignored");

        let mut host = (String::new(), false);
        if self.host.is_empty() {
            bad.push(FieldViolation::new(
                format!("{prefix}host"),
                "is required: forward the request's Host header",
            ));
        } else if self.host.len() > limits::HOST || has_controls(self.host) {
            bad.push(FieldViolation::new(
                format!("{prefix}host"),
                format!("must be a host name of at most {} bytes", limits::HOST),
            ));
        } else {
            match parse_host(self.host) {
                Ok(h) => host = h,
                Err(what) => bad.push(FieldViolation::new(format!("{prefix}host"), what)),
            }
        }
        let scheme = match self.scheme {
            "" | "https" | "HTTPS" => "https",
            "http" | "HTTP" => "http",
            _ => {
                bad.push(FieldViolation::new(
                    format!("{prefix}scheme"),
                    "must be http, https or empty (https)",
                ));
                "https"
            }
        };
        if !bad.is_empty() {
            return Err(bad);
        }

        // The URL: absolute, or the request target alone (what most
        // frameworks hand out), completed with the scheme and host.
        let mut url = None;
        if self.url.len() > limits::URL {
            ignore(
                Input::Url,
                Rejection::TooLarge,
                too_large(limits::URL, self.url.len()),
            );
        } else if has_controls(self.url) {
            ignore(
                Input::Url,
                Rejection::Malformed,
                "contains control characters: ignored".into(),
            );
        } else if self.url.starts_with('/') && !self.url.starts_with("//") {
            let base = format!("{scheme}://{}", self.host.trim_end_matches('.'));
            match Url::parse(&base).and_then(|b| b.join(self.url)) {
                Ok(u) => url = Some(u),
                Err(_) => ignore(
                    Input::Url,
                    Rejection::Malformed,
                    "is not a request target: ignored".into(),
                ),
            }
        } else if !self.url.is_empty() {
            match parse_web_url(self.url) {
                Ok(u) => {
                    let same_host = parse_host(u.host_str().unwrap_or_default())
                        .is_ok_and(|(h, _)| h == host.0);
                    if same_host {
                        url = Some(u);
                    } else {
                        ignore(
                            Input::Url,
                            Rejection::WrongAudience,
                            "its host differs from `host`: ignored".into(),
                        );
                    }
                }
                Err(what) => ignore(Input::Url, Rejection::Malformed, format!("{what}: ignored")),
            }
        }

        let mut referer = None;
        if self.referer.len() > limits::REFERER {
            ignore(
                Input::Referer,
                Rejection::TooLarge,
                too_large(limits::REFERER, self.referer.len()),
            );
        } else if has_controls(self.referer) {
            ignore(
                Input::Referer,
                Rejection::Malformed,
                "contains control characters: ignored".into(),
            );
        } else if !self.referer.is_empty() {
            match parse_web_url(self.referer) {
                Ok(u) => referer = Some(u),
                Err(_) => ignore(
                    Input::Referer,
                    Rejection::Malformed,
                    "is not an http(s) URL (an app, `null`, `about:`...): ignored".into(),
                ),
            }
        }

        let user_agent = if self.user_agent.len() > limits::USER_AGENT {
            ignore(
                Input::UserAgent,
                Rejection::TooLarge,
                too_large(limits::USER_AGENT, self.user_agent.len()),
            );
            String::new()
        } else if has_controls(self.user_agent) {
            ignore(
                Input::UserAgent,
                Rejection::Malformed,
                "control characters removed".into(),
            );
            self.user_agent
                .chars()
                .filter(|c| !c.is_control())
                .collect()
        } else {
            self.user_agent.to_string()
        };

        let accept_language = if self.accept_language.len() > limits::ACCEPT_LANGUAGE {
            ignore(
                Input::AcceptLanguage,
                Rejection::TooLarge,
                too_large(limits::ACCEPT_LANGUAGE, self.accept_language.len()),
            );
            String::new()
        } else if has_controls(self.accept_language) {
            ignore(
                Input::AcceptLanguage,
                Rejection::Malformed,
                "contains control characters: ignored".into(),
            );
            String::new()
        } else {
            self.accept_language.to_string()
        };

        // Pairs with control characters are dropped here; pairs the cookie
        // grammar refuses are skipped when the header is parsed.
        let cookie_header = if has_controls(self.cookie_header) {
            let kept: Vec<&str> = self
                .cookie_header
                .split(';')
                .filter(|p| !has_controls(p))
                .collect();
            ignore(
                Input::CookieHeader,
                Rejection::Malformed,
                format!(
                    "{} cookie pair(s) with control characters ignored",
                    self.cookie_header.split(';').count() - kept.len()
                ),
            );
            kept.join(";")
        } else {
            self.cookie_header.to_string()
        };

        let mut client_ip = None;
        if self.client_ip.len() > limits::CLIENT_IP {
            ignore(
                Input::ClientIp,
                Rejection::TooLarge,
                too_large(limits::CLIENT_IP, self.client_ip.len()),
            );
        } else if !self.client_ip.is_empty() {
            match parse_client_ip(self.client_ip) {
                Ok(ip) => client_ip = Some(ip),
                Err(what) => ignore(
                    Input::ClientIp,
                    Rejection::Malformed,
                    format!("{what}: ignored"),
                ),
            }
        }

        Ok(RequestContext {
            host: host.0,
            host_is_domain: host.1,
            url,
            referer,
            user_agent,
            cookie_header,
            client_ip,
            accept_language,
            consent: defaults.in_force(&self.consent, None).analytics,
            consent_stated: if self.consent.global_privacy_control && defaults.gpc_denies_analytics
            {
                Some(Consent::Denied)
            } else {
                self.consent.analytics
            },
            stated: self.consent,
            defaults,
            ignored,
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
    fn a_trailing_dot_is_dropped() {
        assert_eq!(
            parse_host("Shop.Example.com.:443").unwrap(),
            ("shop.example.com".into(), true)
        );
    }

    #[test]
    fn client_addresses_in_every_shape_proxies_send() {
        for (raw, want) in [
            ("203.0.113.9", Some("203.0.113.9")),
            (" 203.0.113.9 ", Some("203.0.113.9")),
            ("203.0.113.9:51234", Some("203.0.113.9")),
            ("2001:db8::1", Some("2001:db8::1")),
            ("[2001:db8::1]", Some("2001:db8::1")),
            ("[2001:db8::1]:443", Some("2001:db8::1")),
            ("::ffff:203.0.113.9", Some("203.0.113.9")),
            ("[::ffff:203.0.113.9]:80", Some("203.0.113.9")),
            ("unknown", None),
            ("203.0.113.9, 10.0.0.1", None),
            ("for=203.0.113.9", None),
            ("fe80::1%eth0", None),
            ("", None),
        ] {
            let got = parse_client_ip(raw).ok().map(|ip| ip.to_string());
            assert_eq!(got.as_deref(), want, "{raw:?}");
        }
    }

    #[test]
    fn only_the_callers_own_mistakes_fail_the_call() {
        let raw = RawContext {
            host: "",
            url: "not a url",
            user_agent: "bad\r\nua",
            client_ip: "300.1.1.1",
            ..Default::default()
        };
        let err = raw.check("context.", Consent::Granted).unwrap_err();
        let fields: Vec<&str> = err.iter().map(|v| v.field.as_str()).collect();
        assert_eq!(fields, ["context.host"]);

        let raw = RawContext {
            host: "Shop.Example.com.",
            url: "/p?q=1",
            referer: "android-app://com.google.android.gm/",
            user_agent: "Mozilla/5.0\t(tab)",
            client_ip: "203.0.113.9, 10.0.0.1",
            ..Default::default()
        };
        let ctx = raw.check("context.", Consent::Granted).unwrap();
        assert_eq!(ctx.host, "shop.example.com");
        assert_eq!(
            ctx.url.as_ref().map(Url::as_str),
            Some("https://shop.example.com/p?q=1")
        );
        assert!(ctx.referer.is_none());
        assert_eq!(ctx.user_agent, "Mozilla/5.0(tab)");
        assert!(ctx.client_ip.is_none());
        let inputs: Vec<Input> = ctx
            .ignored
            .iter()
            .filter_map(|r| match r.source {
                crate::identity::Source::Input(i) => Some(i),
                _ => None,
            })
            .collect();
        assert_eq!(inputs, [Input::Referer, Input::UserAgent, Input::ClientIp]);
    }
}
