//! sessionbridge: one visitor identity and one session across many web
//! domains, answered over gRPC to backends in any language.
//!
//! Layout: [`identity`] holds the rules (ids, sessions, the precedence of
//! evidence) and knows neither gRPC nor storage; [`cookie`], [`privacy`] and
//! [`context`] turn raw request data into trusted values, which
//! [`request`] parses once; [`evidence`] reads each kind of proof of
//! identity, one module per kind; [`service`] applies the rules and
//! [`handoff`] writes what travels with a link; [`store`] is the
//! persistence contract and its engines; [`api`] translates gRPC;
//! [`server`] assembles and runs it all. See `docs/architecture.md`.

pub mod api;
pub mod auth;
pub mod clock;
pub mod codec;
pub mod config;
pub mod context;
pub mod cookie;
pub mod errors;
pub mod evidence;
pub mod ga;
pub mod handoff;
pub mod identity;
pub mod keys;
pub mod limit;
pub mod metrics;
pub mod pb;
pub mod privacy;
pub mod query;
pub mod request;
pub mod server;
pub mod service;
pub mod settings;
pub mod shutdown;
pub mod store;
pub mod token;
