//! Test harness: real servers on free loopback ports, and the shipped
//! runbooks run through the library's executor against them.
//!
//! | module | what | start |
//! |---|---|---|
//! | [`engine`] | `sluice-engine` processes on a broker-host process | see the module |
//! | [`world`] | a supervised primary (and standby) engine with notify receivers | `World::start(..)` |
//! | [`served`] | a [`world`] with `sluice serve` scraping it, the shipped alerts (durations compressed) and runbooks | `Served::start(..)` |
//! | [`sluice`] | service config and `Services` for the shipped runbooks | see the module |
//! | [`postgres`] | PostgreSQL server (initdb + postgres, as the `postgres` user when root) | `Postgres::shared()?.fresh_database()?` |
//! | [`smtp`] | aiosmtpd recording every message (envelope, headers, MIME parts) | `Smtp::start()?` / `Smtp::start_with_auth(u, p)?` |
//! | [`slack`] | Slack incoming-webhook stand-in: records posts, checks Block Kit, answers `ok` / scripted `429` | `Slack::start().await?` |
//! | [`notify`] | Slack recorder and an aiosmtpd whose printed messages are kept in a file | `SlackRecorder::start().await` |
//! | [`tansu`] | Tansu Kafka-protocol broker, in-memory storage | `Tansu::start()?` |
//! | [`engine_process`] | the engine binary as a child (kill -9, SIGTERM, restart) | `EngineProcess::start(..)` |
//! | [`kafka`] | produce and read topics without a group | see the module |
//! | [`node`] | a loop-mounted ext4 to fill, and node_exporter reporting only it | `LoopFs::mount(..)?`, `NodeExporter::start(..).await?` |
//! | [`sshd`] | simulated hosts: one OpenSSH server per host on loopback, a recording systemctl stand-in | `SshHosts::start(dir, &["p1", …])` |
//! | [`browser`] | headless Chromium over the DevTools protocol: open, wait, click, fill; page errors reported | `browser::run(vec![browser::open(url), …]).await` |
//! | [`net`] | free ports (never handed out twice), HTTP helpers, polling | — |

pub mod browser;
pub mod engine;
pub mod engine_process;
pub mod kafka;
pub mod net;
pub mod node;
pub mod notify;
pub mod postgres;
pub mod served;
pub mod slack;
pub mod sluice;
pub mod smtp;
pub mod sshd;
pub mod tansu;
pub mod world;
