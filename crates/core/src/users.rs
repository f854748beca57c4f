//! Profiles and account administration.

use chrono::Utc;
use uuid::Uuid;

use crate::error::{CoreError, Result};
use crate::events::{Bus, BusEvent};
use crate::model::{Actor, Page, PublicUser, Role, User};
use crate::pagination::PageRequest;
use crate::store::convert::user_from_row;
use crate::store::{Store, UserFilter};

pub const MAX_EMAIL_CHARS: usize = 254;
pub const MIN_USERNAME_CHARS: usize = 3;
pub const MAX_USERNAME_CHARS: usize = 32;
pub const MAX_DISPLAY_NAME_CHARS: usize = 64;

/// Trims and lowercases an email and checks its shape (`local@domain.tld`).
pub fn normalize_email(email: &str) -> Result<String> {
    let email = email.trim().to_lowercase();
    let invalid = || CoreError::validation("email", "is not a valid email address");
    if email.chars().count() > MAX_EMAIL_CHARS
        || email.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(invalid());
    }
    let (local, domain) = email.split_once('@').ok_or_else(invalid)?;
    if local.is_empty()
        || domain.contains('@')
        || !domain.contains('.')
        || domain.starts_with('.')
        || domain.ends_with('.')
    {
        return Err(invalid());
    }
    Ok(email)
}

/// Lowercases a username and checks it: 3 to 32 of `a-z 0-9 _ . -`, starting with a letter or digit.
pub fn normalize_username(username: &str) -> Result<String> {
    let u = username.trim().to_lowercase();
    let n = u.chars().count();
    if !(MIN_USERNAME_CHARS..=MAX_USERNAME_CHARS).contains(&n) {
        return Err(CoreError::validation(
            "username",
            format!("must be {MIN_USERNAME_CHARS} to {MAX_USERNAME_CHARS} characters"),
        ));
    }
    let ok_char =
        |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '.' | '-');
    if !u.chars().all(ok_char) || !u.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        return Err(CoreError::validation(
            "username",
            "may hold only letters, digits, '_', '.' and '-', and must start with a letter or digit",
        ));
    }
    Ok(u)
}

/// Cleans a display name as every shown name is cleaned
/// ([`crate::text::clean_name`]: no control or bidi characters, nothing
/// invisible at the ends) and checks it: 1 to 64 characters left. NUL is
/// refused rather than dropped, as in every text field.
pub fn normalize_display_name(name: &str) -> Result<String> {
    crate::text::refuse_nul("display_name", name)?;
    let d = crate::text::clean_name(name);
    let n = d.chars().count();
    if n == 0 || n > MAX_DISPLAY_NAME_CHARS {
        return Err(CoreError::validation(
            "display_name",
            format!("must be 1 to {MAX_DISPLAY_NAME_CHARS} characters"),
        ));
    }
    Ok(d)
}

/// The profile and administration service.
#[derive(Clone)]
pub struct Users {
    store: Store,
    bus: Bus,
}

impl Users {
    pub fn new(store: Store, bus: Bus) -> Self {
        Users { store, bus }
    }

    /// The caller's own account.
    pub async fn me(&self, actor: &Actor) -> Result<User> {
        self.get(actor.user_id).await
    }

    async fn get(&self, id: Uuid) -> Result<User> {
        let row = self
            .store
            .user_by_id(&id.to_string())
            .await?
            .ok_or(CoreError::NotFound("user"))?;
        user_from_row(row)
    }

    /// Anyone's public profile.
    pub async fn profile(&self, id: Uuid) -> Result<PublicUser> {
        Ok(PublicUser::from(&self.get(id).await?))
    }

    /// The enabled account with exactly this username (compared as stored:
    /// lowercase). Registration already tells whether a name is taken, so an
    /// exact look-up reveals nothing more; there is no prefix search.
    pub async fn by_username(&self, username: &str) -> Result<PublicUser> {
        let username = normalize_username(username).map_err(|_| CoreError::NotFound("user"))?;
        match self.store.user_by_username(&username).await? {
            Some(row) if row.disabled == 0 => Ok(PublicUser::from(&user_from_row(row)?)),
            _ => Err(CoreError::NotFound("user")),
        }
    }

    pub async fn set_display_name(&self, actor: &Actor, name: &str) -> Result<User> {
        let name = normalize_display_name(name)?;
        let row = self
            .store
            .set_display_name(
                &actor.user_id.to_string(),
                &name,
                Utc::now().timestamp_millis(),
            )
            .await?
            .ok_or(CoreError::NotFound("user"))?;
        user_from_row(row)
    }

