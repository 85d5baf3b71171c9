// Opening the database, written once for `quire serve` and the commands that
// act on it: each says what went wrong in one line on stderr.
//
// Preconditions: the backends are registered with `registry`.
#pragma once

#include <memory>
#include <string>

#include "storage/engine.h"
#include "storage/registry.h"
#include "storage/store.h"

namespace quire::commands {

// True when `url` names a database that exists. Opening a SQLite or LMDB
// path that does not exist would create an empty store there, so a command
// that reads or changes one checks first (other URLs pass); otherwise prints
// "quire COMMAND: no database at URL".
bool Exists(const char* command, const std::string& url);

// Readies the CSPRNG (chat::InitSecrets) and opens the Store of `url` (the
// chat rules over its engine) for `use`: kServe as a server does, beside other
// servers of a multi-process backend; kMaintain alone, refused while a server
// has it open. False after one line on stderr, "WHO: cannot open database URL:
// why".
bool OpenChatStore(const storage::Registry& registry, const std::string& url,
                   storage::EngineUse use, const std::string& who,
                   std::unique_ptr<storage::Store>* out);

}  // namespace quire::commands
