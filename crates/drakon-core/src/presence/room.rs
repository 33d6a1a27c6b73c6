//! One room's membership: the connections joined to it, and the members (users) they make.
//!
//! A room holds one entry per joined connection, keyed by its [`Place`] (node and connection), and counts each user
//! once however many entries they have: a user joins with their first connection and leaves with their last. Each
//! entry carries the user's public information and a small state the connection sets (`{"editing": true}`); the
//! member shows the state set most recently by any of their connections still joined, so when the tab that is
//! editing closes, what it set goes with it. Every operation says how the member changed as the others see it, or
//! that nothing did (a second tab, a state set again to what it was).
//!
//! The room knows nothing of sockets or nodes' liveness: callers apply operations in each node's order and drop a
//! node's entries when it dies.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use serde_json::{Value as Json, json};

use crate::hub::ConnId;
use crate::node::NodeId;

/// Where an entry comes from: one connection of one node.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Place {
    pub node: NodeId,
    pub conn: ConnId,
}

/// When a state was set: the node's clock (milliseconds since the Unix epoch) and its own count of changes, with
/// the node's id breaking ties between nodes. `Stamp::NEVER` is a connection that set no state of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, serde::Serialize, serde::Deserialize)]
pub struct Stamp {
    pub ms: u64,
    pub seq: u64,
}

impl Stamp {
    pub const NEVER: Stamp = Stamp { ms: 0, seq: 0 };
}

/// One joined connection.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// The member it counts for: a user's id, or an anonymous session's own id.
    pub user: Arc<str>,
    /// The user's public information, already cut down to the fields the route shows.
    pub info: Arc<Json>,
    pub state: Arc<Json>,
    /// When `state` was set; [`Stamp::NEVER`] when the connection set none.
    pub stamp: Stamp,
    /// When the entry joined, which picks the `info` a member shows when their connections disagree.
    pub joined: Stamp,
}

/// A member as the others see it.
#[derive(Debug, Clone, PartialEq)]
pub struct Member {
    pub id: Arc<str>,
    pub info: Arc<Json>,
    pub state: Arc<Json>,
}

impl Member {
    pub fn to_json(&self) -> Json {
        json!({"id": &*self.id, "info": &*self.info, "state": &*self.state})
    }
}

/// How one operation changed a member.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// The user's first connection joined.
    Joined(Member),
    /// The user's info or state as shown changed.
    Updated(Member),
    /// The user's last connection left.
    Left(Arc<str>),
}

/// The entries of one room, and which users they make.
#[derive(Debug, Default)]
pub struct Room {
    entries: HashMap<Place, Entry>,
    /// Each member's places, by user id: ordered, so that member lists page by id.
    members: BTreeMap<Arc<str>, Vec<Place>>,
}

impl Room {
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// How many members (users, each counted once).
    pub fn member_count(&self) -> usize {
        self.members.len()
    }

    /// How many joined connections.
    pub fn entry_count(&self) -> usize {
        self.entries.len()
    }

    pub fn entry(&self, at: &Place) -> Option<&Entry> {
        self.entries.get(at)
    }

    /// The member `user` as shown: the info of their latest joined connection, the state set most recently.
    pub fn member(&self, user: &str) -> Option<Member> {
        let places = self.members.get(user)?;
        let entries = places.iter().filter_map(|p| self.entries.get(p).map(|e| (p, e)));
        let by_joined = entries.clone().max_by(|(pa, a), (pb, b)| (a.joined, &pa.node).cmp(&(b.joined, &pb.node)))?;
        let by_state = entries.max_by(|(pa, a), (pb, b)| (a.stamp, &pa.node).cmp(&(b.stamp, &pb.node)))?;
        Some(Member { id: by_joined.1.user.clone(), info: by_joined.1.info.clone(), state: by_state.1.state.clone() })
    }

