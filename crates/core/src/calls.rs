//! Calls of a room: who may join and how many, the record of each call
//! (start, end, peak size, who joined and left when), the system messages
//! that mark calls in the chat, and the `call.state` events room members see.
//!
//! The live side of a call (participants' connections, topology, media) is
//! the gateway's; this service is told what happens and keeps the record.

use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::error::{CoreError, Result};
use crate::events::{Publisher, RoomEventBody};
use crate::model::{Actor, CallStatus, MemberRole, Page, Role};
use crate::pagination::PageRequest;
use crate::rooms::Authority;
use crate::store::convert::{parse_id, time};
use crate::store::{CallParticipantRow, CallRow, Store};

/// Limits of calls.
#[derive(Debug, Clone)]
pub struct CallsConfig {
    /// The most people in one call of a room that sets no `max_call_participants`.
    pub default_max_participants: u32,
}

impl Default for CallsConfig {
    fn default() -> Self {
        CallsConfig {
            default_max_participants: 25,
        }
    }
}

/// One participant's time in a call.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct CallParticipant {
    pub user_id: Option<Uuid>,
    pub joined_at: DateTime<Utc>,
    pub left_at: Option<DateTime<Utc>>,
}

/// The record of one call.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct CallRecord {
    pub id: Uuid,
    pub room_id: Uuid,
    pub started_by: Option<Uuid>,
    pub started_at: DateTime<Utc>,
    /// Absent while the call goes on.
    pub ended_at: Option<DateTime<Utc>>,
    /// The most people in the call at once.
    pub peak_participants: u32,
    /// Everyone who joined, in order; someone who joined twice appears twice.
    pub participants: Vec<CallParticipant>,
}

/// What a joiner needs to know before the gateway admits it.
#[derive(Debug, Clone, Copy)]
pub struct Admission {
    /// The most participants the room's calls may have.
    pub max_participants: u32,
}

/// What the gateway needs to carry out a moderator's action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Moderation {
    /// Whether the room lets a participant a moderator muted unmute itself.
    pub self_unmute: bool,
}

/// The calls service.
#[derive(Clone)]
pub struct Calls {
    store: Store,
    publish: Publisher,
    config: CallsConfig,
    /// The largest `max_call_participants` any room may set.
    limit: u32,
}

impl Calls {
    pub fn new(store: Store, publish: Publisher, config: CallsConfig, limit: u32) -> Self {
        Calls {
            store,
            publish,
            config,
            limit,
        }
    }

    /// Checks that the actor may join the room's call (members only) and
    /// returns the room's participant limit.
    pub async fn admit(&self, actor: &Actor, room_id: Uuid) -> Result<Admission> {
        let room = room_id.to_string();
        self.store
            .member_role(&room, &actor.user_id.to_string())
            .await?
            .ok_or(CoreError::NotFound("room"))?;
        let row = self
            .store
            .room(&room)
            .await?
            .ok_or(CoreError::NotFound("room"))?;
        let max = row
            .max_call_participants
            .map(|n| n.clamp(2, i64::from(self.limit)) as u32)
            .unwrap_or(self.config.default_max_participants)
            .min(self.limit);
        Ok(Admission {
            max_participants: max,
        })
    }

    /// Checks that `actor` may act as a moderator on `target` in the room's
    /// call (mute, stop a share, remove): the actor is the room's owner, a
    /// moderator of it or a server admin, and has more say in the room than
    /// the target, so a moderator cannot act on the owner, nor one server
    /// admin on another. Refused with `forbidden`.
    pub async fn moderate(&self, actor: &Actor, room_id: Uuid, target: Uuid) -> Result<Moderation> {
        let room = room_id.to_string();
        let row = self
            .store
            .room(&room)
            .await?
            .ok_or(CoreError::NotFound("room"))?;
        let say = |role: Option<String>, admin: bool| -> Result<Authority> {
            let role = role.map(|r| r.parse::<MemberRole>()).transpose()?;
            Ok(Authority::of(role, admin))
        };
        let mine = say(
            self.store
                .member_role(&room, &actor.user_id.to_string())
                .await?,
            actor.role.is_admin(),
        )?;
        if mine < Authority::Moderator {
            return Err(CoreError::forbidden(
                "only the room's owner, its moderators and admins may moderate its calls",
            ));
        }
        let target_id = target.to_string();
        let target_admin = match self.store.user_by_id(&target_id).await? {
            Some(u) => u.role.parse::<Role>()?.is_admin(),
            None => false,
        };
        let theirs = say(
            self.store.member_role(&room, &target_id).await?,
            target_admin,
        )?;
        if theirs >= mine {
            return Err(CoreError::forbidden(
                "a moderator may act only on participants with less say in the room",
            ));
        }
        Ok(Moderation {
            self_unmute: row.call_self_unmute != 0,
        })
    }

