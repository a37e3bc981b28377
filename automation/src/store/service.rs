//! What the long-running service keeps in the store besides run history:
//! guard locks, instance leases, schedule fire claims, silences and durable
//! settings. Every claim is a single conditional statement (insert-if-absent
//! or compare-and-set update), so two instances on one database agree on who
//! won without any other coordination.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use sqlx::{AssertSqlSafe, Row};

use super::{
    APPROVAL_COLUMNS, ApprovalRecord, Pool, RUN_COLUMNS, RunRecord, Store, StoreError, parse_json,
    ts,
};
use crate::exec::executor::RunStatus;

/// One service instance and its lease.
#[derive(Debug, Clone, serde::Serialize)]
pub struct InstanceRecord {
    pub id: String,
    pub name: String,
    pub started_at: String,
    pub heartbeat_at: String,
    pub stopped_at: Option<String>,
}

/// A silence as stored (matchers in Alertmanager syntax).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SilenceRecord {
    pub id: String,
    pub matchers: Vec<String>,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    pub created_by: String,
    pub comment: String,
}

fn parse_ts(s: &str) -> Result<DateTime<Utc>, StoreError> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| StoreError::Corrupt(format!("timestamp {s:?}: {e}")))
}

/// Filters for listing runs.
#[derive(Debug, Clone, Default)]
pub struct RunFilter {
    pub runbook: Option<String>,
    pub status: Option<String>,
    /// `manual`, `alert`, `schedule`, `webhook`, …
    pub trigger: Option<String>,
    /// Runs started for the alert with this fingerprint (lowercase hex).
    pub fingerprint: Option<String>,
    /// Started at or after this instant.
    pub since: Option<DateTime<Utc>>,
    /// Started before this instant.
    pub until: Option<DateTime<Utc>>,
    /// Paging: only runs after this one in the listing order (newest first),
    /// given as the last row's `(started_at, id)`.
    pub after: Option<(DateTime<Utc>, String)>,
    pub limit: i64,
}

impl Store {
    /// Newest runs first, optionally of one runbook and/or status.
    pub async fn find_runs(&self, f: &RunFilter) -> Result<Vec<RunRecord>, StoreError> {
        // Timestamps are stored as fixed-width RFC 3339 text (milliseconds,
        // UTC), so text order is time order in both databases. The
        // fingerprint is matched in the request document, whose JSON text
        // has no spaces; only hex reaches the LIKE pattern.
        let sql = format!(
            "SELECT {RUN_COLUMNS} FROM runs WHERE ($1 IS NULL OR runbook = $1) AND ($2 IS NULL OR status = $2) \
             AND ($3 IS NULL OR trigger_kind = $3) AND ($4 IS NULL OR request LIKE $4) \
             AND ($5 IS NULL OR started_at >= $5) AND ($6 IS NULL OR started_at < $6) \
             AND ($7 IS NULL OR started_at < $7 OR (started_at = $7 AND id < $8)) \
             ORDER BY started_at DESC, id DESC LIMIT $9"
        );
        let fingerprint = f
            .fingerprint
            .as_deref()
            .filter(|fp| !fp.is_empty() && fp.bytes().all(|b| b.is_ascii_hexdigit()))
            .map(|fp| format!("%\"fingerprint\":\"{}\"%", fp.to_ascii_lowercase()));
        if f.fingerprint.is_some() && fingerprint.is_none() {
            return Ok(Vec::new());
        }
        let (after_ts, after_id) = match &f.after {
            Some((t, id)) => (Some(ts(*t)), Some(id.as_str())),
            None => (None, None),
        };
        let mut out = Vec::new();
        on_pool!(self, p => {
            for row in sqlx::query(AssertSqlSafe(sql.clone()))
                .bind(f.runbook.as_deref())
                .bind(f.status.as_deref())
                .bind(f.trigger.as_deref())
                .bind(fingerprint.as_deref())
                .bind(f.since.map(ts))
                .bind(f.until.map(ts))
                .bind(after_ts.as_deref())
                .bind(after_id)
                .bind(f.limit.clamp(1, 1000))
                .fetch_all(p)
                .await?
            {
                out.push(run_record!(&row));
            }
        });
        Ok(out)
    }

