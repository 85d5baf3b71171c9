// Engine: what a storage backend implements. Rows or keys, the indexes the
// chat rules look things up by, one write transaction per batch, a savepoint
// per write, the head (the sequence counter). No chat rule lives here: which
// records and events a write changes, what it checks first and which status it
// answers are written once, in storage/chat_rules.cc, over this interface.
// docs/backend-authors.md walks through writing an engine.
//
// Engine interface version 2 (2 added the maintenance functions: listings,
// copying records in, wiping, the serving lock, backups). Like Store, the interface is append-only:
// a later version adds virtual functions with default bodies. A write operation added to
// write_ops.h is a new rule in chat_rules.cc; when it needs something engines do not offer yet, the
// new engine function's default body answers Invalid ("this engine cannot …"), so an engine written
// before keeps compiling and refuses only that operation, saying why.
//
// Status conventions, for every function below:
//  - a getter answers NotFound when there is no such record; that is data,
//    not a failure;
//  - an Insert answers Conflict when its key (id, token hash) is already
//    stored, and changes nothing then;
//  - Invalid when a key cannot be stored at all (for example longer than the
//    engine's keys may be);
//  - any other non-OK status fails the whole batch.
//
// Thread-safety: Engine's own functions may be called from any thread
// concurrently. A WriteTxn is used by one thread at a time, and at most one
// WriteTxn of an Engine is open at once (the chat rules serialize batches).
// Ownership: the caller owns the Engine and each WriteTxn; a WriteTxn must be
// destroyed before its Engine.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "storage/commit_signal.h"
#include "storage/status.h"
#include "storage/store.h"
#include "storage/types.h"

namespace quire::storage {

inline constexpr int kEngineInterfaceVersion = 2;

// What a sender's idempotency key refers to: the first message sent with it.
struct IdempotencyKey {
  std::string sender;
  std::string key;

  bool empty() const { return sender.empty() && key.empty(); }
};

struct IdempotencyRecord {
  std::string sender;
  std::string key;
  std::string message_id;
  std::string conversation;
  Micros at = 0;          // the message's time
  Micros created_at = 0;  // when the record was made (purged after a while)
};

// A record as it was and as it is to be: an engine may write only what
// changed and move only the index entries whose keys changed.
template <typename Record>
struct Change {
  Record before;
  Record after;
};

// Reads of records and of the history inside one transaction: a short read
// transaction of its own (Engine::BeginRead), which sees whole batches only,
// or the batch's write transaction (WriteTxn::records).
class RecordReader {
 public:
  virtual ~RecordReader() = default;

  virtual Status GetHead(Head* out) = 0;
  // Appends to *out the retained events with after < seq <= upto, in
  // sequence order, at most `limit` of them (limit > 0, upto > after).
  virtual Status ReadEvents(std::int64_t after, std::int64_t upto, std::size_t limit,
                            std::vector<Event>* out) = 0;
  virtual Status HasUsers(bool* out) = 0;
  virtual Status GetUser(const std::string& id, User* out) = 0;
  virtual Status FindUserByCanonicalName(const std::string& canonical, User* out) = 0;
  virtual Status FindSession(const std::string& token_hash, Session* out) = 0;
  virtual Status GetInvitation(const std::string& id, Invitation* out) = 0;
  virtual Status GetConversation(const std::string& id, Conversation* out) = 0;
  virtual Status GetMessage(const std::string& id, Message* out) = 0;

  // ---- Listings (version 2), for quire migrate and quire check ----
  // Each appends to *out at most `limit` records (limit > 0) whose key comes
  // after `after` in the engine's own order of keys, in that order; "" (or
  // an empty IdempotencyKey) starts from the first. Paging passes the key of
  // the last record of the previous page. The order need not be the same in
  // two engines. Deleted records not yet purged are listed too. The
  // defaults answer Invalid: such an engine cannot be copied or checked.
  virtual Status ListUsers(const std::string& after, std::size_t limit, std::vector<User>* out);
  // By token_hash.
  virtual Status ListSessions(const std::string& after, std::size_t limit,
                              std::vector<Session>* out);
  virtual Status ListInvitations(const std::string& after, std::size_t limit,
                                 std::vector<Invitation>* out);
  virtual Status ListConversations(const std::string& after, std::size_t limit,
                                   std::vector<Conversation>* out);
  virtual Status ListMessages(const std::string& after, std::size_t limit,
                              std::vector<Message>* out);
  // By (sender, key).
  virtual Status ListIdempotency(const IdempotencyKey& after, std::size_t limit,
                                 std::vector<IdempotencyRecord>* out);
};

// What a migration or a restore writes into an empty store, as stored
// elsewhere: no rule applies, nothing is checked, no sequence is taken.
// Parents come before children across batches (users, conversations,
// messages, events, idempotency records, sessions, invitations).
struct RecordBatch {
  std::vector<User> users;
  std::vector<Conversation> conversations;
  std::vector<Message> messages;
  std::vector<Event> events;  // in sequence order, above every stored one
  std::vector<IdempotencyRecord> idempotency;
  std::vector<Session> sessions;
  std::vector<Invitation> invitations;

