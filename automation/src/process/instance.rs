//! Engine instances of a target: how the N engine processes of one target
//! (one consumer group) are derived from `targets.<name>.process`.
//!
//! - Instance 0 is the target itself: supervised under the target's name,
//!   started with the command exactly as configured, reached at the target's
//!   `url`. Its `--config` file is the operator's file, so `config/reload`
//!   and safe config deployment keep working on it.
//! - Instance *i* (i ≥ 1) is supervised as `<target>-<i>` and reached at the
//!   target's URL with the port plus 100·*i* ([`PORT_STRIDE`]:
//!   `http://127.0.0.1:8080` → `:8180`, `:8280` …; a stride of 1 would land
//!   on the Sluice API's 8081, 10 on the standby's 8090). Its engine configuration is generated from the
//!   target's `--config` file (or an empty one) at every start, so it follows
//!   a deployed config change on its next start: `admin.listen` becomes the
//!   derived address; `kafka.demo.enabled` is turned off (one generator per
//!   group, in instance 0); and `kafka.brokers: embedded` (or no brokers)
//!   becomes the bootstrap address of instance 0's embedded broker, so every
//!   instance joins the same cluster and consumer group.
//! - Generated configs and the logs of every instance go to
//!   `<cwd>/.sluice/instances/` (`cwd` of the process, else the current
//!   directory): `<target>-<i>.yaml`, `<target>.log`, `<target>-<i>.log`.
//! - Every instance gets `SLUICE_TARGET` and `SLUICE_INSTANCE` in its
//!   environment besides the configured `env`.

use std::path::{Path, PathBuf};

use serde_json::{Value as J, json};

use super::{ProcessSpec, RestartPolicy};
use crate::config::{Process, Target};

/// Why an instance cannot be derived.
#[derive(Debug, thiserror::Error)]
pub enum InstanceError {
    #[error(
        "target `{0}` has no `process:` in sluice.yaml; only supervised targets can be started"
    )]
    NotSupervised(String),
    #[error("target `{0}`: `process.command` is empty")]
    EmptyCommand(String),
    #[error("target `{target}`: url {url} has no port to derive instance ports from")]
    NoPort { target: String, url: String },
    #[error("target `{target}`: instance {index} would need port {port}, beyond 65535")]
    PortOverflow {
        target: String,
        index: usize,
        port: u32,
    },
    #[error("target `{target}`: cannot read engine config {path}: {message}")]
    BaseConfig {
        target: String,
        path: String,
        message: String,
    },
    #[error(
        "target `{0}`: instance 0 uses the embedded broker; its address is needed to start more instances (is instance 0 running?)"
    )]
    NoBootstrap(String),
    #[error("cannot write {path}: {message}")]
    Write { path: String, message: String },
}

/// Port distance between consecutive instances of one target.
pub const PORT_STRIDE: u32 = 100;

/// The supervisor name of instance `index` of `target`.
pub fn instance_name(target: &str, index: usize) -> String {
    if index == 0 {
        target.to_string()
    } else {
        format!("{target}-{index}")
    }
}

/// The instance index of supervisor name `name` when it belongs to `target`.
pub fn instance_index(target: &str, name: &str) -> Option<usize> {
    if name == target {
        return Some(0);
    }
    let rest = name.strip_prefix(target)?.strip_prefix('-')?;
    if rest.is_empty() || !rest.bytes().all(|b| b.is_ascii_digit()) || rest.starts_with('0') {
        return None;
    }
    rest.parse().ok().filter(|i| *i > 0)
}

/// The admin URL of instance `index`: the target's URL with its port plus `index` × [`PORT_STRIDE`].
pub fn instance_url(name: &str, target: &Target, index: usize) -> Result<url::Url, InstanceError> {
    let mut url = target.url.0.clone();
    if index == 0 {
        return Ok(url);
    }
    let port = url
        .port_or_known_default()
        .ok_or_else(|| InstanceError::NoPort {
            target: name.to_string(),
            url: target.url.to_string(),
        })?;
    let derived = u32::from(port) + index as u32 * PORT_STRIDE;
    let derived_port = u16::try_from(derived).map_err(|_| InstanceError::PortOverflow {
        target: name.to_string(),
        index,
        port: derived,
    })?;
    let _ = url.set_port(Some(derived_port));
    Ok(url)
}

/// `url` without a trailing slash, for joining paths.
pub fn base(url: &url::Url) -> String {
    url.as_str().trim_end_matches('/').to_string()
}

/// The directory for generated configs and logs of `process`.
pub fn run_dir(process: &Process) -> PathBuf {
    process
        .cwd
        .clone()
        .unwrap_or_else(|| PathBuf::from("."))
        .join(".sluice")
        .join("instances")
}

