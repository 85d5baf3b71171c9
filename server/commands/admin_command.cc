#include "server/commands/admin_command.h"

#include <cstdio>
#include <iostream>
#include <memory>
#include <string>

#include "server/admin/admin_requests.h"
#include "server/admin/admin_socket.h"
#include "server/chat/chat_service.h"
#include "server/chat/clock.h"
#include "server/chat/committer.h"
#include "server/commands/open_database.h"

namespace quire::commands {
namespace {

// Long enough for a password's hashing and a commit on a loaded server.
constexpr std::chrono::seconds kCallTimeout{60};

int Report(const admin::Response& response) {
  std::fprintf(response.exit_code == 0 ? stdout : stderr, "%s%s\n",
               response.exit_code == 0 ? "" : "quire admin: ", response.line.c_str());
  return response.exit_code;
}

int Fail(const std::string& what) {
  std::fprintf(stderr, "quire admin: %s\n", what.c_str());
  return 1;
}

// The action on the database itself, no server running: the same
// ChatService operation, with nothing to end but sessions.
int Offline(const storage::Registry& registry, const AdminConfig& config,
            const admin::Request& request) {
  if (!Exists("admin", config.database_url)) return 1;
  std::unique_ptr<storage::Store> store;
  // Alone: while a server has the database open (one without a socket, or
  // another socket), acting beside it would leave its streams open.
  if (!OpenChatStore(registry, config.database_url, storage::EngineUse::kMaintain, "quire admin",
                     &store)) {
    return 1;
  }
  chat::SystemClock clock;
  chat::Committer committer(*store);
  chat::ChatService service(*store, committer, clock, chat::Policy{});
  return Report(admin::Execute(service, request, ""));
}

}  // namespace

int Admin(const storage::Registry& registry, const AdminConfig& config) {
  admin::Request request;
  request.command = config.command;
  request.name = config.name;
  request.as = config.as;
  request.public_url = config.public_url;
  if (config.password_stdin) {
    std::string line;
    if (!std::getline(std::cin, line) && line.empty()) {
      std::fprintf(stderr, "quire admin: no password on stdin\n");
      return 2;
    }
    if (!line.empty() && line.back() == '\r') line.pop_back();
    // Checked here too: a password that is not UTF-8 cannot travel in JSON.
    if (auto problem = chat::NewPasswordProblem(line)) return Fail(*problem);
    request.password = line;
  }
  if (!config.socket.empty()) {
    std::string answer, error;
    switch (admin::CallAdminSocket(config.socket, admin::EncodeRequest(request), kCallTimeout,
                                   &answer, &error)) {
      case admin::CallOutcome::kAnswered: {
        admin::Response response;
        if (!admin::DecodeResponse(answer, &response)) {
          return Fail("the server at " + config.socket + " answered something else");
        }
        return Report(response);
      }
      case admin::CallOutcome::kFailed:
        return Fail(error);
      case admin::CallOutcome::kNoServer:
        break;
    }
  }
  return Offline(registry, config, request);
}

}  // namespace quire::commands