    /// Members in id order, starting after `after`, at most `limit` of them.
    pub fn members(&self, after: Option<&str>, limit: usize) -> Vec<Member> {
        let range = match after {
            Some(after) => self.members.range::<str, _>((std::ops::Bound::Excluded(after), std::ops::Bound::Unbounded)),
            None => self.members.range::<str, _>(..),
        };
        range.take(limit).filter_map(|(id, _)| self.member(id)).collect()
    }

    /// Adds the connection at `at`; a connection that is there already has its entry replaced (a rejoin). A
    /// connection's user is fixed while it is joined (sessions may not change user while they hold memberships).
    pub fn join(&mut self, at: Place, entry: Entry) -> Option<Change> {
        let user = entry.user.clone();
        let was = self.member(&user);
        self.take(&at);
        self.members.entry(user.clone()).or_default().push(at.clone());
        self.entries.insert(at, entry);
        Self::compare(was, self.member(&user), &user)
    }

    /// Sets the state of the connection at `at`; `None` when it is not joined or nothing shows differently.
    pub fn set(&mut self, at: &Place, state: Arc<Json>, stamp: Stamp) -> Option<Change> {
        let user = self.entries.get(at)?.user.clone();
        let was = self.member(&user);
        let entry = self.entries.get_mut(at)?;
        entry.state = state;
        entry.stamp = stamp;
        Self::compare(was, self.member(&user), &user)
    }

    /// Removes the connection at `at`.
    pub fn leave(&mut self, at: &Place) -> Option<Change> {
        let user = self.entries.get(at)?.user.clone();
        let was = self.member(&user);
        self.take(at);
        Self::compare(was, self.member(&user), &user)
    }

    /// Removes every entry of `node` (it died), with the change each member saw.
    pub fn drop_node(&mut self, node: &NodeId) -> Vec<Change> {
        self.replace_node(node, Vec::new())
    }

    /// Makes `node`'s entries exactly `entries` (what it said it holds), with the net change each member saw: a
    /// user whose entry moved from one connection to another is no news.
    pub fn replace_node(&mut self, node: &NodeId, entries: Vec<(ConnId, Entry)>) -> Vec<Change> {
        let old: Vec<Place> = self.entries.keys().filter(|p| &p.node == node).cloned().collect();
        let mut users: Vec<Arc<str>> = old.iter().filter_map(|p| self.entries.get(p).map(|e| e.user.clone())).collect();
        users.extend(entries.iter().map(|(_, e)| e.user.clone()));
        users.sort();
        users.dedup();
        let was: Vec<Option<Member>> = users.iter().map(|u| self.member(u)).collect();
        for at in &old {
            self.take(at);
        }
        for (conn, entry) in entries {
            let at = Place { node: node.clone(), conn };
            self.members.entry(entry.user.clone()).or_default().push(at.clone());
            self.entries.insert(at, entry);
        }
        users.iter().zip(was).filter_map(|(user, was)| Self::compare(was, self.member(user), user)).collect()
    }

