// Internal to the LMDB backend and its tests: how a store is opened.
//
// The URL parser and the open function behind OpenLmdbStore, with options the
// URL does not offer (map sizes, so that tests of map growth stay small and
// fast).
#pragma once

#include <cstddef>
#include <memory>
#include <string>

#include "storage/engine.h"
#include "storage/status.h"
#include "storage/store.h"

namespace quire::storage {

struct LmdbOptions {
  std::string dir;
  // false: MDB_NOSYNC (survives a process kill, not power loss).
  bool sync = true;
  // The map LMDB starts with (rounded up to whole pages); it doubles when
  // full, up to max_map_bytes.
  std::size_t initial_map_bytes = std::size_t{64} << 20;
  std::size_t max_map_bytes = std::size_t{1} << 40;
};

// Parses "lmdb:DIR[?sync=full|off]" (the "lmdb:" prefix may be left out) into
// `out`'s dir and sync; Invalid, with the reason, for anything else.
Status ParseLmdbUrl(const std::string& url_or_dir_spec, LmdbOptions* out);

// Opens the store `options` describe; see OpenLmdbStore.
Status OpenLmdbStoreWithOptions(const LmdbOptions& options, std::unique_ptr<Store>* out);
// The same as an Engine for `use`; see OpenLmdbEngine.
Status OpenLmdbEngineWithOptions(const LmdbOptions& options, EngineUse use,
                                 std::unique_ptr<Engine>* out);

}  // namespace quire::storage
