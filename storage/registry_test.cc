#include "storage/registry.h"

#include <chrono>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "storage/chat_rules.h"

namespace quire::storage {
namespace {

TEST(RegistryTest, UrlScheme) {
  EXPECT_EQ(UrlScheme("sqlite:quire.db"), "sqlite");
  EXPECT_EQ(UrlScheme("postgresql://u@h/db"), "postgresql");
  EXPECT_EQ(UrlScheme("no scheme"), "");
}

TEST(RegistryTest, RedactedUrlHidesOnlyThePassword) {
  EXPECT_EQ(RedactedUrl("postgresql://quire:s3cret@db.example:5432/quire?sslmode=require"),
            "postgresql://quire:***@db.example:5432/quire?sslmode=require");
  EXPECT_EQ(RedactedUrl("postgres://quire@db/quire"), "postgres://quire@db/quire");
  EXPECT_EQ(RedactedUrl("postgres://db/quire"), "postgres://db/quire");
  // A password with '@' in it (percent-encoding is optional for libpq).
  EXPECT_EQ(RedactedUrl("postgresql://u:p@ss@h/db"), "postgresql://u:***@h/db");
  // An '@' after the authority is not a user part.
  EXPECT_EQ(RedactedUrl("postgresql://h/db?options=a:b@c"), "postgresql://h/db?options=a:b@c");
  EXPECT_EQ(RedactedUrl("sqlite:/var/lib/quire:db@x"), "sqlite:/var/lib/quire:db@x");
}

TEST(RegistryTest, UnknownSchemeIsInvalidAndRedacted) {
  Registry registry;
  std::unique_ptr<Store> store;
  Status s = registry.Open("mysql://root:hunter2@h/db", &store);
  EXPECT_EQ(s.code(), Status::Code::kInvalid);
  EXPECT_EQ(s.message().find("hunter2"), std::string::npos) << s.message();
  EXPECT_EQ(store, nullptr);
}

// A Store that claims an interface version; nothing else of it is used.
class VersionedStore final : public Store {
 public:
  explicit VersionedStore(int version) : version_(version) {}
  int interface_version() const override { return version_; }
  Capabilities capabilities() const override { return {}; }
  Status Apply(std::span<Write>) override { return Unused(); }
  Status GetHead(Head*) override { return Unused(); }
  Status ReadEvents(std::int64_t, std::int64_t, std::size_t, std::vector<Event>*) override {
    return Unused();
  }
  Status HasUsers(bool*) override { return Unused(); }
  Status GetUser(const std::string&, User*) override { return Unused(); }
  Status FindUserByCanonicalName(const std::string&, User*) override { return Unused(); }
  Status FindSession(const std::string&, Session*) override { return Unused(); }
  Status GetInvitation(const std::string&, Invitation*) override { return Unused(); }
  Status GetConversation(const std::string&, Conversation*) override { return Unused(); }
  Status GetMessage(const std::string&, Message*) override { return Unused(); }
  std::uint64_t CommitGeneration() override { return 0; }
  std::uint64_t WaitForCommit(std::uint64_t seen, std::chrono::milliseconds) override {
    return seen;
  }

 private:
  static Status Unused() { return Status::IoError("not a real store"); }
  const int version_;
};

StoreFactory OpensVersion(int version) {
  return [version](const std::string&, std::unique_ptr<Store>* out) {
    *out = std::make_unique<VersionedStore>(version);
    return Status::Ok();
  };
}

TEST(RegistryTest, ABackendBuiltForAnUnknownInterfaceVersionIsRefusedAtRegistration) {
  Registry registry;
  const Status newer = registry.Register("future", OpensVersion(1), kStoreInterfaceVersion + 1);
  EXPECT_EQ(newer.code(), Status::Code::kInvalid);
  EXPECT_NE(
      newer.message().find("store interface version " + std::to_string(kStoreInterfaceVersion + 1)),
      std::string::npos)
      << newer.message();
  EXPECT_EQ(registry.Register("ancient", OpensVersion(1), 0).code(), Status::Code::kInvalid);
  EXPECT_TRUE(registry.Schemes().empty());
  EXPECT_TRUE(registry.Register("current", OpensVersion(kStoreInterfaceVersion)).ok());
  EXPECT_EQ(registry.Schemes(), std::vector<std::string>{"current"});
}

TEST(RegistryTest, AStoreReportingAnUnknownInterfaceVersionIsNotOpened) {
  Registry registry;
  ASSERT_TRUE(registry.Register("liar", OpensVersion(kStoreInterfaceVersion + 7)).ok());
  ASSERT_TRUE(registry.Register("honest", OpensVersion(kStoreInterfaceVersion)).ok());
  std::unique_ptr<Store> store;
  EXPECT_EQ(registry.Open("liar:x", &store).code(), Status::Code::kInvalid);
  EXPECT_EQ(store, nullptr);
  EXPECT_TRUE(registry.Open("honest:x", &store).ok());
  EXPECT_NE(store, nullptr);
}

TEST(RegistryTest, AnEngineBuiltForAnUnknownEngineInterfaceVersionIsRefused) {
  EXPECT_TRUE(CheckEngineInterfaceVersion(kEngineInterfaceVersion).ok());
  EXPECT_EQ(CheckEngineInterfaceVersion(kEngineInterfaceVersion + 1).code(),
            Status::Code::kInvalid);
  EXPECT_EQ(CheckEngineInterfaceVersion(0).code(), Status::Code::kInvalid);
}

}  // namespace
}  // namespace quire::storage