  std::size_t size() const {
    return users.size() + conversations.size() + messages.size() + events.size() +
           idempotency.size() + sessions.size() + invitations.size();
  }
};

// The write transaction of one batch. Nothing of it is visible to readers
// before Commit returns OK; destroying it uncommitted rolls everything back.
class WriteTxn {
 public:
  virtual ~WriteTxn() = default;

  // The reads, inside this transaction: they see its own writes.
  virtual RecordReader& records() = 0;

  // ---- Savepoints: at most one open at a time ----
  virtual Status Savepoint() = 0;
  virtual Status ReleaseSavepoint() = 0;
  // Undoes everything since Savepoint and closes it.
  virtual Status RollbackToSavepoint() = 0;

  // Makes the transaction durable: when this returns OK, the batch survives
  // a process kill (and power loss, where capabilities say so).
  virtual Status Commit() = 0;

  // ---- Lookups only writes need ----

  // The live (not deleted) conversation whose canonical name is `canonical`.
  virtual Status FindLiveConversationByName(const std::string& canonical, Conversation* out) = 0;
  virtual Status GetIdempotency(const std::string& sender, const std::string& key,
                                IdempotencyRecord* out) = 0;
  // Ids of the conversation's live messages by (at, id), at most `limit`.
  virtual Status ListLiveMessagesOf(const std::string& conversation, std::size_t limit,
                                    std::vector<std::string>* ids) = 0;
  // Ids of live messages with at < `before`, by (at, id).
  virtual Status ListLiveMessagesSentBefore(Micros before, std::vector<std::string>* ids) = 0;
  // Ids of live conversations with last_activity < `before`, by (last_activity, id).
  virtual Status ListLiveConversationsIdleBefore(Micros before, std::vector<std::string>* ids) = 0;
  // Ids of messages / conversations with deleted_at < `before`, in any order.
  virtual Status ListMessagesDeletedBefore(Micros before, std::vector<std::string>* ids) = 0;
  virtual Status ListConversationsDeletedBefore(Micros before, std::vector<std::string>* ids) = 0;
  // Ids of every message of the conversation, deleted or not, in any order.
  virtual Status ListMessagesOf(const std::string& conversation, std::vector<std::string>* ids) = 0;

  // ---- Records ----
  virtual Status InsertUser(const User& user) = 0;
  virtual Status UpdateUser(const Change<User>& change) = 0;
  virtual Status InsertSession(const Session& session) = 0;
  virtual Status UpdateSession(const Change<Session>& change) = 0;
  virtual Status DeleteSession(const Session& session) = 0;
  virtual Status DeleteSessionsOfUser(const std::string& user_id) = 0;
  virtual Status InsertInvitation(const Invitation& invitation) = 0;
  virtual Status UpdateInvitation(const Change<Invitation>& change) = 0;
  virtual Status InsertConversation(const Conversation& conversation) = 0;
  virtual Status UpdateConversation(const Change<Conversation>& change) = 0;
  virtual Status InsertMessage(const Message& message) = 0;
  virtual Status UpdateMessage(const Change<Message>& change) = 0;
  // Inserts, or replaces the record of the same (sender, key).
  virtual Status PutIdempotency(const IdempotencyRecord& record) = 0;

  // ---- History ----

  // Appends `event`; its seq is above every stored one. Called after the
  // record the event is about was inserted or updated.
  virtual Status AppendEvent(const Event& event) = 0;
  // Sets text to "" and deleted_at to `at` on the events of `entity` of `kind`.
  virtual Status TombstoneEvents(const std::string& entity, EventKind kind, Micros at) = 0;
  // Removes every event of `entity`, adding to *count how many and raising
  // *highest to the highest sequence removed. Called before the entity's
  // record is removed.
  virtual Status RemoveEventsOf(const std::string& entity, std::int64_t* count,
                                std::int64_t* highest) = 0;
  virtual Status RemoveMessage(const std::string& id) = 0;
  virtual Status RemoveConversation(const std::string& id) = 0;
  virtual Status RemoveSessionsUsedBefore(Micros before) = 0;
  virtual Status RemoveInvitationsIssuedBefore(Micros before) = 0;
  virtual Status RemoveIdempotencyMadeBefore(Micros before) = 0;

  // Stores the head; called once per batch, before Commit, when it changed.
  virtual Status SetHead(const Head& head) = 0;