    /// Unfinished runs (running, waiting for approval, queued) owned by `owner`.
    pub async fn runs_owned_by(&self, owner: &str) -> Result<Vec<RunRecord>, StoreError> {
        let sql = format!(
            "SELECT {RUN_COLUMNS} FROM runs WHERE owner = $1 \
             AND status IN ('running', 'waiting_approval', 'queued') ORDER BY started_at"
        );
        let mut out = Vec::new();
        on_pool!(self, p => {
            for row in sqlx::query(AssertSqlSafe(sql.clone())).bind(owner).fetch_all(p).await? {
                out.push(run_record!(&row));
            }
        });
        Ok(out)
    }

    /// Unfinished runs with no owner (started by a CLI that died, or by a
    /// version without owners).
    pub async fn orphaned_runs(&self) -> Result<Vec<RunRecord>, StoreError> {
        let sql = format!(
            "SELECT {RUN_COLUMNS} FROM runs WHERE owner IS NULL AND parent_run IS NULL \
             AND status IN ('running', 'waiting_approval', 'queued') ORDER BY started_at"
        );
        let mut out = Vec::new();
        on_pool!(self, p => {
            for row in sqlx::query(AssertSqlSafe(sql.clone())).fetch_all(p).await? {
                out.push(run_record!(&row));
            }
        });
        Ok(out)
    }

    /// Moves an unfinished run from `from` (a dead instance) to `to`; false
    /// when someone else adopted it first.
    pub async fn adopt_run(&self, id: &str, from: &str, to: &str) -> Result<bool, StoreError> {
        let sql = "UPDATE runs SET owner = $1 WHERE id = $2 AND owner = $3 \
                   AND status IN ('running', 'waiting_approval', 'queued')";
        let n: u64 = on_pool!(self, p => sqlx::query(sql).bind(to).bind(id).bind(from).execute(p).await?.rows_affected());
        Ok(n == 1)
    }

    /// Takes an ownerless unfinished run.
    pub async fn adopt_orphan(&self, id: &str, to: &str) -> Result<bool, StoreError> {
        let sql = "UPDATE runs SET owner = $1 WHERE id = $2 AND owner IS NULL \
                   AND status IN ('running', 'waiting_approval', 'queued')";
        let n: u64 = on_pool!(self, p => sqlx::query(sql).bind(to).bind(id).execute(p).await?.rows_affected());
        Ok(n == 1)
    }

    /// Queued runs of every instance, oldest first.
    pub async fn queued_runs(&self) -> Result<Vec<RunRecord>, StoreError> {
        let sql = format!(
            "SELECT {RUN_COLUMNS} FROM runs WHERE status = 'queued' ORDER BY queued_at, id"
        );
        let mut out = Vec::new();
        on_pool!(self, p => {
            for row in sqlx::query(AssertSqlSafe(sql.clone())).fetch_all(p).await? {
                out.push(run_record!(&row));
            }
        });
        Ok(out)
    }

    /// The oldest queued run for a guard key.
    pub async fn queued_for(&self, guard_key: &str) -> Result<Option<RunRecord>, StoreError> {
        let sql = format!(
            "SELECT {RUN_COLUMNS} FROM runs WHERE status = 'queued' AND guard_key = $1 ORDER BY queued_at, id LIMIT 1"
        );
        on_pool!(self, p => {
            match sqlx::query(AssertSqlSafe(sql.clone())).bind(guard_key).fetch_optional(p).await? {
                Some(row) => Ok(Some(run_record!(&row))),
                None => Ok(None),
            }
        })
    }

    /// Queued → running, by `owner`; false when another instance started it.
    pub async fn start_queued(
        &self,
        id: &str,
        owner: &str,
        at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let sql = "UPDATE runs SET status = 'running', owner = $1, started_at = $2 \
                   WHERE id = $3 AND status = 'queued'";
        let n: u64 = on_pool!(self, p => sqlx::query(sql).bind(owner).bind(ts(at)).bind(id).execute(p).await?.rows_affected());
        Ok(n == 1)
    }

