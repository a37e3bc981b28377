//! Delivery of a worker's pending results to the sink topics, through the
//! sink circuit breaker: while it is open nothing is sent, the consumer is
//! paused and nothing is committed; failed messages are retried with backoff
//! until the broker acknowledges them (`acks=all`).

use std::time::{Duration, Instant};

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{DeliveryFuture, FutureRecord};

use super::Worker;
use crate::source;

impl Worker {
    /// Delivers every pending result; returns how many were acknowledged, or
    /// `None` when shutdown interrupted delivery (then nothing may be committed).
    pub(super) async fn deliver(&mut self) -> Option<u64> {
        let started = Instant::now();
        let batch_age = self.batch_started.map(|t| t.elapsed()).unwrap_or_default();
        let mut todo: Vec<(usize, usize)> = Vec::new();
        for (si, s) in self.slots.iter().enumerate() {
            todo.extend((0..s.batch.len()).map(|ri| (si, ri)));
        }
        let total = todo.len() as u64;
        let timeout = Duration::from_millis(self.cfg.processing.timeout_ms.max(1000) + 5000);
        let mut attempt = 0u32;
        while !todo.is_empty() {
            // While the breaker is open nothing is sent, consumed or committed.
            while !self.engine.breaker.allow() {
                self.engine
                    .beat(self.id, "waiting: sink circuit breaker open");
                source::kafka::set_paused(&self.consumer, true);
                self.paused = true;
                let wait = self
                    .engine
                    .breaker
                    .retry_in()
                    .clamp(Duration::from_millis(20), Duration::from_millis(250));
                tokio::time::sleep(wait).await;
                if self.engine.is_shutting_down() {
                    return None;
                }
            }
            self.engine.beat(self.id, "delivering");
            let mut failed = Vec::new();
            let mut inflight: Vec<((usize, usize), DeliveryFuture)> = Vec::new();
            for (si, ri) in todo.drain(..) {
                if self
                    .engine
                    .faults
                    .as_ref()
                    .is_some_and(|f| f.sink_should_fail())
                {
                    self.engine.breaker.record_failure();
                    self.engine.metrics.errors_retryable.add(1);
                    failed.push((si, ri));
                    continue;
                }
                let s = &self.slots[si];
                let r = &s.batch.records[ri];
                let mut rec = FutureRecord::to(&s.sink).payload(s.batch.payload(r));
                if let Some(k) = s.batch.key(r) {
                    rec = rec.key(k);
                }
                match self.producer.send_result(rec) {
                    Ok(f) => inflight.push(((si, ri), f)),
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                        // Local queue full: wait for what is in flight, retry this one next round.
                        failed.push((si, ri));
                    }
                    Err((error, _)) => {
                        tracing::warn!(%error, "Sink rejected a message.");
                        self.engine.breaker.record_failure();
                        self.engine.metrics.errors_retryable.add(1);
                        failed.push((si, ri));
                    }
                }
            }
            let results = futures::future::join_all(
                inflight
                    .into_iter()
                    .map(|(idx, f)| async move { (idx, tokio::time::timeout(timeout, f).await) }),
            )
            .await;
            for (idx, res) in results {
                match res {
                    Ok(Ok(Ok(_))) => self.engine.breaker.record_success(),
                    Ok(Ok(Err((error, _)))) => {
                        tracing::warn!(%error, "Sink delivery failed; will retry.");
                        self.engine.breaker.record_failure();
                        self.engine.metrics.errors_retryable.add(1);
                        failed.push(idx);
                    }
                    _ => {
                        self.engine.breaker.record_failure();
                        self.engine.metrics.errors_retryable.add(1);
                        failed.push(idx);
                    }
                }
            }
            todo = failed;
            if !todo.is_empty() {
                attempt += 1;
                let backoff = Duration::from_millis((25u64 << attempt.min(5)).min(1000));
                tokio::time::sleep(backoff).await;
                if self.engine.is_shutting_down() && attempt > 20 {
                    return None;
                }
            }
        }
        for s in &mut self.slots {
            s.batch.clear();
        }
        if total > 0 || self.pending_inputs > 0 {
            let m = &self.engine.metrics;
            m.results_produced.add(total);
            m.latency_batch_ms
                .set(started.elapsed().as_secs_f64() * 1000.0);
            m.record_latency.observe_n(
                (batch_age + started.elapsed()).as_secs_f64(),
                self.pending_inputs,
            );
        }
        Some(total)
    }
}
