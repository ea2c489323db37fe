//! Query-string edits that leave everything else of a URL byte for byte as
//! it was: adding a hand-off parameter, and removing hand-off parameters
//! again on arrival.

use url::form_urlencoded;
use url::Url;

fn pair_name(pair: &str) -> String {
    form_urlencoded::parse(pair.as_bytes())
        .next()
        .map(|(k, _)| k.into_owned())
        .unwrap_or_default()
}

/// The value of the first query parameter called `name`.
pub fn param(url: &Url, name: &str) -> Option<String> {
    url.query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// `url` with every parameter in `names` removed, or None when it had none.
/// Other parameters keep their order and encoding; the fragment stays.
pub fn without(url: &Url, names: &[&str]) -> Option<Url> {
    let query = url.query()?;
    let kept: Vec<&str> = query
        .split('&')
        .filter(|pair| !names.contains(&pair_name(pair).as_str()))
        .collect();
    if kept.len() == query.split('&').count() {
        return None;
    }
    let mut out = url.clone();
    let kept: Vec<&str> = kept.into_iter().filter(|p| !p.is_empty()).collect();
    out.set_query((!kept.is_empty()).then(|| kept.join("&")).as_deref());
    Some(out)
}

/// `url` with `name=value` appended (replacing any parameter of that name).
/// `value` must be URL-safe already (tokens are base64url).
pub fn with(url: &Url, name: &str, value: &str) -> Url {
    let base = without(url, &[name]).unwrap_or_else(|| url.clone());
    let mut out = base.clone();
    let pair = format!(
        "{}={value}",
        form_urlencoded::byte_serialize(name.as_bytes()).collect::<String>()
    );
    match base.query() {
        Some(q) if !q.is_empty() => out.set_query(Some(&format!("{q}&{pair}"))),
        _ => out.set_query(Some(&pair)),
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decorating_keeps_query_and_fragment() {
        let u = Url::parse("https://pay.example/c?b=%20x&a=1+2#frag").unwrap();
        let d = with(&u, "_sbt", "TOKEN-_");
        assert_eq!(
            d.as_str(),
            "https://pay.example/c?b=%20x&a=1+2&_sbt=TOKEN-_#frag"
        );
        assert_eq!(param(&d, "_sbt").as_deref(), Some("TOKEN-_"));
        let again = with(&d, "_sbt", "NEW");
        assert_eq!(
            again.as_str(),
            "https://pay.example/c?b=%20x&a=1+2&_sbt=NEW#frag"
        );
        assert_eq!(without(&again, &["_sbt"]).unwrap(), u);
        assert_eq!(
            with(&Url::parse("https://a.example/").unwrap(), "t", "v").as_str(),
            "https://a.example/?t=v"
        );
    }

    #[test]
    fn removing_the_only_parameter_drops_the_question_mark() {
        let u = Url::parse("https://a.example/p?_sbt=x").unwrap();
        assert_eq!(
            without(&u, &["_sbt"]).unwrap().as_str(),
            "https://a.example/p"
        );
        assert!(without(&u, &["other"]).is_none());
    }
}
