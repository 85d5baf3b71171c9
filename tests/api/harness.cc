// The fixture of harness.h: ApiTest gives every test a fresh database and a
// running server, and stops the server cleanly after it.
#include "tests/api/harness.h"

namespace quire::apitest {

void ApiTest::SetUp() {
  std::string reason;
  database_ = TestDatabase::Create(&reason);
  if (!database_) GTEST_FAIL() << "no test database: " << reason;
  server_ = std::make_unique<QuireProcess>(database_->url(), ServerArgs());
  ASSERT_TRUE(server_->Start());
}

void ApiTest::TearDown() {
  if (server_ && server_->running()) {
    EXPECT_TRUE(server_->Stop()) << "the server must stop cleanly after every test";
  }
  server_.reset();
}

Client ApiTest::Setup(const std::string& name, const std::string& password) {
  Client c = NewClient();
  Response r = c.post("/api/setup", {{"name", name}, {"password", password}});
  EXPECT_TRUE(HasStatus(r, 200));
  EXPECT_TRUE(c.token().has_value()) << "setup set no identity cookie";
  return c;
}

Client ApiTest::Invite(Client& inviter, const std::string& name, const std::string& password) {
  Response r = inviter.post("/api/invite", Json::object());
  EXPECT_TRUE(HasStatus(r, 200));
  Json j = r.json();
  std::string id = j.is_object() && j.contains("id") && j["id"].is_string()
                       ? j["id"].get<std::string>()
                       : "Imissing";
  Client c = NewClient();
  Response a = c.post("/api/invite/" + id, {{"name", name}, {"password", password}});
  EXPECT_TRUE(HasStatus(a, 200));
  return c;
}

std::string ApiTest::CreateConversation(Client& client, const std::string& name) {
  Response r = client.post("/api/conversations", {{"name", name}});
  EXPECT_TRUE(HasStatus(r, 202));
  Json j = r.json();
  return j.is_object() && j.contains("id") && j["id"].is_string() ? j["id"].get<std::string>()
                                                                  : "Cmissing";
}

Json ApiTest::SendMessage(Client& client, const std::string& conversation, const std::string& body,
                          const Headers& headers) {
  Response r = client.post("/api/conversations/" + conversation, {{"body", body}}, headers);
  EXPECT_TRUE(HasStatus(r, 202));
  Json j = r.json();
  return j.is_object() ? j : Json::object();
}

Json ApiTest::Boot(Client& client) {
  Response r = client.get("/api/boot");
  EXPECT_TRUE(HasStatus(r, 200));
  Json j = r.json();
  if (!j.is_object()) return Json{{"events", Json::array()}, {"resume_point", -1}};
  return j;
}

std::unique_ptr<EventStream> ApiTest::OpenStream(const Client& client, std::int64_t resume_point) {
  StreamOptions o;
  o.token = client.token();
  o.query = "resume_point=" + std::to_string(resume_point);
  return std::make_unique<EventStream>(client.base_url(), o);
}

}  // namespace quire::apitest
