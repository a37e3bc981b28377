//! One running continuous query: decode → WHERE → SELECT (stateless) or
//! decode → WHERE → window → aggregate → HAVING → SELECT (windowed), writing
//! results into an [`OutputBatch`]. Single-threaded; a pipeline worker owns it.

use std::ops::Range;

use serde::Serialize;

use crate::config::LateData;
use crate::operator::aggregate::{Added, LimitHit, Limits, WindowState, WindowedAggregate};
use crate::operator::filter::Filter;
use crate::operator::project::Projection;
use crate::operator::window::window_starts;
use crate::record::{DecodeError, FieldIndex, decode_into, recycle};
use crate::sql::{QueryPlan, WindowPlan, plan::parse_timestamp_ms};
use crate::value::Value;
use crate::watermark::Watermark;

/// How a query is run, beyond its SQL.
#[derive(Debug, Clone)]
pub struct QueryOptions {
    pub out_of_orderness_ms: u64,
    pub late_data: LateData,
    pub limits: Limits,
    /// Output column whose value keys the produced messages.
    pub key_column: Option<String>,
    /// Wall-clock milliseconds after which a silent partition stops holding
    /// the watermark back; 0 = never.
    pub partition_idle_ms: u64,
}

impl Default for QueryOptions {
    fn default() -> Self {
        Self {
            out_of_orderness_ms: 0,
            late_data: LateData::Drop,
            limits: Limits::default(),
            key_column: None,
            partition_idle_ms: 0,
        }
    }
}

/// Results written by queries, back to back in one buffer.
#[derive(Debug, Default)]
pub struct OutputBatch {
    pub buf: Vec<u8>,
    pub records: Vec<OutRecord>,
}

/// One result message: ranges into [`OutputBatch::buf`].
#[derive(Debug, Clone)]
pub struct OutRecord {
    pub payload: Range<usize>,
    pub key: Option<Range<usize>>,
}

impl OutputBatch {
    pub fn clear(&mut self) {
        self.buf.clear();
        self.records.clear();
    }
    pub fn len(&self) -> usize {
        self.records.len()
    }
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }
    pub fn payload(&self, r: &OutRecord) -> &[u8] {
        &self.buf[r.payload.clone()]
    }
    pub fn key(&self, r: &OutRecord) -> Option<&[u8]> {
        r.key.clone().map(|k| &self.buf[k])
    }
    /// Payloads as UTF-8 text (tests, diagnostics).
    pub fn texts(&self) -> Vec<String> {
        self.records
            .iter()
            .map(|r| String::from_utf8_lossy(self.payload(r)).into_owned())
            .collect()
    }
}

/// Counters of one query.
#[derive(Debug, Clone, Default, Serialize)]
pub struct QueryStats {
    pub records_in: u64,
    pub records_filtered_out: u64,
    pub records_failed: u64,
    pub late_dropped: u64,
    pub late_processed: u64,
    pub results_produced: u64,
    pub windows_emitted: u64,
    pub limit_violations: u64,
    /// `limit_violations` by the limit hit: groups, memory (bytes), windows.
    pub violations_by_limit: [u64; 3],
}

impl QueryStats {
    fn count_violation(&mut self, hit: LimitHit) {
        self.limit_violations += 1;
        self.violations_by_limit[hit as usize] += 1;
    }
}

/// Why one record was not processed (counted, never fatal).
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error(transparent)]
    Decode(#[from] DecodeError),
    #[error("event-time field `{field}`: {problem}")]
    EventTime { field: String, problem: String },
    #[error("resource limit reached; record rejected")]
    Limit,
}

/// What the caller should do after a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    Continue,
    /// A resource limit with `on_limit: pause` was reached.
    Pause,
}

struct WindowOp {
    plan: WindowPlan,
    agg: WindowedAggregate,
    emitter: Emitter,
}

/// Turns closed windows into result rows: HAVING, SELECT, message key.
struct Emitter {
    size_ms: i64,
    having: Filter,
    out: Projection,
    keyed_by_column: bool,
    row: Vec<Value<'static>>,
}

enum Mode {
    PassThrough,
    Project(Projection),
    Window(Box<WindowOp>),
}

