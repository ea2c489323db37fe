//! The linker's arithmetic against published vectors.
//!
//! AMP's linker tests (ampproject/amphtml, extensions/amp-analytics/0.1/
//! test/test-linker.js) share one browser: the User-Agent below, time-zone
//! offset 420, language `en-US`, and the clock at 1533329483292 ms (minute
//! 25555491). Where gtag.js and AMP agree (ASCII input, the current and the
//! previous minute) their outputs are gtag.js's too; where they differ the
//! test says which rule it checks.

use super::*;

const UA: &str = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) \
                  Chrome/67.0.3396.99 Safari/537.36";
const TZ: i32 = 420;
const LANG: &str = "en-US";
/// 1533329483292 ms.
const NOW: i64 = 1_533_329_483;
const MINUTE: i64 = 25_555_491;

fn payload(pairs: &[(&str, &str)]) -> Payload {
    let mut p = Payload::default();
    for (k, v) in pairs {
        p.set(k, v.as_bytes());
    }
    p
}

fn amp(pairs: &[(&str, &str)]) -> String {
    write(&payload(pairs), UA, TZ, LANG, MINUTE)
}

#[test]
fn amp_create_linker_vectors_for_ascii_input() {
    assert_eq!(NOW.div_euclid(60), MINUTE);
    // createLinker: checksum arithmetic, base64 with `-`, `_` and `.`
    // padding, pairs in order. Shared by gtag.js and AMP. Left out: A0 and
    // A9 (AMP writes nothing when no key passes its key pattern; gtag.js
    // has no key pattern), A8 (AMP drops the key `*invalid`; gtag.js would
    // write it and break its own link) and A6 (non-ASCII values, which
    // AMP encodes as UTF-8: see the next test).
    let vectors: &[(&[(&str, &str)], &str)] = &[
        (&[("foo", "123")], "1*14cn7x*foo*MTIz"),
        (&[("key1", "value1")], "1*1f66u1p*key1*dmFsdWUx"),
        (
            &[("key1", "value1"), ("name", "bob"), ("color", "green"), ("car", "tesla")],
            "1*6orwo8*key1*dmFsdWUx*name*Ym9i*color*Z3JlZW4.*car*dGVzbGE.",
        ),
        (
            &[("cid", "12345"), ("ref", "https://www.example.com")],
            "1*1m48hbv*cid*MTIzNDU.*ref*aHR0cHM6Ly93d3cuZXhhbXBsZS5jb20.",
        ),
        (&[("key", "*hi*"), ("key2", "***")], "1*1fo13qb*key*KmhpKg..*key2*Kioq"),
        (
            &[("0x3", "0x3"), ("_gb", "_gb"), ("g.b", "g.b"), ("nn-", "nn-")],
            "1*uidf2s*0x3*MHgz*_gb*X2di*g.b*Zy5i*nn-*bm4t",
        ),
        (
            &[("_ga", "1218435055.1536188913")],
            "1*5x9ojm*_ga*MTIxODQzNTA1NS4xNTM2MTg4OTEz",
        ),
        (
            &[("_ga", "amp-oRg8vByriPdstwLgkz-UNWbp2P13vNFsnhES5vW8s5WodTOoea0mTiY7X62utLyz")],
            "1*1fkd1zz*_ga*YW1wLW9SZzh2QnlyaVBkc3R3TGdrei1VTldicDJQMTN2TkZzbmhFUzV2VzhzNVdvZFRPb2VhMG1UaVk3WDYydXRMeXo.",
        ),
        (
            &[("_ga", "WgcaAD4XN2lydhQVNFruk6X8zwoUg6K2RnaRlhjs6CXvTv4aJV-3oVLdI1WxxvJb")],
            "1*19eaxqc*_ga*V2djYUFENFhOMmx5ZGhRVk5GcnVrNlg4endvVWc2SzJSbmFSbGhqczZDWHZUdjRhSlYtM29WTGRJMVd4eHZKYg..",
        ),
    ];
    for (pairs, expected) in vectors {
        assert_eq!(amp(pairs), *expected, "{pairs:?}");
        // parseLinker gives the same pairs back (AMP's P7 to P11).
        let v = read(expected, UA, LANG, NOW).unwrap();
        assert_eq!(v.payload, payload(pairs), "{expected}");
        assert_eq!((v.tz_offset, v.age_minutes), (TZ, 0));
    }
    // AMP's linker-manager vectors, two linkers built on the same click.
    assert_eq!(
        amp(&[("_key", "TEST%20TITLE"), ("gclid", "234")]),
        "1*1pgvkob*_key*VEVTVCUyMFRJVExF*gclid*MjM0"
    );
    assert_eq!(amp(&[("foo", "bar")]), "1*1u4ugj3*foo*YmFy");
}

