//! Rooms, membership, invites and direct messages.
//!
//! Visibility rule: a private room is answered with "not found" to anyone
//! who is neither a member nor a server admin, so its existence stays hidden.

use std::time::Duration;

use chrono::Utc;
use uuid::Uuid;

use crate::auth::token::random_token;
use crate::error::{CoreError, Result};
use crate::events::{Publisher, RoomEventBody};
use crate::model::{
    Actor, Invite, Member, MemberRole, Page, PublicUser, RoomKind, RoomView, Visibility,
};
use crate::pagination::PageRequest;
use crate::store::convert::{hydrate, parse_id, room_from_row, time};
use crate::store::{Departure, InviteRow, MemberRow, RoomRow, Store};

pub const MAX_ROOM_NAME_CHARS: usize = 100;
pub const MAX_TOPIC_CHARS: usize = 1000;

/// Who may create group rooms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RoomCreation {
    Everyone,
    Admins,
}

/// Settings of rooms.
#[derive(Debug, Clone)]
pub struct RoomsConfig {
    pub creation: RoomCreation,
    /// The largest `max_call_participants` a room may set.
    pub max_call_participants_limit: u32,
    pub default_invite_ttl: Duration,
    pub max_invite_ttl: Duration,
    /// The largest `max_uses` an invite may have.
    pub max_invite_uses: u32,
}

impl Default for RoomsConfig {
    fn default() -> Self {
        RoomsConfig {
            creation: RoomCreation::Everyone,
            max_call_participants_limit: 100,
            default_invite_ttl: Duration::from_secs(7 * 24 * 3600),
            max_invite_ttl: Duration::from_secs(30 * 24 * 3600),
            max_invite_uses: 10_000,
        }
    }
}

/// What creating a group room takes.
#[derive(Debug, Clone)]
pub struct NewRoom {
    pub name: String,
    pub topic: Option<String>,
    pub visibility: Visibility,
    pub max_call_participants: Option<u32>,
    /// Whether participants a moderator muted may unmute themselves.
    pub call_self_unmute: bool,
}

/// A change of settings; `None` leaves a field as it is, `Some(None)` clears it.
#[derive(Debug, Clone, Default)]
pub struct RoomPatch {
    pub name: Option<String>,
    pub topic: Option<Option<String>>,
    pub visibility: Option<Visibility>,
    pub max_call_participants: Option<Option<u32>>,
    pub call_self_unmute: Option<bool>,
}

/// An invite's limits as asked for.
#[derive(Debug, Clone, Default)]
pub struct NewInvite {
    pub expires_in: Option<Duration>,
    pub max_uses: Option<u32>,
}

/// The room service.
#[derive(Clone)]
pub struct Rooms {
    store: Store,
    publish: Publisher,
    config: RoomsConfig,
}

/// The caller's standing in one room.
struct Standing {
    room: RoomRow,
    role: Option<MemberRole>,
    server_admin: bool,
}

/// How much say someone has in a room, lowest first: a server admin acts as
/// more than the owner.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Authority {
    Outsider,
    Member,
    Moderator,
    Owner,
    ServerAdmin,
}

impl From<MemberRole> for Authority {
    fn from(role: MemberRole) -> Self {
        match role {
            MemberRole::Member => Authority::Member,
            MemberRole::Moderator => Authority::Moderator,
            MemberRole::Owner => Authority::Owner,
        }
    }
}

impl Authority {
    /// The say of someone with `role` in a room (none: not a member), who
    /// is a server admin or not.
    pub(crate) fn of(role: Option<MemberRole>, server_admin: bool) -> Authority {
        if server_admin {
            return Authority::ServerAdmin;
        }
        role.map_or(Authority::Outsider, Authority::from)
    }
}

impl Standing {
    fn authority(&self) -> Authority {
        Authority::of(self.role, self.server_admin)
    }

    /// Refuses (`forbidden`, with `refusal`) a caller with less say than `least`.
    fn require(&self, least: Authority, refusal: &'static str) -> Result<()> {
        if self.authority() < least {
            return Err(CoreError::forbidden(refusal));
        }
        Ok(())
    }

