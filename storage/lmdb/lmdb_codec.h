// The byte encodings of the LMDB backend: keys and records.
//
// Integers are 8 bytes big-endian with the sign bit flipped, so that the
// bytewise order LMDB sorts keys by is numeric order (negative times
// included). Strings are a 4-byte big-endian length and the bytes; a key's
// last component may be raw bytes instead, so that it sorts as text. Records
// are fields in a fixed order; a decoder that finds too few or too many bytes
// throws CorruptRecord, which the store reports as Status::Corrupt.
//
// Thread-safety: plain values and functions; no shared state.
#pragma once

#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>

#include "storage/types.h"

namespace quire::storage::lmdb_codec {

// A stored record that cannot be decoded.
class CorruptRecord : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Appends fields to a byte string (a key or a record).
class Encoder {
 public:
  Encoder& Int(std::int64_t value);
  Encoder& OptInt(const std::optional<std::int64_t>& value);
  Encoder& Str(std::string_view text);
  // Bytes without a length: only as the last field.
  Encoder& Raw(std::string_view bytes);

  const std::string& bytes() const { return bytes_; }

 private:
  std::string bytes_;
};

// Reads fields back in the order they were written. Does not own `bytes`.
class Decoder {
 public:
  explicit Decoder(std::string_view bytes) : rest_(bytes) {}

  std::int64_t Int();
  std::optional<std::int64_t> OptInt();
  std::string Str();
  // Everything not read yet.
  std::string_view Rest();
  bool AtEnd() const { return rest_.empty(); }
  // Throws CorruptRecord unless every byte was read.
  void ExpectEnd() const;

 private:
  std::string_view Take(std::size_t n);
  std::string_view rest_;
};

// Records as stored. Conversations and messages carry the sequences of their
// events, so deletion can tombstone them and purging can remove them.
struct ConversationRecord {
  Conversation conversation;
  std::int64_t created_seq = 0;
  std::int64_t deleted_seq = 0;  // 0 while live
};

struct MessageRecord {
  Message message;
  std::int64_t sent_seq = 0;
  std::int64_t deleted_seq = 0;  // 0 while live
};

// A SendMessage idempotency key's answer: enough to replay the first message
// even after it was purged.
struct IdempotencyRecord {
  std::string message_id;
  std::string conversation;
  Micros at = 0;
  Micros created_at = 0;
};

// Records, each type's fields in one fixed order. Record is one of Event
// (without its seq: that is the key), User, Session, Invitation,
// ConversationRecord, MessageRecord, IdempotencyRecord.
template <typename Record>
std::string Encode(const Record& record);
template <typename Record>
Record Decode(std::string_view bytes);

}  // namespace quire::storage::lmdb_codec