#[test]
fn where_gtag_and_amp_differ_gtag_is_followed() {
    // Non-ASCII values: AMP encodes UTF-8 (`π` → `z4A.`); gtag.js encodes
    // each UTF-16 code unit as one byte, so a Latin-1 character is one byte
    // (`é` → `6Q..`). Payload values are those bytes.
    assert_eq!(encode_value(&[0xe9]), "6Q..");
    assert_eq!(decode_value("6Q..").unwrap(), [0xe9]);

    // The checksum covers the low byte of each UTF-16 code unit: with `é`
    // in the User-Agent, gtag.js's checksum is 88o0tm, AMP's (UTF-8) 8fu8cn.
    let ua = "Mozilla/5.0 (Test; é) Gecko";
    assert_eq!(checksum(ua, TZ, LANG, MINUTE, "key1*dmFsdWUx"), "88o0tm");
    assert!(read("1*88o0tm*key1*dmFsdWUx", ua, LANG, NOW).is_ok());
    assert_eq!(
        read("1*8fu8cn*key1*dmFsdWUx", ua, LANG, NOW),
        Err(LinkerError::Checksum),
        "AMP's UTF-8 checksum is not gtag.js's"
    );

    // Three minutes: written at MINUTE, checked two minutes later, AMP
    // refuses (its parseLinker P5) and gtag.js accepts.
    let link = "1*1f66u1p*key1*dmFsdWUx";
    for (offset, sum) in [(0, "1f66u1p"), (1, "fv3w5"), (2, "1od0n7v"), (3, "qrla3n")] {
        assert_eq!(
            checksum(UA, TZ, LANG, MINUTE - offset, "key1*dmFsdWUx"),
            sum
        );
    }
    assert_eq!(
        read(link, UA, LANG, NOW + 60).unwrap().age_minutes,
        1,
        "AMP P6"
    );
    assert_eq!(
        read(link, UA, LANG, NOW + 120).unwrap().age_minutes,
        2,
        "AMP P5: gtag accepts"
    );
    assert_eq!(read(link, UA, LANG, NOW + 180), Err(LinkerError::Expired));
    assert_eq!(
        read(link, UA, LANG, NOW + 29 * 60),
        Err(LinkerError::Expired)
    );
    assert_eq!(
        read(link, UA, LANG, NOW + 30 * 60),
        Err(LinkerError::Checksum)
    );
    assert_eq!(
        read(link, "curl/8.5", LANG, NOW),
        Err(LinkerError::Checksum)
    );
    assert_eq!(read(link, UA, "de-DE", NOW), Err(LinkerError::Checksum));

    // Keys are not checked: AMP's parseLinker drops `~key1` (P4, {}),
    // gtag.js keeps it.
    let v = read("1*15qclke*~key1*123", UA, LANG, NOW).unwrap();
    assert_eq!(v.payload.pairs(), [("~key1".to_string(), vec![0xd7, 0x6d])]);

    // A key given twice keeps its first place and its last value, as in a
    // JavaScript object.
    let twice = "a*QQ..*b*Qg..*a*Qw..";
    let sum = checksum(UA, TZ, LANG, MINUTE, twice);
    let v = read(&format!("1*{sum}*{twice}"), UA, LANG, NOW).unwrap();
    assert_eq!(v.payload.serialize(), "a*Qw..*b*Qg..");

    // An empty payload has a checksum of its own; gtag.js reads it as {}.
    assert_eq!(checksum(UA, TZ, LANG, MINUTE, ""), "1gpym07");
    let v = read("1*1gpym07*", UA, LANG, NOW).unwrap();
    assert!(v.payload.is_empty());
    assert_eq!(linked(&v.payload, NOW), Err(LinkerError::NoClientId));
}