/// A planned query ready to process records.
pub struct Query {
    pub name: String,
    plan: QueryPlan,
    index: FieldIndex,
    filter: Filter,
    mode: Mode,
    slots: Vec<Value<'static>>,
    keys: Vec<Value<'static>>,
    watermark: Watermark,
    late_data: LateData,
    pub stats: QueryStats,
    last_input_wall_ms: i64,
    /// Set while a record held back by a resource limit is processed again.
    retrying: bool,
}

impl Query {
    /// Builds a query from its plan. `key_column` must be an output column
    /// (checked by config validation; an unknown one is ignored here).
    pub fn new(name: impl Into<String>, plan: QueryPlan, opts: QueryOptions) -> Self {
        let key_idx = opts
            .key_column
            .as_ref()
            .and_then(|k| plan.outputs.iter().position(|o| &o.name == k));
        let mode = match &plan.window {
            Some(w) => Mode::Window(Box::new(WindowOp {
                agg: WindowedAggregate::new(w, opts.limits),
                emitter: Emitter {
                    size_ms: w.kind.size_ms(),
                    having: Filter::new(w.having.clone()),
                    out: Projection::new(&plan.outputs, key_idx),
                    keyed_by_column: key_idx.is_some(),
                    row: Vec::new(),
                },
                plan: w.clone(),
            })),
            None if plan.select_star => Mode::PassThrough,
            None => Mode::Project(Projection::new(&plan.outputs, key_idx)),
        };
        Self {
            name: name.into(),
            index: FieldIndex::new(&plan.fields),
            filter: Filter::new(plan.filter.clone()),
            plan,
            mode,
            slots: Vec::new(),
            keys: Vec::new(),
            watermark: Watermark::new(opts.out_of_orderness_ms)
                .with_partition_idle_ms(opts.partition_idle_ms),
            late_data: opts.late_data,
            stats: QueryStats::default(),
            last_input_wall_ms: 0,
            retrying: false,
        }
    }

    pub fn plan(&self) -> &QueryPlan {
        &self.plan
    }

    pub fn is_windowed(&self) -> bool {
        matches!(self.mode, Mode::Window(_))
    }

    pub fn watermark(&self) -> &Watermark {
        &self.watermark
    }

    /// Processes one input record. Errors are per record: the caller counts
    /// them and moves on.
    pub fn process(
        &mut self,
        payload: &[u8],
        key: Option<&[u8]>,
        origin: Option<(i32, i64)>,
        out: &mut OutputBatch,
    ) -> Result<Flow, RecordError> {
        self.stats.records_in += 1;
        let mut slots = recycle(std::mem::take(&mut self.slots));
        let result = self.process_with(&mut slots, payload, key, origin, out);
        self.slots = recycle(slots);
        if result.is_err() {
            self.stats.records_failed += 1;
        }
        result
    }

    /// Processes a record again that a resource limit held back
    /// (`on_limit: pause`). It arrived on time, so it is not treated as late
    /// even if event time moved past its window meanwhile (then it is emitted
    /// as an update of that window), and it is not counted as a new input.
    pub fn process_held(
        &mut self,
        payload: &[u8],
        key: Option<&[u8]>,
        origin: Option<(i32, i64)>,
        out: &mut OutputBatch,
    ) -> Result<Flow, RecordError> {
        self.retrying = true;
        let r = self.process(payload, key, origin, out);
        self.retrying = false;
        self.stats.records_in = self.stats.records_in.saturating_sub(1);
        r
    }

