#include "server/admin/admin_requests.h"

#include <cstddef>

#include <nlohmann/json.hpp>

#include "server/chat/secrets.h"

namespace quire::admin {
namespace {

using Json = nlohmann::json;

// The length of a password made for an operator: 20 characters of 57, about
// 116 bits.
constexpr std::size_t kNewPasswordLength = 20;

Response Failed(const chat::Error& error) {
  return Response{1, error.message};
}

// The path the browser client opens an invitation at (client/app.js).
std::string InvitationPath(const std::string& id) {
  return "/invite/" + id;
}

}  // namespace

std::string EncodeRequest(const Request& request) {
  Json j = {{"command", request.command},
            {"name", request.name},
            {"as", request.as},
            {"public_url", request.public_url}};
  if (request.password) j["password"] = *request.password;
  // A name that is not UTF-8 travels with U+FFFD, and then names nobody. (A
  // password is checked before: NewPasswordProblem.)
  return j.dump(-1, ' ', false, Json::error_handler_t::replace);
}

bool DecodeRequest(const std::string& line, Request* request, std::string* error) {
  const Json j = Json::parse(line, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object() || !j.contains("command") || !j["command"].is_string()) {
    *error = "not a request";
    return false;
  }
  auto text = [&j](const char* key) {
    return j.contains(key) && j[key].is_string() ? j[key].get<std::string>() : std::string();
  };
  request->command = text("command");
  request->name = text("name");
  request->as = text("as");
  request->public_url = text("public_url");
  if (j.contains("password") && j["password"].is_string()) request->password = text("password");
  return true;
}

std::string EncodeResponse(const Response& response) {
  return Json{{"exit_code", response.exit_code}, {"line", response.line}}.dump(
      -1, ' ', false, Json::error_handler_t::replace);
}

bool DecodeResponse(const std::string& line, Response* response) {
  const Json j = Json::parse(line, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object() || !j.contains("exit_code") || !j["exit_code"].is_number_integer() ||
      !j.contains("line") || !j["line"].is_string()) {
    return false;
  }
  response->exit_code = j["exit_code"].get<int>();
  response->line = j["line"].get<std::string>();
  return true;
}

Response Execute(chat::ChatService& service, const Request& request,
                 const std::string& server_public_url) {
  const std::string& public_url =
      request.public_url.empty() ? server_public_url : request.public_url;
  if (request.command == "reset-password") {
    const std::string password = request.password.value_or(chat::NewPassword(kNewPasswordLength));
    chat::Result<chat::Done> done = service.ResetPassword(request.name, password);
    if (!done.ok()) return Failed(done.error());
    if (request.password) {
      return Response{0, "password of " + request.name + " changed; every session ended"};
    }
    // The password last, so that a script takes the last word.
    return Response{0, "password of " + request.name +
                           " reset, every session ended; new password: " + password};
  }
  if (request.command == "logout-all") {
    chat::Result<chat::Done> done = service.EndSessions(request.name);
    if (!done.ok()) return Failed(done.error());
    return Response{0, "every session of " + request.name + " ended"};
  }
  if (request.command == "invite") {
    chat::Result<storage::User> issuer =
        request.as.empty() ? service.Owner() : service.FindUser(request.as);
    if (!issuer.ok()) {
      if (issuer.error().kind == chat::Error::Kind::kNotSetUp) {
        return Response{1,
                        "no user exists yet: create the first one with setup (POST /api/setup, "
                        "or open the server in a browser)"};
      }
      return Failed(issuer.error());
    }
    const storage::User& user = issuer.value();
    chat::Result<chat::InvitationView> invitation =
        service.Invite(chat::Identity{user.id, user.name, ""});
    if (!invitation.ok()) return Failed(invitation.error());
    const std::string path = InvitationPath(invitation.value().id);
    if (public_url.empty()) {
      return Response{0, invitation.value().id + " (open " + path +
                             " on the server's address; with --public-url this is a full link)"};
    }
    std::string base = public_url;
    while (!base.empty() && base.back() == '/') base.pop_back();
    return Response{0, base + path};
  }
  return Response{2, "unknown admin command '" + request.command + "'"};
}

}  // namespace quire::admin
