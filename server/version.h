// The version of this build, for `quire --version`: the CMake project version
// and the git commit the binary was built from. Defined in a file that
// cmake/version.cmake generates at every build, so a new commit shows without
// re-running cmake.
#pragma once

namespace quire {

const char* Version();      // the CMake project version, "0.1.0"
const char* BuildCommit();  // "1a2b3c4", "1a2b3c4-dirty" (uncommitted changes) or "unknown"
const char* VersionLine();  // "quire 0.1.0 (commit 1a2b3c4)"

}  // namespace quire
