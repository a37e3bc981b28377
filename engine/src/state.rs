//! Versioned JSON snapshot of operator state and Kafka positions
//! (`GET /admin/state/export`, `POST /admin/state/import`).

use serde::{Deserialize, Serialize};

use crate::operator::aggregate::Acc;
use crate::query::Query;
use crate::value::Value;

/// The document format version; imports of any other version are refused.
pub const STATE_VERSION: u32 = 1;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StateDocument {
    pub version: u32,
    pub engine_version: String,
    pub exported_at: String,
    pub group_id: String,
    pub queries: Vec<QueryState>,
    /// Next offset to read per partition: records below it are in `queries`' state or delivered.
    pub positions: Vec<PartitionOffset>,
    /// Offsets committed to the consumer group.
    pub committed: Vec<PartitionOffset>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PartitionOffset {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct QueryState {
    pub name: String,
    pub sql: String,
    pub max_event_ms: Option<i64>,
    /// Largest event time per source partition (the watermark's inputs).
    #[serde(default)]
    pub partition_event_ms: Vec<(i32, i64)>,
    pub windows: Vec<WindowDoc>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WindowDoc {
    pub start: i64,
    pub holds: Vec<(i32, i64)>,
    pub groups: Vec<GroupDoc>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GroupDoc {
    pub key: Vec<serde_json::Value>,
    pub accs: Vec<serde_json::Value>,
}

/// Why an import was refused.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error(
        "state document version {found} is not supported (this engine reads version {STATE_VERSION})"
    )]
    Version { found: u32 },
    #[error("query set differs: {0}")]
    QuerySet(String),
    #[error("query `{query}`: {problem}")]
    Invalid { query: String, problem: String },
}

/// Snapshot of one query's state.
pub fn export_query(q: &Query, sql: &str) -> QueryState {
    let windows = q
        .aggregate()
        .map(|agg| {
            agg.windows
                .iter()
                .map(|(start, w)| WindowDoc {
                    start: *start,
                    holds: w.holds.clone(),
                    groups: w
                        .groups
                        .iter()
                        .map(|g| GroupDoc {
                            key: g.key.iter().map(Value::to_json).collect(),
                            accs: g.accs.iter().map(Acc::to_json).collect(),
                        })
                        .collect(),
                })
                .collect()
        })
        .unwrap_or_default();
    QueryState {
        name: q.name.clone(),
        sql: sql.to_owned(),
        max_event_ms: q.watermark().max_event_ms(),
        partition_event_ms: q.watermark().partition_event_ms(),
        windows,
    }
}

/// Checks that `doc` matches the running query set (names and SQL).
pub fn check_compatible(
    doc: &StateDocument,
    running: &[(String, String)],
) -> Result<(), ImportError> {
    if doc.version != STATE_VERSION {
        return Err(ImportError::Version { found: doc.version });
    }
    let mut want: Vec<(&str, &str)> = running
        .iter()
        .map(|(n, s)| (n.as_str(), s.as_str()))
        .collect();
    let mut have: Vec<(&str, &str)> = doc
        .queries
        .iter()
        .map(|q| (q.name.as_str(), q.sql.as_str()))
        .collect();
    // A document exported by several workers holds one entry per worker and query.
    want.sort();
    want.dedup();
    have.sort();
    have.dedup();
    if want != have {
        let names = |v: &[(&str, &str)]| v.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ");
        return Err(ImportError::QuerySet(format!(
            "document has [{}], engine runs [{}] (names and SQL must match)",
            names(&have),
            names(&want)
        )));
    }
    Ok(())
}

/// Replaces one query's state with the parts in `states` (one per exporting
/// worker; windows with the same start are merged, and so are groups with
/// the same key).
pub fn import_query(q: &mut Query, states: &[&QueryState]) -> Result<(), ImportError> {
    if let Some(agg) = q.aggregate_mut() {
        while agg.pop_oldest().is_some() {}
    }
    q.watermark_mut().reset();
    let now = crate::query::now_ms();
    for s in states {
        q.watermark_mut()
            .restore(s.max_event_ms, &s.partition_event_ms, now);
        merge_query(q, s)?;
    }
    Ok(())
}

fn merge_query(q: &mut Query, s: &QueryState) -> Result<(), ImportError> {
    let invalid = |problem: String| ImportError::Invalid {
        query: s.name.clone(),
        problem,
    };
    let Some(agg) = q.aggregate_mut() else {
        return if s.windows.is_empty() {
            Ok(())
        } else {
            Err(invalid("stateless query cannot hold windows".into()))
        };
    };
    let funcs = agg.funcs.clone();
    for w in &s.windows {
        let mut state = agg.take_window(w.start).unwrap_or_default();
        for &(p, off) in &w.holds {
            match state.holds.iter_mut().find(|(q, _)| *q == p) {
                Some((_, o)) => *o = (*o).min(off),
                None => state.holds.push((p, off)),
            }
        }
        for g in &w.groups {
            if g.accs.len() != funcs.len() {
                return Err(invalid(format!(
                    "window {} has a group with {} aggregates, expected {}",
                    w.start,
                    g.accs.len(),
                    funcs.len()
                )));
            }
            let accs = funcs
                .iter()
                .zip(&g.accs)
                .map(|(f, j)| {
                    Acc::from_json(*f, j).ok_or_else(|| invalid(format!("bad aggregate state {j}")))
                })
                .collect::<Result<Vec<_>, _>>()?;
            let key: Vec<Value<'static>> = g.key.iter().map(Value::from_json).collect();
            let (hash, group, size) = agg.make_group(key, accs);
            state.merge_group(hash, group, size);
        }
        agg.insert_window(w.start, state);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::query::{OutputBatch, QueryOptions};

    fn query() -> Query {
        let plan = crate::sql::plan("SELECT k, COUNT(*) AS n, SUM(v) AS s, MIN(v) AS lo FROM t GROUP BY k, TUMBLE(ts, INTERVAL '1' MINUTE)").unwrap();
        Query::new("q", plan, QueryOptions::default())
    }

    #[test]
    fn export_then_import_gives_identical_results() {
        let mut a = query();
        let mut out = OutputBatch::default();
        for (i, rec) in [
            r#"{"k":"x","v":1,"ts":1000}"#,
            r#"{"k":"y","v":2.5,"ts":2000}"#,
            r#"{"k":"x","v":3,"ts":3000}"#,
        ]
        .iter()
        .enumerate()
        {
            a.process(rec.as_bytes(), None, Some((0, i as i64)), &mut out)
                .unwrap();
        }
        let doc = export_query(&a, "sql");
        let json = serde_json::to_string(&doc).unwrap();
        let back: QueryState = serde_json::from_str(&json).unwrap();
        let mut b = query();
        import_query(&mut b, &[&back]).unwrap();
        assert_eq!(b.offset_holds(), vec![(0, 0)]);
        let (mut oa, mut ob) = (OutputBatch::default(), OutputBatch::default());
        a.flush(&mut oa);
        b.flush(&mut ob);
        let (mut ta, mut tb) = (oa.texts(), ob.texts());
        ta.sort();
        tb.sort();
        assert_eq!(ta, tb);
        assert_eq!(ta.len(), 2);
    }

    #[test]
    fn parts_exported_by_several_workers_merge_into_one_state() {
        let recs = [
            (0, r#"{"k":"x","v":1,"ts":1000}"#),
            (1, r#"{"k":"x","v":7,"ts":1500}"#),
            (0, r#"{"k":"y","v":2.5,"ts":2000}"#),
            (1, r#"{"k":"y","v":-1,"ts":2500}"#),
            (1, r#"{"k":"z","v":4,"ts":3000}"#),
        ];
        // Reference: one query sees every record.
        let mut all = query();
        // Two workers, each with the records of one partition.
        let (mut w0, mut w1) = (query(), query());
        let mut sink = OutputBatch::default();
        for (i, (p, rec)) in recs.iter().enumerate() {
            all.process(rec.as_bytes(), None, Some((*p, i as i64)), &mut sink)
                .unwrap();
            let w = if *p == 0 { &mut w0 } else { &mut w1 };
            w.process(rec.as_bytes(), None, Some((*p, i as i64)), &mut sink)
                .unwrap();
        }
        let (d0, d1) = (export_query(&w0, "sql"), export_query(&w1, "sql"));
        let mut b = query();
        import_query(&mut b, &[&d0, &d1]).unwrap();
        assert_eq!(b.offset_holds().len(), 2, "holds of both partitions");
        let (mut oa, mut ob) = (OutputBatch::default(), OutputBatch::default());
        all.flush(&mut oa);
        b.flush(&mut ob);
        let (mut ta, mut tb) = (oa.texts(), ob.texts());
        ta.sort();
        tb.sort();
        assert_eq!(ta, tb);
        assert_eq!(ta.len(), 3);
        // The same query listed once per worker is still the same query set.
        let doc = StateDocument {
            version: STATE_VERSION,
            engine_version: String::new(),
            exported_at: String::new(),
            group_id: String::new(),
            queries: vec![d0, d1],
            positions: vec![],
            committed: vec![],
        };
        assert!(check_compatible(&doc, &[("q".into(), "sql".into())]).is_ok());
    }

    #[test]
    fn refuses_other_versions_and_query_sets() {
        let doc = StateDocument {
            version: 2,
            engine_version: String::new(),
            exported_at: String::new(),
            group_id: String::new(),
            queries: vec![],
            positions: vec![],
            committed: vec![],
        };
        assert!(matches!(
            check_compatible(&doc, &[]),
            Err(ImportError::Version { found: 2 })
        ));
        let doc = StateDocument { version: 1, ..doc };
        let err = check_compatible(&doc, &[("q".into(), "SELECT 1".into())]).unwrap_err();
        assert!(err.to_string().contains("engine runs [q]"), "{err}");
    }
}
