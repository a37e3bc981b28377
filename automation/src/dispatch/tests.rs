use super::*;
use std::time::Duration as StdDuration;

fn t(secs: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(1_800_000_000 + secs, 0).unwrap()
}

fn labels(pairs: &[(&str, &str)]) -> LabelSet {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn alert(pairs: &[(&str, &str)], starts: i64) -> Alert {
    Alert {
        labels: labels(pairs),
        annotations: BTreeMap::new(),
        starts_at: t(starts),
        ends_at: None,
        generator_url: None,
    }
}

fn resolved(mut a: Alert, at: i64) -> Alert {
    a.ends_at = Some(t(at));
    a
}

fn opts(receiver: &str, group_by: &[&str]) -> RouteOpts {
    RouteOpts {
        receiver: receiver.into(),
        group_by: GroupBy::Labels(group_by.iter().map(|s| s.to_string()).collect()),
        group_wait: StdDuration::from_secs(30),
        group_interval: StdDuration::from_secs(300),
        repeat_interval: StdDuration::from_secs(3600),
        send_resolved: true,
    }
}

fn route(o: RouteOpts, matchers: &[&str], children: Vec<Route>) -> Route {
    Route {
        id: String::new(),
        matchers: matchers
            .iter()
            .map(|m| Matcher::parse(m).unwrap())
            .collect(),
        continue_matching: false,
        opts: o,
        routes: children,
    }
}

fn names(n: &Notification) -> (Vec<String>, Vec<String>) {
    let f = |v: &Vec<Alert>| {
        v.iter()
            .map(|a| a.labels.get("alertname").cloned().unwrap_or_default())
            .collect()
    };
    (f(&n.firing), f(&n.resolved))
}

#[test]
fn routing_picks_the_first_matching_child_unless_continue() {
    let mut crit = route(opts("pager", &[]), &["severity=critical"], vec![]);
    crit.continue_matching = true;
    let tree = route(
        opts("default", &[]),
        &[],
        vec![
            crit,
            route(opts("slack", &[]), &["severity=~critical|warning"], vec![]),
            route(opts("never", &[]), &["severity=warning"], vec![]),
        ],
    );
    let receivers = |pairs: &[(&str, &str)]| -> Vec<String> {
        tree.matching(&labels(pairs))
            .iter()
            .map(|r| r.opts.receiver.clone())
            .collect()
    };
    assert_eq!(
        receivers(&[("severity", "critical")]),
        vec!["pager", "slack"]
    );
    assert_eq!(receivers(&[("severity", "warning")]), vec!["slack"]);
    assert_eq!(receivers(&[("severity", "info")]), vec!["default"]);
}

#[test]
fn group_wait_collects_then_one_notification() {
    let mut d = Dispatcher::new(route(opts("ops", &["alertname"]), &[], vec![]), vec![]);
    d.ingest(
        alert(&[("alertname", "CircuitBreakerOpen"), ("name", "a")], 0),
        t(0),
    );
    d.ingest(
        alert(&[("alertname", "CircuitBreakerOpen"), ("name", "b")], 10),
        t(10),
    );
    assert!(d.tick(t(29)).is_empty(), "still inside group_wait");
    let n = d.tick(t(30));
    assert_eq!(n.len(), 1);
    assert_eq!(n[0].firing.len(), 2);
    assert_eq!(
        n[0].group_labels,
        labels(&[("alertname", "CircuitBreakerOpen")])
    );
}

#[test]
fn new_alerts_wait_for_group_interval_unchanged_ones_for_repeat_interval() {
    let mut d = Dispatcher::new(route(opts("ops", &["alertname"]), &[], vec![]), vec![]);
    d.ingest(alert(&[("alertname", "X"), ("i", "1")], 0), t(0));
    assert_eq!(d.tick(t(30)).len(), 1);
    d.ingest(alert(&[("alertname", "X"), ("i", "2")], 40), t(40));
    assert!(d.tick(t(100)).is_empty(), "before group_interval");
    let n = d.tick(t(330));
    assert_eq!(n.len(), 1, "group_interval after the first flush");
    assert_eq!(n[0].firing.len(), 2);
    // Nothing changes: silent at every group_interval tick until repeat_interval passed.
    let mut sent_at = Vec::new();
    for k in 1..=13 {
        let now = t(330 + 300 * k);
        if !d.tick(now).is_empty() {
            sent_at.push(330 + 300 * k);
        }
    }
    assert_eq!(
        sent_at,
        vec![330 + 300 * 12 + 300],
        "first tick strictly after 1h"
    );
}

#[test]
fn resolved_alerts_are_notified_once_then_dropped() {
    let mut d = Dispatcher::new(route(opts("ops", &["alertname"]), &[], vec![]), vec![]);
    let a = alert(&[("alertname", "MemoryExhausted")], 0);
    d.ingest(a.clone(), t(0));
    assert_eq!(d.tick(t(30)).len(), 1);
    d.ingest(resolved(a, 100), t(100));
    let n = d.tick(t(330));
    assert_eq!(n.len(), 1);
    assert_eq!(names(&n[0]), (vec![], vec!["MemoryExhausted".to_string()]));
    assert!(d.tick(t(630)).is_empty());
    assert!(d.next_due().is_none(), "empty group removed");
}

#[test]
fn without_send_resolved_a_resolution_sends_nothing() {
    let mut o = opts("ops", &["alertname"]);
    o.send_resolved = false;
    let mut d = Dispatcher::new(route(o, &[], vec![]), vec![]);
    let a = alert(&[("alertname", "X")], 0);
    d.ingest(a.clone(), t(0));
    assert_eq!(d.tick(t(30)).len(), 1);
    d.ingest(resolved(a, 100), t(100));
    assert!(d.tick(t(330)).is_empty());
}

#[test]
fn an_alert_older_than_group_wait_is_notified_immediately() {
    let mut d = Dispatcher::new(route(opts("ops", &["alertname"]), &[], vec![]), vec![]);
    d.ingest(alert(&[("alertname", "Old")], 0), t(120));
    assert_eq!(d.tick(t(120)).len(), 1);
}

#[test]
fn silences_mute_matching_alerts_until_they_expire() {
    let mut d = Dispatcher::new(route(opts("ops", &["alertname"]), &[], vec![]), vec![]);
    d.silences
        .upsert(Silence {
            id: "s1".into(),
            matchers: vec![Matcher::parse("alertname=HighLatency").unwrap()],
            starts_at: t(0),
            ends_at: t(400),
            created_by: "alice".into(),
            comment: "deploy".into(),
        })
        .unwrap();
    d.ingest(alert(&[("alertname", "HighLatency")], 0), t(0));
    assert!(d.tick(t(30)).is_empty(), "silenced");
    assert_eq!(d.tick(t(330)).len(), 0, "still silenced");
    assert_eq!(d.tick(t(630)).len(), 1, "silence expired at 400");
}

#[test]
fn silences_are_validated_and_expire_on_request() {
    let mut s = Silences::new();
    let mk = |m: &[&str], a: i64, b: i64| Silence {
        id: "x".into(),
        matchers: m.iter().map(|x| Matcher::parse(x).unwrap()).collect(),
        starts_at: t(a),
        ends_at: t(b),
        created_by: "bob".into(),
        comment: String::new(),
    };
    assert_eq!(s.upsert(mk(&[], 0, 10)), Err(SilenceError::NoMatchers));
    assert_eq!(
        s.upsert(mk(&["a=b"], 10, 10)),
        Err(SilenceError::EmptyRange)
    );
    assert_eq!(
        s.upsert(mk(&["a=~.*"], 0, 10)),
        Err(SilenceError::MatchesEverything)
    );
    s.upsert(mk(&["a=b"], 0, 100)).unwrap();
    assert_eq!(s.get("x").unwrap().state(t(50)), SilenceState::Active);
    s.expire("x", t(50)).unwrap();
    assert_eq!(s.get("x").unwrap().state(t(50)), SilenceState::Expired);
    s.gc(t(50 + 10), chrono::Duration::seconds(5));
    assert!(s.list().is_empty());
}

#[test]
fn inhibition_mutes_targets_sharing_equal_labels() {
    let rule = InhibitRule {
        source_matchers: vec![Matcher::parse("alertname=EngineDown").unwrap()],
        target_matchers: vec![Matcher::parse("severity=~warning|critical").unwrap()],
        equal: vec!["instance".into()],
    };
    let mut d = Dispatcher::new(
        route(opts("ops", &["alertname", "instance"]), &[], vec![]),
        vec![rule],
    );
    d.ingest(
        alert(
            &[
                ("alertname", "EngineDown"),
                ("instance", "e1"),
                ("severity", "critical"),
            ],
            0,
        ),
        t(0),
    );
    d.ingest(
        alert(
            &[
                ("alertname", "ProcessingStopped"),
                ("instance", "e1"),
                ("severity", "critical"),
            ],
            0,
        ),
        t(0),
    );
    d.ingest(
        alert(
            &[
                ("alertname", "ProcessingStopped"),
                ("instance", "e2"),
                ("severity", "critical"),
            ],
            0,
        ),
        t(0),
    );
    let sent: Vec<(String, String)> = d
        .tick(t(30))
        .iter()
        .flat_map(|n| {
            n.firing
                .iter()
                .map(|a| (a.labels["alertname"].clone(), a.labels["instance"].clone()))
        })
        .collect();
    assert!(
        sent.contains(&("EngineDown".into(), "e1".into())),
        "source never inhibits itself"
    );
    assert!(
        sent.contains(&("ProcessingStopped".into(), "e2".into())),
        "other instance"
    );
    assert!(
        !sent.contains(&("ProcessingStopped".into(), "e1".into())),
        "inhibited"
    );
}

#[test]
fn group_by_all_makes_one_group_per_alert() {
    let mut o = opts("ops", &[]);
    o.group_by = GroupBy::All;
    let mut d = Dispatcher::new(route(o, &[], vec![]), vec![]);
    d.ingest(alert(&[("alertname", "A"), ("x", "1")], 0), t(0));
    d.ingest(alert(&[("alertname", "A"), ("x", "2")], 0), t(0));
    assert_eq!(d.tick(t(30)).len(), 2);
}

#[test]
fn fingerprint_depends_on_every_label() {
    let a = labels(&[("a", "1"), ("b", "2")]);
    let b = labels(&[("a", "1"), ("b", "3")]);
    let c = labels(&[("a", "12")]);
    let d = labels(&[("a", "1"), ("2", "")]);
    assert_ne!(fingerprint(&a), fingerprint(&b));
    assert_ne!(fingerprint(&c), fingerprint(&d));
    assert_eq!(fingerprint(&a), fingerprint(&a.clone()));
}
