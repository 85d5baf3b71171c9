// The maintenance commands of the quire binary: migrate, backup, restore and
// check (docs/operations.md shows them at work). Each prints what it did,
// reports a failure in one line on stderr and returns the exit status.
//
// Preconditions: the backends are registered with `registry`.
#pragma once

#include "server/config.h"
#include "storage/registry.h"

namespace quire::commands {

int Migrate(const storage::Registry& registry, const MigrateConfig& config);
int Backup(const storage::Registry& registry, const BackupConfig& config);
int Restore(const storage::Registry& registry, const RestoreConfig& config);
int Check(const storage::Registry& registry, const CheckConfig& config);

}  // namespace quire::commands
