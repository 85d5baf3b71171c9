// Entity ids: a type letter then 15 characters from 0-9 and the lowercase
// consonants, drawn from a CSPRNG. Thread-safe.
#pragma once

#include <string>
#include <string_view>

namespace quire::chat {

enum class IdKind : char { kUser = 'U', kConversation = 'C', kMessage = 'M', kInvitation = 'I' };

std::string NewId(IdKind kind);

// True when `id` has the shape of an id of `kind` (it may still not exist).
bool LooksLikeId(std::string_view id, IdKind kind);

}  // namespace quire::chat
