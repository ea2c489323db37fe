//! Caller authentication for the identity API: an optional shared bearer
//! token, for deployments where more than the backend beside the sidecar
//! can reach it (a standalone instance, or any listener beyond loopback).

use sha2::{Digest, Sha256};
use tonic::{Request, Status};

/// Checks `authorization: Bearer <token>` on every call when a token is
/// configured. Digests are compared, so the time a comparison takes says
/// nothing about the token.
#[derive(Clone, Default)]
pub struct BearerAuth {
    expected: Option<[u8; 32]>,
}

impl BearerAuth {
    /// Reads the token from a file (a mounted Kubernetes Secret); surrounding
    /// white space is ignored.
    pub fn from_file(path: Option<&std::path::Path>) -> anyhow::Result<Self> {
        let Some(path) = path else {
            return Ok(Self::default());
        };
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("auth token file {}: {e}", path.display()))?;
        let token = text.trim();
        if token.len() < 16 {
            anyhow::bail!(
                "auth token file {}: the token must be at least 16 characters (try `openssl rand -hex 32`)",
                path.display()
            );
        }
        Ok(Self {
            expected: Some(Sha256::digest(token.as_bytes()).into()),
        })
    }

    /// The interceptor function.
    pub fn check(&self, request: Request<()>) -> Result<Request<()>, Status> {
        let Some(expected) = self.expected else {
            return Ok(request);
        };
        let given = request
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or_else(|| {
                crate::errors::unauthenticated("missing `authorization: Bearer <token>`")
            })?;
        let digest: [u8; 32] = Sha256::digest(given.trim().as_bytes()).into();
        if digest == expected {
            Ok(request)
        } else {
            Err(crate::errors::unauthenticated(
                "bearer token does not match",
            ))
        }
    }
}

impl tonic::service::Interceptor for BearerAuth {
    fn call(&mut self, request: Request<()>) -> Result<Request<()>, Status> {
        self.check(request)
    }
}