    fn kind(&self) -> RoomKind {
        self.room.kind.parse().unwrap_or(RoomKind::Group)
    }

    /// Refuses a change of members in a direct message, whose two are fixed.
    fn members_can_change(&self) -> Result<()> {
        if self.kind() == RoomKind::Dm {
            return Err(CoreError::conflict(
                "dm_members_fixed",
                "a direct message has exactly two members",
            ));
        }
        Ok(())
    }
}

impl Rooms {
    pub fn new(store: Store, publish: Publisher, config: RoomsConfig) -> Self {
        Rooms {
            store,
            publish,
            config,
        }
    }

    /// Loads a room as seen by `actor`; hidden rooms are not found.
    async fn standing(&self, actor: &Actor, room_id: Uuid) -> Result<Standing> {
        let id = room_id.to_string();
        let room = self
            .store
            .room(&id)
            .await?
            .ok_or(CoreError::NotFound("room"))?;
        let role = self
            .store
            .member_role(&id, &actor.user_id.to_string())
            .await?
            .map(|r| r.parse())
            .transpose()?;
        let server_admin = actor.role.is_admin();
        if role.is_none() && !server_admin && room.visibility != Visibility::Public.as_str() {
            return Err(CoreError::NotFound("room"));
        }
        Ok(Standing {
            room,
            role,
            server_admin,
        })
    }

    /// A room name is shown in everyone's list, so it is cleaned as display
    /// names are: what would hide or reorder text goes, and a name of only
    /// invisible characters is empty.
    fn check_name(&self, name: &str) -> Result<String> {
        crate::text::refuse_nul("name", name)?;
        let n = crate::text::clean_name(name);
        let count = n.chars().count();
        if count == 0 || count > MAX_ROOM_NAME_CHARS {
            return Err(CoreError::validation(
                "name",
                format!("must be 1 to {MAX_ROOM_NAME_CHARS} characters"),
            ));
        }
        Ok(n)
    }

    fn check_topic(&self, topic: Option<&str>) -> Result<Option<String>> {
        if let Some(t) = topic {
            crate::text::refuse_nul("topic", t)?;
        }
        let Some(t) = topic.map(str::trim).filter(|t| !t.is_empty()) else {
            return Ok(None);
        };
        if t.chars().count() > MAX_TOPIC_CHARS {
            return Err(CoreError::validation(
                "topic",
                format!("must be at most {MAX_TOPIC_CHARS} characters"),
            ));
        }
        if t.chars().any(|c| c.is_control() && c != '\n') {
            return Err(CoreError::validation(
                "topic",
                "must not contain control characters",
            ));
        }
        Ok(Some(t.to_owned()))
    }

    fn check_call_size(&self, n: Option<u32>) -> Result<Option<i64>> {
        match n {
            None => Ok(None),
            Some(n) if (2..=self.config.max_call_participants_limit).contains(&n) => {
                Ok(Some(i64::from(n)))
            }
            Some(_) => Err(CoreError::validation(
                "max_call_participants",
                format!(
                    "must be between 2 and {}",
                    self.config.max_call_participants_limit
                ),
            )),
        }
    }

    /// Creates a group room owned by `actor`.
    pub async fn create(&self, actor: &Actor, new: NewRoom) -> Result<RoomView> {
        if self.config.creation == RoomCreation::Admins && !actor.role.is_admin() {
            return Err(CoreError::forbidden(
                "only admins may create rooms on this server",
            ));
        }
        let now = Utc::now().timestamp_millis();
        let row = RoomRow {
            id: Uuid::now_v7().to_string(),
            kind: RoomKind::Group.as_str().into(),
            name: Some(self.check_name(&new.name)?),
            topic: self.check_topic(new.topic.as_deref())?,
            visibility: new.visibility.as_str().into(),
            max_call_participants: self.check_call_size(new.max_call_participants)?,
            call_self_unmute: i64::from(new.call_self_unmute),
            created_by: Some(actor.user_id.to_string()),
            dm_key: None,
            created_at: now,
            updated_at: now,
            member_count: 0,
            last_seq: 0,
        };
        let owner = actor.user_id.to_string();
        let (row, seqs) = self
            .store
            .insert_room(&row, &[(&owner, MemberRole::Owner.as_str())])
            .await?;
        tracing::info!(room_id = %row.id, user_id = %owner, "room created");
        self.publish.sequenced(parse_id(&row.id)?, &seqs).await;
        view(row, Some(MemberRole::Owner))
    }

