//! Template tests. Expected outputs are what Prometheus (Go text/template with
//! Prometheus's functions) prints for the same input.

use std::collections::BTreeMap;

use super::*;

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn expand(text: &str, value: f64) -> String {
    let l = labels(&[
        ("instance", "db-1:9090"),
        ("job", "engine"),
        ("name", "sink"),
        ("resource", "memory"),
    ]);
    let ext = labels(&[("cluster", "eu-1")]);
    let data = AlertData {
        labels: &l,
        external_labels: &ext,
        external_url: "http://sluice.example:8081/prefix",
        value,
    };
    expand_alert("Test", text, &data, 1_353_755_652.0, None)
        .unwrap_or_else(|e| panic!("{text}: {e}"))
}

fn render(text: &str, data: &Value) -> Result<String, TemplateError> {
    Template::parse("t", text)?.execute(data, &Env::default())
}

#[test]
fn alert_variables() {
    assert_eq!(
        expand(
            "Circuit breaker {{ $labels.name }} open for {{ $value }} seconds",
            75.0
        ),
        "Circuit breaker sink open for 75 seconds"
    );
    assert_eq!(
        expand(
            "{{ .Labels.job }}/{{ $labels.missing }}/{{ $externalLabels.cluster }}",
            1.0
        ),
        "engine//eu-1"
    );
    assert_eq!(
        expand("{{ $externalURL }}", 1.0),
        "http://sluice.example:8081/prefix"
    );
    assert_eq!(expand("{{ $value }}", 1e6), "1e+06");
    assert_eq!(
        expand("{{ $value }}", 96.33333333333333),
        "96.33333333333333"
    );
    assert_eq!(expand("{{ $value }}", f64::NAN), "NaN");
    assert_eq!(expand("no template at all", 1.0), "no template at all");
}

#[test]
fn pipelines_and_functions() {
    assert_eq!(expand("{{ $value | humanize }}", 1234567.0), "1.235M");
    assert_eq!(expand("{{ humanize1024 $value }}B", 1048576.0), "1MiB");
    assert_eq!(
        expand("{{ $value | humanizeDuration }}", 3725.0),
        "1h 2m 5s"
    );
    assert_eq!(expand("{{ $value | humanizePercentage }}", 0.953), "95.3%");
    assert_eq!(
        expand("{{ $value | humanizeTimestamp }}", 1435065584.128),
        "2015-06-23 13:19:44.128 +0000 UTC"
    );
    assert_eq!(expand("{{ printf \"%.2f\" $value }}%", 95.456), "95.46%");
    assert_eq!(expand("{{ $value | printf \"%.1f\" }}", 2.25), "2.2");
    assert_eq!(
        expand(
            "{{ printf \"%s=%d %v %q\" $labels.job 42 $value $labels.name }}",
            0.5
        ),
        "engine=42 0.5 \"sink\""
    );
    assert_eq!(
        expand(
            "{{ $labels.resource | toUpper }} {{ \"MiXed\" | toLower }} {{ title \"hello wide world\" }}",
            0.0
        ),
        "MEMORY mixed Hello Wide World"
    );
    assert_eq!(
        expand("{{ reReplaceAll \":.*\" \"\" $labels.instance }}", 0.0),
        "db-1"
    );
    assert_eq!(
        expand("{{ reReplaceAll \"(a)b\" \"x$1\" \"ab\" }}", 0.0),
        "xa"
    );
    assert_eq!(expand("{{ $labels.instance | stripPort }}", 0.0), "db-1");
    assert_eq!(expand("{{ now }}", 0.0), "1.353755652e+09");
    assert_eq!(expand("{{ \"1h30m\" | parseDuration }}", 0.0), "5400");
}

