// An in-memory Quire storage engine: the smallest complete backend, written
// to be copied as the starting point of a real one. It implements only
// storage (quire/storage/engine.h: records, the lookups the chat rules need,
// one transaction per batch, savepoints, the head); the chat rules come from
// Quire (OpenEngineStore), and the conformance suite checks the result.
//
// URL form: "memory:" with nothing after the colon. Every open makes a new,
// empty store; two opens never share data.
//
// What it cannot do, as its capabilities say: the data lives and dies with
// the store object, so nothing survives a process kill or power loss, and no
// other process can open it. Memory grows with the history until Purge
// removes what retention allows.
#pragma once

#include "storage/registry.h"

namespace example {

// Registers the "memory" scheme with `registry`. Open("memory:") gives a new,
// empty store; any other "memory:…" URL is Invalid, because there are no
// named stores to find again.
void RegisterMemoryBackend(quire::storage::Registry& registry);

}  // namespace example