    /// When the last run counted against `guard_key` started (queued ones do not count).
    pub async fn last_start(&self, guard_key: &str) -> Result<Option<DateTime<Utc>>, StoreError> {
        let sql = "SELECT MAX(started_at) FROM runs WHERE guard_key = $1 AND status <> 'queued'";
        let v: Option<String> =
            on_pool!(self, p => sqlx::query_scalar(sql).bind(guard_key).fetch_one(p).await?);
        v.as_deref().map(parse_ts).transpose()
    }

    /// Runs counted against `guard_key` that started at or after `since`.
    pub async fn starts_since(
        &self,
        guard_key: &str,
        since: DateTime<Utc>,
    ) -> Result<u32, StoreError> {
        let sql = "SELECT COUNT(*) FROM runs WHERE guard_key = $1 AND status <> 'queued' AND started_at >= $2";
        let n: i64 = on_pool!(self, p => sqlx::query_scalar(sql).bind(guard_key).bind(ts(since)).fetch_one(p).await?);
        Ok(u32::try_from(n).unwrap_or(u32::MAX))
    }

    /// Takes the lock on `key` for `run_id`; false when any run holds it.
    pub async fn try_lock(
        &self,
        key: &str,
        run_id: &str,
        owner: &str,
        at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let sql = "INSERT INTO run_locks (key, run_id, owner, acquired_at) VALUES ($1, $2, $3, $4) \
                   ON CONFLICT DO NOTHING";
        let n: u64 = on_pool!(self, p => sqlx::query(sql).bind(key).bind(run_id).bind(owner).bind(ts(at)).execute(p).await?.rows_affected());
        Ok(n == 1)
    }

    /// The run holding `key`.
    pub async fn lock_holder(&self, key: &str) -> Result<Option<String>, StoreError> {
        let sql = "SELECT run_id FROM run_locks WHERE key = $1";
        let v: Option<String> =
            on_pool!(self, p => sqlx::query_scalar(sql).bind(key).fetch_optional(p).await?);
        Ok(v)
    }

    /// Releases `key` if `run_id` holds it.
    pub async fn unlock(&self, key: &str, run_id: &str) -> Result<bool, StoreError> {
        let sql = "DELETE FROM run_locks WHERE key = $1 AND run_id = $2";
        let n: u64 = on_pool!(self, p => sqlx::query(sql).bind(key).bind(run_id).execute(p).await?.rows_affected());
        Ok(n == 1)
    }

    /// Hands `key` from `from` to `to` (a queued run taking over), by `owner`.
    pub async fn transfer_lock(
        &self,
        key: &str,
        from: &str,
        to: &str,
        owner: &str,
    ) -> Result<bool, StoreError> {
        let sql = "UPDATE run_locks SET run_id = $1, owner = $2, acquired_at = $3 WHERE key = $4 AND run_id = $5";
        let n: u64 = on_pool!(self, p => sqlx::query(sql).bind(to).bind(owner).bind(ts(Utc::now())).bind(key).bind(from).execute(p).await?.rows_affected());
        Ok(n == 1)
    }

    /// Releases locks whose run is finished (left behind by a crash between
    /// finishing a run and releasing its lock). Returns how many.
    pub async fn release_finished_locks(&self) -> Result<u64, StoreError> {
        let sql = "DELETE FROM run_locks WHERE NOT EXISTS (SELECT 1 FROM runs r WHERE r.id = run_locks.run_id \
                   AND r.status IN ('running', 'waiting_approval', 'queued'))";
        let n: u64 = on_pool!(self, p => sqlx::query(sql).execute(p).await?.rows_affected());
        Ok(n)
    }

