//! People: identities, names, the server's secret and signed-out tokens.

use super::{db_error, now, PostgresStore};
use crate::error::AppError;
use crate::protocol::{UserId, UserInfo};
use crate::server::store::sqlite::{limit_of, new_id, new_secret};
use crate::server::store::Users;
use async_trait::async_trait;
use sqlx::Row;

impl PostgresStore {
    fn cache_user(&self, token_hash: Option<String>, user: &UserInfo) {
        self.users
            .lock()
            .expect("users lock")
            .insert(token_hash, user);
    }

    /// A user row looked up by `column` (`id` or `token_hash`), cached on the way.
    async fn load_user(&self, column: &str, value: &str) -> Result<Option<UserInfo>, AppError> {
        let sql = format!("SELECT id, name, token_hash FROM users WHERE {column} = $1");
        let row = sqlx::query(&sql)
            .bind(value)
            .fetch_optional(&self.pool)
            .await
            .map_err(db_error)?;
        Ok(row.map(|row| {
            let user = UserInfo {
                id: UserId(row.get("id")),
                name: row.get("name"),
            };
            self.cache_user(Some(row.get("token_hash")), &user);
            user
        }))
    }
}

#[async_trait]
impl Users for PostgresStore {
    async fn create_user(
        &self,
        token_hash: String,
        name: Option<String>,
    ) -> Result<UserInfo, AppError> {
        let user = UserInfo {
            id: UserId(new_id()),
            name,
        };
        sqlx::query("INSERT INTO users (id, token_hash, name, created_at) VALUES ($1, $2, $3, $4)")
            .bind(&user.id.0)
            .bind(&token_hash)
            .bind(&user.name)
            .bind(now())
            .execute(&self.pool)
            .await
            .map_err(db_error)?;
        self.cache_user(Some(token_hash), &user);
        Ok(user)
    }

    async fn store_user(
        &self,
        id: UserId,
        token_hash: String,
        name: String,
    ) -> Result<UserInfo, AppError> {
        sqlx::query(
            "INSERT INTO users (id, token_hash, name, created_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (id) DO UPDATE SET name = excluded.name",
        )
        .bind(&id.0)
        .bind(&token_hash)
        .bind(&name)
        .bind(now())
        .execute(&self.pool)
        .await
        .map_err(db_error)?;
        let user = UserInfo {
            id,
            name: Some(name),
        };
        self.cache_user(Some(token_hash), &user);
        Ok(user)
    }

    async fn user_by_token(&self, token_hash: &str) -> Result<Option<UserInfo>, AppError> {
        let cached = self.users.lock().expect("users lock").by_token(token_hash);
        match cached {
            Some(user) => Ok(Some(user)),
            None => self.load_user("token_hash", token_hash).await,
        }
    }

    async fn user(&self, id: &UserId) -> Result<Option<UserInfo>, AppError> {
        let cached = self.users.lock().expect("users lock").by_id(id);
        match cached {
            Some(user) => Ok(Some(user)),
            None => self.load_user("id", &id.0).await,
        }
    }

    async fn set_display_name(&self, id: &UserId, name: String) -> Result<UserInfo, AppError> {
        let done = sqlx::query("UPDATE users SET name = $1 WHERE id = $2")
            .bind(&name)
            .bind(&id.0)
            .execute(&self.pool)
            .await
            .map_err(db_error)?;
        if done.rows_affected() == 0 {
            return Err(AppError::Unauthenticated);
        }
        let user = UserInfo {
            id: id.clone(),
            name: Some(name),
        };
        self.cache_user(None, &user);
        Ok(user)
    }

    async fn users_named(&self, prefix: &str, limit: usize) -> Result<Vec<UserInfo>, AppError> {
        // Any case, the way the index keeps it; the prefix's own wildcards are escaped.
        let pattern: String = prefix
            .chars()
            .flat_map(|c| match c {
                '%' | '_' | '\\' => vec!['\\', c],
                c => vec![c],
            })
            .chain(std::iter::once('%'))
            .collect();
        let rows = sqlx::query(
            "SELECT id, name FROM users
             WHERE name IS NOT NULL AND lower(name) LIKE lower($1) ESCAPE '\\'
             ORDER BY name, id LIMIT $2",
        )
        .bind(pattern)
        .bind(limit_of(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(db_error)?;
        Ok(rows
            .iter()
            .map(|row| UserInfo {
                id: UserId(row.get("id")),
                name: row.get("name"),
            })
            .collect())
    }

    async fn secret(&self) -> Result<Vec<u8>, AppError> {
        // The first node to ask stores one; every node reads the one stored.
        sqlx::query(
            "INSERT INTO settings (key, value) VALUES ('token_secret', $1) ON CONFLICT DO NOTHING",
        )
        .bind(new_secret())
        .execute(&self.pool)
        .await
        .map_err(db_error)?;
        sqlx::query_scalar("SELECT value FROM settings WHERE key = 'token_secret'")
            .fetch_one(&self.pool)
            .await
            .map_err(db_error)
    }

    async fn revoke_token(&self, id: &UserId, token_hash: &str) -> Result<(), AppError> {
        let mut tx = self.begin().await.map_err(db_error)?;
        sqlx::query(
            "INSERT INTO revoked_tokens (token_hash, revoked_at) VALUES ($1, $2)
             ON CONFLICT DO NOTHING",
        )
        .bind(token_hash)
        .bind(now())
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
        // The user keeps their id and messages; no token reaches them any more.
        sqlx::query(
            "UPDATE users SET token_hash = 'revoked:' || id WHERE id = $1 AND token_hash = $2",
        )
        .bind(&id.0)
        .bind(token_hash)
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
        tx.commit().await.map_err(db_error)?;
        self.users
            .lock()
            .expect("users lock")
            .forget_token(token_hash);
        Ok(())
    }

    async fn token_revoked(&self, token_hash: &str) -> Result<bool, AppError> {
        let found: Option<i32> =
            sqlx::query_scalar("SELECT 1 FROM revoked_tokens WHERE token_hash = $1")
                .bind(token_hash)
                .fetch_optional(&self.pool)
                .await
                .map_err(db_error)?;
        Ok(found.is_some())
    }
}
