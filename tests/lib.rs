//! Test harness: starts real servers (Tansu, the engine, SMTP, Slack recorder) on free loopback ports.