    fn process_with<'p>(
        &mut self,
        slots: &mut Vec<Value<'p>>,
        payload: &'p [u8],
        key: Option<&[u8]>,
        origin: Option<(i32, i64)>,
        out: &mut OutputBatch,
    ) -> Result<Flow, RecordError> {
        if matches!(self.mode, Mode::PassThrough) && self.index.is_empty() {
            push_record(out, payload, key);
            self.stats.results_produced += 1;
            return Ok(Flow::Continue);
        }
        decode_into(payload, &self.index, slots)?;
        if !self.filter.passes(slots) {
            self.stats.records_filtered_out += 1;
            return Ok(Flow::Continue);
        }
        match &mut self.mode {
            Mode::PassThrough => {
                push_record(out, payload, key);
                self.stats.results_produced += 1;
                Ok(Flow::Continue)
            }
            Mode::Project(p) => {
                let start = out.buf.len();
                p.write(slots, &mut out.buf);
                let end = out.buf.len();
                let key_range = if p.write_key(slots, &mut out.buf) {
                    Some(end..out.buf.len())
                } else {
                    key.map(|k| {
                        out.buf.extend_from_slice(k);
                        end..out.buf.len()
                    })
                };
                out.records.push(OutRecord {
                    payload: start..end,
                    key: key_range,
                });
                self.stats.results_produced += 1;
                Ok(Flow::Continue)
            }
            Mode::Window(w) => {
                let field = &self.plan.fields[w.plan.time_field];
                let ts = event_time_ms(&slots[w.plan.time_field]).map_err(|problem| {
                    RecordError::EventTime {
                        field: field.clone(),
                        problem,
                    }
                })?;
                // Lateness is judged by event time only: a window closed early by
                // the wall clock (idle source, cleanup) gets an update instead.
                let before = self.watermark.event_time();
                let wall = now_ms();
                self.watermark.observe(origin.map(|o| o.0), ts, wall);
                self.last_input_wall_ms = wall;
                let mut keys = recycle(std::mem::take(&mut self.keys));
                let WindowOp { plan, agg, emitter } = &mut **w;
                for k in &plan.keys {
                    keys.push(k.eval(slots));
                }
                let hash = agg.hash_key(&keys);
                let size = plan.kind.size_ms();
                let aggs = &plan.aggregates;
                let slots_ref: &[Value<'_>] = slots;
                let mut flow = Ok(Flow::Continue);
                let mut late = false;
                for start in window_starts(plan.kind, ts) {
                    if !self.retrying && before.is_some_and(|wm| start.saturating_add(size) <= wm) {
                        late = true;
                        if self.late_data == LateData::Drop {
                            continue;
                        }
                    }
                    let arg = |i: usize| aggs[i].arg.as_ref().map(|a| a.eval(slots_ref));
                    let mut added = agg.add(start, &keys, hash, origin, arg);
                    if added == Added::EvictOldest {
                        self.stats.count_violation(agg.last_hit);
                        if let Some((s, st)) = agg.pop_oldest() {
                            emitter.emit(s, st, out, &mut self.stats);
                        }
                        added = agg.add(start, &keys, hash, origin, arg);
                    }
                    match added {
                        Added::Ok => {}
                        Added::Rejected | Added::EvictOldest => {
                            self.stats.count_violation(agg.last_hit);
                            flow = Err(RecordError::Limit);
                        }
                        Added::Pause => {
                            self.stats.count_violation(agg.last_hit);
                            flow = Ok(Flow::Pause);
                        }
                    }
                }
                if late {
                    match self.late_data {
                        LateData::Drop => self.stats.late_dropped += 1,
                        LateData::Process => self.stats.late_processed += 1,
                    }
                }
                self.keys = recycle(keys);
                self.emit_closed(out);
                flow
            }
        }
    }

    /// Emits every window the watermark has passed.
    pub fn emit_closed(&mut self, out: &mut OutputBatch) {
        let Some(wm) = self.watermark.current() else {
            return;
        };
        if let Mode::Window(w) = &mut self.mode {
            while let Some((start, state)) = w.agg.pop_closed(wm) {
                w.emitter.emit(start, state, out, &mut self.stats);
            }
        }
    }

    /// Periodic tick: when no record arrived for `idle_timeout_ms`, event time
    /// is assumed to advance with the wall clock so quiet windows still close.
    /// Silent partitions stop holding the watermark back after the partition idle time.
    pub fn on_tick(&mut self, now_wall_ms: i64, idle_timeout_ms: u64, out: &mut OutputBatch) {
        if !self.is_windowed() {
            return;
        }
        self.watermark.tick(now_wall_ms);
        let idle = now_wall_ms - self.last_input_wall_ms;
        if idle_timeout_ms > 0
            && self.last_input_wall_ms > 0
            && idle >= idle_timeout_ms as i64
            && let Some(max) = self.watermark.max_event_ms()
        {
            self.watermark.advance_to(max.saturating_add(idle));
        }
        self.emit_closed(out);
    }

    /// The source partitions assigned to this query's worker now.
    pub fn set_partitions(&mut self, partitions: &[i32], now_wall_ms: i64) {
        if self.is_windowed() {
            self.watermark.set_partitions(partitions, now_wall_ms);
        }
    }

    /// Emits every open window now (drain, shutdown).
    pub fn flush(&mut self, out: &mut OutputBatch) {
        if let Mode::Window(w) = &mut self.mode {
            while let Some((start, state)) = w.agg.pop_oldest() {
                w.emitter.emit(start, state, out, &mut self.stats);
            }
        }
    }

    /// Emits the oldest open window early (evict_oldest under memory pressure).
    pub fn emit_oldest(&mut self, out: &mut OutputBatch) {
        if let Mode::Window(w) = &mut self.mode
            && let Some((start, state)) = w.agg.pop_oldest()
        {
            w.emitter.emit(start, state, out, &mut self.stats);
        }
    }

    /// Lowest input offset per partition still needed by open windows.
    pub fn offset_holds(&self) -> Vec<(i32, i64)> {
        match &self.mode {
            Mode::Window(w) => w.agg.holds(),
            _ => Vec::new(),
        }
    }

    /// Whether a record needing a new group (and window) would fit under the limits.
    pub fn has_room(&self) -> bool {
        match &self.mode {
            Mode::Window(w) => w.agg.has_room(),
            _ => true,
        }
    }

    /// (groups, estimated bytes, open windows) of this query's state.
    pub fn state_size(&self) -> (u64, u64, usize) {
        match &self.mode {
            Mode::Window(w) => (
                w.agg.group_count(),
                w.agg.state_bytes(),
                w.agg.windows.len(),
            ),
            _ => (0, 0, 0),
        }
    }

    /// The aggregation, for state export/import.
    pub fn aggregate_mut(&mut self) -> Option<&mut WindowedAggregate> {
        match &mut self.mode {
            Mode::Window(w) => Some(&mut w.agg),
            _ => None,
        }
    }

    pub fn aggregate(&self) -> Option<&WindowedAggregate> {
        match &self.mode {
            Mode::Window(w) => Some(&w.agg),
            _ => None,
        }
    }

    pub fn watermark_mut(&mut self) -> &mut Watermark {
        &mut self.watermark
    }
}

