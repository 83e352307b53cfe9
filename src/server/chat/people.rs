//! People: choosing a display name (which is when a provisional identity is stored).

use super::Chat;
use crate::error::AppError;
use crate::protocol::{validate_display_name, UserId, UserInfo};
use crate::server::hub::{Frame, StreamNote, Topic};
use std::net::IpAddr;

impl Chat {
    /// Sets a user's display name after checking it. A provisional user (`provisional` holds
    /// its token's hash) is stored now, with its first name, spending one of its address's
    /// new identities.
    pub async fn set_display_name(
        &self,
        user: &UserId,
        provisional: Option<String>,
        raw: &str,
        ip: IpAddr,
    ) -> Result<UserInfo, AppError> {
        let name = validate_display_name(raw)?;
        let stored = match provisional {
            Some(token_hash) => {
                self.budgets.new_identity(ip).await?;
                self.store
                    .store_user(user.clone(), token_hash, name)
                    .await?
            }
            None => self.store.set_display_name(user, name).await?,
        };
        // The user's open sockets, on every node, post under the new name from now on.
        super::publish(
            self.hub.as_ref(),
            &Topic::User(user.clone()),
            Frame::note(StreamNote::Renamed(stored.clone())),
        )
        .await;
        Ok(stored)
    }

    /// Tells every node that the token with hash `token_hash` of `user` was signed out
    /// (revoked in the store already): its sockets close wherever they are.
    pub async fn signed_out(&self, user: &UserId, token_hash: &str) {
        super::publish(
            self.hub.as_ref(),
            &Topic::User(user.clone()),
            Frame::note(StreamNote::SignedOut(token_hash.to_string())),
        )
        .await;
    }
}
