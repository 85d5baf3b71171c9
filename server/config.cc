#include "server/config.h"

#include <cstdio>
#include <thread>
#include <utility>

#include <CLI/CLI.hpp>

#include "server/chat/time_format.h"
#include "server/observe/address_range.h"
#include "server/version.h"

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

constexpr const char* kDatabaseUrlHelp =
    "sqlite:PATH, postgres://... or postgresql://..., lmdb:DIR";

void AddDatabaseUrl(CLI::App& command, std::string* url) {
  command.add_option("--database-url", *url, kDatabaseUrlHelp)
      ->envname("QUIRE_DATABASE_URL")
      ->capture_default_str();
}

constexpr const char* kAdminSocketHelp =
    "The admin socket (Unix domain, mode 0600) that quire admin talks to; 'none': none "
    "(default: PATH.admin.sock for sqlite:PATH, DIR/admin.sock for lmdb:DIR, none for "
    "postgresql:)";

void AddPublicUrl(CLI::App& command, std::string* url) {
  command
      .add_option("--public-url", *url,
                  "The URL clients reach the server at, e.g. https://chat.example.org "
                  "(https makes the session cookie Secure)")
      ->envname("QUIRE_PUBLIC_URL")
      ->check([](const std::string& text) -> std::string {
        if (text.rfind("http://", 0) == 0 || text.rfind("https://", 0) == 0) return "";
        return "--public-url must start with http:// or https://";
      });
}

}  // namespace

std::string AdminSocketPath(const std::string& option, const std::string& database_url) {
  if (option == "none") return "";
  if (!option.empty()) return option;
  // Where the server can write anyway: beside the SQLite file (its journal
  // goes there), inside the LMDB directory (its lock files are there).
  for (const auto& [scheme, suffix] :
       {std::pair{"sqlite:", ".admin.sock"}, std::pair{"lmdb:", "/admin.sock"}}) {
    if (!database_url.starts_with(scheme)) continue;
    std::string path = database_url.substr(std::string(scheme).size());
    path = path.substr(0, path.find('?'));
    while (path.size() > 1 && path.back() == '/') path.pop_back();
    if (path.empty()) return "";
    return path + suffix;
  }
  return "";
}