/// The process of a supervised target.
pub fn process_of<'a>(name: &str, target: &'a Target) -> Result<&'a Process, InstanceError> {
    let p = target
        .process
        .as_ref()
        .ok_or_else(|| InstanceError::NotSupervised(name.to_string()))?;
    if p.command.is_empty() {
        return Err(InstanceError::EmptyCommand(name.to_string()));
    }
    Ok(p)
}

/// Where `--config FILE` / `--config=FILE` sits in the arguments (index of the value).
fn config_arg(args: &[String]) -> Option<(usize, &str)> {
    for (i, a) in args.iter().enumerate() {
        if a == "--config" {
            return args.get(i + 1).map(|v| (i + 1, v.as_str()));
        }
        if let Some(v) = a.strip_prefix("--config=") {
            return Some((i, v));
        }
    }
    None
}

/// The spec of instance `index` of target `name`. `bootstrap` is instance 0's
/// embedded broker address (needed for i ≥ 1 when the config says `embedded`).
pub fn spec(
    name: &str,
    target: &Target,
    index: usize,
    bootstrap: Option<&str>,
) -> Result<ProcessSpec, InstanceError> {
    let process = process_of(name, target)?;
    let dir = run_dir(process);
    std::fs::create_dir_all(&dir).map_err(|e| InstanceError::Write {
        path: dir.display().to_string(),
        message: e.to_string(),
    })?;
    let supervised = instance_name(name, index);
    let mut spec = ProcessSpec::new(&supervised, &process.command[0]);
    spec.args = process.command[1..].to_vec();
    spec.cwd = process.cwd.clone();
    spec.env = process
        .env
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    spec.env.push(("SLUICE_TARGET".into(), name.to_string()));
    spec.env.push(("SLUICE_INSTANCE".into(), index.to_string()));
    spec.log = Some(dir.join(format!("{supervised}.log")));
    spec.restart = RestartPolicy::default();
    if index == 0 {
        return Ok(spec);
    }

    let url = instance_url(name, target, index)?;
    let listen = format!(
        "{}:{}",
        url.host_str().unwrap_or("127.0.0.1"),
        url.port_or_known_default().unwrap_or(80)
    );
    let mut doc = match config_arg(&spec.args) {
        Some((_, file)) => {
            let path = resolve(process.cwd.as_deref(), Path::new(file));
            let text = std::fs::read_to_string(&path).map_err(|e| InstanceError::BaseConfig {
                target: name.to_string(),
                path: path.display().to_string(),
                message: e.to_string(),
            })?;
            let doc: J = if text.trim().is_empty() {
                json!({})
            } else {
                serde_saphyr::from_str(&text).map_err(|e| InstanceError::BaseConfig {
                    target: name.to_string(),
                    path: path.display().to_string(),
                    message: e.to_string(),
                })?
            };
            if doc.is_object() { doc } else { json!({}) }
        }
        None => json!({}),
    };
    derive_config(&mut doc, &listen, bootstrap)
        .map_err(|()| InstanceError::NoBootstrap(name.to_string()))?;
    let generated = dir.join(format!("{supervised}.yaml"));
    // JSON is valid YAML: the engine reads it as it is.
    let text = serde_json::to_string_pretty(&doc).unwrap_or_default();
    std::fs::write(&generated, text).map_err(|e| InstanceError::Write {
        path: generated.display().to_string(),
        message: e.to_string(),
    })?;
    let generated = std::fs::canonicalize(&generated).unwrap_or(generated);
    let generated = generated.display().to_string();
    match config_arg(&spec.args) {
        Some((i, _)) if spec.args[i].starts_with("--config=") => {
            spec.args[i] = format!("--config={generated}")
        }
        Some((i, _)) => spec.args[i] = generated,
        None => {
            spec.args.push("--config".into());
            spec.args.push(generated);
        }
    }
    Ok(spec)
}

fn resolve(cwd: Option<&Path>, file: &Path) -> PathBuf {
    match cwd {
        Some(dir) if file.is_relative() => dir.join(file),
        _ => file.to_path_buf(),
    }
}

