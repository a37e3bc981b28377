use std::path::Path;

use super::*;
use crate::config::Config;

fn parse(yaml: &str) -> Result<Config, Vec<String>> {
    Config::parse(Path::new("s.yaml"), yaml, &|_| None)
        .map_err(|d| d.iter().map(|x| x.to_string()).collect())
}

const HOSTS: &str = "    ssh:\n      user: ops\n      hosts:\n        - {name: p1, host: 10.0.0.1, labels: {role: primary}}\n        - {name: s1, host: 10.0.0.2, labels: {role: standby}}\n";

#[test]
fn a_misspelled_driver_field_is_reported_with_its_place_and_a_suggestion() {
    let yaml = "targets:\n  e:\n    url: http://x:8080\n    systemd: {unti: a.service}\n";
    let errs = parse(yaml).unwrap_err();
    assert!(
        errs[0].starts_with("s.yaml:4:15: unknown field `unti`, did you mean `unit`?"),
        "{errs:?}"
    );
    let yaml = format!("targets:\n  e:\n    url: http://x:8080\n{HOSTS}      identity: /k\n");
    let errs = parse(&yaml).unwrap_err();
    assert!(
        errs[0].starts_with("s.yaml:9:7: unknown field `identity`, did you mean `identity_file`?"),
        "{errs:?}"
    );
}

#[test]
fn names_that_reach_a_command_line_are_plain() {
    let yaml = "targets:\n  e:\n    url: http://x:8080\n    systemd: {unit: 'a.service; rm -rf /'}\n    ssh:\n      hosts:\n        - {name: 'p1', host: '$(reboot)'}\n        - {name: '-oProxyCommand=x'}\n";
    let errs = parse(yaml).unwrap_err().join("\n");
    assert!(
        errs.contains("s.yaml:4:21: systemd unit `a.service; rm -rf /` may hold only"),
        "{errs}"
    );
    assert!(
        errs.contains("host address `$(reboot)` may hold only"),
        "{errs}"
    );
    assert!(errs.contains("host name `-oProxyCommand=x`"), "{errs}");
    let yaml =
        "targets:\n  c:\n    url: http://x:8080\n    compose: {project: Demo, service: 'web|x'}\n";
    let errs = parse(yaml).unwrap_err().join("\n");
    assert!(errs.contains("lower case"), "{errs}");
    assert!(errs.contains("compose service `web|x`"), "{errs}");
}

#[test]
fn one_way_of_managing_a_target() {
    let yaml = "targets:\n  e:\n    url: http://x:8080\n    process: {command: [e]}\n    systemd: {unit: e.service}\n";
    let errs = parse(yaml).unwrap_err().join("\n");
    assert!(errs.contains("has process and systemd"), "{errs}");
    let yaml = "targets:\n  k:\n    url: http://x:8080\n    kubernetes: {name: Engine}\n";
    let errs = parse(yaml).unwrap_err().join("\n");
    assert!(errs.contains("not a valid Kubernetes name"), "{errs}");
    assert!(
        errs.contains("exactly one of `api_url`, `kubeconfig`"),
        "{errs}"
    );
}

#[test]
fn what_each_driver_can_do_is_known_from_the_config() {
    let yaml = format!(
        "targets:\n  plain:\n    url: http://x:8080\n  one:\n    url: http://x:8080\n    ssh:\n      hosts: [{{name: h}}]\n      commands: {{start: [s], stop: [t], status: [u]}}\n  unit:\n    url: http://x:8080\n    systemd: {{unit: e.service}}\n  fleet:\n    url: http://x:8080\n    systemd: {{unit: e.service}}\n{HOSTS}  local:\n    url: http://x:8080\n    process: {{command: [e]}}\n"
    );
    let c = parse(&yaml).unwrap();
    let t = |n: &str| &c.targets[n];
    assert!(
        cannot("plain", t("plain"), Op::Start, false)
            .unwrap()
            .contains("nothing manages it")
    );
    assert!(cannot("one", t("one"), Op::Start, false).is_none());
    assert!(
        cannot("one", t("one"), Op::Restart, false).is_none(),
        "stop then start"
    );
    assert!(
        cannot("one", t("one"), Op::Scale, false)
            .unwrap()
            .contains("one host")
    );
    assert!(
        cannot("unit", t("unit"), Op::Scale, false)
            .unwrap()
            .contains("cannot scale")
    );
    assert!(cannot("fleet", t("fleet"), Op::Scale, false).is_none());
    assert!(
        cannot("local", t("local"), Op::Stop, true)
            .unwrap()
            .contains("`hosts` selects hosts")
    );
    // Hosts are targets of their own for reading steps: `fleet/p1`.
    assert_eq!(
        c.target("fleet/s1").unwrap().url.to_string(),
        "http://10.0.0.2:8080"
    );
}

#[test]
fn host_selectors_by_name_list_and_labels() {
    let c = parse(&format!(
        "targets:\n  f:\n    url: http://x:1\n    systemd: {{unit: e}}\n{HOSTS}"
    ))
    .unwrap();
    let hosts = &c.targets["f"].ssh.as_ref().unwrap().hosts;
    let pick = |sel: &HostSelector| -> Vec<&str> {
        hosts
            .iter()
            .filter(|h| sel.matches(h))
            .map(|h| h.name.value.as_str())
            .collect()
    };
    let labels = HostSelector::Labels([("role".to_string(), "standby".to_string())].into());
    assert_eq!(pick(&labels), ["s1"]);
    assert_eq!(pick(&HostSelector::One("all".into())), ["p1", "s1"]);
    assert_eq!(pick(&HostSelector::Names(vec!["p1".into()])), ["p1"]);
    assert_eq!(
        HostSelector::Names(vec!["p9".into()]).unknown(hosts),
        ["p9"]
    );
}

#[test]
fn remote_command_lines_quote_every_word() {
    let c = parse(&format!(
        "targets:\n  f:\n    url: http://x:1\n    systemd: {{unit: e}}\n{HOSTS}"
    ))
    .unwrap();
    let ssh = c.targets["f"].ssh.as_ref().unwrap();
    let r = remote::Runner::Ssh {
        ssh,
        host: &ssh.hosts[0],
    };
    let argv = r.argv(remote::Line::Argv(&["echo".into(), "a b; $(x)".into()]));
    assert_eq!(argv.last().unwrap(), "'echo' 'a b; $(x)'");
    assert!(argv.contains(&"StrictHostKeyChecking=yes".to_string()));
    assert!(argv.contains(&"BatchMode=yes".to_string()));
    assert_eq!(&argv[argv.len() - 3..argv.len() - 1], ["--", "10.0.0.1"]);
}

#[test]
fn systemd_show_and_compose_ps_are_read_as_documented() {
    let p = systemd::parse_show("ActiveState=active\nSubState=running\nMainPID=42\n");
    assert_eq!(p["ActiveState"], "active");
    assert_eq!(p["MainPID"], "42");
    let lines =
        "{\"Service\":\"web\",\"State\":\"running\"}\n{\"Service\":\"web\",\"State\":\"exited\"}\n";
    assert_eq!(compose::parse_ps(lines).unwrap().len(), 2);
    let array = "[{\"Service\":\"web\",\"State\":\"running\"}]";
    assert_eq!(compose::parse_ps(array).unwrap()[0]["State"], "running");
    assert!(compose::parse_ps("").unwrap().is_empty());
}
