//! The user the backend asserts at login (verified): the identity most
//! recently linked to the request's user id or email, perhaps by a login
//! on another domain sharing this store.

use crate::identity::Method;
use crate::service::UserInput;
use crate::store::{Store, StoreError};

use super::{Cx, Found};

pub async fn read<S: Store>(cx: &Cx<'_, S>, user: &UserInput) -> Result<Option<Found>, StoreError> {
    for key in &user.keys {
        for entry in cx.store.lookup_user(*key, cx.now).await? {
            if let Some(record) = cx.store.get_client(entry.client_id, cx.now).await? {
                let method = if user.email_key == Some(*key) {
                    Method::Email
                } else {
                    Method::UserId
                };
                return Ok(Some(Found::new(
                    record.identity.clone(),
                    method,
                    1.0,
                    Some(record),
                )));
            }
        }
    }
    Ok(None)
}
