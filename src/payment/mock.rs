//! The mock provider: waits `PAYMENT_LATENCY_MS`, declines `PAYMENT_FAILURE_RATE` of charges,
//! and remembers every operation by idempotency key in `mock_gateway_ledger`.
//!
//! Decisions are a pure function of (seed, key): a keyed hash mapped to [0, 1) and compared with
//! the rate. So they are idempotent, reproducible with `PAYMENT_SEED`, and uniform across keys.
use std::hash::Hasher;
use std::time::Duration;

use chrono::Utc;
use entity::mock_gateway_ledger as ledger;
use sea_orm::{ActiveModelTrait, DatabaseConnection, DbErr, EntityTrait};

use super::{GatewayError, Outcome, PaymentGateway, Record};

pub struct MockGateway {
    db: DatabaseConnection,
    failure_rate: f64,
    latency: Duration,
    seed: u64,
}

impl MockGateway {
    pub fn new(
        db: DatabaseConnection,
        failure_rate: f64,
        latency: Duration,
        seed: Option<u64>,
    ) -> Self {
        let seed = seed.unwrap_or_else(rand::random);
        MockGateway {
            db,
            failure_rate,
            latency,
            seed,
        }
    }

    /// A uniform number in [0, 1) determined by the seed and the key (SipHash with fixed keys).
    fn draw(&self, key: &str) -> f64 {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        h.write_u64(self.seed);
        h.write(key.as_bytes());
        (h.finish() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn unavailable(e: DbErr) -> GatewayError {
        GatewayError::Unavailable(e.to_string())
    }

    async fn find(&self, key: &str) -> Result<Option<ledger::Model>, GatewayError> {
        ledger::Entity::find_by_id(key.to_string())
            .one(&self.db)
            .await
            .map_err(Self::unavailable)
    }

    /// Record `row` unless the key exists; either way return what is recorded for the key. One
    /// round trip when the key is new (the common case); a second read only on a replay.
    async fn record(&self, row: ledger::Model) -> Result<ledger::Model, GatewayError> {
        let active = ledger::ActiveModel::from(row.clone()).reset_all();
        match ledger::Entity::insert(active)
            .exec_without_returning(&self.db)
            .await
        {
            Ok(_) => Ok(row),
            Err(e) if crate::db::unique_violation(&e).is_some() => self
                .find(&row.idempotency_key)
                .await?
                .ok_or_else(|| GatewayError::Unavailable("ledger row vanished".into())),
            Err(e) => Err(Self::unavailable(e)),
        }
    }

    fn outcome(m: &ledger::Model) -> Outcome {
        if m.status == "SUCCEEDED" {
            Outcome::Succeeded {
                provider_ref: m.provider_ref.clone(),
            }
        } else {
            Outcome::Declined {
                reason: m.reason.clone().unwrap_or_else(|| "declined".into()),
            }
        }
    }
}

fn provider_ref(prefix: &str) -> String {
    let n: u64 = rand::random();
    format!("{prefix}_{n:016x}")
}

#[async_trait::async_trait]
impl PaymentGateway for MockGateway {
    async fn charge(&self, key: &str, amount_cents: i64) -> Result<Outcome, GatewayError> {
        // No read first: the insert keyed on `key` keeps a replay from charging twice and
        // answers it with the recorded outcome.
        tokio::time::sleep(self.latency).await;
        let declined = self.draw(key) < self.failure_rate;
        let row = ledger::Model {
            idempotency_key: key.to_string(),
            kind: "CHARGE".into(),
            amount_cents,
            status: if declined { "DECLINED" } else { "SUCCEEDED" }.into(),
            provider_ref: provider_ref("ch"),
            charge_ref: None,
            reason: declined.then(|| "card declined by the issuer".to_string()),
            created_at: Utc::now(),
        };
        let recorded = self.record(row).await?;
        metrics::counter!("payments_total", "kind" => "charge", "status" => recorded.status.clone()).increment(1);
        Ok(Self::outcome(&recorded))
    }

    async fn refund(
        &self,
        key: &str,
        charge_ref: &str,
        amount_cents: i64,
    ) -> Result<Outcome, GatewayError> {
        if let Some(done) = self.find(key).await? {
            return Ok(Self::outcome(&done));
        }
        tokio::time::sleep(self.latency).await;
        let row = ledger::Model {
            idempotency_key: key.to_string(),
            kind: "REFUND".into(),
            amount_cents,
            status: "SUCCEEDED".into(),
            provider_ref: provider_ref("re"),
            charge_ref: Some(charge_ref.to_string()),
            reason: None,
            created_at: Utc::now(),
        };
        let recorded = self.record(row).await?;
        metrics::counter!("payments_total", "kind" => "refund", "status" => recorded.status.clone()).increment(1);
        Ok(Self::outcome(&recorded))
    }

    async fn abandon(&self, key: &str) -> Result<Outcome, GatewayError> {
        let row = ledger::Model {
            idempotency_key: key.to_string(),
            kind: "CHARGE".into(),
            amount_cents: 0,
            status: "DECLINED".into(),
            provider_ref: provider_ref("ab"),
            charge_ref: None,
            reason: Some(super::ABANDONED.into()),
            created_at: Utc::now(),
        };
        Ok(Self::outcome(&self.record(row).await?))
    }

    async fn status(&self, key: &str) -> Result<Option<Record>, GatewayError> {
        Ok(self.find(key).await?.map(|m| Record {
            outcome: Self::outcome(&m),
            amount_cents: m.amount_cents,
        }))
    }
}