    /// The rooms the caller belongs to.
    pub async fn mine(&self, actor: &Actor, page: &PageRequest) -> Result<Page<RoomView>> {
        let rows = self
            .store
            .rooms_of_user(
                &actor.user_id.to_string(),
                page.after.as_deref(),
                page.fetch_limit(),
            )
            .await?;
        let mut views = Vec::with_capacity(rows.len());
        for (room, role, unread) in rows {
            let last = match self.store.last_message(&room.id).await? {
                Some(row) => hydrate(&self.store, vec![row]).await?.pop(),
                None => None,
            };
            let mut v = view(room, Some(role.parse()?))?;
            v.last_message = last;
            v.unread_count = Some(unread.max(0) as u64);
            views.push(v);
        }
        Ok(page.finish(views, |v| v.room.id.to_string()))
    }

    /// Each room the caller belongs to with its newest sequence number:
    /// where a connection's stream of the room stands.
    pub async fn cursors(&self, actor: &Actor) -> Result<Vec<(Uuid, u64)>> {
        self.store
            .room_seqs_of_user(&actor.user_id.to_string())
            .await?
            .into_iter()
            .map(|(id, seq)| Ok((parse_id(&id)?, seq.max(0) as u64)))
            .collect()
    }

    /// The server's public group rooms, by name, whose name contains `query`
    /// (ignoring case) when one is given.
    pub async fn directory(
        &self,
        actor: &Actor,
        query: Option<&str>,
        page: &PageRequest,
    ) -> Result<Page<RoomView>> {
        if let Some(q) = query {
            crate::text::refuse_nul("q", q)?;
        }
        let query = query.map(str::trim).filter(|q| !q.is_empty());
        if query.is_some_and(|q| q.chars().count() > MAX_ROOM_NAME_CHARS) {
            return Err(CoreError::validation(
                "q",
                format!("must be at most {MAX_ROOM_NAME_CHARS} characters"),
            ));
        }
        let after = match page.after.as_deref() {
            None => None,
            Some(key) => Some(key.rsplit_once('/').ok_or_else(|| {
                CoreError::validation("cursor", "is not a cursor this server issued")
            })?),
        };
        let rows = self
            .store
            .public_rooms(&actor.user_id.to_string(), query, after, page.fetch_limit())
            .await?;
        let mut listed = Vec::with_capacity(rows.len());
        for (room, role, key) in rows {
            let role = role.as_deref().map(str::parse).transpose()?;
            listed.push((view(room, role)?, key));
        }
        let page = page.finish(listed, |(v, key)| format!("{key}/{}", v.room.id));
        Ok(Page {
            items: page.items.into_iter().map(|(v, _)| v).collect(),
            next_cursor: page.next_cursor,
        })
    }

    pub async fn get(&self, actor: &Actor, room_id: Uuid) -> Result<RoomView> {
        let s = self.standing(actor, room_id).await?;
        view(s.room, s.role)
    }

    /// Changes settings: the owner or a server admin.
    pub async fn update(&self, actor: &Actor, room_id: Uuid, patch: RoomPatch) -> Result<RoomView> {
        let s = self.standing(actor, room_id).await?;
        s.require(
            Authority::Owner,
            "only the room's owner or an admin may change it",
        )?;
        let mut row = s.room.clone();
        if s.kind() == RoomKind::Dm && (patch.name.is_some() || patch.visibility.is_some()) {
            return Err(CoreError::validation(
                "name",
                "a direct message has no name and stays private",
            ));
        }
        if let Some(name) = &patch.name {
            row.name = Some(self.check_name(name)?);
        }
        if let Some(topic) = &patch.topic {
            row.topic = self.check_topic(topic.as_deref())?;
        }
        if let Some(v) = patch.visibility {
            row.visibility = v.as_str().into();
        }
        if let Some(n) = patch.max_call_participants {
            row.max_call_participants = self.check_call_size(n)?;
        }
        if let Some(allowed) = patch.call_self_unmute {
            row.call_self_unmute = i64::from(allowed);
        }
        row.updated_at = Utc::now().timestamp_millis();
        let (row, seqs) = self
            .store
            .update_room(&row, &actor.user_id.to_string())
            .await?
            .ok_or(CoreError::NotFound("room"))?;
        self.publish.sequenced(room_id, &seqs).await;
        view(row, s.role)
    }