#[test]
fn malformed_links_are_refused() {
    for bad in [
        "",
        "1*key*123",                // AMP P1: an odd number of fields
        "1*1*key1*123*key2",        // AMP P2
        "2*1f66u1p*key1*dmFsdWUx",  // AMP P3: version 2
        "01*1f66u1p*key1*dmFsdWUx", // the version is the string "1"
        "1*1F66U1P*key1*dmFsdWUx",  // not JavaScript's base 36
        "1*01f66u1p*key1*dmFsdWUx",
        "1*zzzzzzz*key1*dmFsdWUx", // over u32
        "1*1f66u1p*key1*dm!sdWUx", // not base64
        "1*1f66u1p*key1",
        "1%2A1f66u1p%2Akey1%2AdmFsdWUx%ZZ",
    ] {
        assert_eq!(
            read(bad, UA, LANG, NOW),
            Err(LinkerError::Malformed),
            "{bad:?}"
        );
    }
    let long = format!("1*abc*k*{}", "A".repeat(MAX_PAYLOAD));
    assert_eq!(read(&long, UA, LANG, NOW), Err(LinkerError::Malformed));
}

#[test]
fn percent_encoded_links_and_the_standard_alphabet() {
    let link = "1*1f66u1p*key1*dmFsdWUx";
    let once = link.replace('*', "%2A");
    let twice = once.replace('%', "%25");
    let thrice = twice.replace('%', "%25");
    for (value, ok) in [
        (link, true),
        (&*once, true),
        (&*twice, true),
        (&*thrice, false),
    ] {
        assert_eq!(read(value, UA, LANG, NOW).is_ok(), ok, "{value}");
    }
    // gtag.js matches the first line with two `*` (`.` stops at line ends),
    // in the value as it arrived when that has two, else once decoded.
    assert!(read(&format!("junk%0A{once}"), UA, LANG, NOW).is_ok());
    assert!(read(&format!("{once}%0Amore"), UA, LANG, NOW).is_ok());
    assert!(read(&format!("junk%0A{link}"), UA, LANG, NOW).is_err());

    // Base64 in the standard alphabet (`+`, `/`, `=`) is read too, and so
    // is a value without padding; white space is skipped.
    let standard = "_ga*Pz8+Pz8/*k*YQ==";
    let sum = checksum(UA, TZ, LANG, MINUTE, standard);
    let v = read(&format!("1*{sum}*{standard}"), UA, LANG, NOW).unwrap();
    assert_eq!(v.payload.get("_ga").unwrap(), b"??>???");
    assert_eq!(v.payload.get("k").unwrap(), b"a");
    assert_eq!(decode_value("YWJj ZA").unwrap(), b"abcd");
    assert_eq!(decode_value("Z3JlZW4").unwrap(), b"green");
    assert_eq!(encode_value(b"??>???"), "Pz8-Pz8_");
}

#[test]
fn gtag_style_vectors_with_ga_cookies() {
    // Derived with gtag.js's algorithm for the AMP browser (notes, D1-D5).
    assert_eq!(
        amp(&[("_ga", "1218435055.1536188913")]),
        "1*5x9ojm*_ga*MTIxODQzNTA1NS4xNTM2MTg4OTEz"
    );
    let later = 1_795_000_000;
    let cookies = [
        ("_ga", "GA1.1.1570886354.1754131333"),
        ("_ga_ABC123", "GS1.1.1754131333.1.1.1754131400.0.0.0"),
        ("_gcl_au", "1.1.357828164.1754131338"),
    ];
    let id: ClientId = "1570886354.1754131333".parse().unwrap();
    let p = from_cookies(&cookies, &id, later);
    assert_eq!(
        write(&p, UA, TZ, LANG, MINUTE),
        "1*jt2375*_gcl_au*MzU3ODI4MTY0LjE3NTQxMzEzMzg.*_ga*MTU3MDg4NjM1NC4xNzU0MTMxMzMz\
         *_ga_ABC123*MTc1NDEzMTMzMy4xLjEuMTc1NDEzMTQwMC4wLjAuMA.."
    );
    let gs2 = [
        ("_ga", "GA1.1.1570886354.1754131333"),
        (
            "_ga_ABC123",
            "GS2.1.s1754131333$o1$g1$t1754131400$j60$l0$h0",
        ),
    ];
    let p = from_cookies(&gs2, &id, later);
    assert_eq!(
        write(&p, UA, TZ, LANG, MINUTE),
        "1*1e8tcax*_ga*MTU3MDg4NjM1NC4xNzU0MTMxMzMz\
         *_ga_ABC123*czE3NTQxMzEzMzMkbzEkZzEkdDE3NTQxMzE0MDAkajYwJGwwJGgw"
    );
    let linked = linked(&p, later).unwrap();
    assert_eq!(linked.client_id, id);
    assert_eq!(
        linked
            .session
            .map(|s| (s.session_id, s.session_number, s.last_hit)),
        Some((1_754_131_333, 1, 1_754_131_400))
    );
}

