//! Sign-up, log-in and the bootstrap admin.
use std::sync::Arc;

use chrono::Utc;
use entity::user;
use sea_orm::{ActiveModelTrait, ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, Set};

use super::{password, token::Tokens, Role};
use crate::error::{AppError, AppResult};

/// Lower-cased, trimmed, and shaped like an address (one `@`, something on each side, a dot in
/// the domain). Deliverability is not our business; typos like "alice" are.
pub fn normalise_email(raw: &str) -> Result<String, String> {
    let email = raw.trim().to_lowercase();
    if email.len() > 254 {
        return Err("the email address is too long".into());
    }
    let mut parts = email.split('@');
    let (local, domain) = match (parts.next(), parts.next(), parts.next()) {
        (Some(l), Some(d), None) => (l, d),
        _ => return Err("the email address is not valid".into()),
    };
    let domain_ok = domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !domain.contains("..");
    if local.is_empty() || !domain_ok || email.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Err("the email address is not valid".into());
    }
    Ok(email)
}

pub struct Session {
    pub token: String,
    pub user: user::Model,
}

#[derive(Clone)]
pub struct Accounts {
    db: DatabaseConnection,
    tokens: Arc<Tokens>,
    /// Verified against when the email is unknown, so that log-in takes as long either way.
    dummy_hash: Arc<String>,
}

impl Accounts {
    pub async fn new(db: DatabaseConnection, tokens: Arc<Tokens>) -> AppResult<Self> {
        let dummy_hash = Arc::new(password::hash("not-a-real-password-0xd1ce".into()).await?);
        Ok(Accounts {
            db,
            tokens,
            dummy_hash,
        })
    }

    pub fn tokens(&self) -> &Tokens {
        &self.tokens
    }

    pub async fn sign_up(
        &self,
        email: &str,
        pwd: String,
        name: Option<String>,
    ) -> AppResult<Session> {
        let email = normalise_email(email).map_err(AppError::BadInput)?;
        password::check_strength(&pwd).map_err(AppError::BadInput)?;
        let name = clean_name(name)?;
        let hash = password::hash(pwd).await?;
        let row = user::ActiveModel {
            email: Set(email),
            password_hash: Set(hash),
            name: Set(name),
            role: Set(Role::Customer),
            created_at: Set(Utc::now()),
            ..Default::default()
        };
        let user = match row.insert(&self.db).await {
            Ok(u) => u,
            Err(e) if crate::db::unique_violation(&e).is_some() => {
                return Err(AppError::bad_input(
                    "an account with this email already exists",
                ))
            }
            Err(e) => return Err(e.into()),
        };
        self.session(user)
    }

    pub async fn log_in(&self, email: &str, pwd: String) -> AppResult<Session> {
        let wrong = || AppError::Unauthenticated("wrong email or password".into());
        let Ok(email) = normalise_email(email) else {
            return Err(wrong());
        };
        if pwd.len() > password::MAX_LEN {
            return Err(wrong());
        }
        let found = user::Entity::find()
            .filter(user::Column::Email.eq(&email))
            .one(&self.db)
            .await?;
        match found {
            Some(u) => {
                if password::verify(pwd, u.password_hash.clone()).await? {
                    self.session(u)
                } else {
                    Err(wrong())
                }
            }
            None => {
                let _ = password::verify(pwd, self.dummy_hash.to_string()).await;
                Err(wrong())
            }
        }
    }

    pub async fn find(&self, id: i64) -> AppResult<Option<user::Model>> {
        Ok(user::Entity::find_by_id(id).one(&self.db).await?)
    }

    /// Make sure an admin with this email and password exists (created, or promoted and its
    /// password reset to the configured one). Idempotent; safe on several instances at once.
    pub async fn ensure_admin(&self, email: &str, pwd: &str) -> AppResult<()> {
        let email = normalise_email(email).map_err(AppError::BadInput)?;
        let existing = user::Entity::find()
            .filter(user::Column::Email.eq(&email))
            .one(&self.db)
            .await?;
        match existing {
            Some(u) => {
                let keeps_password =
                    password::verify(pwd.to_string(), u.password_hash.clone()).await?;
                if u.role != Role::Admin || !keeps_password {
                    let mut am: user::ActiveModel = u.into();
                    am.role = Set(Role::Admin);
                    if !keeps_password {
                        am.password_hash = Set(password::hash(pwd.to_string()).await?);
                    }
                    am.update(&self.db).await?;
                }
            }
            None => {
                let row = user::ActiveModel {
                    email: Set(email),
                    password_hash: Set(password::hash(pwd.to_string()).await?),
                    name: Set(Some("Administrator".into())),
                    role: Set(Role::Admin),
                    created_at: Set(Utc::now()),
                    ..Default::default()
                };
                match row.insert(&self.db).await {
                    Ok(_) => {}
                    // Another instance created it a moment ago.
                    Err(e) if crate::db::unique_violation(&e).is_some() => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
        Ok(())
    }

    fn session(&self, user: user::Model) -> AppResult<Session> {
        let role = user.role;
        let token = self
            .tokens
            .issue(user.id, role)
            .map_err(AppError::Internal)?;
        Ok(Session { token, user })
    }
}

fn clean_name(name: Option<String>) -> AppResult<Option<String>> {
    match name.map(|n| n.trim().to_string()) {
        None => Ok(None),
        Some(n) if n.is_empty() => Ok(None),
        Some(n) if n.chars().count() > 100 => Err(AppError::bad_input(
            "the name must have at most 100 characters",
        )),
        Some(n) if n.chars().any(char::is_control) => {
            Err(AppError::bad_input("the name contains control characters"))
        }
        Some(n) => Ok(Some(n)),
    }
}