fn push_record(out: &mut OutputBatch, payload: &[u8], key: Option<&[u8]>) {
    let start = out.buf.len();
    out.buf.extend_from_slice(payload);
    let end = out.buf.len();
    let key = key.map(|k| {
        out.buf.extend_from_slice(k);
        end..out.buf.len()
    });
    out.records.push(OutRecord {
        payload: start..end,
        key,
    });
}

impl Emitter {
    fn emit(
        &mut self,
        start: i64,
        state: WindowState,
        out: &mut OutputBatch,
        stats: &mut QueryStats,
    ) {
        let end = start.saturating_add(self.size_ms);
        stats.windows_emitted += 1;
        let mut row = recycle(std::mem::take(&mut self.row));
        for g in state.groups.iter() {
            row.clear();
            row.push(Value::Int(start));
            row.push(Value::Int(end));
            row.extend(g.key.iter().map(Value::borrowed));
            row.extend(g.accs.iter().map(|a| a.result()));
            if !self.having.passes(&row) {
                continue;
            }
            let p_start = out.buf.len();
            self.out.write(&row, &mut out.buf);
            let p_end = out.buf.len();
            let key = if self.keyed_by_column {
                self.out.write_key(&row, &mut out.buf);
                Some(p_end..out.buf.len())
            } else if g.key.is_empty() {
                None
            } else {
                for (i, k) in g.key.iter().enumerate() {
                    if i > 0 {
                        out.buf.push(b'|');
                    }
                    out.buf.extend_from_slice(k.to_text().as_bytes());
                }
                Some(p_end..out.buf.len())
            };
            out.records.push(OutRecord {
                payload: p_start..p_end,
                key,
            });
            stats.results_produced += 1;
        }
        self.row = recycle(row);
    }
}

