// The command line of quire: `quire serve` with its options, environment
// variables and defaults (docs/configuration.md lists them), and the
// maintenance commands migrate, backup, restore and check
// (docs/operations.md).
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

using Command = std::variant<ServeConfig, MigrateConfig, BackupConfig, RestoreConfig, CheckConfig>;

// Parses the command line. Returns true to go on with *command. Otherwise
// *exit_code says how to exit: 0 after --help or --version, 2 after a usage
// error, which has been reported in one line on stderr.
bool ParseCommandLine(int argc, const char* const* argv, Command* command, int* exit_code);

}  // namespace quire
