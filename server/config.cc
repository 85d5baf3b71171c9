#include "server/config.h"

#include <cstdio>
#include <thread>

#include <CLI/CLI.hpp>

#include "server/chat/time_format.h"

namespace quire {
namespace {

// A CLI11 option holding a duration such as "90d", checked by ParseDuration.
void AddDuration(CLI::App& app, const std::string& flag, const std::string& env,
                 storage::Micros* target, const std::string& default_text,
                 const std::string& help) {
  app.add_option_function<std::string>(
         flag,
         [target, flag](const std::string& text) {
           auto parsed = chat::ParseDuration(text);
           if (!parsed) {
             throw CLI::ValidationError(flag, "'" + text +
                                                  "' is not a duration such as 500ms, 30s, "
                                                  "15m, 24h or 7d");
           }
           *target = *parsed;
         },
         help + " (default " + default_text + ")")
      ->envname(env)
      ->type_name("DURATION");
}

}  // namespace

bool ParseCommandLine(int argc, const char* const* argv, ServeConfig* config, int* exit_code) {
  CLI::App app{"Quire, a self-hosted chat server", "quire"};
  app.require_subcommand(1, 1);
  CLI::App* serve = app.add_subcommand("serve", "Serve the chat API over HTTP");
  serve
      ->add_option("--database-url", config->database_url,
                   "sqlite:PATH, postgres://... or postgresql://..., lmdb:DIR")
      ->envname("QUIRE_DATABASE_URL")
      ->capture_default_str();
  serve->add_option("--address", config->address, "Listen address")
      ->envname("QUIRE_ADDRESS")
      ->capture_default_str();
  serve->add_option("--port", config->port, "Listen port; 0 picks a free one")
      ->envname("QUIRE_PORT")
      ->check(CLI::Range(0, 65535))
      ->capture_default_str();
  serve->add_option("--heartbeat", config->heartbeat_seconds, "Stream heartbeat in seconds")
      ->envname("QUIRE_HEARTBEAT")
      ->check(CLI::Range(1, 86400))
      ->capture_default_str();
  AddDuration(*serve, "--message-ttl", "QUIRE_MESSAGE_TTL", &config->policy.message_ttl, "90d",
              "Messages expire this long after they were sent");
  AddDuration(*serve, "--conversation-ttl", "QUIRE_CONVERSATION_TTL",
              &config->policy.conversation_ttl, "90d",
              "Conversations expire this long after their last message");
  AddDuration(*serve, "--purge-after", "QUIRE_PURGE_AFTER", &config->policy.purge_after, "7d",
              "Deleted things leave history this long after deletion");
  AddDuration(*serve, "--invite-ttl", "QUIRE_INVITE_TTL", &config->policy.invite_ttl, "24h",
              "Invitations can be accepted for this long");
  AddDuration(*serve, "--session-ttl", "QUIRE_SESSION_TTL", &config->policy.session_ttl, "7d",
              "Logins end after this long without use");
  serve->add_option("--threads", config->threads, "HTTP threads (default: the number of cores)")
      ->envname("QUIRE_THREADS")
      ->check(CLI::Range(1, 256));
  serve
      ->add_option("--trusted-proxy", config->trusted_proxies,
                   "Address of a reverse proxy whose X-Forwarded-For names the client "
                   "(repeatable; for login throttling per address)")
      ->envname("QUIRE_TRUSTED_PROXY")
      ->delimiter(',');
  serve
      ->add_option("--idle-timeout", config->idle_timeout_seconds,
                   "Seconds after which an idle keep-alive connection is closed")
      ->envname("QUIRE_IDLE_TIMEOUT")
      ->check(CLI::Range(1, 86400))
      ->capture_default_str();
  serve
      ->add_option("--max-connections", config->max_connections,
                   "Most connections at once; the longest-idle are closed to make room "
                   "(default: half the open-file limit, a stream takes two files)")
      ->envname("QUIRE_MAX_CONNECTIONS")
      ->check(CLI::Range(1L, 10000000L));
  serve
      ->add_option("--stream-buffer-limit", config->stream_buffer_limit_mib,
                   "MiB of stream and boot bytes that clients have not read yet, all streams "
                   "together; beyond it the streams stalled longest are cut (0: no limit)")
      ->envname("QUIRE_STREAM_BUFFER_LIMIT")
      ->check(CLI::Range(0L, 1L << 20))
      ->capture_default_str();
  serve
      ->add_option("--public-url", config->public_url,
                   "The URL clients reach the server at, e.g. https://chat.example.org "
                   "(https makes the session cookie Secure)")
      ->envname("QUIRE_PUBLIC_URL")
      ->check([](const std::string& url) -> std::string {
        if (url.rfind("http://", 0) == 0 || url.rfind("https://", 0) == 0) return "";
        return "--public-url must start with http:// or https://";
      });
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp&) {
    std::fputs(app.help().c_str(), stdout);
    *exit_code = 0;
    return false;
  } catch (const CLI::CallForAllHelp&) {
    std::fputs(app.help().c_str(), stdout);
    *exit_code = 0;
    return false;
  } catch (const CLI::ParseError& e) {
    std::string message = e.what();
    for (char& c : message) {
      if (c == '\n') c = ' ';
    }
    std::fprintf(stderr, "quire: %s (see quire serve --help)\n", message.c_str());
    *exit_code = 2;
    return false;
  }
  if (config->threads == 0) {
    config->threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  }
  return true;
}

}  // namespace quire