    /// Deletes a room: the owner or a server admin.
    pub async fn delete(&self, actor: &Actor, room_id: Uuid) -> Result<()> {
        let s = self.standing(actor, room_id).await?;
        s.require(
            Authority::Owner,
            "only the room's owner or an admin may delete it",
        )?;
        self.store.delete_room(&room_id.to_string()).await?;
        self.publish
            .ephemeral(room_id, RoomEventBody::RoomDeleted {});
        tracing::info!(room_id = %room_id, actor = %actor.user_id, "room deleted");
        Ok(())
    }

    /// Joins a public group room; joining a room one is in changes nothing.
    pub async fn join(&self, actor: &Actor, room_id: Uuid) -> Result<RoomView> {
        let s = self.standing(actor, room_id).await?;
        if s.role.is_some() {
            return view(s.room, s.role);
        }
        if s.kind() == RoomKind::Dm || s.room.visibility != Visibility::Public.as_str() {
            // Admins see private rooms but join them like anyone else: by invite.
            return Err(CoreError::forbidden(
                "this room can be joined only by invite",
            ));
        }
        let id = room_id.to_string();
        let now = Utc::now().timestamp_millis();
        if let Some(seqs) = self
            .store
            .add_member(
                &id,
                &actor.user_id.to_string(),
                MemberRole::Member.as_str(),
                now,
            )
            .await?
        {
            self.publish.sequenced(room_id, &seqs).await;
        }
        self.get(actor, room_id).await
    }

    /// Leaves a group room. An owner who leaves hands the room on.
    pub async fn leave(&self, actor: &Actor, room_id: Uuid) -> Result<()> {
        let s = self.standing(actor, room_id).await?;
        if s.role.is_none() {
            return Err(CoreError::NotFound("membership"));
        }
        if s.kind() == RoomKind::Dm {
            return Err(CoreError::conflict(
                "dm_cannot_leave",
                "a direct message cannot be left",
            ));
        }
        let now = Utc::now().timestamp_millis();
        let seqs = self
            .store
            .remove_member(
                &room_id.to_string(),
                &actor.user_id.to_string(),
                Departure::Left,
                now,
            )
            .await?;
        self.publish
            .sequenced(room_id, &seqs.unwrap_or_default())
            .await;
        Ok(())
    }

    /// Members in join order.
    pub async fn members(
        &self,
        actor: &Actor,
        room_id: Uuid,
        page: &PageRequest,
    ) -> Result<Page<Member>> {
        self.standing(actor, room_id).await?;
        let after = match page.after.as_deref() {
            None => None,
            Some(key) => {
                let bad = || CoreError::validation("cursor", "is not a cursor this server issued");
                let (ms, user) = key.split_once('/').ok_or_else(bad)?;
                Some((ms.parse::<i64>().map_err(|_| bad())?, user.to_owned()))
            }
        };
        let rows = self
            .store
            .members(
                &room_id.to_string(),
                after.as_ref().map(|(ms, u)| (*ms, u.as_str())),
                page.fetch_limit(),
            )
            .await?;
        let members = rows.into_iter().map(member).collect::<Result<Vec<_>>>()?;
        Ok(page.finish(members, |m| {
            format!("{}/{}", m.joined_at.timestamp_millis(), m.user.id)
        }))
    }