/// Rewrites an engine config for an extra instance; `Err(())` when the
/// embedded broker's address is needed and unknown.
fn derive_config(doc: &mut J, listen: &str, bootstrap: Option<&str>) -> Result<(), ()> {
    let obj = doc.as_object_mut().ok_or(())?;
    let admin = obj.entry("admin").or_insert_with(|| json!({}));
    if !admin.is_object() {
        *admin = json!({});
    }
    admin["listen"] = J::String(listen.to_string());
    let kafka = obj.entry("kafka").or_insert_with(|| json!({}));
    if !kafka.is_object() {
        *kafka = json!({});
    }
    let embedded = kafka
        .get("brokers")
        .and_then(J::as_str)
        .is_none_or(|b| b == "embedded");
    if embedded {
        kafka["brokers"] = J::String(bootstrap.ok_or(())?.to_string());
    }
    if let Some(demo) = kafka.get_mut("demo").and_then(J::as_object_mut) {
        demo.insert("enabled".into(), J::Bool(false));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn target(yaml: &str) -> Target {
        let cfg = Config::parse(Path::new("t.yaml"), yaml, &|_| None).unwrap();
        cfg.targets["primary"].clone()
    }

    #[test]
    fn names_and_indices_round_trip() {
        assert_eq!(instance_name("primary", 0), "primary");
        assert_eq!(instance_name("primary", 3), "primary-3");
        assert_eq!(instance_index("primary", "primary"), Some(0));
        assert_eq!(instance_index("primary", "primary-3"), Some(3));
        assert_eq!(instance_index("primary", "primary-03"), None);
        assert_eq!(instance_index("primary", "primary-x"), None);
        assert_eq!(instance_index("primary", "primaryx-1"), None);
        assert_eq!(instance_index("primary", "standby"), None);
    }

    #[test]
    fn ports_follow_the_target_url() {
        let t = target("targets:\n  primary:\n    url: http://127.0.0.1:8080\n");
        assert_eq!(instance_url("primary", &t, 0).unwrap().port(), Some(8080));
        assert_eq!(instance_url("primary", &t, 2).unwrap().port(), Some(8280));
        let t = target("targets:\n  primary:\n    url: http://127.0.0.1:65500\n");
        assert!(matches!(
            instance_url("primary", &t, 1),
            Err(InstanceError::PortOverflow { .. })
        ));
    }

    #[test]
    fn extra_instances_get_a_derived_config() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("engine.yaml"),
            "# comment\nkafka:\n  brokers: embedded\n  demo: {enabled: true}\nadmin: {listen: 127.0.0.1:8080}\n",
        )
        .unwrap();
        let yaml = format!(
            "targets:\n  primary:\n    url: http://127.0.0.1:8080\n    process:\n      command: [sluice-engine, --config, engine.yaml]\n      cwd: {}\n",
            dir.path().display()
        );
        let t = target(&yaml);
        let s0 = spec("primary", &t, 0, None).unwrap();
        assert_eq!(s0.args, vec!["--config", "engine.yaml"]);
        assert_eq!(s0.name, "primary");
        assert!(matches!(
            spec("primary", &t, 1, None),
            Err(InstanceError::NoBootstrap(_))
        ));
        let s2 = spec("primary", &t, 2, Some("127.0.0.1:39092")).unwrap();
        assert_eq!(s2.name, "primary-2");
        assert!(s2.env.contains(&("SLUICE_INSTANCE".into(), "2".into())));
        let generated: J =
            serde_json::from_str(&std::fs::read_to_string(&s2.args[1]).unwrap()).unwrap();
        assert_eq!(generated["admin"]["listen"], "127.0.0.1:8280");
        assert_eq!(generated["kafka"]["brokers"], "127.0.0.1:39092");
        assert_eq!(generated["kafka"]["demo"]["enabled"], false);
        assert!(s2.log.unwrap().ends_with(".sluice/instances/primary-2.log"));
    }

    #[test]
    fn real_brokers_are_kept_and_a_missing_config_is_generated() {
        let dir = tempfile::tempdir().unwrap();
        let yaml = format!(
            "targets:\n  primary:\n    url: http://127.0.0.1:9000\n    process:\n      command: [sluice-engine]\n      cwd: {}\n",
            dir.path().display()
        );
        let t = target(&yaml);
        let s1 = spec("primary", &t, 1, Some("ignored:1")).unwrap();
        assert_eq!(s1.args[0], "--config");
        let generated: J =
            serde_json::from_str(&std::fs::read_to_string(&s1.args[1]).unwrap()).unwrap();
        assert_eq!(generated["admin"]["listen"], "127.0.0.1:9100");
        // No brokers in the file means the engine's default, `embedded`: share instance 0's.
        assert_eq!(generated["kafka"]["brokers"], "ignored:1");

        std::fs::write(dir.path().join("e.yaml"), "kafka: {brokers: 'k1:9092'}\n").unwrap();
        let yaml = format!(
            "targets:\n  primary:\n    url: http://127.0.0.1:9000\n    process:\n      command: [sluice-engine, --config=e.yaml]\n      cwd: {}\n",
            dir.path().display()
        );
        let s1 = spec("primary", &target(&yaml), 1, None).unwrap();
        let file = s1.args[0].strip_prefix("--config=").unwrap();
        let generated: J = serde_json::from_str(&std::fs::read_to_string(file).unwrap()).unwrap();
        assert_eq!(generated["kafka"]["brokers"], "k1:9092");
    }

    #[test]
    fn unsupervised_targets_are_refused() {
        let t = target("targets:\n  primary:\n    url: http://127.0.0.1:8080\n");
        assert!(matches!(
            spec("primary", &t, 0, None),
            Err(InstanceError::NotSupervised(_))
        ));
    }
}