  // ---- Coarser forms, for engines where a round trip is what costs ----
  // The defaults call the finer functions above; an engine may override them
  // to do the same in fewer round trips. They never decide anything.

  // out[i] is the conversation ids[i], or nullopt when there is none.
  virtual Status GetConversations(std::span<const std::string> ids,
                                  std::vector<std::optional<Conversation>>* out);
  // Removes the messages `ids` and every event of theirs: RemoveEventsOf
  // and RemoveMessage for each, with the same tallies.
  virtual Status RemoveMessagesWithEvents(std::span<const std::string> ids, std::int64_t* count,
                                          std::int64_t* highest);
  // The writes of a run of sends the rules accepted: messages[i] with its
  // sent event events[i], in order, then the conversations' new activity.
  virtual Status WriteSends(std::span<const Message> messages, std::span<const Event> events,
                            std::span<const Change<Conversation>> conversations);

  // ---- Maintenance (version 2): quire migrate, restore and check ----

  // Stores the records and events as they are (see RecordBatch), each with
  // its Insert…, PutIdempotency or AppendEvent by default; an engine may do
  // it in fewer round trips. Conflict when a key is already stored.
  virtual Status InsertRecords(const RecordBatch& batch);
  // Removes every record and event and sets the head to Head{}: the store
  // is as new. The default answers Invalid.
  virtual Status RemoveEverything();
};

// Who opens an engine: a server, which shares the store with other servers
// of a multi-process engine; a maintenance command (migrate, restore,
// check), which must have it alone; or a backup, which only reads, beside
// running servers.
enum class EngineUse {
  kServe,
  kMaintain,
  kBackup,
};

// Tells the chat rules how to drive an engine.
struct EngineTraits {
  // True: every write of a batch runs in a savepoint of its own. False: the
  // rules run a batch without savepoints first, taking runs of sends
  // together (GetConversations once, WriteSends once), and only when an
  // engine call refused one write (a stored id) run it again with a
  // savepoint per write. False is faster wherever a savepoint is not free: a
  // round trip (PostgreSQL), the page copies of a nested transaction (LMDB),
  // two statements and the conversation's row rewritten per send (SQLite);
  // all three engines here say false. True, the default, asks the least of
  // an engine: it never sees a batch again.
  bool cheap_savepoints = true;
};

class Engine {
 public:
  virtual ~Engine() = default;
  Engine() = default;
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  virtual int engine_interface_version() const { return kEngineInterfaceVersion; }
  virtual Capabilities capabilities() const = 0;
  virtual EngineTraits traits() const { return {}; }

  // Opens the write transaction of a batch. For engines that several
  // processes write, this also takes the lock that orders their batches
  // (held until the transaction ends), before the head is read.
  virtual Status BeginWrite(std::unique_ptr<WriteTxn>* out) = 0;

  // A batch failed with `failed` and its transaction is gone. Returns true
  // when the engine fixed the cause and the batch should run again (LMDB
  // grows its map); the default never retries.
  virtual bool PrepareRetry(const Status& failed);

  // Opens a short read transaction; the caller ends it by destroying the
  // reader, soon: a writer may not wait for it, nor may it hold old
  // versions for long.
  virtual Status BeginRead(std::unique_ptr<RecordReader>* out) = 0;

  // Commit notification that reaches other processes (multi-process
  // engines); nullptr, the default, when this process's commits are all
  // there are. The engine owns it and notifies it on commits it learns of.
  virtual CommitSignal* ExternalCommits() { return nullptr; }

  // ---- Maintenance (version 2) ----

  // Takes the lock that keeps servers and maintenance commands apart, held
  // until the engine is destroyed: shared for kServe, exclusive for
  // kMaintain, never waiting; kBackup must be let in beside servers (and may
  // keep maintenance commands out). Unavailable, saying who holds it, when the
  // other kind has the store open (a server runs on it, or a migration,
  // restore or check does). Called once, by the engine's factory right
  // after the engine opened. The default takes no lock and answers OK.
  virtual Status Hold(EngineUse use);

  // Writes a consistent copy of the whole store to `path` (which must not
  // exist) while servers keep writing, in a form this engine opens again.
  // The default answers Invalid, saying that the engine has none.
  virtual Status Backup(const std::string& path);

  // Engine-specific consistency checks beyond what quire check does over
  // the interface (a database's own integrity check, indexes kept by hand),
  // appending one line per problem to *problems. The default finds nothing.
  virtual Status CheckIntegrity(std::vector<std::string>* problems);
};

// Opens the engine a database URL names, for `use`, and holds it (Hold).
using EngineFactory =
    std::function<Status(const std::string& url, EngineUse use, std::unique_ptr<Engine>* out)>;

}  // namespace quire::storage
