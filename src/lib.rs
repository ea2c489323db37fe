//! sessionbridge: one visitor identity and one session across many web
//! domains, answered over gRPC to backends in any language.
//!
//! Layout: [`identity`] holds the rules (ids, sessions, the precedence of
//! evidence) and knows neither gRPC nor storage; [`cookie`], [`privacy`] and
//! [`context`] turn raw request data into trusted values; [`store`] is the
//! persistence contract and its engines; [`service`] applies the rules;
//! [`api`] translates gRPC; [`server`] assembles and runs it all.

pub mod api;
pub mod auth;
pub mod codec;
pub mod config;
pub mod context;
pub mod cookie;
pub mod ga;
pub mod identity;
pub mod keys;
pub mod limit;
pub mod metrics;
pub mod pb;
pub mod privacy;
pub mod query;
pub mod server;
pub mod service;
pub mod settings;
pub mod shutdown;
pub mod store;
pub mod token;