/// Event time in epoch milliseconds from an integer (ms), float (ms) or
/// RFC 3339 / `YYYY-MM-DD HH:MM:SS` string.
pub fn event_time_ms(v: &Value<'_>) -> Result<i64, String> {
    match v {
        Value::Int(i) => Ok(*i),
        Value::Float(f) if f.is_finite() => Ok(*f as i64),
        Value::Str(s) => parse_timestamp_ms(s).ok_or_else(|| format!("`{s}` is not a timestamp")),
        Value::Null => Err("missing or null".to_owned()),
        other => Err(format!("a {} is not a timestamp", other.type_name())),
    }
}

/// Wall clock in epoch milliseconds.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::LimitAction;

    fn limited(on_limit: LimitAction) -> Query {
        let plan = crate::sql::plan(
            "SELECT k, window_start, COUNT(*) AS n FROM t GROUP BY k, TUMBLE(ts, INTERVAL '1' SECOND)",
        )
        .unwrap();
        Query::new(
            "q",
            plan,
            QueryOptions {
                limits: Limits {
                    max_groups: 2,
                    on_limit,
                    ..Limits::default()
                },
                ..QueryOptions::default()
            },
        )
    }

    fn rec(k: &str, ts: i64) -> Vec<u8> {
        format!(r#"{{"k":"{k}","ts":{ts}}}"#).into_bytes()
    }

    #[test]
    fn held_records_go_in_once_their_window_closed() {
        let mut q = limited(LimitAction::Pause);
        let mut out = OutputBatch::default();
        let mut held = Vec::new();
        for (i, k) in ["a", "b", "c", "d"].iter().enumerate() {
            let r = rec(k, 1000 + i as i64);
            if q.process(&r, None, Some((0, i as i64)), &mut out).unwrap() == Flow::Pause {
                held.push((r, i as i64));
            }
        }
        assert_eq!(held.len(), 2, "c and d wait");
        assert!(!q.has_room());
        // The source goes quiet: the window closes and frees its groups.
        q.on_tick(now_ms() + 10_000, 1, &mut out);
        assert_eq!(out.len(), 2);
        assert!(q.has_room());
        for (r, off) in &held {
            assert_eq!(
                q.process_held(r, None, Some((0, *off)), &mut out).unwrap(),
                Flow::Continue
            );
        }
        let mut texts = out.texts();
        texts.sort();
        assert_eq!(texts.len(), 4, "{texts:?}");
        assert!(texts.iter().all(|t| t.contains("\"n\":1")), "{texts:?}");
        assert_eq!(q.stats.records_in, 4, "a retry is not a new input");
        assert_eq!(q.stats.late_dropped, 0);
    }

    #[test]
    fn a_window_closed_by_the_wall_clock_takes_on_time_records_as_an_update() {
        let mut q = limited(LimitAction::RejectNewGroups);
        let mut out = OutputBatch::default();
        q.process(&rec("a", 1000), None, Some((0, 0)), &mut out)
            .unwrap();
        q.on_tick(now_ms() + 10_000, 1, &mut out);
        assert_eq!(out.texts(), vec![r#"{"k":"a","window_start":1000,"n":1}"#]);
        out.clear();
        // On time by event time (watermark 1000 from events), though its window was closed.
        q.process(&rec("a", 1500), None, Some((0, 1)), &mut out)
            .unwrap();
        assert_eq!(out.texts(), vec![r#"{"k":"a","window_start":1000,"n":1}"#]);
        assert_eq!(q.stats.late_dropped, 0);
    }

    #[test]
    fn evicting_counts_as_a_limit_violation() {
        let mut q = limited(LimitAction::EvictOldest);
        let mut out = OutputBatch::default();
        for (i, (k, ts)) in [("a", 1000), ("b", 1000), ("a", 2000)].iter().enumerate() {
            q.process(&rec(k, *ts), None, Some((0, i as i64)), &mut out)
                .unwrap();
        }
        assert_eq!(out.len(), 2, "the first window was emitted early");
        assert_eq!(q.stats.limit_violations, 1);
    }
}
