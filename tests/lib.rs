//! Test harness: starts real servers (Tansu, the engine, SMTP, Slack recorder) on free loopback ports.
//!
//! | module | what | start |
//! |---|---|---|
//! | [`postgres`] | PostgreSQL server (initdb + postgres, as the `postgres` user when root) | `Postgres::shared()?.fresh_database()?` |
//! | [`smtp`] | aiosmtpd recording every message (envelope, headers, MIME parts) | `Smtp::start()?` / `Smtp::start_with_auth(u, p)?` |
//! | [`slack`] | Slack incoming-webhook stand-in: records posts, checks Block Kit, answers `ok` / scripted `429` | `Slack::start().await?` |
//! | [`tansu`] | Tansu Kafka-protocol broker, in-memory storage | `Tansu::start()?` |

pub mod net;
pub mod postgres;
pub mod slack;
pub mod smtp;
pub mod tansu;
