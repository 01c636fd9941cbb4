//! Accounts and authentication: argon2id passwords, HS256 tokens, and the request's `Viewer`.
pub mod accounts;
pub mod keys;
pub mod password;
pub mod token;

use crate::error::{AppError, AppResult};

/// A user's role, as stored (`entity::user::Role`).
pub use entity::user::Role;

/// Who is asking. Built once per request (or WebSocket connection) from the bearer token.
/// A bad token does not fail the request outright: public fields still answer, and every field
/// that needs a user says `UNAUTHENTICATED`.
#[derive(Debug, Clone)]
pub enum Viewer {
    Anonymous,
    User {
        id: i64,
        role: Role,
    },
    /// A server-to-server client with an API key: what it may do is its scopes.
    ApiKey {
        id: i64,
        scopes: Vec<keys::Scope>,
    },
    BadToken,
}

impl Viewer {
    pub fn user_id(&self) -> Option<i64> {
        match self {
            Viewer::User { id, .. } => Some(*id),
            _ => None,
        }
    }

    /// An admin, or an API key with `scope`; else `UNAUTHENTICATED` or `FORBIDDEN`.
    pub fn require_scope(&self, scope: keys::Scope) -> AppResult<()> {
        match self {
            Viewer::ApiKey { scopes, .. } if scopes.contains(&scope) => Ok(()),
            Viewer::ApiKey { .. } => Err(AppError::Forbidden(format!(
                "this API key lacks the {} scope",
                scope.as_str()
            ))),
            _ => self.require_admin().map(|_| ()),
        }
    }

    /// The signed-in user, or `UNAUTHENTICATED`.
    pub fn require_user(&self) -> AppResult<i64> {
        match self {
            Viewer::User { id, .. } => Ok(*id),
            Viewer::ApiKey { .. } => Err(AppError::Forbidden(
                "an API key acts for no user: this needs a user's token".into(),
            )),
            Viewer::BadToken => Err(AppError::Unauthenticated(
                "the token is invalid or expired; sign in again".into(),
            )),
            Viewer::Anonymous => Err(AppError::unauthenticated()),
        }
    }

    /// The signed-in admin, `UNAUTHENTICATED` or `FORBIDDEN`.
    pub fn require_admin(&self) -> AppResult<i64> {
        let id = self.require_user()?;
        if self.is_admin() {
            Ok(id)
        } else {
            Err(AppError::Forbidden("only admins may do this".into()))
        }
    }

    pub fn is_admin(&self) -> bool {
        matches!(
            self,
            Viewer::User {
                role: Role::Admin,
                ..
            }
        )
    }
}