bool ParseCommandLine(int argc, const char* const* argv, Command* command, int* exit_code) {
  CLI::App app{"Quire, a self-hosted chat server", "quire"};
  app.require_subcommand(1, 1);
  // CLI11 runs the flag's callback (which throws CallForVersion) before it
  // checks for the required subcommand, so `quire --version` stands alone.
  app.set_version_flag("--version", VersionLine(),
                       "Print the version and the git commit, then exit");
  ServeConfig serve_config;
  ServeConfig* config = &serve_config;
  CLI::App* serve = app.add_subcommand("serve", "Serve the chat API over HTTP");
  AddDatabaseUrl(*serve, &config->database_url);
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
  AddPublicUrl(*serve, &config->public_url);
  serve
      ->add_flag("--access-log", config->access_log,
                 "Log one line per request on stderr (method, route, status, time, bytes; never "
                 "a path, token, password or message)")
      ->envname("QUIRE_ACCESS_LOG");
  serve->add_option("--log-format", config->log_format, "Log lines as text or json")
      ->envname("QUIRE_LOG_FORMAT")
      ->check(CLI::IsMember({"text", "json"}))
      ->capture_default_str();
  serve
      ->add_option("--metrics-allow", config->metrics_allow,
                   "Address range (CIDR) besides loopback that may read GET /metrics "
                   "(repeatable)")
      ->envname("QUIRE_METRICS_ALLOW")
      ->delimiter(',')
      ->check([](const std::string& text) -> std::string {
        return observe::AddressRange::Parse(text) ? "" : "'" + text + "' is not an address range";
      });
  std::string serve_admin_socket;
  serve->add_option("--admin-socket", serve_admin_socket, kAdminSocketHelp)
      ->envname("QUIRE_ADMIN_SOCKET");

  MigrateConfig migrate_config;
  CLI::App* migrate = app.add_subcommand(
      "migrate",
      "Copy a whole install from one database to another (any backend to any other), then "
      "verify the copy; neither may be served meanwhile");
  migrate
      ->add_option("--from", migrate_config.from,
                   "The database to copy: " + std::string(kDatabaseUrlHelp))
      ->required();
  migrate->add_option("--to", migrate_config.to, "The database to copy into (empty)")->required();
  migrate->add_flag("--force", migrate_config.force,
                    "Replace what the target holds (it is removed first)");
  migrate->add_option("--batch", migrate_config.batch_rows, "Rows per transaction")
      ->check(CLI::Range(std::size_t{1}, std::size_t{1000000}))
      ->capture_default_str();

  BackupConfig backup_config;
  CLI::App* backup = app.add_subcommand(
      "backup", "Write a consistent copy of a SQLite or LMDB database while the server runs");
  AddDatabaseUrl(*backup, &backup_config.database_url);
  backup->add_option("--to", backup_config.to, "Where the copy goes (must not exist)")->required();

  RestoreConfig restore_config;
  CLI::App* restore = app.add_subcommand(
      "restore",
      "Put a backup in place of a database (not served meanwhile) and mark a break in "
      "history, so no sequence number is used twice");
  restore->add_option("--from", restore_config.from,
                      "The backup: a file (SQLite), a directory (LMDB) or a database URL");
  AddDatabaseUrl(*restore, &restore_config.database_url);
  restore->add_flag("--mark", restore_config.mark,
                    "Only mark the break in history, on a database restored by other means "
                    "(pg_restore)");

  CheckConfig check_config;
  CLI::App* check = app.add_subcommand(
      "check", "Check a database for consistency (not served meanwhile); one line per problem");
  AddDatabaseUrl(*check, &check_config.database_url);

  AdminConfig admin_config;
  std::string admin_socket;
  CLI::App* admin = app.add_subcommand(
      "admin",
      "Act on users as an operator: through the running server's admin socket, or on the "
      "database when no server answers there");
  admin->require_subcommand(1, 1);
  admin->fallthrough();  // its options may also follow the action
  AddDatabaseUrl(*admin, &admin_config.database_url);
  admin->add_option("--socket", admin_socket, kAdminSocketHelp)->envname("QUIRE_ADMIN_SOCKET");
  AddPublicUrl(*admin, &admin_config.public_url);
  CLI::App* reset = admin->add_subcommand(
      "reset-password",
      "Give NAME a new password (printed, or read from stdin) and end every session of NAME");
  reset->add_option("NAME", admin_config.name, "The user")->required();
  reset->add_flag("--password-stdin", admin_config.password_stdin,
                  "Read the new password from the first line of stdin");
  CLI::App* logout_all =
      admin->add_subcommand("logout-all", "End every session of NAME; the password stays");
  logout_all->add_option("NAME", admin_config.name, "The user")->required();
  CLI::App* invite = admin->add_subcommand(
      "invite", "Create an invitation and print its link (or its id without --public-url)");
  invite->add_option("--as", admin_config.as, "The user who invites (default: the first user)");

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
  } catch (const CLI::CallForVersion& e) {
    std::printf("%s\n", e.what());
    *exit_code = 0;
    return false;
  } catch (const CLI::ParseError& e) {
    std::string message = e.what();
    for (char& c : message) {
      if (c == '\n') c = ' ';
    }
    const std::string name =
        app.get_subcommands().empty() ? "" : " " + app.get_subcommands().front()->get_name();
    std::fprintf(stderr, "quire: %s (see quire%s --help)\n", message.c_str(), name.c_str());
    *exit_code = 2;
    return false;
  }
  if (migrate->parsed()) {
    *command = migrate_config;
  } else if (backup->parsed()) {
    *command = backup_config;
  } else if (restore->parsed()) {
    if (restore_config.mark != restore_config.from.empty()) {
      std::fprintf(stderr,
                   "quire: restore needs --from PATH, or --mark alone (see quire restore "
                   "--help)\n");
      *exit_code = 2;
      return false;
    }
    *command = restore_config;
  } else if (check->parsed()) {
    *command = check_config;
  } else if (admin->parsed()) {
    admin_config.command = admin->get_subcommands().front()->get_name();
    admin_config.socket = AdminSocketPath(admin_socket, admin_config.database_url);
    *command = admin_config;
  } else {
    config->admin_socket = AdminSocketPath(serve_admin_socket, config->database_url);
    config->admin_socket_required = !serve_admin_socket.empty();
    if (config->threads == 0) {
      config->threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
    }
    *command = serve_config;
  }
  return true;
}

}  // namespace quire
