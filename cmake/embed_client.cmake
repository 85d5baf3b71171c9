# Embeds the browser client (client/) into the quire binary.
#
# Run at build time by add_custom_command (CMakeLists.txt):
#   cmake -DCLIENT_DIR=<repo>/client -DOUTPUT=<build>/generated/client_assets_data.cc
#         -P cmake/embed_client.cmake
#
# Writes one C++ file that defines the table of server/client_assets/client_assets.h:
#  - H is the first 16 hex characters of the SHA-256 of a manifest of every
#    shipped file ("<relative path> <sha256 of its content>\n", sorted by
#    path), so any change to any file gives every hashed URL a new name and
#    they can be cached forever;
#  - in text files every `__ASSETS__` becomes `/assets/H`, so the client names
#    its assets without knowing H;
#  - client/index.html is the app page ("/"), client/sw.js is "/sw.js" and
#    client/manifest.webmanifest "/manifest.webmanifest" (their URLs must stay
#    put: a service worker and a manifest are found by URL); every other file
#    is "/assets/H/<relative path>";
#  - text files are gzip-compressed here (level 9, header time zeroed so the
#    output is reproducible), and the gzip is kept only when smaller;
#  - each asset's ETag is the first 16 hex characters of the SHA-256 of its
#    served (identity) body.
# Markdown files (client/README.md) and hidden files are not shipped; any
# other file of an unknown type fails the build rather than being dropped.
# The output is rewritten only when it changes, so an unchanged client does
# not recompile it.
cmake_minimum_required(VERSION 3.18)

if(NOT CLIENT_DIR OR NOT OUTPUT)
  message(FATAL_ERROR "embed_client.cmake: pass -DCLIENT_DIR=... -DOUTPUT=...")
endif()
if(NOT EXISTS "${CLIENT_DIR}/index.html")
  message(FATAL_ERROR "embed_client.cmake: ${CLIENT_DIR}/index.html is missing")
endif()

# Content types by extension; `text` types get __ASSETS__ replaced and gzip.
set(type_html "text/html; charset=utf-8")
set(type_js "text/javascript; charset=utf-8")
set(type_mjs "text/javascript; charset=utf-8")
set(type_css "text/css; charset=utf-8")
set(type_webmanifest "application/manifest+json")
set(type_json "application/json")
set(type_svg "image/svg+xml")
set(type_png "image/png")
set(type_ico "image/x-icon")
set(type_webp "image/webp")
set(type_woff2 "font/woff2")
set(text_extensions html js mjs css webmanifest json svg)

get_filename_component(out_dir "${OUTPUT}" DIRECTORY)
set(work "${out_dir}/client_assets_work")
file(REMOVE_RECURSE "${work}")
file(MAKE_DIRECTORY "${work}")

# The shipped files, sorted by relative path.
file(GLOB_RECURSE all_files LIST_DIRECTORIES false RELATIVE "${CLIENT_DIR}" "${CLIENT_DIR}/*")
set(files "")
foreach(rel IN LISTS all_files)
  get_filename_component(name "${rel}" NAME)
  if(rel MATCHES "(^|/)\\." OR name MATCHES "\\.md$")
    continue()
  endif()
  string(REGEX MATCH "[^.]+$" ext "${name}")
  string(TOLOWER "${ext}" ext)
  if(NOT name MATCHES "\\." OR NOT DEFINED type_${ext})
    message(FATAL_ERROR "embed_client.cmake: client/${rel}: unknown file type; "
                        "add its extension to cmake/embed_client.cmake")
  endif()
  list(APPEND files "${rel}")
endforeach()
list(SORT files)

# H: over the relative paths and raw contents of every shipped file.
set(manifest "")
foreach(rel IN LISTS files)
  file(SHA256 "${CLIENT_DIR}/${rel}" sum)
  string(APPEND manifest "${rel} ${sum}\n")
endforeach()
string(SHA256 manifest_sum "${manifest}")
string(SUBSTRING "${manifest_sum}" 0 16 hash)
set(assets_prefix "/assets/${hash}")

# A C++ string literal for `text`.
function(cxx_string out text)
  string(REPLACE "\\" "\\\\" text "${text}")
  string(REPLACE "\"" "\\\"" text "${text}")
  set(${out} "\"${text}\"" PARENT_SCOPE)
endfunction()

# A C++ array initializer list for lower-case `hex`, 32 bytes a line.
function(cxx_bytes out hex)
  string(REPEAT "[0-9a-f]" 64 line)
  string(REGEX REPLACE "(${line})" "\\1\n" hex "${hex}")
  string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," hex "${hex}")
  set(${out} "${hex}" PARENT_SCOPE)
endfunction()

