//! Payments: the gateway contract and the mock provider. A real provider (Stripe, Adyen…) fits
//! the same trait: idempotency keys on every call, and a status lookup by key so that a crashed
//! checkout can be settled from the provider's record.

/// Connections of the mock payment gateway's own database pool (it stands for an external
/// service, so it never takes the service's own connections).
pub const GATEWAY_POOL_SIZE: u32 = 8;

pub mod mock;

/// The decline reason of a key claimed by `abandon`.
pub const ABANDONED: &str = "abandoned";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Succeeded { provider_ref: String },
    Declined { reason: String },
}

/// What the provider remembers of one operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub outcome: Outcome,
    pub amount_cents: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("payment gateway unavailable: {0}")]
    Unavailable(String),
}

#[async_trait::async_trait]
pub trait PaymentGateway: Send + Sync + 'static {
    /// Charge once per `key`: a repeated key returns the first answer and never charges again.
    async fn charge(&self, key: &str, amount_cents: i64) -> Result<Outcome, GatewayError>;
    /// Refund the charge `charge_ref` once per `key`.
    async fn refund(
        &self,
        key: &str,
        charge_ref: &str,
        amount_cents: i64,
    ) -> Result<Outcome, GatewayError>;
    /// The provider's record of `key`, if it ever processed it.
    async fn status(&self, key: &str) -> Result<Option<Record>, GatewayError>;
    /// Claim `key` as abandoned (a charge with it will be declined from now on) unless it was
    /// processed already; returns what the provider has for the key afterwards.
    async fn abandon(&self, key: &str) -> Result<Outcome, GatewayError>;
}