    /// Lists accounts for admins, filtered by text and role.
    pub async fn list(
        &self,
        actor: &Actor,
        text: Option<&str>,
        role: Option<Role>,
        page: &PageRequest,
    ) -> Result<Page<User>> {
        require_admin(actor)?;
        let filter = UserFilter {
            text: text
                .map(|t| crate::text::refuse_nul("q", t).map(|()| t.trim()))
                .transpose()?
                .filter(|t| !t.is_empty())
                .map(str::to_owned),
            role: role.map(|r| r.as_str().to_owned()),
        };
        let rows = self
            .store
            .list_users(&filter, page.after.as_deref(), page.fetch_limit())
            .await?;
        let users = rows
            .into_iter()
            .map(user_from_row)
            .collect::<Result<Vec<_>>>()?;
        Ok(page.finish(users, |u| u.id.to_string()))
    }

    /// Moves an account between `user` and `admin`. super_admin only; the last
    /// super_admin cannot be demoted.
    pub async fn set_role(&self, actor: &Actor, target: Uuid, role: Role) -> Result<User> {
        if actor.role != Role::SuperAdmin {
            return Err(CoreError::forbidden("only a super_admin may change roles"));
        }
        if role == Role::SuperAdmin {
            return Err(CoreError::validation("role", "must be user or admin"));
        }
        let row = self
            .store
            .set_role(
                &target.to_string(),
                role.as_str(),
                Utc::now().timestamp_millis(),
            )
            .await?
            .ok_or(CoreError::NotFound("user"))?;
        tracing::info!(actor = %actor.user_id, target = %target, %role, "role changed");
        user_from_row(row)
    }

    /// Disables or enables an account. Admins act on users; a super_admin on
    /// anyone but the last enabled super_admin. Disabling ends every session.
    pub async fn set_disabled(&self, actor: &Actor, target: Uuid, disabled: bool) -> Result<User> {
        require_admin(actor)?;
        if target == actor.user_id {
            return Err(CoreError::conflict(
                "cannot_target_self",
                "you cannot disable or enable yourself",
            ));
        }
        let current = self.get(target).await?;
        if actor.role != Role::SuperAdmin && current.role >= actor.role {
            return Err(CoreError::forbidden(
                "only a super_admin may disable or enable an admin",
            ));
        }
        let row = self
            .store
            .set_disabled(&target.to_string(), disabled, Utc::now().timestamp_millis())
            .await?
            .ok_or(CoreError::NotFound("user"))?;
        if disabled {
            self.bus.publish(BusEvent::SessionsRevoked {
                user_id: target,
                session_id: None,
            });
        }
        tracing::info!(actor = %actor.user_id, target = %target, disabled, "account state changed");
        user_from_row(row)
    }
}

pub(crate) fn require_admin(actor: &Actor) -> Result<()> {
    if actor.role.is_admin() {
        Ok(())
    } else {
        Err(CoreError::forbidden("this needs the admin role"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_normalised_and_checked() {
        assert_eq!(
            normalize_email("  Ada@Example.ORG ").unwrap(),
            "ada@example.org"
        );
        for bad in [
            "",
            "ada",
            "ada@",
            "@example.org",
            "ada@example",
            "a b@example.org",
            "a@b@c.org",
            "a@.org",
        ] {
            assert!(normalize_email(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn usernames_are_checked() {
        assert_eq!(normalize_username("Ada.L").unwrap(), "ada.l");
        for bad in ["ab", "_ada", "ada lovelace", "ädä", &"a".repeat(33)] {
            assert!(
                normalize_username(bad).is_err(),
                "{bad:?} should be refused"
            );
        }
    }

    #[test]
    fn display_names_are_checked() {
        assert_eq!(normalize_display_name("  Ada  ").unwrap(), "Ada");
        assert!(normalize_display_name("   ").is_err());
        assert_eq!(normalize_display_name("a\u{7}b").unwrap(), "ab");
        assert_eq!(
            normalize_display_name("admin\u{202e}gnp.exe").unwrap(),
            "admingnp.exe"
        );
        assert!(normalize_display_name("\u{200b}").is_err());
        assert!(normalize_display_name("a\0b").is_err());
        assert!(normalize_display_name(&"é".repeat(64)).is_ok());
        assert!(normalize_display_name(&"é".repeat(65)).is_err());
    }
}
