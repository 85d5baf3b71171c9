// Entity ids: a type letter then 15 characters from 0-9 and the lowercase
// consonants (docs/api: opaque to clients). Thread-safe.
//
// Invitation ids are the invitation's secret: 15 characters from a CSPRNG
// (73 bits). Ids of users, conversations and messages begin with the time
// instead: 5 characters counting hundredths of a second (modulo 30^5, about
// 2.8 days), then 10 from the CSPRNG (49 bits). Ids made close in time sort
// close together, so an index on ids takes a commit's new rows on one or two
// pages rather than on one page each: with fully random message ids a commit
// of 15 sends dirtied ~30 index pages (docs/benchmarks.md, section 11).
#pragma once

#include <string>
#include <string_view>

namespace quire::chat {

enum class IdKind : char { kUser = 'U', kConversation = 'C', kMessage = 'M', kInvitation = 'I' };

std::string NewId(IdKind kind);

// True when `id` has the shape of an id of `kind` (it may still not exist).
bool LooksLikeId(std::string_view id, IdKind kind);

}  // namespace quire::chat