    /// Announces an instance (its first heartbeat).
    pub async fn register_instance(&self, id: &str, name: &str) -> Result<(), StoreError> {
        let now = ts(Utc::now());
        let sql =
            "INSERT INTO instances (id, name, started_at, heartbeat_at) VALUES ($1, $2, $3, $3)";
        on_pool!(self, p => { sqlx::query(sql).bind(id).bind(name).bind(&now).execute(p).await?; });
        Ok(())
    }

    /// Renews an instance's lease; false when it was declared dead and must stop acting.
    pub async fn heartbeat(&self, id: &str) -> Result<bool, StoreError> {
        let sql = "UPDATE instances SET heartbeat_at = $1 WHERE id = $2 AND stopped_at IS NULL";
        let n: u64 = on_pool!(self, p => sqlx::query(sql).bind(ts(Utc::now())).bind(id).execute(p).await?.rows_affected());
        Ok(n == 1)
    }

    /// Marks an instance stopped (clean shutdown, or declared dead by a survivor).
    pub async fn stop_instance(&self, id: &str) -> Result<(), StoreError> {
        let sql = "UPDATE instances SET stopped_at = $1 WHERE id = $2 AND stopped_at IS NULL";
        on_pool!(self, p => { sqlx::query(sql).bind(ts(Utc::now())).bind(id).execute(p).await?; });
        Ok(())
    }

    /// Instances whose lease ran out (heartbeat before `deadline`), or that
    /// stopped while still owning unfinished runs.
    pub async fn dead_instances(
        &self,
        deadline: DateTime<Utc>,
        me: &str,
    ) -> Result<Vec<String>, StoreError> {
        let sql = "SELECT id FROM instances WHERE id <> $1 AND (heartbeat_at < $2 OR stopped_at IS NOT NULL) \
                   AND (stopped_at IS NULL OR EXISTS (SELECT 1 FROM runs r WHERE r.owner = instances.id \
                   AND r.status IN ('running', 'waiting_approval', 'queued')))";
        let v: Vec<String> = on_pool!(self, p => sqlx::query_scalar(sql).bind(me).bind(ts(deadline)).fetch_all(p).await?);
        Ok(v)
    }

    /// Every instance, newest first.
    pub async fn instances(&self) -> Result<Vec<InstanceRecord>, StoreError> {
        let sql = "SELECT id, name, started_at, heartbeat_at, stopped_at FROM instances ORDER BY started_at DESC LIMIT 100";
        let mut out = Vec::new();
        on_pool!(self, p => {
            for row in sqlx::query(sql).fetch_all(p).await? {
                out.push(InstanceRecord {
                    id: row.try_get("id")?,
                    name: row.try_get("name")?,
                    started_at: row.try_get("started_at")?,
                    heartbeat_at: row.try_get("heartbeat_at")?,
                    stopped_at: row.try_get("stopped_at")?,
                });
            }
        });
        Ok(out)
    }

    /// The last claimed fire of every schedule.
    pub async fn schedule_fires(&self) -> Result<BTreeMap<String, DateTime<Utc>>, StoreError> {
        let sql = "SELECT id, last_fire FROM schedule_fires";
        let mut out = BTreeMap::new();
        on_pool!(self, p => {
            for row in sqlx::query(sql).fetch_all(p).await? {
                let id: String = row.try_get("id")?;
                let last: String = row.try_get("last_fire")?;
                out.insert(id, parse_ts(&last)?);
            }
        });
        Ok(out)
    }

    /// Records `scheduled` as the last fire of `id` if it is newer than the
    /// stored one; true when this caller won.
    pub async fn claim_fire(
        &self,
        id: &str,
        scheduled: DateTime<Utc>,
        owner: &str,
    ) -> Result<bool, StoreError> {
        let at = ts(scheduled);
        let now = ts(Utc::now());
        let update = "UPDATE schedule_fires SET last_fire = $1, owner = $2, claimed_at = $3 WHERE id = $4 AND last_fire < $1";
        let n: u64 = on_pool!(self, p => sqlx::query(update).bind(&at).bind(owner).bind(&now).bind(id).execute(p).await?.rows_affected());
        if n == 1 {
            return Ok(true);
        }
        let insert = "INSERT INTO schedule_fires (id, last_fire, owner, claimed_at) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING";
        let n: u64 = on_pool!(self, p => sqlx::query(insert).bind(id).bind(&at).bind(owner).bind(&now).execute(p).await?.rows_affected());
        Ok(n == 1)
    }

