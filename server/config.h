// The command line of `quire serve`: options, their environment variables and
// defaults (docs/configuration.md lists them).
#pragma once

#include <string>
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
  chat::Policy policy;
};

// Parses `quire serve [options]`. Returns true to go on serving. Otherwise
// *exit_code says how to exit: 0 after --help, 2 after a usage error, which
// has been reported in one line on stderr.
bool ParseCommandLine(int argc, const char* const* argv, ServeConfig* config, int* exit_code);

}  // namespace quire