#[test]
fn every_cookie_gtag_links_in_its_order() {
    let now = 1_795_000_000;
    let id: ClientId = "42.1700000000".parse().unwrap();
    let cookies = [
        ("theme", "dark"),
        ("FPLC", "abc%2Fdef%3D%3D"),
        ("_ga_OLD", "GS2.1.s1794990000$o1$g0$t1794990100$j0$l0$h0"),
        ("_ga", "GA1.2.42.1700000000"),
        ("_ga_NEW", "GS1.1.1794999000.4.1.1794999500.0.0.0"),
        ("_ga_NEW", "GS1.1.1794990000.3.1.1794990500.0.0.0"),
        ("_ga_BAD", "GS9.1.junk"),
        ("_gcl_dc", "GCL.1794999000.dclid"),
        ("_gcl_aw", "GCL.1794000000.older"),
        ("_gcl_aw", "GCL.1794999999.Cj0KCQ"),
        ("_gcl_aw", "junk"),
        ("FPAU", "1.2.1762596121.1701984387"),
        ("_gcl_au", "1.1.560639266.1702047599"),
    ];
    let p = from_cookies(&cookies, &id, now);
    let keys: Vec<&str> = p.pairs().iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        keys,
        ["_gcl_aw", "_gcl_dc", "_gcl_au", "FPAU", "_ga", "_ga_OLD", "_ga_NEW", "_fplc"]
    );
    assert_eq!(
        p.text("_gcl_aw"),
        Some("GCL.1794999999.Cj0KCQ"),
        "the greatest value"
    );
    assert_eq!(p.text("_gcl_au"), Some("560639266.1702047599"));
    assert_eq!(p.text("FPAU"), Some("1762596121.1701984387"));
    assert_eq!(p.text("_ga"), Some("42.1700000000"));
    assert_eq!(
        p.text("_ga_NEW"),
        Some("1794999000.4.1.1794999500.0.0.0"),
        "the latest"
    );
    assert_eq!(p.text("_fplc"), Some("abc%2Fdef%3D%3D"));

    // Sessions of another client than the one linked stay behind.
    let other: ClientId = "7.1700000000".parse().unwrap();
    let p = from_cookies(&cookies, &other, now);
    assert_eq!(p.text("_ga"), Some("7.1700000000"));
    assert!(!p.pairs().iter().any(|(k, _)| k.starts_with("_ga_")));
    // With no GA cookie at all: the client id alone.
    let p = from_cookies(&[("theme", "dark")], &other, now);
    assert_eq!(p.serialize(), "_ga*Ny4xNzAwMDAwMDAw");
}