    pub async fn upsert_silence(&self, s: &SilenceRecord) -> Result<(), StoreError> {
        let sql = "INSERT INTO silences (id, matchers, starts_at, ends_at, created_by, comment, updated_at) \
                   VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (id) DO UPDATE SET matchers = excluded.matchers, \
                   starts_at = excluded.starts_at, ends_at = excluded.ends_at, created_by = excluded.created_by, \
                   comment = excluded.comment, updated_at = excluded.updated_at";
        let matchers = serde_json::to_string(&s.matchers).unwrap_or_else(|_| "[]".into());
        on_pool!(self, p => { sqlx::query(sql)
            .bind(&s.id)
            .bind(matchers)
            .bind(ts(s.starts_at))
            .bind(ts(s.ends_at))
            .bind(&s.created_by)
            .bind(&s.comment)
            .bind(ts(Utc::now()))
            .execute(p)
            .await?; });
        Ok(())
    }

    /// Silences that end after `since`.
    pub async fn silences(&self, since: DateTime<Utc>) -> Result<Vec<SilenceRecord>, StoreError> {
        let sql = "SELECT id, matchers, starts_at, ends_at, created_by, comment FROM silences WHERE ends_at > $1 ORDER BY starts_at";
        let mut out = Vec::new();
        on_pool!(self, p => {
            for row in sqlx::query(sql).bind(ts(since)).fetch_all(p).await? {
                let matchers: Vec<String> = serde_json::from_value(parse_json(row.try_get("matchers")?))
                    .map_err(|e| StoreError::Corrupt(format!("silence matchers: {e}")))?;
                let starts: String = row.try_get("starts_at")?;
                let ends: String = row.try_get("ends_at")?;
                out.push(SilenceRecord {
                    id: row.try_get("id")?,
                    matchers,
                    starts_at: parse_ts(&starts)?,
                    ends_at: parse_ts(&ends)?,
                    created_by: row.try_get("created_by")?,
                    comment: row.try_get("comment")?,
                });
            }
        });
        Ok(out)
    }

    /// A durable setting.
    pub async fn get_state(&self, key: &str) -> Result<Option<String>, StoreError> {
        let sql = "SELECT value FROM service_state WHERE key = $1";
        let v: Option<String> =
            on_pool!(self, p => sqlx::query_scalar(sql).bind(key).fetch_optional(p).await?);
        Ok(v)
    }

    pub async fn set_state(&self, key: &str, value: &str, by: &str) -> Result<(), StoreError> {
        let sql = "INSERT INTO service_state (key, value, updated_by, updated_at) VALUES ($1, $2, $3, $4) \
                   ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated_by = excluded.updated_by, \
                   updated_at = excluded.updated_at";
        on_pool!(self, p => { sqlx::query(sql).bind(key).bind(value).bind(by).bind(ts(Utc::now())).execute(p).await?; });
        Ok(())
    }

    /// Asks the instance executing a run to cancel it.
    pub async fn request_cancel(&self, id: &str, who: &str) -> Result<bool, StoreError> {
        let sql = "UPDATE runs SET cancel_requested_by = $1 WHERE id = $2 \
                   AND status IN ('running', 'waiting_approval') AND cancel_requested_by IS NULL";
        let n: u64 = on_pool!(self, p => sqlx::query(sql).bind(who).bind(id).execute(p).await?.rows_affected());
        Ok(n == 1)
    }