    /// The room's call, started now by `user_id` if none is going on.
    /// Returns its id and whether it started now.
    pub async fn start(&self, room_id: Uuid, user_id: Uuid) -> Result<(Uuid, bool)> {
        let new_id = Uuid::now_v7();
        let (call, started, seqs) = self
            .store
            .start_call(
                &room_id.to_string(),
                &user_id.to_string(),
                &new_id.to_string(),
                now(),
            )
            .await?;
        self.publish.sequenced(room_id, &seqs).await;
        Ok((parse_id(&call.id)?, started))
    }

    /// Records a joining and tells the room the call's size.
    pub async fn joined(
        &self,
        room_id: Uuid,
        call_id: Uuid,
        participant: Uuid,
        user_id: Uuid,
        count: u32,
    ) -> Result<()> {
        self.store
            .add_call_participant(
                &call_id.to_string(),
                &participant.to_string(),
                &user_id.to_string(),
                i64::from(count),
                now(),
            )
            .await?;
        self.announce(room_id, call_id, CallStatus::Active, count);
        Ok(())
    }

    /// Records a leaving and tells the room the call's size.
    pub async fn left(
        &self,
        room_id: Uuid,
        call_id: Uuid,
        participant: Uuid,
        count: u32,
    ) -> Result<()> {
        self.store
            .remove_call_participant(&call_id.to_string(), &participant.to_string(), now())
            .await?;
        self.announce(room_id, call_id, CallStatus::Active, count);
        Ok(())
    }

    /// Ends a call: the record is closed, the chat says so, the room hears `ended`.
    pub async fn end(&self, call_id: Uuid) -> Result<()> {
        if let Some((call, seqs)) = self.store.end_call(&call_id.to_string(), now()).await? {
            let room_id = parse_id(&call.room_id)?;
            self.publish.sequenced(room_id, &seqs).await;
            self.announce(room_id, call_id, CallStatus::Ended, 0);
        }
        Ok(())
    }

    /// Ends every call the store still marks as going on: after a restart of
    /// a single node nobody is in them any more.
    pub async fn end_abandoned(&self) -> Result<usize> {
        let calls = self.store.active_calls().await?;
        for call in &calls {
            self.end(parse_id(&call.id)?).await?;
        }
        Ok(calls.len())
    }

    fn announce(&self, room_id: Uuid, call_id: Uuid, state: CallStatus, participants: u32) {
        self.publish.ephemeral(
            room_id,
            RoomEventBody::CallState {
                call_id,
                state,
                participants,
            },
        );
    }

    /// A room's calls, newest first (members only).
    pub async fn list(
        &self,
        actor: &Actor,
        room_id: Uuid,
        page: &PageRequest,
    ) -> Result<Page<CallRecord>> {
        let room = room_id.to_string();
        self.store
            .member_role(&room, &actor.user_id.to_string())
            .await?
            .ok_or(CoreError::NotFound("room"))?;
        let rows = self
            .store
            .calls_of_room(&room, page.after.as_deref(), page.fetch_limit())
            .await?;
        let ids: Vec<String> = rows.iter().map(|r| r.id.clone()).collect();
        let people = self.store.call_participants(&ids).await?;
        let records = rows
            .into_iter()
            .map(|r| record(r, &people))
            .collect::<Result<Vec<_>>>()?;
        Ok(page.finish(records, |c| c.id.to_string()))
    }
}

fn record(r: CallRow, people: &[CallParticipantRow]) -> Result<CallRecord> {
    let participants = people
        .iter()
        .filter(|p| p.call_id == r.id)
        .map(|p| {
            Ok(CallParticipant {
                user_id: p.user_id.as_deref().map(parse_id).transpose()?,
                joined_at: time(p.joined_at),
                left_at: p.left_at.map(time),
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(CallRecord {
        id: parse_id(&r.id)?,
        room_id: parse_id(&r.room_id)?,
        started_by: r.started_by.as_deref().map(parse_id).transpose()?,
        started_at: time(r.started_at),
        ended_at: r.ended_at.map(time),
        peak_participants: r.peak_participants.max(0) as u32,
        participants,
    })
}

fn now() -> i64 {
    Utc::now().timestamp_millis()
}