    /// The entries of `node`.
    pub fn entries_of<'a>(&'a self, node: &'a NodeId) -> impl Iterator<Item = (ConnId, &'a Entry)> + 'a {
        self.entries.iter().filter(move |(p, _)| &p.node == node).map(|(p, e)| (p.conn, e))
    }

    /// Removes the entry at `at` without telling what changed.
    fn take(&mut self, at: &Place) -> Option<Entry> {
        let entry = self.entries.remove(at)?;
        if let Some(places) = self.members.get_mut(&entry.user) {
            places.retain(|p| p != at);
            if places.is_empty() {
                self.members.remove(&entry.user);
            }
        }
        Some(entry)
    }

    fn compare(was: Option<Member>, is: Option<Member>, user: &Arc<str>) -> Option<Change> {
        match (was, is) {
            (None, Some(is)) => Some(Change::Joined(is)),
            (Some(_), None) => Some(Change::Left(user.clone())),
            (Some(was), Some(is)) if was != is => Some(Change::Updated(is)),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(node: &str, conn: ConnId) -> Place {
        Place { node: NodeId::new(node), conn }
    }

    fn entry(user: &str, joined: u64) -> Entry {
        Entry {
            user: Arc::from(user),
            info: Arc::new(json!({"name": user})),
            state: Arc::new(json!({})),
            stamp: Stamp::NEVER,
            joined: Stamp { ms: joined, seq: 0 },
        }
    }

    /// One step of a table: what happens, and the change the others must see (`-` for none).
    enum Op {
        Join(&'static str, ConnId, &'static str),
        Set(&'static str, ConnId, Json, u64),
        Leave(&'static str, ConnId),
        NodeDies(&'static str),
    }

    fn shown(change: &Change) -> String {
        match change {
            Change::Joined(m) => format!("joined {} {}", m.id, m.state),
            Change::Updated(m) => format!("updated {} {}", m.id, m.state),
            Change::Left(id) => format!("left {id}"),
        }
    }

    fn run(table: &[(Op, &[&str])]) -> Room {
        let mut room = Room::default();
        let mut clock = 0;
        for (step, (op, expected)) in table.iter().enumerate() {
            clock += 1;
            let changes: Vec<Change> = match op {
                Op::Join(node, conn, user) => room.join(at(node, *conn), entry(user, clock)).into_iter().collect(),
                Op::Set(node, conn, state, ms) => {
                    room.set(&at(node, *conn), Arc::new(state.clone()), Stamp { ms: *ms, seq: 0 }).into_iter().collect()
                }
                Op::Leave(node, conn) => room.leave(&at(node, *conn)).into_iter().collect(),
                Op::NodeDies(node) => room.drop_node(&NodeId::new(*node)),
            };
            let mut got: Vec<String> = changes.iter().map(shown).collect();
            got.sort();
            assert_eq!(got, *expected, "step {step}");
        }
        room
    }

    #[test]
    fn a_user_is_one_member_however_many_tabs_and_leaves_with_the_last() {
        let room = run(&[
            (Op::Join("a", 1, "bob"), &["joined bob {}"]),
            (Op::Join("a", 2, "bob"), &[]),
            (Op::Join("b", 1, "bob"), &[]),
            (Op::Join("a", 3, "alice"), &["joined alice {}"]),
            (Op::Leave("a", 1), &[]),
            (Op::Leave("a", 1), &[]),
            (Op::Leave("b", 1), &[]),
            (Op::Leave("a", 2), &["left bob"]),
        ]);
        assert_eq!((room.member_count(), room.entry_count()), (1, 1));
        assert_eq!(room.members(None, 10)[0].id.as_ref(), "alice");
    }

    #[test]
    fn the_state_shown_is_the_latest_set_by_a_connection_still_joined() {
        run(&[
            (Op::Join("a", 1, "bob"), &["joined bob {}"]),
            (Op::Join("a", 2, "bob"), &[]),
            (Op::Set("a", 1, json!({"editing": 7}), 10), &["updated bob {\"editing\":7}"]),
            // Another tab with no state of its own does not hide it; one that sets the same state changes nothing.
            (Op::Join("a", 3, "bob"), &[]),
            (Op::Set("a", 2, json!({"editing": 7}), 11), &[]),
            (Op::Set("a", 2, json!({"editing": 8}), 12), &["updated bob {\"editing\":8}"]),
            // The later tab closes: the earlier one's state shows again.
            (Op::Leave("a", 2), &["updated bob {\"editing\":7}"]),
            (Op::Leave("a", 1), &["updated bob {}"]),
            // Setting a connection that is not joined does nothing.
            (Op::Set("a", 9, json!({"editing": 1}), 13), &[]),
        ]);
    }

    #[test]
    fn states_from_several_nodes_order_by_time_then_node() {
        run(&[
            (Op::Join("a", 1, "bob"), &["joined bob {}"]),
            (Op::Join("b", 1, "bob"), &[]),
            (Op::Set("b", 1, json!({"n": "b"}), 20), &["updated bob {\"n\":\"b\"}"]),
            // Set later by the clock of node a, but stamped earlier: the later stamp keeps showing.
            (Op::Set("a", 1, json!({"n": "a"}), 19), &[]),
            // At the same time, node b's id breaks the tie; later, a's state shows.
            (Op::Set("a", 1, json!({"n": "a"}), 20), &[]),
            (Op::Set("a", 1, json!({"n": "a"}), 21), &["updated bob {\"n\":\"a\"}"]),
            (Op::NodeDies("a"), &["updated bob {\"n\":\"b\"}"]),
        ]);
    }

    #[test]
    fn a_dead_node_takes_its_members_with_it() {
        let room = run(&[
            (Op::Join("a", 1, "bob"), &["joined bob {}"]),
            (Op::Join("a", 2, "carol"), &["joined carol {}"]),
            (Op::Join("b", 1, "carol"), &[]),
            (Op::Join("b", 2, "dan"), &["joined dan {}"]),
            (Op::NodeDies("a"), &["left bob"]),
            (Op::NodeDies("a"), &[]),
            (Op::NodeDies("b"), &["left carol", "left dan"]),
        ]);
        assert!(room.is_empty());
    }

    #[test]
    fn a_rejoin_replaces_the_entry_and_shows_only_what_changed() {
        let mut room = Room::default();
        assert!(room.join(at("a", 1), entry("bob", 1)).is_some());
        let mut again = entry("bob", 2);
        again.info = Arc::new(json!({"name": "Robert"}));
        let change = room.join(at("a", 1), again).expect("the info shows differently");
        assert_eq!(shown(&change), "updated bob {}");
        assert_eq!(room.member("bob").unwrap().info, Arc::new(json!({"name": "Robert"})));
        assert_eq!(room.join(at("a", 1), entry("bob", 2)).map(|c| shown(&c)), Some("updated bob {}".into()));
        assert_eq!(room.entry_count(), 1);
    }

    #[test]
    fn a_node_s_entries_replaced_at_once_show_only_the_net_change() {
        let mut room = Room::default();
        room.join(at("a", 1), entry("bob", 1));
        room.join(at("a", 2), entry("carol", 1));
        room.join(at("b", 1), entry("dan", 1));
        let mut editing = entry("bob", 2);
        editing.state = Arc::new(json!({"editing": 1}));
        editing.stamp = Stamp { ms: 2, seq: 0 };
        // Bob moved to another connection and edits; Carol left; Erin came; Dan, on node b, is untouched.
        let changes = room.replace_node(&NodeId::new("a"), vec![(5, editing), (6, entry("erin", 2))]);
        let mut got: Vec<String> = changes.iter().map(shown).collect();
        got.sort();
        assert_eq!(got, ["joined erin {}", "left carol", "updated bob {\"editing\":1}"]);
        assert_eq!((room.member_count(), room.entry_count()), (3, 3));
        assert_eq!(room.entries_of(&NodeId::new("a")).count(), 2);
        assert!(room.replace_node(&NodeId::new("b"), vec![(1, entry("dan", 1))]).is_empty(), "the same again");
    }

    #[test]
    fn members_page_in_id_order() {
        let mut room = Room::default();
        for (conn, user) in ["dan", "alice", "carol", "bob"].into_iter().enumerate() {
            room.join(at("a", conn as ConnId), entry(user, 1));
        }
        let ids = |members: Vec<Member>| members.iter().map(|m| m.id.to_string()).collect::<Vec<_>>();
        assert_eq!(ids(room.members(None, 2)), ["alice", "bob"]);
        assert_eq!(ids(room.members(Some("bob"), 2)), ["carol", "dan"]);
        assert_eq!(ids(room.members(Some("dan"), 2)), Vec::<String>::new());
        assert_eq!(room.members(Some("b"), 1)[0].to_json(), json!({"id": "bob", "info": {"name": "bob"}, "state": {}}));
    }
}