    /// Adds a user to a group room: a moderator, the owner or a server admin.
    pub async fn add_member(&self, actor: &Actor, room_id: Uuid, user_id: Uuid) -> Result<Member> {
        let s = self.standing(actor, room_id).await?;
        s.members_can_change()?;
        s.require(
            Authority::Moderator,
            "only moderators and the owner may add members",
        )?;
        let user = self.store.user_by_id(&user_id.to_string()).await?;
        if user.as_ref().is_none_or(|u| u.disabled != 0) {
            return Err(CoreError::NotFound("user"));
        }
        let (rid, uid) = (room_id.to_string(), user_id.to_string());
        let seqs = self
            .store
            .add_member(
                &rid,
                &uid,
                MemberRole::Member.as_str(),
                Utc::now().timestamp_millis(),
            )
            .await?
            .ok_or_else(|| {
                CoreError::conflict("already_member", "this user is already a member")
            })?;
        self.publish.sequenced(room_id, &seqs).await;
        let row = self
            .store
            .member(&rid, &uid)
            .await?
            .ok_or(CoreError::NotFound("member"))?;
        member(row)
    }

    /// Removes another member: only someone who outranks them.
    pub async fn kick(&self, actor: &Actor, room_id: Uuid, user_id: Uuid) -> Result<()> {
        let s = self.standing(actor, room_id).await?;
        if user_id == actor.user_id {
            return Err(CoreError::validation(
                "user_id",
                "use /leave to leave a room",
            ));
        }
        s.members_can_change()?;
        let (rid, uid) = (room_id.to_string(), user_id.to_string());
        let target: MemberRole = self
            .store
            .member_role(&rid, &uid)
            .await?
            .ok_or(CoreError::NotFound("member"))?
            .parse()?;
        if s.authority() < Authority::Moderator || s.authority() <= Authority::from(target) {
            return Err(CoreError::forbidden(
                "you may remove only members below your own role",
            ));
        }
        let by = actor.user_id.to_string();
        let now = Utc::now().timestamp_millis();
        let seqs = self
            .store
            .remove_member(&rid, &uid, Departure::Kicked { by: &by }, now)
            .await?;
        self.publish
            .sequenced(room_id, &seqs.unwrap_or_default())
            .await;
        tracing::info!(room_id = %room_id, actor = %actor.user_id, target = %user_id, "member removed");
        Ok(())
    }

    /// Makes a member a moderator or back: the owner or a server admin.
    pub async fn set_member_role(
        &self,
        actor: &Actor,
        room_id: Uuid,
        user_id: Uuid,
        role: MemberRole,
    ) -> Result<Member> {
        let s = self.standing(actor, room_id).await?;
        s.require(
            Authority::Owner,
            "only the owner or an admin may change member roles",
        )?;
        if role == MemberRole::Owner {
            return Err(CoreError::validation("role", "must be moderator or member"));
        }
        let (rid, uid) = (room_id.to_string(), user_id.to_string());
        self.store
            .set_member_role(&rid, &uid, role.as_str())
            .await?
            .ok_or(CoreError::NotFound("member"))?;
        member(
            self.store
                .member(&rid, &uid)
                .await?
                .ok_or(CoreError::NotFound("member"))?,
        )
    }

    /// Creates an invite code: a moderator, the owner or a server admin.
    pub async fn create_invite(
        &self,
        actor: &Actor,
        room_id: Uuid,
        new: NewInvite,
    ) -> Result<Invite> {
        let s = self.standing(actor, room_id).await?;
        s.members_can_change()?;
        s.require(
            Authority::Moderator,
            "only moderators and the owner may create invites",
        )?;
        let ttl = new.expires_in.unwrap_or(self.config.default_invite_ttl);
        if ttl.is_zero() || ttl > self.config.max_invite_ttl {
            return Err(CoreError::validation(
                "expires_in_secs",
                format!(
                    "must be between 1 and {}",
                    self.config.max_invite_ttl.as_secs()
                ),
            ));
        }
        if let Some(n) = new.max_uses {
            if n == 0 || n > self.config.max_invite_uses {
                return Err(CoreError::validation(
                    "max_uses",
                    format!("must be between 1 and {}", self.config.max_invite_uses),
                ));
            }
        }
        let now = Utc::now().timestamp_millis();
        let row = InviteRow {
            code: random_token(9),
            room_id: room_id.to_string(),
            created_by: Some(actor.user_id.to_string()),
            created_at: now,
            expires_at: now + ttl.as_millis() as i64,
            max_uses: new.max_uses.map(i64::from),
            uses: 0,
        };
        self.store.insert_invite(&row).await?;
        invite(row)
    }

