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
use crate::group_commit::{Group, Step};

pub struct MockGateway {
    db: DatabaseConnection,
    /// On PostgreSQL, ledger rows that arrive together are written together (group commit, as a
    /// real provider's ledger would be): one statement and one commit for all that are waiting.
    group: Option<Group<ledger::Model, ledger::Model>>,
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
        let group = (db.get_database_backend() == sea_orm::DbBackend::Postgres).then(|| {
            let step = Step {
                name: "gateway ledger",
                many: |db, lane, rows| Box::pin(record_many(db, lane, rows)),
                one: |db, row| Box::pin(record_one(db, row)),
                identity: |row: &ledger::Model| row.idempotency_key.clone(),
            };
            Group::start(db.clone(), step, LEDGER_WRITERS, LEDGER_GROUP)
        });
        MockGateway {
            group,
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
        find_row(&self.db, key).await.map_err(Self::unavailable)
    }

    /// Record `row` unless the key exists; either way return what is recorded for the key.
    async fn record(&self, row: ledger::Model) -> Result<ledger::Model, GatewayError> {
        match &self.group {
            Some(g) => g.write(row).await,
            None => record_one(&self.db, &row).await,
        }
        .map_err(Self::unavailable)
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

/// Ledger groups in flight at once (the gateway's pool has `GATEWAY_POOL_SIZE` connections).
const LEDGER_WRITERS: usize = 4;
/// Most ledger rows in one statement.
const LEDGER_GROUP: usize = 64;

/// Record one row unless its key exists; what is recorded for the key. One round trip when the
/// key is new (the common case); a second read only on a replay.
async fn record_one(db: &DatabaseConnection, row: &ledger::Model) -> Result<ledger::Model, DbErr> {
    let active = ledger::ActiveModel::from(row.clone()).reset_all();
    match ledger::Entity::insert(active)
        .exec_without_returning(db)
        .await
    {
        Ok(_) => Ok(row.clone()),
        Err(e) if crate::db::unique_violation(&e).is_some() => {
            recorded(db, &row.idempotency_key).await
        }
        Err(e) => Err(e),
    }
}

async fn find_row(db: &DatabaseConnection, key: &str) -> Result<Option<ledger::Model>, DbErr> {
    ledger::Entity::find_by_id(key.to_string()).one(db).await
}

/// What is recorded for a key that exists (a replay).
async fn recorded(db: &DatabaseConnection, key: &str) -> Result<ledger::Model, DbErr> {
    find_row(db, key)
        .await?
        .ok_or_else(|| DbErr::RecordNotFound("ledger row vanished".into()))
}

const LEDGER_MANY: &str = "\
INSERT INTO mock_gateway_ledger
  (idempotency_key, kind, amount_cents, status, provider_ref, charge_ref, reason, created_at)
SELECT * FROM jsonb_to_recordset($1::jsonb) AS x(idempotency_key text, kind text,
  amount_cents bigint, status text, provider_ref text, charge_ref text, reason text,
  created_at timestamptz)
ON CONFLICT (idempotency_key) DO NOTHING RETURNING idempotency_key";

/// Record a group of rows (keys distinct) in one statement (PostgreSQL); for each, what is
/// recorded for its key — the row itself, or on a replay the earlier row, read back (not
/// inserted again).
async fn record_many(
    db: &DatabaseConnection,
    lane: &mut crate::group_commit::Lane,
    rows: &[ledger::Model],
) -> Result<Vec<ledger::Model>, DbErr> {
    /// A row of `LEDGER_MANY`'s recordset, written straight to JSON.
    #[derive(serde::Serialize)]
    struct Row<'a> {
        idempotency_key: &'a str,
        kind: &'a str,
        amount_cents: i64,
        status: &'a str,
        provider_ref: &'a str,
        charge_ref: Option<&'a str>,
        reason: Option<&'a str>,
        created_at: chrono::DateTime<Utc>,
    }
    let recordset: Vec<Row> = rows
        .iter()
        .map(|r| Row {
            idempotency_key: &r.idempotency_key,
            kind: &r.kind,
            amount_cents: r.amount_cents,
            status: &r.status,
            provider_ref: &r.provider_ref,
            charge_ref: r.charge_ref.as_deref(),
            reason: r.reason.as_deref(),
            created_at: r.created_at,
        })
        .collect();
    let params = vec![crate::db::json_rows(&recordset)?];
    let inserted = crate::group_commit::query(db, Some(lane), LEDGER_MANY, params).await?;
    let mut new = std::collections::HashSet::with_capacity(inserted.len());
    for row in inserted {
        new.insert(row.try_get::<String>("", "idempotency_key")?);
    }
    let mut answers = Vec::with_capacity(rows.len());
    for r in rows {
        if new.contains(&r.idempotency_key) {
            answers.push(r.clone());
        } else {
            answers.push(recorded(db, &r.idempotency_key).await?);
        }
    }
    Ok(answers)
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
