// Helpers the parts of the API-test harness share: text (case, trimming,
// clipping for failure messages, reading a file whole) and libcurl's
// one-time global initialisation. Not for tests: they use harness.h.
//
// Thread-safe: plain functions; EnsureCurl initialises once, whoever calls.
#pragma once

#include <cstddef>
#include <string>

namespace quire::apitest {

// ASCII lower case.
std::string ToLower(std::string s);
// Without the spaces, tabs, CRs and LFs around it.
std::string Trim(const std::string& s);
// A file's bytes ("" when it cannot be read).
std::string ReadFile(const std::string& path);
// Cuts long text for failure messages.
std::string Clip(const std::string& s, std::size_t n = 2000);
// curl_global_init, once per process, before the first libcurl handle.
void EnsureCurl();

}  // namespace quire::apitest
