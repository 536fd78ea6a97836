//! End-to-end tests: real workspaces run through the `wask` binary.
//!
//! Guests come from `tests/guests` (the `probe` module, built for wasm32-wasip1 on
//! first use), from the example plugins (`examples/plugins`), and from modules encoded
//! by hand in `support`.

mod support;

mod audit;
mod cache;
mod cache_commands;
mod corruption;
mod crash;
mod daily_use;
mod eighth_review;
mod eleventh_review;
mod escapes;
mod examples;
mod faults;
mod fifth_review;
mod foreign_guest;
mod fourth_review;
mod graph_query;
mod hardening;
mod load_errors;
mod modules;
mod ninth_review;
mod output;
mod overlays;
mod plugins;
mod remote;
mod remote_tls;
mod run;
mod schedule;
mod second_review;
mod seventh_review;
mod sixth_review;
mod tenth_review;
mod third_review;
mod twelfth_review;
mod why;
