//! The simulated payment gateway: latency and failures that can be injected through the
//! admin fault API (stored in the database, so a separate worker process sees them too),
//! guarded by a circuit breaker.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::metrics::Metrics;
use crate::store::{GatewayCharge, GatewayRefund, Store, StoreResult};

const FAULTS_KEY: &str = "faults";
const FAULTS_TTL: Duration = Duration::from_secs(1);

/// Injected faults. The defaults are a healthy gateway.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Faults {
    /// Extra latency added to every gateway call, in milliseconds.
    #[serde(default)]
    pub payment_latency_ms: u64,
    /// Share of gateway calls that fail, from 0.0 to 1.0.
    #[serde(default)]
    pub payment_failure_rate: f64,
}

/// A fault setting out of its bounds (the admin API answers 422 with it).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FaultsError {
    #[error("payment_failure_rate must be between 0.0 and 1.0, got {0}")]
    FailureRate(f64),
    #[error("payment_latency_ms must be at most 60000, got {0}")]
    Latency(u64),
}

impl Faults {
    pub fn validate(&self) -> Result<(), FaultsError> {
        if !(0.0..=1.0).contains(&self.payment_failure_rate) || self.payment_failure_rate.is_nan() {
            return Err(FaultsError::FailureRate(self.payment_failure_rate));
        }
        if self.payment_latency_ms > 60_000 {
            return Err(FaultsError::Latency(self.payment_latency_ms));
        }
        Ok(())
    }

    pub async fn load(store: &Store) -> StoreResult<Faults> {
        Ok(store
            .get_setting(FAULTS_KEY)
            .await?
            .and_then(|raw| serde_json::from_str(&raw).ok())
            .unwrap_or_default())
    }

    pub async fn save(&self, store: &Store) -> StoreResult<()> {
        store
            .put_setting(FAULTS_KEY, &serde_json::to_string(self).expect("faults serialize"))
            .await
    }