set(arrays "")
set(urls "")
set(total_body 0)
set(total_gzip 0)
set(index 0)
foreach(rel IN LISTS files)
  set(src "${CLIENT_DIR}/${rel}")
  get_filename_component(name "${rel}" NAME)
  string(REGEX MATCH "[^.]+$" ext "${name}")
  string(TOLOWER "${ext}" ext)
  set(content_type "${type_${ext}}")

  if(rel STREQUAL "index.html")
    set(url "/")
  elseif(rel STREQUAL "sw.js" OR rel STREQUAL "manifest.webmanifest")
    set(url "/${rel}")
  else()
    set(url "${assets_prefix}/${rel}")
  endif()
  if(url MATCHES "^/assets/")
    set(cache "kImmutable")
  else()
    set(cache "kNoCache")
  endif()

  # The served body: text files with __ASSETS__ replaced, others as they are.
  set(body "${work}/${index}.body")
  list(FIND text_extensions "${ext}" text_index)
  if(text_index GREATER_EQUAL 0)
    file(READ "${src}" text)
    string(REPLACE "__ASSETS__" "${assets_prefix}" text "${text}")
    file(WRITE "${body}" "${text}")
  else()
    configure_file("${src}" "${body}" COPYONLY)
  endif()
  file(SIZE "${body}" body_size)
  file(SHA256 "${body}" body_sum)
  string(SUBSTRING "${body_sum}" 0 16 etag)

  set(gzip_hex "")
  set(gzip_size 0)
  if(text_index GREATER_EQUAL 0 AND body_size GREATER 0)
    set(gz "${work}/${index}.gz")
    if(CMAKE_VERSION VERSION_GREATER_EQUAL 3.19)
      set(level COMPRESSION_LEVEL 9)
    else()
      set(level "")
    endif()
    file(ARCHIVE_CREATE OUTPUT "${gz}" PATHS "${body}" FORMAT raw COMPRESSION GZip ${level})
    file(READ "${gz}" gzip_hex HEX)
    string(TOLOWER "${gzip_hex}" gzip_hex)
    # libarchive writes the current time into the gzip header (bytes 4-7)
    # whatever MTIME says; zero means "no time" (RFC 1952), which makes the
    # output reproducible. Only done when byte 3 (flags) is 0: no header CRC.
    string(SUBSTRING "${gzip_hex}" 0 8 gzip_start)
    if(NOT gzip_start STREQUAL "1f8b0800")
      message(FATAL_ERROR "embed_client.cmake: unexpected gzip header ${gzip_start} for ${rel}")
    endif()
    string(SUBSTRING "${gzip_hex}" 16 -1 gzip_rest)
    set(gzip_hex "${gzip_start}00000000${gzip_rest}")
    string(LENGTH "${gzip_hex}" gzip_hex_length)
    math(EXPR gzip_size "${gzip_hex_length} / 2")
    if(gzip_size GREATER_EQUAL body_size)
      set(gzip_hex "")
      set(gzip_size 0)
    endif()
  endif()

  if(body_size GREATER 0)
    file(READ "${body}" body_hex HEX)
    string(TOLOWER "${body_hex}" body_hex)
    cxx_bytes(bytes "${body_hex}")
    string(APPEND arrays "// From client/${rel} (${body_size} bytes).\nconst unsigned char kBody${index}[] = {\n${bytes}};\n")
    set(body_ref "kBody${index}, sizeof kBody${index}")
  else()
    set(body_ref "nullptr, 0")
  endif()
  if(gzip_size GREATER 0)
    cxx_bytes(bytes "${gzip_hex}")
    string(APPEND arrays "const unsigned char kGzip${index}[] = {\n${bytes}};\n")
    set(gzip_ref "kGzip${index}, sizeof kGzip${index}")
  else()
    set(gzip_ref "nullptr, 0")
  endif()
  string(APPEND arrays "\n")

  cxx_string(url_literal "${url}")
  cxx_string(type_literal "${content_type}")
  set(row_${url} "    {${url_literal}, ${type_literal}, CachePolicy::${cache}, ${body_ref}, ${gzip_ref},\n     \"\\\"${etag}\\\"\"},\n")
  list(APPEND urls "${url}")
  math(EXPR total_body "${total_body} + ${body_size}")
  math(EXPR total_gzip "${total_gzip} + ${gzip_size}")
  math(EXPR index "${index} + 1")
endforeach()

# The table, sorted by URL path (byte order, as std::string_view compares).
list(SORT urls)
set(rows "")
foreach(url IN LISTS urls)
  string(APPEND rows "${row_${url}}")
endforeach()

set(cc "// Generated by cmake/embed_client.cmake from client/: do not edit.
// ${index} files, ${total_body} bytes, ${total_gzip} bytes of gzip variants.
#include \"server/client_assets/client_assets.h\"

namespace quire::client_assets {
namespace {

${arrays}constexpr Asset kAssets[] = {
${rows}};

}  // namespace

std::span<const Asset> EmbeddedAssets() {
  return kAssets;
}

std::string_view AssetsPrefix() {
  return \"${assets_prefix}\";
}

}  // namespace quire::client_assets
")

file(WRITE "${work}/client_assets_data.cc" "${cc}")
configure_file("${work}/client_assets_data.cc" "${OUTPUT}" COPYONLY)
file(REMOVE_RECURSE "${work}")