#[test]
fn control_flow() {
    assert_eq!(
        expand(
            "{{ if gt $value 80.0 }}high{{ else if gt $value 50.0 }}mid{{ else }}low{{ end }}",
            90.0
        ),
        "high"
    );
    assert_eq!(
        expand(
            "{{ if gt $value 80.0 }}high{{ else if gt $value 50.0 }}mid{{ else }}low{{ end }}",
            60.0
        ),
        "mid"
    );
    assert_eq!(
        expand(
            "{{ if gt $value 80.0 }}high{{ else if gt $value 50.0 }}mid{{ else }}low{{ end }}",
            10.0
        ),
        "low"
    );
    assert_eq!(
        expand(
            "{{ range $k, $v := $labels }}{{ $k }}={{ $v }};{{ end }}",
            0.0
        ),
        "instance=db-1:9090;job=engine;name=sink;resource=memory;"
    );
    assert_eq!(
        expand("{{ range $labels }}{{ . }},{{ end }}", 0.0),
        "db-1:9090,engine,sink,memory,"
    );
    assert_eq!(
        expand(
            "{{ with $labels.job }}job {{ . }}{{ end }}{{ with $labels.nope }}x{{ else }}-{{ end }}",
            0.0
        ),
        "job engine-"
    );
    assert_eq!(
        expand(
            "{{ if and (eq $labels.job \"engine\") (ne $labels.name \"x\") }}yes{{ end }}",
            0.0
        ),
        "yes"
    );
    assert_eq!(
        expand(
            "{{ if or (eq $labels.job \"a\" \"b\" \"engine\") false }}yes{{ end }}",
            0.0
        ),
        "yes"
    );
    assert_eq!(
        expand("{{ if not (lt $value 1.0) }}ge1{{ end }}", 1.0),
        "ge1"
    );
    assert_eq!(
        expand(
            "{{ $x := 1 }}{{ if true }}{{ $x = 2 }}{{ end }}{{ $x }}",
            0.0
        ),
        "2"
    );
    assert_eq!(
        expand(
            "{{ range $i, $v := $labels }}{{ if eq $i \"name\" }}{{ break }}{{ end }}{{ $v }} {{ end }}",
            0.0
        ),
        "db-1:9090 engine "
    );
    assert_eq!(
        expand("{{/* a comment */}}a{{- /* trimmed */ -}} b", 0.0),
        "ab"
    );
}

#[test]
fn whitespace_trimming() {
    assert_eq!(expand("a  {{- $labels.job -}}  \n b", 0.0), "aengineb");
    assert_eq!(
        expand("x\n{{- if true }}\n  yes\n{{- end }}\n", 0.0),
        "x\n  yes\n"
    );
    // `{{-3}}` is the number -3, not a trim marker.
    assert_eq!(expand("{{-3}}", 0.0), "-3");
}

#[test]
fn go_comparison_rules() {
    // Go refuses to compare float64 with an int constant; Prometheus users hit this.
    let l = BTreeMap::new();
    let data = AlertData {
        labels: &l,
        external_labels: &l,
        external_url: "",
        value: 90.0,
    };
    let err = expand_alert("A", "{{ if gt $value 80 }}x{{ end }}", &data, 0.0, None).unwrap_err();
    assert!(
        err.to_string()
            .contains("incompatible types for comparison"),
        "{err}"
    );
    assert_eq!(
        expand_alert_or_error("A", "{{ if gt $value 80 }}x{{ end }}", &data, 0.0, None),
        format!("<error expanding template: error executing template __alert_A: {err}>")
    );
    assert_eq!(
        expand_alert("A", "{{ if gt 3 2 }}x{{ end }}", &data, 0.0, None).unwrap(),
        "x"
    );
    assert_eq!(
        expand_alert("A", "{{ if lt \"a\" \"b\" }}x{{ end }}", &data, 0.0, None).unwrap(),
        "x"
    );
}

