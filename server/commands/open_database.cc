#include "server/commands/open_database.h"

#include <sys/stat.h>

#include <cstdio>

#include "server/chat/secrets.h"
#include "storage/chat_rules.h"

namespace quire::commands {

bool Exists(const char* command, const std::string& url) {
  for (const char* scheme : {"sqlite:", "lmdb:"}) {
    const std::string prefix = scheme;
    if (!url.starts_with(prefix)) continue;
    struct stat info {};
    if (stat(url.substr(prefix.size()).c_str(), &info) == 0) return true;
    std::fprintf(stderr, "quire %s: no database at %s\n", command, url.c_str());
    return false;
  }
  return true;
}

bool OpenChatStore(const storage::Registry& registry, const std::string& url,
                   storage::EngineUse use, const std::string& who,
                   std::unique_ptr<storage::Store>* out) {
  if (!chat::InitSecrets()) {
    std::fprintf(stderr, "%s: cannot initialise the random number generator\n", who.c_str());
    return false;
  }
  storage::Status status;
  if (use == storage::EngineUse::kServe) {
    // Through the registry's Store factory: a backend may offer a Store only.
    status = registry.Open(url, out);
  } else {
    std::unique_ptr<storage::Engine> engine;
    status = registry.OpenEngine(url, use, &engine);
    if (status.ok()) status = storage::OpenEngineStore(std::move(engine), out);
  }
  if (status.ok()) return true;
  std::fprintf(stderr, "%s: cannot open database %s: %s\n", who.c_str(),
               storage::RedactedUrl(url).c_str(), status.ToString().c_str());
  return false;
}

}  // namespace quire::commands
