// The command line of quire: `quire serve` with its options, environment
// variables and defaults (docs/configuration.md lists them), the
// maintenance commands migrate, backup, restore and check, and the admin
// commands (docs/operations.md).
#pragma once

#include <cstddef>
#include <string>
#include <variant>
#include <vector>

#include "server/chat/chat_service.h"

namespace quire {

struct ServeConfig {
  std::string database_url = "sqlite:quire.db";
  std::string address = "127.0.0.1";
  int port = 8080;
  int heartbeat_seconds = 30;
  int threads = 0;                           // 0: the number of cores
  std::vector<std::string> trusted_proxies;  // --trusted-proxy ADDR (repeatable)
  std::string public_url;                    // --public-url: how clients reach the server
  int idle_timeout_seconds = 60;             // --idle-timeout
  long max_connections = 0;                  // --max-connections; 0: from the open-file limit
  long stream_buffer_limit_mib = 256;        // --stream-buffer-limit; 0: no limit
  bool access_log = false;                   // --access-log: a line per request on stderr
  std::string log_format = "text";           // --log-format text|json
  std::vector<std::string> metrics_allow;    // --metrics-allow CIDR (repeatable)
  std::string admin_socket;  // --admin-socket, resolved by AdminSocketPath; empty: none
  // Set with --admin-socket: a socket that cannot be made stops the server.
  // The default's failure is only reported: the server serves without one.
  bool admin_socket_required = false;
  chat::Policy policy;
};

// quire migrate --from URL --to URL [--force]
struct MigrateConfig {
  std::string from;
  std::string to;
  bool force = false;
  std::size_t batch_rows = 5000;
};

// quire backup --database-url URL --to PATH
struct BackupConfig {
  std::string database_url = "sqlite:quire.db";
  std::string to;
};

// quire restore --from PATH --database-url URL [--force]
// quire restore --mark --database-url URL
struct RestoreConfig {
  std::string from;
  std::string database_url = "sqlite:quire.db";
  bool mark = false;
};

// quire check --database-url URL
struct CheckConfig {
  std::string database_url = "sqlite:quire.db";
};

// quire admin [--socket PATH] [--database-url URL] [--public-url URL]
//   reset-password NAME [--password-stdin] | logout-all NAME | invite [--as NAME]
struct AdminConfig {
  std::string database_url = "sqlite:quire.db";
  std::string socket;  // resolved by AdminSocketPath; empty: none, act on the database
  std::string public_url;
  std::string command;  // "reset-password", "logout-all" or "invite"
  std::string name;     // the user of reset-password and logout-all
  bool password_stdin = false;
  std::string as;  // invite: the issuer; empty: the first user
};

using Command =
    std::variant<ServeConfig, MigrateConfig, BackupConfig, RestoreConfig, CheckConfig, AdminConfig>;

// The admin socket for --admin-socket (serve) or --socket (admin) `option`
// and the database URL: the option when set; none ("") for "none"; by
// default PATH.admin.sock for sqlite:PATH and DIR/admin.sock for lmdb:DIR
// (where the database is, so a server and `quire admin` given the same
// database find each other), and none for other URLs (PostgreSQL has no
// path; several servers may share it).
std::string AdminSocketPath(const std::string& option, const std::string& database_url);

// Parses the command line. Returns true to go on with *command. Otherwise
// *exit_code says how to exit: 0 after --help or --version, 2 after a usage
// error, which has been reported in one line on stderr.
bool ParseCommandLine(int argc, const char* const* argv, Command* command, int* exit_code);

}  // namespace quire