#[test]
fn an_arrived_payload_is_carried_byte_for_byte() {
    let now = 1_795_000_000;
    let id: ClientId = "42.1700000000".parse().unwrap();
    let mut arrived = payload(&[
        ("_up", "1"),
        ("_ga", "42.1700000000"),
        ("_ga_ABC", "s1794999000$o2$g1$t1794999500$j0$l0$h0"),
        ("_gcl_aw", "GCL.1794999999.Cj0KCQ"),
        ("x~y", "dropped: needs escaping"),
        ("_fplc", "abc"),
    ]);
    arrived.set("latin", [0xe9, 0xff]);
    let own = payload(&[
        ("_gcl_au", "1.2"),
        ("_ga", "42.1700000000"),
        ("_ga_ABC", "stale"),
    ]);
    let out = carry(&arrived, &id, &own, now);
    let keys: Vec<&str> = out.pairs().iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        keys,
        ["_up", "_ga", "_ga_ABC", "_gcl_aw", "_fplc", "latin", "_gcl_au"],
        "its own order, then what the cookies add"
    );
    assert_eq!(out.get("latin").unwrap(), [0xe9, 0xff]);
    assert_eq!(
        out.text("_ga_ABC"),
        arrived.text("_ga_ABC"),
        "the link's value wins"
    );

    // Without additions the payload is the same text: only the checksum
    // is new.
    let plain = payload(&[("_ga", "42.1700000000"), ("_up", "1"), ("_fplc", "f")]);
    assert_eq!(
        carry(&plain, &id, &Payload::default(), now).serialize(),
        plain.serialize()
    );
    // An addition goes before a final `_fplc`.
    let out = carry(&plain, &id, &payload(&[("FPAU", "1.2")]), now);
    assert_eq!(
        out.serialize(),
        "_ga*NDIuMTcwMDAwMDAwMA..*_up*MQ..*FPAU*MS4y*_fplc*Zg.."
    );

    // The visitor was resolved as another client: the link's GA ids stay
    // behind, the rest travels.
    let other: ClientId = "7.1700000000".parse().unwrap();
    let own = payload(&[("_ga", "7.1700000000")]);
    let out = carry(&arrived, &other, &own, now);
    let keys: Vec<&str> = out.pairs().iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(keys, ["_up", "_gcl_aw", "_fplc", "latin", "_ga"]);
    assert_eq!(out.text("_ga"), Some("7.1700000000"));
}

#[test]
fn the_search_finds_what_hashing_every_combination_finds() {
    let uas = [UA, "Mozilla/5.0 (Test; é) Gecko", "", "Ωmega ☃ agent"];
    let payloads = ["", "key1*dmFsdWUx", "_ga*MTIz*k*é", &"_ga*QUJD*".repeat(40)];
    let mut seed = 0x9e37_79b9_u32;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 17;
        seed ^= seed << 5;
        seed
    };
    for ua in uas {
        for serialized in payloads {
            let tz = offsets().nth(next() as usize % 105).unwrap();
            let age = i64::from(next() % 5);
            let minute = MINUTE - age;
            let target = crc(ua, tz, "fr-CA", minute, serialized);
            let search = Search::new(ua, "fr-CA", &units(serialized));
            let found = search.find(target, (0..5).map(|a| MINUTE - a));
            assert_eq!(found, Some((tz, minute)), "{ua:?} {serialized:?}");
            // A target no combination gives is found nowhere, as brute force
            // confirms.
            let miss = target ^ 1;
            let brute = (0..5)
                .flat_map(|a| offsets().map(move |tz| (tz, MINUTE - a)))
                .find(|&(tz, m)| crc(ua, tz, "fr-CA", m, serialized) == miss);
            assert_eq!(search.find(miss, (0..5).map(|a| MINUTE - a)), brute);
        }
    }
    // Minutes with another number of digits (before 1973) are searched too.
    let target = crc(UA, 0, LANG, 99_999, "k*dg..");
    let search = Search::new(UA, LANG, b"k*dg..");
    assert_eq!(
        search.find(target, [100_001, 100_000, 99_999].into_iter()),
        Some((0, 99_999))
    );
}

#[test]
fn zero_bytes_appended_and_removed() {
    for top in 0..=255u8 {
        assert_eq!(
            TABLE[usize::from(BY_TOP_BYTE[usize::from(top)])] >> 24,
            u32::from(top)
        );
    }
    let (x, y) = (
        b"Mozilla/5.0*420*en-US*".as_slice(),
        b"25555491*key1*dmFsdWUx".as_slice(),
    );
    let whole = crc32fast::hash(&[x, y].concat());
    assert_eq!(
        append_zeros(crc32fast::hash(x), y.len()) ^ crc32fast::hash(y),
        whole
    );
    for n in [0, 1, 9, 300] {
        assert_eq!(remove_zeros(append_zeros(whole, n), n), whole, "{n}");
    }
}

#[test]
fn base36_matches_javascript() {
    // (4294967295).toString(36) and (0).toString(36) in JavaScript.
    assert_eq!(base36(u32::MAX), "1z141z3");
    assert_eq!(base36(0), "0");
    assert_eq!(parse_base36("1z141z3"), Some(u32::MAX));
    assert_eq!(parse_base36("0"), Some(0));
    assert_eq!(primary_language("en-GB,en;q=0.9"), "en-GB");
}
