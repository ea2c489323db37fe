//! Crash safety: kill -9 under concurrent write load, again and again. The
//! store must open cleanly after each crash, and in durable mode every write
//! acknowledged to a client must be there.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{ctx, Server};
use sessionbridge::pb;

/// Crashes per run; `CRASH_ROUNDS=200 cargo test --release --test crash`
/// runs a longer series.
fn rounds() -> usize {
    std::env::var("CRASH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5)
}
const WRITERS: usize = 8;

#[tokio::test]
async fn acknowledged_durable_writes_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(&dir.path().join("data"), &["--durability", "sync"]);
    let mut acknowledged_total = 0;
    for round in 0..rounds() {
        let acked = Arc::new(Mutex::new(Vec::new()));
        let channel = server.channel().await;
        let mut writers = Vec::new();
        for w in 0..WRITERS {
            let acked = Arc::clone(&acked);
            let mut c =
                pb::session_bridge_service_client::SessionBridgeServiceClient::new(channel.clone());
            writers.push(tokio::spawn(async move {
                for n in 0.. {
                    let user = format!("crash-{round}-{w}-{n}");
                    let r = c
                        .resolve_session(pb::ResolveSessionRequest {
                            context: Some(ctx("crash.example", "")),
                            user_id: user.clone(),
                            ..Default::default()
                        })
                        .await;
                    match r {
                        Ok(r) => acked
                            .lock()
                            .unwrap()
                            .push((user, r.into_inner().identity.unwrap().client_id)),
                        Err(_) => return, // the server is gone
                    }
                }
            }));
        }
        tokio::time::sleep(Duration::from_millis(400)).await;
        server = server.crash_and_restart();
        for w in writers {
            let _ = w.await;
        }
        let acked = std::mem::take(&mut *acked.lock().unwrap());
        assert!(
            !acked.is_empty(),
            "round {round}: no write was acknowledged"
        );
        acknowledged_total += acked.len();

        // The store opened (the server answered its start line); every
        // acknowledged write is there.
        let mut c = server.client().await;
        for (user, client_id) in &acked {
            let found = c
                .lookup_by_user(pb::LookupByUserRequest {
                    user: Some(pb::lookup_by_user_request::User::UserId(user.clone())),
                    limit: 0,
                })
                .await
                .unwrap_or_else(|e| panic!("round {round}: acknowledged {user} lost: {e:?}"))
                .into_inner();
            assert_eq!(
                &found.identity.unwrap().client_id,
                client_id,
                "round {round}: {user}"
            );
        }
    }
    eprintln!(
        "{} crashes, {acknowledged_total} acknowledged writes, none lost",
        rounds()
    );
}
