use super::*;

fn deployment(generation: i64, spec: i64, status: J) -> J {
    json!({"metadata": {"name": "engine", "generation": generation}, "spec": {"replicas": spec}, "status": status})
}

#[test]
fn deployment_rollout_is_done_only_when_every_pod_is_new_and_available() {
    let d = WorkloadKind::Deployment;
    let done = json!({"observedGeneration": 2, "replicas": 3, "updatedReplicas": 3, "readyReplicas": 3, "availableReplicas": 3});
    assert_eq!(rollout(d, &deployment(2, 3, done.clone())), Rollout::Done);
    // Not observed yet: stale figures do not count.
    assert!(
        matches!(rollout(d, &deployment(3, 3, done)), Rollout::Waiting(w) if w.contains("generation 3"))
    );
    let surging = json!({"observedGeneration": 2, "replicas": 4, "updatedReplicas": 3, "availableReplicas": 3});
    assert!(
        matches!(rollout(d, &deployment(2, 3, surging)), Rollout::Waiting(w) if w.contains("1 old replicas"))
    );
    let starting = json!({"observedGeneration": 2, "replicas": 3, "updatedReplicas": 3, "availableReplicas": 1});
    assert!(
        matches!(rollout(d, &deployment(2, 3, starting)), Rollout::Waiting(w) if w.contains("1 of 3 updated"))
    );
    // Zero counts are left out by the API server: absent is 0.
    assert!(
        matches!(rollout(d, &deployment(1, 2, json!({"observedGeneration": 1}))), Rollout::Waiting(w) if w.contains("0 of 2"))
    );
    assert_eq!(
        rollout(d, &deployment(4, 0, json!({"observedGeneration": 4}))),
        Rollout::Done
    );
    let stuck = json!({"observedGeneration": 2, "conditions": [{"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded", "message": "ReplicaSet has timed out progressing."}]});
    assert!(
        matches!(rollout(d, &deployment(2, 3, stuck)), Rollout::Failed(w) if w.contains("timed out"))
    );
}

#[test]
fn statefulset_rollout_wants_ready_replicas_and_the_new_revision() {
    let s = WorkloadKind::StatefulSet;
    let ok =
        json!({"observedGeneration": 5, "replicas": 2, "readyReplicas": 2, "updatedReplicas": 2});
    assert_eq!(rollout(s, &deployment(5, 2, ok)), Rollout::Done);
    let old = json!({"observedGeneration": 5, "readyReplicas": 2, "updatedReplicas": 1, "updateRevision": "b", "currentRevision": "a"});
    assert!(
        matches!(rollout(s, &deployment(5, 2, old)), Rollout::Waiting(w) if w.contains("1 of 2 replicas updated"))
    );
    let same = json!({"observedGeneration": 5, "readyReplicas": 2, "updatedReplicas": 0, "updateRevision": "b", "currentRevision": "b"});
    assert_eq!(rollout(s, &deployment(5, 2, same)), Rollout::Done);
    let unready = json!({"observedGeneration": 5, "readyReplicas": 1, "updatedReplicas": 2});
    assert!(
        matches!(rollout(s, &deployment(5, 2, unready)), Rollout::Waiting(w) if w.contains("1 of 2 replicas ready"))
    );
}

#[test]
fn stopped_means_observed_and_no_pod_left() {
    assert_eq!(
        stopped(&deployment(3, 0, json!({"observedGeneration": 3}))),
        Rollout::Done
    );
    assert!(matches!(
        stopped(&deployment(
            3,
            0,
            json!({"observedGeneration": 2, "replicas": 0})
        )),
        Rollout::Waiting(_)
    ));
    assert!(matches!(
        stopped(&deployment(
            3,
            0,
            json!({"observedGeneration": 3, "replicas": 1})
        )),
        Rollout::Waiting(_)
    ));
    let s = summary(
        WorkloadKind::Deployment,
        &deployment(3, 0, json!({"observedGeneration": 3})),
    );
    assert_eq!(
        (
            s["replicas"].clone(),
            s["ready"].clone(),
            s["rolled_out"].clone()
        ),
        (json!(0), json!(0), json!(true))
    );
}

#[test]
fn base64_decodes_padded_unpadded_and_wrapped_text() {
    assert_eq!(base64("aGVsbG8=").unwrap(), b"hello");
    assert_eq!(base64("aGVsbG8").unwrap(), b"hello");
    assert_eq!(base64("aGVs\n bG8h").unwrap(), b"hello!");
    assert_eq!(base64("").unwrap(), b"");
    assert!(base64("a*b").is_err());
}

const KUBECONFIG: &str = r#"
apiVersion: v1
kind: Config
current-context: admin
clusters:
- name: prod
  cluster:
    server: https://10.0.0.1:6443/
    certificate-authority-data: LS0tLS1CRUdJTg==
- name: dev
  cluster: {server: "http://127.0.0.1:8001", certificate-authority: ca.pem}
contexts:
- name: admin
  context: {cluster: prod, user: admin}
- name: bot
  context: {cluster: dev, user: bot, namespace: streaming}
users:
- name: admin
  user: {client-certificate-data: AAAA, client-key-data: BBBB}
- name: bot
  user: {tokenFile: bot.token}
"#;

#[test]
fn kubeconfig_contexts_give_server_token_ca_and_namespace() {
    let dir = std::env::temp_dir().join(format!("sluice-kc-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("ca.pem"), "PEM").unwrap();
    let c = kubeconfig(KUBECONFIG, &dir, Some("bot")).unwrap();
    assert_eq!(c.server, "http://127.0.0.1:8001");
    assert_eq!(c.token, Token::File(dir.join("bot.token")));
    assert_eq!(c.ca.map(|c| c.1), Some(b"PEM".to_vec()));
    assert_eq!(c.namespace.as_deref(), Some("streaming"));
    let err = kubeconfig(KUBECONFIG, &dir, None).unwrap_err();
    assert!(
        err.contains("user `admin`") && err.contains("client certificate"),
        "{err}"
    );
    assert!(
        kubeconfig(KUBECONFIG, &dir, Some("nope"))
            .unwrap_err()
            .contains("no context `nope`")
    );
    let prod = KUBECONFIG.replace(
        "client-certificate-data: AAAA, client-key-data: BBBB",
        "token: t0k",
    );
    let c = kubeconfig(&prod, &dir, None).unwrap();
    assert_eq!(
        (c.server.as_str(), c.token),
        ("https://10.0.0.1:6443", Token::Value("t0k".into()))
    );
    assert_eq!(c.ca.map(|c| c.1), Some(b"-----BEGIN".to_vec()));
    let _ = std::fs::remove_dir_all(&dir);
}