    pub async fn reset(store: &Store) -> StoreResult<()> {
        store.delete_setting(FAULTS_KEY).await
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PaymentError {
    #[error("payment gateway error: {0}")]
    Gateway(String),
    #[error("payment circuit breaker is open")]
    CircuitOpen,
    /// The order's charge was refunded or voided before this charge arrived.
    #[error("payment declined: the order's payment was already refunded or voided")]
    Voided,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum BreakerState {
    Closed { failures: u32 },
    Open { until: Instant },
    HalfOpen { trial_running: bool },
}

impl BreakerState {
    fn label(self) -> &'static str {
        match self {
            BreakerState::Closed { .. } => "closed",
            BreakerState::Open { .. } => "open",
            BreakerState::HalfOpen { .. } => "half_open",
        }
    }
}

pub struct PaymentGateway {
    store: Store,
    metrics: Metrics,
    breaker: Mutex<BreakerState>,
    faults: Mutex<Option<(Instant, Faults)>>,
    threshold: u32,
    cooldown: Duration,
}

impl PaymentGateway {
    pub fn new(store: Store, metrics: Metrics, threshold: u32, cooldown: Duration) -> Self {
        PaymentGateway {
            store,
            metrics,
            breaker: Mutex::new(BreakerState::Closed { failures: 0 }),
            faults: Mutex::new(None),
            threshold: threshold.max(1),
            cooldown,
        }
    }

    /// The faults in force, re-read from the database at most once a second.
    async fn faults(&self) -> Faults {
        if let Some((at, faults)) = self.faults.lock().unwrap_or_else(|e| e.into_inner()).clone()
            && at.elapsed() < FAULTS_TTL
        {
            return faults;
        }
        let faults = Faults::load(&self.store).await.unwrap_or_default();
        *self.faults.lock().unwrap_or_else(|e| e.into_inner()) = Some((Instant::now(), faults.clone()));
        faults
    }

    /// Forgets cached faults, so a change made in this process applies at once.
    pub fn invalidate_faults(&self) {
        *self.faults.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    pub fn breaker_state(&self) -> &'static str {
        self.breaker.lock().unwrap_or_else(|e| e.into_inner()).label()
    }

    /// Charges `amount_cents` for `order_id`, the idempotency key: charging an order twice
    /// moves money once and answers the same reference. The gateway records the charge when
    /// its (injected) latency is over, so a charge still in flight when the order's refund
    /// voided the key is declined.
    #[tracing::instrument(name = "payment charge", skip(self), fields(otel.kind = "client", peer.service = "payment-gateway", order.id = order_id))]
    pub async fn charge(&self, order_id: i64, amount_cents: i64) -> Result<String, PaymentError> {
        if !self.admit() {
            self.metrics.payments.with(&["circuit_open"]).inc();
            tracing::warn!("payment refused: circuit breaker open");
            return Err(PaymentError::CircuitOpen);
        }
        let faults = self.faults().await;
        let started = Instant::now();
        let (base_ms, roll): (u64, f64) = {
            let mut rng = rand::rng();
            (rng.random_range(1..=3), rng.random())
        };
        tokio::time::sleep(Duration::from_millis(base_ms + faults.payment_latency_ms)).await;
        let result = if roll < faults.payment_failure_rate {
            Err(PaymentError::Gateway("simulated gateway failure".into()))
        } else {
            match self.store.gateway_charge(order_id, amount_cents).await {
                Ok(GatewayCharge::Charged { reference, replayed }) => {
                    if !replayed {
                        self.metrics.payment_charges.with(&[]).inc();
                    }
                    Ok(reference)
                }
                Ok(GatewayCharge::Voided) => Err(PaymentError::Voided),
                Err(err) => Err(PaymentError::Gateway(format!("gateway unavailable: {err}"))),
            }
        };
        self.metrics
            .payment_duration
            .with(&[])
            .observe(started.elapsed().as_secs_f64());
        // A declined charge says nothing about the gateway's health.
        if result != Err(PaymentError::Voided) {
            self.settle(result.is_ok());
        }
        let label = match &result {
            Ok(_) => "success",
            Err(PaymentError::Voided) => "declined",
            Err(_) => "error",
        };
        self.metrics.payments.with(&[label]).inc();
        result
    }

    /// Refunds whatever was charged for `order_id` (idempotent), and voids the key when
    /// nothing was, so a charge still in flight is declined. Refunds are not subject to the
    /// injected faults: a failed order must always be able to give its money back.
    #[tracing::instrument(name = "payment refund", skip(self), fields(otel.kind = "client", peer.service = "payment-gateway", order.id = order_id))]
    pub async fn refund(&self, order_id: i64) -> StoreResult<Option<String>> {
        match self.store.gateway_refund(order_id).await? {
            GatewayRefund::Refunded { reference, replayed } => {
                if !replayed {
                    self.metrics.payment_refunds.with(&[]).inc();
                    tracing::info!(refund_ref = %reference, "payment refunded");
                }
                Ok(Some(reference))
            }
            GatewayRefund::NothingCharged => Ok(None),
        }
    }

    fn admit(&self) -> bool {
        let mut state = self.breaker.lock().unwrap_or_else(|e| e.into_inner());
        let admitted = match *state {
            BreakerState::Closed { .. } => true,
            BreakerState::Open { until } if Instant::now() >= until => {
                *state = BreakerState::HalfOpen { trial_running: true };
                true
            }
            BreakerState::Open { .. } => false,
            BreakerState::HalfOpen { trial_running } => {
                *state = BreakerState::HalfOpen { trial_running: true };
                !trial_running
            }
        };
        self.publish(*state);
        admitted
    }

    fn settle(&self, ok: bool) {
        let mut state = self.breaker.lock().unwrap_or_else(|e| e.into_inner());
        *state = match (*state, ok) {
            (_, true) => BreakerState::Closed { failures: 0 },
            (BreakerState::Closed { failures }, false) if failures + 1 < self.threshold => {
                BreakerState::Closed { failures: failures + 1 }
            }
            (_, false) => {
                tracing::warn!(
                    cooldown_ms = self.cooldown.as_millis() as u64,
                    "payment circuit breaker opened"
                );
                BreakerState::Open {
                    until: Instant::now() + self.cooldown,
                }
            }
        };
        self.publish(*state);
    }

    fn publish(&self, state: BreakerState) {
        for label in ["closed", "open", "half_open"] {
            self.metrics
                .breaker_state
                .with(&[label])
                .set(if label == state.label() { 1.0 } else { 0.0 });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gateway(threshold: u32, cooldown: Duration) -> PaymentGateway {
        let store = Store::connect_lazy("sqlite::memory:", 1).unwrap();
        PaymentGateway::new(store, Metrics::new(), threshold, cooldown)
    }

    #[tokio::test]
    async fn breaker_opens_after_threshold_failures_and_half_opens_after_cooldown() {
        let g = gateway(3, Duration::from_millis(0));
        for _ in 0..2 {
            assert!(g.admit());
            g.settle(false);
            assert_eq!(g.breaker_state(), "closed");
        }
        assert!(g.admit());
        g.settle(false);
        assert_eq!(g.breaker_state(), "open");
        // Cooldown of zero: the next call is the half-open trial, a second one is refused.
        assert!(g.admit());
        assert_eq!(g.breaker_state(), "half_open");
        assert!(!g.admit());
        g.settle(true);
        assert_eq!(g.breaker_state(), "closed");
    }

    #[tokio::test]
    async fn an_open_breaker_refuses_until_its_cooldown_ends() {
        let g = gateway(1, Duration::from_secs(3600));
        assert!(g.admit());
        g.settle(false);
        assert!(!g.admit());
        assert_eq!(g.metrics.breaker_state.with(&["open"]).gauge_value(), 1.0);
    }

    #[test]
    fn fault_values_are_validated() {
        assert!(
            Faults {
                payment_latency_ms: 10,
                payment_failure_rate: 0.5
            }
            .validate()
            .is_ok()
        );
        assert!(
            Faults {
                payment_latency_ms: 10,
                payment_failure_rate: 1.5
            }
            .validate()
            .is_err()
        );
        assert!(
            Faults {
                payment_latency_ms: 100_000,
                payment_failure_rate: 0.0
            }
            .validate()
            .is_err()
        );
    }
}
