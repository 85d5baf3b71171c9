// The chat rules, written once for every engine: the Store that Quire's
// server and the conformance suite talk to, over an Engine (storage/engine.h)
// that only stores. Each write operation of storage/write_ops.h is one rule
// in chat_rules.cc: what it checks, in which order, which records and events
// it changes, which status it answers, which sequences it takes.
//
// Thread-safety: the returned Store may be used from any thread; batches run
// one at a time, each in one write transaction of the engine.
#pragma once

#include <memory>

#include "storage/engine.h"
#include "storage/status.h"
#include "storage/store.h"

namespace quire::storage {

// OK for an engine interface version this Quire can drive; Invalid, saying
// why, otherwise.
Status CheckEngineInterfaceVersion(int version);

// The Store over `engine`, which it owns. Invalid when the engine was built
// against an engine interface version this Quire does not know.
Status OpenEngineStore(std::unique_ptr<Engine> engine, std::unique_ptr<Store>* out);

}  // namespace quire::storage
