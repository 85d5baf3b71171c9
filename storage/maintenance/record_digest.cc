#include "storage/maintenance/record_digest.h"

#include <sodium.h>

#include <cstdio>
#include <cstring>

namespace quire::storage::maintenance {
namespace {

// Fields with their lengths, so ("ab", "c") and ("a", "bc") differ.
class Encoder {
 public:
  Encoder& Text(const std::string& s) {
    Int(static_cast<std::int64_t>(s.size()));
    out_ += s;
    return *this;
  }
  Encoder& Int(std::int64_t v) {
    char bytes[sizeof v];
    std::memcpy(bytes, &v, sizeof v);
    out_.append(bytes, sizeof v);
    return *this;
  }
  Encoder& Optional(const std::optional<Micros>& v) {
    out_ += v ? '\1' : '\0';
    return Int(v.value_or(0));
  }
  const std::string& str() const { return out_; }

 private:
  std::string out_;
};

}  // namespace

void RecordDigest::AddEncoded(const std::string& encoded) {
  [[maybe_unused]] static const int sodium_ready = sodium_init();  // once, thread-safe
  unsigned char hash[crypto_hash_sha256_BYTES];
  crypto_hash_sha256(hash, reinterpret_cast<const unsigned char*>(encoded.data()), encoded.size());
  for (std::size_t lane = 0; lane < sum_.size(); ++lane) {
    std::uint64_t part = 0;
    std::memcpy(&part, hash + lane * sizeof part, sizeof part);
    sum_[lane] += part;
  }
  ++count_;
}

void RecordDigest::Add(const User& r) {
  AddEncoded(Encoder()
                 .Text(r.id)
                 .Text(r.name)
                 .Text(r.canonical)
                 .Text(r.password_hash)
                 .Int(r.created_at)
                 .str());
}
void RecordDigest::Add(const Session& r) {
  AddEncoded(Encoder().Text(r.token_hash).Text(r.user_id).Int(r.created_at).Int(r.last_used).str());
}
void RecordDigest::Add(const Invitation& r) {
  AddEncoded(Encoder().Text(r.id).Text(r.issuer_id).Int(r.issued_at).Int(r.used).str());
}
void RecordDigest::Add(const Conversation& r) {
  AddEncoded(Encoder()
                 .Text(r.id)
                 .Text(r.name)
                 .Text(r.canonical)
                 .Int(r.created_at)
                 .Int(r.last_activity)
                 .Optional(r.deleted_at)
                 .str());
}
void RecordDigest::Add(const Message& r) {
  AddEncoded(Encoder()
                 .Text(r.id)
                 .Text(r.conversation)
                 .Text(r.sender)
                 .Text(r.body)
                 .Int(r.at)
                 .Optional(r.deleted_at)
                 .str());
}
void RecordDigest::Add(const Event& r) {
  AddEncoded(Encoder()
                 .Int(r.seq)
                 .Int(static_cast<int>(r.kind))
                 .Int(r.at)
                 .Text(r.id)
                 .Text(r.conversation)
                 .Text(r.sender)
                 .Text(r.text)
                 .Optional(r.deleted_at)
                 .str());
}
void RecordDigest::Add(const IdempotencyRecord& r) {
  AddEncoded(Encoder()
                 .Text(r.sender)
                 .Text(r.key)
                 .Text(r.message_id)
                 .Text(r.conversation)
                 .Int(r.at)
                 .Int(r.created_at)
                 .str());
}

std::string RecordDigest::Hex() const {
  std::string hex;
  char buf[17];
  for (std::uint64_t lane : sum_) {
    std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(lane));
    hex += buf;
  }
  return hex;
}

}  // namespace quire::storage::maintenance