    /// Joins the room of an invite code.
    pub async fn accept_invite(&self, actor: &Actor, code: &str) -> Result<RoomView> {
        // No code this server issues holds NUL; refused before the look-up,
        // which PostgreSQL would fail on.
        if code.is_empty() || code.len() > 64 || crate::text::refuse_nul("code", code).is_err() {
            return Err(CoreError::NotFound("invite"));
        }
        if self.store.invite(code).await?.is_none() {
            return Err(CoreError::NotFound("invite"));
        }
        let (room_id, seqs) = self
            .store
            .redeem_invite(
                code,
                &actor.user_id.to_string(),
                Utc::now().timestamp_millis(),
            )
            .await?
            .ok_or_else(|| CoreError::Gone {
                code: "invite_expired",
                message: "this invite has expired or been used up".into(),
            })?;
        let room_id = parse_id(&room_id)?;
        self.publish.sequenced(room_id, &seqs).await;
        self.get(actor, room_id).await
    }

    /// The one DM room of the caller and `other`, created the first time.
    /// Returns whether it was created now.
    pub async fn open_dm(&self, actor: &Actor, other: Uuid) -> Result<(RoomView, bool)> {
        if other == actor.user_id {
            return Err(CoreError::validation(
                "user_id",
                "you cannot open a direct message with yourself",
            ));
        }
        let peer = self.store.user_by_id(&other.to_string()).await?;
        if peer.as_ref().is_none_or(|u| u.disabled != 0) {
            return Err(CoreError::NotFound("user"));
        }
        let (me, them) = (actor.user_id.to_string(), other.to_string());
        let key = if me < them {
            format!("{me}:{them}")
        } else {
            format!("{them}:{me}")
        };
        if let Some(row) = self.store.room_by_dm_key(&key).await? {
            return Ok((view(row, Some(MemberRole::Member))?, false));
        }
        let now = Utc::now().timestamp_millis();
        let row = RoomRow {
            id: Uuid::now_v7().to_string(),
            kind: RoomKind::Dm.as_str().into(),
            name: None,
            topic: None,
            visibility: Visibility::Private.as_str().into(),
            max_call_participants: None,
            call_self_unmute: 1,
            created_by: Some(me.clone()),
            dm_key: Some(key.clone()),
            created_at: now,
            updated_at: now,
            member_count: 0,
            last_seq: 0,
        };
        let member = MemberRole::Member.as_str();
        match self
            .store
            .insert_room(&row, &[(&me, member), (&them, member)])
            .await
        {
            Ok((row, seqs)) => {
                self.publish.sequenced(parse_id(&row.id)?, &seqs).await;
                Ok((view(row, Some(MemberRole::Member))?, true))
            }
            // Another request created it between our look-up and insert.
            Err(CoreError::Conflict {
                code: "dm_exists", ..
            }) => {
                let row = self
                    .store
                    .room_by_dm_key(&key)
                    .await?
                    .ok_or(CoreError::NotFound("room"))?;
                Ok((view(row, Some(MemberRole::Member))?, false))
            }
            Err(e) => Err(e),
        }
    }
}

fn view(r: RoomRow, my_role: Option<MemberRole>) -> Result<RoomView> {
    Ok(RoomView {
        room: room_from_row(r)?,
        my_role,
        last_message: None,
        unread_count: None,
    })
}

fn member(r: MemberRow) -> Result<Member> {
    Ok(Member {
        user: PublicUser {
            id: parse_id(&r.user_id)?,
            username: r.username,
            display_name: r.display_name,
            created_at: time(r.user_created_at),
        },
        role: r.role.parse()?,
        joined_at: time(r.joined_at),
        last_read_seq: r.last_read_seq.max(0) as u64,
    })
}

fn invite(r: InviteRow) -> Result<Invite> {
    Ok(Invite {
        code: r.code,
        room_id: parse_id(&r.room_id)?,
        created_by: r.created_by.as_deref().map(parse_id).transpose()?,
        created_at: time(r.created_at),
        expires_at: time(r.expires_at),
        max_uses: r.max_uses.map(|n| n as u32),
        uses: r.uses.max(0) as u32,
    })
}
