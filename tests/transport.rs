//! Transport security: TLS, mutual TLS and the bearer token, over real
//! connections with certificates made for the test.

mod common;

use std::path::Path;
use std::time::Duration;

use common::{ctx, Server};
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use sessionbridge::pb;
use sessionbridge::pb::session_bridge_service_client::SessionBridgeServiceClient;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};
use tonic::Code;

struct Pki {
    ca_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl Pki {
    fn new() -> Pki {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca_pem = params.self_signed(&key).unwrap().pem();
        Pki {
            ca_pem,
            issuer: Issuer::new(params, key),
        }
    }

    /// A certificate for `names`, signed by this CA: (cert PEM, key PEM).
    fn leaf(&self, names: &[&str]) -> (String, String) {
        let key = KeyPair::generate().unwrap();
        let params =
            CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p.to_str().unwrap().to_string()
}

async fn tls_channel(
    addr: &str,
    ca: &str,
    client: Option<&(String, String)>,
) -> Result<Channel, tonic::transport::Error> {
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca))
        .domain_name("localhost");
    if let Some((cert, key)) = client {
        tls = tls.identity(Identity::from_pem(cert, key));
    }
    Channel::from_shared(format!("https://{addr}"))
        .unwrap()
        .tls_config(tls)?
        .timeout(Duration::from_secs(5))
        .connect()
        .await
}

async fn mint(channel: Channel) -> Result<pb::MintCookieResponse, tonic::Status> {
    SessionBridgeServiceClient::new(channel)
        .mint_cookie(pb::MintCookieRequest {
            context: Some(ctx("a.example", "")),
            ga_cookie: None,
        })
        .await
        .map(|r| r.into_inner())
}

#[tokio::test]
async fn tls_and_mutual_tls() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new();
    let (cert, key) = pki.leaf(&["localhost"]);
    let (cert, key, ca) = (
        write(dir.path(), "server.pem", &cert),
        write(dir.path(), "server.key", &key),
        write(dir.path(), "ca.pem", &pki.ca_pem),
    );

    // TLS: a TLS client that trusts the CA is served; plaintext is not.
    let server = Server::start(
        &dir.path().join("tls"),
        &["--tls-cert", &cert, "--tls-key", &key],
    );
    let ok = mint(tls_channel(&server.addr, &pki.ca_pem, None).await.unwrap())
        .await
        .unwrap();
    assert!(ok.identity.is_some());
    let plain = Channel::from_shared(server.url()).unwrap().connect().await;
    if let Ok(ch) = plain {
        assert!(mint(ch).await.is_err(), "plaintext must not be served");
    }
    // A client that does not trust the server's CA refuses it.
    let other = Pki::new();
    let refused = match tls_channel(&server.addr, &other.ca_pem, None).await {
        Ok(ch) => mint(ch).await.is_err(),
        Err(_) => true,
    };
    assert!(
        refused,
        "a server certificate from an unknown CA was accepted"
    );

    // Mutual TLS: only clients with a certificate from the client CA.
    let mtls = Server::start(
        &dir.path().join("mtls"),
        &[
            "--tls-cert",
            &cert,
            "--tls-key",
            &key,
            "--tls-client-ca",
            &ca,
        ],
    );
    let client = pki.leaf(&["backend.internal"]);
    mint(
        tls_channel(&mtls.addr, &pki.ca_pem, Some(&client))
            .await
            .unwrap(),
    )
    .await
    .unwrap();
    for who in [None, Some(other.leaf(&["backend.internal"]))] {
        let refused = match tls_channel(&mtls.addr, &pki.ca_pem, who.as_ref()).await {
            Ok(ch) => mint(ch).await.is_err(),
            Err(_) => true,
        };
        assert!(
            refused,
            "client certificate {:?} was accepted",
            who.is_some()
        );
    }
}

#[tokio::test]
async fn bearer_token_guards_the_api_not_the_probes() {
    use tonic::metadata::MetadataValue;
    use tonic_health::pb::{health_client::HealthClient, HealthCheckRequest};

    let dir = tempfile::tempdir().unwrap();
    let token = "s3cr3t-token-0123456789abcdef";
    let file = write(dir.path(), "token", &format!("{token}\n"));
    let server = Server::start(&dir.path().join("data"), &["--auth-token-file", &file]);
    let channel = server.channel().await;

    let call = |auth: Option<String>| {
        let mut c = SessionBridgeServiceClient::new(channel.clone());
        async move {
            let mut req = tonic::Request::new(pb::MintCookieRequest {
                context: Some(ctx("a.example", "")),
                ga_cookie: None,
            });
            if let Some(a) = auth {
                req.metadata_mut()
                    .insert("authorization", MetadataValue::try_from(a).unwrap());
            }
            c.mint_cookie(req).await
        }
    };
    for bad in [
        None,
        Some("Bearer wrong-token-0000000000".into()),
        Some(token.to_string()),
    ] {
        let err = call(bad.clone()).await.unwrap_err();
        assert_eq!(err.code(), Code::Unauthenticated, "{bad:?}");
    }
    call(Some(format!("Bearer {token}"))).await.unwrap();

    let h = HealthClient::new(channel)
        .check(HealthCheckRequest { service: "".into() })
        .await
        .unwrap();
    assert_eq!(h.into_inner().status, 1, "health answers without a token");

    // A token too short to be a secret is refused at start.
    let weak = write(dir.path(), "weak", "abc");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sessionbridge"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--auth-token-file",
            &weak,
            "--data-dir",
        ])
        .arg(dir.path().join("weak-data"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("at least 16 characters"));
}
