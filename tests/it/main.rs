//! The integration tests, in one binary (one link instead of seven): the daemon through its
//! real HTTP API, SQLite file, SMTP conversation, binary and Prometheus text.

// A test that unwraps fails with the value it did not expect, which is what a test should do.
#![allow(clippy::unwrap_used)]

mod common;
mod smtp;
mod structure;
mod truth;

mod alerts;
mod api;
mod browser;
mod cli;
mod connect;
mod connect_flows;
mod custody;
mod faults;
mod hostile;
mod operator;
mod platforms;
mod postgres;
mod scheduler;
mod status;
mod webhooks;