#[test]
fn literals_and_printing() {
    let d = Value::Nil;
    assert_eq!(render("{{ 1 }} {{ 1.5 }} {{ -0.5 }} {{ 0x1F }} {{ 'a' }} {{ true }} {{ \"a\\tb\" }} {{ `raw\\n` }}", &d).unwrap(), "1 1.5 -0.5 31 97 true a\tb raw\\n");
    assert_eq!(render("{{ print 1 2 \"x\" 3 }}", &d).unwrap(), "1 2x3");
    assert_eq!(render("{{ println 1 \"x\" }}", &d).unwrap(), "1 x\n");
    assert_eq!(render("{{ len \"abc\" }}", &d).unwrap(), "3");
    assert_eq!(
        render("{{ .Missing }}", &Value::Map(BTreeMap::new())).unwrap(),
        ""
    );
    assert_eq!(
        render(
            "{{ range . }}x{{ else }}empty{{ end }}",
            &Value::Map(BTreeMap::new())
        )
        .unwrap(),
        "empty"
    );
    // Like Go, ranging over a string (a missing label) is an error.
    assert!(render("{{ range .x }}{{ end }}", &Value::Map(BTreeMap::new())).is_err());
    assert_eq!(render("{{ . }}", &Value::Nil).unwrap(), "<no value>");
    let m = Value::string_map([("b", "2"), ("a", "1")]);
    assert_eq!(
        render("{{ . }} {{ index . \"b\" }}", &m).unwrap(),
        "map[a:1 b:2] 2"
    );
    assert_eq!(
        render("{{ urlquery \"a b/c\" }} {{ html \"<a href='x'>\" }}", &d).unwrap(),
        "a+b%2Fc &lt;a href=&#39;x&#39;&gt;"
    );
}

#[test]
fn query_function() {
    let q = |expr: &str| -> Result<Vec<QuerySample>, String> {
        if expr == "up" {
            Ok(vec![
                QuerySample {
                    labels: [("instance".to_string(), "b".to_string())].into(),
                    value: 0.0,
                },
                QuerySample {
                    labels: [("instance".to_string(), "a".to_string())].into(),
                    value: 1.0,
                },
            ])
        } else {
            Ok(Vec::new())
        }
    };
    let l = BTreeMap::new();
    let data = AlertData {
        labels: &l,
        external_labels: &l,
        external_url: "",
        value: 0.0,
    };
    let text = "{{ range query \"up\" | sortByLabel \"instance\" }}{{ .Labels.instance }}:{{ .Value }} {{ end }}|{{ query \"up\" | first | label \"instance\" }}|{{ query \"up\" | first | value }}";
    assert_eq!(
        expand_alert("A", text, &data, 0.0, Some(&q)).unwrap(),
        "a:1 b:0 |b|0"
    );
    let err = expand_alert("A", "{{ query \"none\" | first }}", &data, 0.0, Some(&q)).unwrap_err();
    assert!(
        err.to_string()
            .contains("first() called on vector with no elements")
    );
}

#[test]
fn parse_errors() {
    for (text, want) in [
        ("{{ $labels.x ", "unclosed action"),
        ("{{ if true }}x", "missing end of if"),
        ("{{ end }}", "unexpected {{end}}"),
        ("{{ nosuchfunc 1 }}", "function \"nosuchfunc\" not defined"),
        ("{{ $undefined }}", "undefined variable \"$undefined\""),
        ("{{ }}", "missing value for command"),
        ("{{ \"unterminated }}", "unterminated quoted string"),
        ("{{ break }}", "break or continue outside range"),
        ("{{ (1 }}", "unclosed left paren"),
    ] {
        let err = check_alert_template("A", text).expect_err(text);
        assert!(matches!(err, TemplateError::Parse { .. }), "{text}: {err}");
        assert!(err.to_string().contains(want), "{text}: {err}");
    }
    assert!(
        check_alert_template(
            "A",
            "{{ $labels.x | humanize }} {{ range $k, $v := $labels }}{{ $k }}{{ end }}"
        )
        .is_ok()
    );
}

#[test]
fn execution_errors_name_the_function() {
    let l = BTreeMap::new();
    let data = AlertData {
        labels: &l,
        external_labels: &l,
        external_url: "",
        value: 0.0,
    };
    let err = expand_alert("A", "{{ humanize \"one\" }}", &data, 0.0, None).unwrap_err();
    assert!(err.to_string().contains("error calling humanize"), "{err}");
    let err = expand_alert("A", "{{ toUpper 1.5 }}", &data, 0.0, None).unwrap_err();
    assert!(
        err.to_string().contains("expected string; got float64"),
        "{err}"
    );
    let err = expand_alert("A", "{{ .Nope }}", &data, 0.0, None).unwrap_err();
    assert!(
        err.to_string().contains("can't evaluate field Nope"),
        "{err}"
    );
}