    /// Cancel requests for runs `owner` executes: (run id, who asked).
    pub async fn cancel_requests(&self, owner: &str) -> Result<Vec<(String, String)>, StoreError> {
        let sql = "SELECT id, cancel_requested_by FROM runs WHERE owner = $1 \
                   AND cancel_requested_by IS NOT NULL AND status IN ('running', 'waiting_approval')";
        let mut out = Vec::new();
        on_pool!(self, p => {
            for row in sqlx::query(sql).bind(owner).fetch_all(p).await? {
                out.push((row.try_get("id")?, row.try_get("cancel_requested_by")?));
            }
        });
        Ok(out)
    }

    /// Cancels a run that is still queued; false when it is no longer queued.
    pub async fn cancel_queued(&self, id: &str, who: &str) -> Result<bool, StoreError> {
        let sql = "UPDATE runs SET status = 'cancelled', error = $1, finished_at = $2 WHERE id = $3 AND status = 'queued'";
        let msg = format!("cancelled by {who} while queued");
        let n: u64 = on_pool!(self, p => sqlx::query(sql).bind(msg).bind(ts(Utc::now())).bind(id).execute(p).await?.rows_affected());
        Ok(n == 1)
    }

    /// Approvals of one run, in request order.
    pub async fn approvals_of(&self, run_id: &str) -> Result<Vec<ApprovalRecord>, StoreError> {
        let sql = format!(
            "SELECT {APPROVAL_COLUMNS} FROM approvals WHERE run_id = $1 ORDER BY requested_at"
        );
        let mut out = Vec::new();
        on_pool!(self, p => {
            for row in sqlx::query(AssertSqlSafe(sql.clone())).bind(run_id).fetch_all(p).await? {
                out.push(approval_record!(&row));
            }
        });
        Ok(out)
    }

    /// Checks the database answers.
    pub async fn ping(&self) -> Result<(), StoreError> {
        on_pool!(self, p => { sqlx::query("SELECT 1").execute(p).await?; });
        Ok(())
    }

    /// Marks a run `interrupted` with the reason (it will not be resumed).
    pub async fn interrupt_run(&self, id: &str, reason: &str) -> Result<(), StoreError> {
        self.finish_run(id, RunStatus::Interrupted, Some(reason), Utc::now())
            .await
    }
}

/// One notification sent about a run, and how it went.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DeliveryRecord {
    pub run_id: String,
    pub at: DateTime<Utc>,
    pub channel: String,
    /// `run_started`, `run_failed`, `approval`, `info` (the notify step), …
    pub event: String,
    pub ok: bool,
    pub attempts: i64,
    /// Why it failed (redacted).
    pub error: Option<String>,
}

impl Store {
    pub async fn record_delivery(&self, d: &DeliveryRecord) -> Result<(), StoreError> {
        let sql = "INSERT INTO deliveries (run_id, at, channel, event, ok, attempts, error) \
                   VALUES ($1, $2, $3, $4, $5, $6, $7)";
        on_pool!(self, p => {
            sqlx::query(sql)
                .bind(&d.run_id)
                .bind(ts(d.at))
                .bind(&d.channel)
                .bind(&d.event)
                .bind(i64::from(d.ok))
                .bind(d.attempts)
                .bind(d.error.as_deref())
                .execute(p)
                .await?;
        });
        Ok(())
    }

    /// The notifications sent about a run, oldest first.
    pub async fn deliveries_of(&self, run_id: &str) -> Result<Vec<DeliveryRecord>, StoreError> {
        let sql = "SELECT run_id, at, channel, event, ok, attempts, error FROM deliveries \
                   WHERE run_id = $1 ORDER BY at";
        let mut out = Vec::new();
        on_pool!(self, p => {
            for row in sqlx::query(sql).bind(run_id).fetch_all(p).await? {
                let at: String = row.try_get("at")?;
                let ok: i64 = row.try_get("ok")?;
                out.push(DeliveryRecord {
                    run_id: row.try_get("run_id")?,
                    at: parse_ts(&at)?,
                    channel: row.try_get("channel")?,
                    event: row.try_get("event")?,
                    ok: ok != 0,
                    attempts: row.try_get("attempts")?,
                    error: row.try_get("error")?,
                });
            }
        });
        Ok(out)
    }
}
