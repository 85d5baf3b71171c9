// quire admin: an operator's actions on users (docs/operations.md, "Admin
// commands"). Asks the server listening on the admin socket when one does, so
// that it ends the streams it serves; otherwise opens the database alone
// (refused while a server has it open) and acts on it the same way. Prints
// the result in one line on stdout, or a failure in one line on stderr, and
// returns the exit status: 1 when the action failed (an unknown user), 2 for
// bad usage.
//
// Preconditions: the backends are registered with `registry`.
#pragma once

#include "server/config.h"
#include "storage/registry.h"

namespace quire::commands {

int Admin(const storage::Registry& registry, const AdminConfig& config);

}  // namespace quire::commands
