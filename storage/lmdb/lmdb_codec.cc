#include "storage/lmdb/lmdb_codec.h"

#include <limits>

namespace quire::storage::lmdb_codec {
namespace {

constexpr std::uint64_t kSignBit = std::uint64_t{1} << 63;

void AppendBigEndian(std::string& out, std::uint64_t value, int bytes) {
  for (int shift = 8 * (bytes - 1); shift >= 0; shift -= 8) {
    out.push_back(static_cast<char>((value >> shift) & 0xff));
  }
}

std::uint64_t ReadBigEndian(std::string_view bytes) {
  std::uint64_t value = 0;
  for (char c : bytes) value = (value << 8) | static_cast<unsigned char>(c);
  return value;
}

}  // namespace

Encoder& Encoder::Int(std::int64_t value) {
  AppendBigEndian(bytes_, static_cast<std::uint64_t>(value) ^ kSignBit, 8);
  return *this;
}

Encoder& Encoder::OptInt(const std::optional<std::int64_t>& value) {
  bytes_.push_back(value ? '\1' : '\0');
  if (value) Int(*value);
  return *this;
}

Encoder& Encoder::Str(std::string_view text) {
  if (text.size() > std::numeric_limits<std::uint32_t>::max()) {
    throw std::length_error("string too long for an LMDB record");
  }
  AppendBigEndian(bytes_, text.size(), 4);
  bytes_.append(text);
  return *this;
}

Encoder& Encoder::Raw(std::string_view bytes) {
  bytes_.append(bytes);
  return *this;
}

std::string_view Decoder::Take(std::size_t n) {
  if (rest_.size() < n) throw CorruptRecord("LMDB record is truncated");
  const std::string_view taken = rest_.substr(0, n);
  rest_.remove_prefix(n);
  return taken;
}

std::int64_t Decoder::Int() {
  return static_cast<std::int64_t>(ReadBigEndian(Take(8)) ^ kSignBit);
}

std::optional<std::int64_t> Decoder::OptInt() {
  const char present = Take(1)[0];
  if (present == '\0') return std::nullopt;
  if (present != '\1') throw CorruptRecord("LMDB record has a malformed optional field");
  return Int();
}

std::string Decoder::Str() {
  const std::size_t size = ReadBigEndian(Take(4));
  return std::string(Take(size));
}

std::string_view Decoder::Rest() {
  return Take(rest_.size());
}

void Decoder::ExpectEnd() const {
  if (!rest_.empty()) throw CorruptRecord("LMDB record has trailing bytes");
}

namespace {

// Fields(io, record) below lists a record's fields once, for both directions:
// with Writing, io(field) appends the field; with Reading, it reads it back.
struct Writing {
  template <typename... Field>
  void operator()(const Field&... fields) {
    (Put(fields), ...);
  }
  void Put(const std::string& s) { out.Str(s); }
  void Put(std::int64_t n) { out.Int(n); }
  void Put(const std::optional<std::int64_t>& n) { out.OptInt(n); }
  void Put(bool b) { out.Int(b ? 1 : 0); }
  void Put(EventKind kind) { out.Int(static_cast<int>(kind)); }
  Encoder& out;
};

struct Reading {
  template <typename... Field>
  void operator()(Field&... fields) {
    (Get(fields), ...);
  }
  void Get(std::string& s) { s = in.Str(); }
  void Get(std::int64_t& n) { n = in.Int(); }
  void Get(std::optional<std::int64_t>& n) { n = in.OptInt(); }
  void Get(bool& b) { b = in.Int() != 0; }
  void Get(EventKind& kind) {
    const std::int64_t n = in.Int();
    if (n < static_cast<int>(EventKind::kUserCreated) ||
        n > static_cast<int>(EventKind::kMessageDeleted)) {
      throw CorruptRecord("LMDB event record has unknown kind " + std::to_string(n));
    }
    kind = static_cast<EventKind>(n);
  }
  Decoder& in;
};

template <typename Io>
void Fields(Io& io, Event& e) {
  io(e.kind, e.at, e.id, e.conversation, e.sender, e.text, e.deleted_at);
}

template <typename Io>
void Fields(Io& io, User& u) {
  io(u.id, u.name, u.canonical, u.password_hash, u.created_at);
}

template <typename Io>
void Fields(Io& io, Session& s) {
  io(s.token_hash, s.user_id, s.created_at, s.last_used);
}

template <typename Io>
void Fields(Io& io, Invitation& i) {
  io(i.id, i.issuer_id, i.issued_at, i.used);
}

template <typename Io>
void Fields(Io& io, ConversationRecord& r) {
  Conversation& c = r.conversation;
  io(c.id, c.name, c.canonical, c.created_at, c.last_activity, c.deleted_at);
  io(r.created_seq, r.deleted_seq);
}

template <typename Io>
void Fields(Io& io, MessageRecord& r) {
  Message& m = r.message;
  io(m.id, m.conversation, m.sender, m.body, m.at, m.deleted_at);
  io(r.sent_seq, r.deleted_seq);
}

template <typename Io>
void Fields(Io& io, IdempotencyRecord& r) {
  io(r.message_id, r.conversation, r.at, r.created_at);
}

}  // namespace

template <typename Record>
std::string Encode(const Record& record) {
  Encoder out;
  Writing io{out};
  Fields(io, const_cast<Record&>(record));  // Writing only reads the fields
  return out.bytes();
}

template <typename Record>
Record Decode(std::string_view bytes) {
  Decoder in(bytes);
  Reading io{in};
  Record record;
  Fields(io, record);
  in.ExpectEnd();
  return record;
}

#define QUIRE_LMDB_RECORD(Record)                    \
  template std::string Encode(const Record& record); \
  template Record Decode(std::string_view bytes)
QUIRE_LMDB_RECORD(Event);
QUIRE_LMDB_RECORD(User);
QUIRE_LMDB_RECORD(Session);
QUIRE_LMDB_RECORD(Invitation);
QUIRE_LMDB_RECORD(ConversationRecord);
QUIRE_LMDB_RECORD(MessageRecord);
QUIRE_LMDB_RECORD(IdempotencyRecord);
#undef QUIRE_LMDB_RECORD

}  // namespace quire::storage::lmdb_codec
