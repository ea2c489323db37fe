//! One request, parsed once: the Cookie header into pairs, the URL's query
//! into pairs, and the Referer's host. Every reader of evidence borrows
//! this; none parses the raw header again.

use std::borrow::Cow;

use url::form_urlencoded;

use crate::context::RequestContext;

/// A checked request context with its headers parsed.
#[derive(Debug)]
pub struct Parsed<'a> {
    pub ctx: &'a RequestContext,
    cookies: Vec<(&'a str, &'a str)>,
    /// (name, value, the value as it was in the URL).
    query: Vec<(Cow<'a, str>, Cow<'a, str>, &'a str)>,
}

impl<'a> Parsed<'a> {
    pub fn new(ctx: &'a RequestContext) -> Self {
        counts::cookie();
        let cookies = crate::cookie::pairs(&ctx.cookie_header).collect();
        let query = match &ctx.url {
            Some(u) if u.query().is_some() => {
                counts::query();
                // As `Url::query_pairs`, keeping each value's raw text too.
                u.query()
                    .unwrap_or_default()
                    .split('&')
                    .filter_map(|pair| {
                        let (name, value) = form_urlencoded::parse(pair.as_bytes()).next()?;
                        let raw = pair.split_once('=').map_or("", |(_, v)| v);
                        Some((name, value, raw))
                    })
                    .collect()
            }
            _ => Vec::new(),
        };
        Self {
            ctx,
            cookies,
            query,
        }
    }

    /// Every cookie pair of the Cookie header, in order.
    pub fn cookies(&self) -> &[(&'a str, &'a str)] {
        &self.cookies
    }

    /// The values of the cookies called `name`, in header order.
    pub fn cookies_named<'s>(&'s self, name: &'s str) -> impl Iterator<Item = &'a str> + 's {
        self.cookies
            .iter()
            .filter(move |(n, _)| *n == name)
            .map(|(_, v)| *v)
    }

    /// The decoded value of the first query parameter called `name`.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _, _)| k == name)
            .map(|(_, v, _)| v.as_ref())
    }

    /// The value of the first query parameter called `name` as it was in
    /// the URL, not percent-decoded (a reader that must see what the
    /// browser's script sees).
    pub fn raw_param(&self, name: &str) -> Option<&'a str> {
        self.query
            .iter()
            .find(|(k, _, _)| k == name)
            .map(|(_, _, raw)| *raw)
    }

    /// The Referer's host name, if the Referer was usable.
    pub fn referer_host(&self) -> Option<&'a str> {
        self.ctx.referer.as_ref().and_then(|r| r.host_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::context::RawContext;
    use crate::identity::Consent;

    #[test]
    fn each_parameter_is_kept_decoded_and_as_written() {
        let ctx = RawContext {
            host: "a.example",
            url: "https://a.example/p?x=1&_g%6C=1%2Aab%2Bc+d&_gl=second&e=&f",
            scheme: "",
            referer: "",
            user_agent: "",
            cookie_header: "",
            client_ip: "",
            accept_language: "",
            consent: Default::default(),
        }
        .check("context.", Consent::Granted)
        .unwrap();
        let req = Parsed::new(&ctx);
        assert_eq!(req.param("_gl"), Some("1*ab+c d"), "the first, decoded");
        assert_eq!(req.raw_param("_gl"), Some("1%2Aab%2Bc+d"), "as written");
        assert_eq!(req.param("x"), Some("1"));
        assert_eq!((req.param("e"), req.raw_param("e")), (Some(""), Some("")));
        assert_eq!((req.param("f"), req.raw_param("f")), (Some(""), Some("")));
        assert_eq!(req.raw_param("missing"), None);
    }
}

/// Parse counters, per thread, kept by test builds only: a unit test shows
/// that one call parses the Cookie header and the query once each.
pub mod counts {
    #[cfg(test)]
    thread_local! {
        static COUNTS: std::cell::Cell<(u32, u32)> = const { std::cell::Cell::new((0, 0)) };
    }

    #[inline]
    pub(crate) fn cookie() {
        #[cfg(test)]
        COUNTS.with(|c| c.set((c.get().0 + 1, c.get().1)));
    }

    #[inline]
    pub(crate) fn query() {
        #[cfg(test)]
        COUNTS.with(|c| c.set((c.get().0, c.get().1 + 1)));
    }

    /// (Cookie header parses, query parses) on this thread so far.
    #[cfg(test)]
    pub fn get() -> (u32, u32) {
        COUNTS.with(|c| c.get())
    }
}
