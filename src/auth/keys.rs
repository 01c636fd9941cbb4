//! API keys for server-to-server clients (a cinema chain's app, a finance system).
//!
//! A key is `bok_` + 43 characters of base64url (256 random bits), shown once when an admin
//! creates it; the database keeps its SHA-256 only (a fast hash is right for a 256-bit random
//! secret: nothing to brute-force), a prefix to tell keys apart, a name and its scopes. Each
//! request with a key looks it up by hash (one indexed read), so a revoked key stops working on
//! every instance at the next request. A key is its own client for every budget (mutations, reads)
//! and its uses are counted per key (`api_key_requests_total`) and stamped on the key
//! (`last_used_at`, at most once a minute per instance).
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine;
use chrono::Utc;
use entity::api_key;
use rand::RngCore;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, QueryOrder, Set,
    TransactionTrait,
};

use crate::error::{AppError, AppResult};
use crate::ids::sha256_hex;

/// What a key may do. Admin users may do all of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    /// Read the catalogue and seat maps (public anyway; a key gets budgets of its own).
    ReadCatalogue,
    /// Read sales reports (`salesReport`, the CSV export).
    ReadReports,
    /// Read the audit log (`auditLog`).
    ReadAudit,
}

impl Scope {
    pub const ALL: [Scope; 3] = [Scope::ReadCatalogue, Scope::ReadReports, Scope::ReadAudit];

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::ReadCatalogue => "READ_CATALOGUE",
            Scope::ReadReports => "READ_REPORTS",
            Scope::ReadAudit => "READ_AUDIT",
        }
    }

    fn parse(s: &str) -> Option<Scope> {
        Scope::ALL.into_iter().find(|x| x.as_str() == s)
    }
}

/// The scopes of a key, as stored (comma-separated names; unknown names are ignored).
pub fn scopes_of(model: &api_key::Model) -> Vec<Scope> {
    model.scopes.split(',').filter_map(Scope::parse).collect()
}

/// The prefix of every key secret: tells a key from a user's token at a glance.
pub const KEY_PREFIX: &str = "bok_";

/// How often a key's `last_used_at` is written, at most, per instance.
const STAMP_EVERY: Duration = Duration::from_secs(60);

pub struct ApiKeys {
    db: DatabaseConnection,
    stamped: Mutex<HashMap<i64, Instant>>,
}

impl ApiKeys {
    pub fn new(db: DatabaseConnection) -> Self {
        ApiKeys {
            db,
            stamped: Mutex::default(),
        }
    }

    /// A new key; the secret is returned here and never again.
    pub async fn create(
        &self,
        name: &str,
        scopes: &[Scope],
        admin_id: i64,
    ) -> AppResult<(String, api_key::Model)> {
        let name = name.trim();
        if name.is_empty() || name.chars().count() > 120 || name.chars().any(char::is_control) {
            return Err(AppError::bad_input(
                "a key's name is 1 to 120 characters, without control characters",
            ));
        }
        if scopes.is_empty() {
            return Err(AppError::bad_input("a key needs at least one scope"));
        }
        let mut bytes = [0u8; 32];
        rand::rng().fill_bytes(&mut bytes);
        let secret = format!(
            "{KEY_PREFIX}{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
        );
        let mut names: Vec<&str> = scopes.iter().map(|s| s.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        let txn = self.db.begin().await?;
        let row = api_key::ActiveModel {
            name: Set(name.to_string()),
            secret_hash: Set(sha256_hex(&secret)),
            prefix: Set(secret.chars().take(12).collect()),
            scopes: Set(names.join(",")),
            created_by: Set(admin_id),
            created_at: Set(Utc::now()),
            revoked_at: Set(None),
            last_used_at: Set(None),
            ..Default::default()
        }
        .insert(&txn)
        .await?;
        let what = serde_json::json!({ "keyId": row.id, "name": row.name, "scopes": row.scopes });
        let by = crate::audit::Actor::Admin(admin_id);
        crate::audit::record(&txn, by, "api_key.created", Default::default(), what).await?;
        txn.commit().await?;
        tracing::info!(key = row.id, admin = admin_id, scopes = %row.scopes, "API key created");
        Ok((secret, row))
    }

    /// Every key, newest first (revoked ones too).
    pub async fn list(&self) -> AppResult<Vec<api_key::Model>> {
        Ok(api_key::Entity::find()
            .order_by_desc(api_key::Column::Id)
            .all(&self.db)
            .await?)
    }

    /// Revoke a key: true when it was live.
    pub async fn revoke(&self, id: i64, admin_id: i64) -> AppResult<bool> {
        let txn = self.db.begin().await?;
        let res = api_key::Entity::update_many()
            .col_expr(
                api_key::Column::RevokedAt,
                sea_orm::sea_query::Expr::value(Utc::now()),
            )
            .filter(api_key::Column::Id.eq(id))
            .filter(api_key::Column::RevokedAt.is_null())
            .exec(&txn)
            .await?;
        if res.rows_affected > 0 {
            let by = crate::audit::Actor::Admin(admin_id);
            let what = serde_json::json!({ "keyId": id });
            crate::audit::record(&txn, by, "api_key.revoked", Default::default(), what).await?;
            tracing::info!(key = id, admin = admin_id, "API key revoked");
        }
        txn.commit().await?;
        Ok(res.rows_affected > 0)
    }

    /// The live key with this secret, or `None` (unknown or revoked).
    pub async fn verify(&self, secret: &str) -> AppResult<Option<(i64, Vec<Scope>)>> {
        if !secret.starts_with(KEY_PREFIX) || secret.len() > 100 {
            return Ok(None);
        }
        let Some(key) = api_key::Entity::find()
            .filter(api_key::Column::SecretHash.eq(sha256_hex(secret)))
            .filter(api_key::Column::RevokedAt.is_null())
            .one(&self.db)
            .await?
        else {
            return Ok(None);
        };
        metrics::counter!("api_key_requests_total", "key" => key.id.to_string()).increment(1);
        let due = {
            let mut stamped = self.stamped.lock().unwrap_or_else(|p| p.into_inner());
            let due = stamped
                .get(&key.id)
                .is_none_or(|at| at.elapsed() >= STAMP_EVERY);
            if due {
                stamped.insert(key.id, Instant::now());
            }
            due
        };
        if due {
            // Attribution, not correctness: a failed stamp is logged and the request goes on.
            let stamp = api_key::Entity::update_many()
                .col_expr(
                    api_key::Column::LastUsedAt,
                    sea_orm::sea_query::Expr::value(Utc::now()),
                )
                .filter(api_key::Column::Id.eq(key.id))
                .exec(&self.db)
                .await;
            if let Err(e) = stamp {
                tracing::warn!(key = key.id, error = %e, "could not stamp the key's last use");
            }
        }
        let scopes = scopes_of(&key);
        Ok(Some((key.id, scopes)))
    }
}
