# Compresses one file the way Debian wants it in a package: gzip -9n (no name,
# no time stamp, so the same input gives the same bytes).
#   cmake -DINPUT=... -DOUTPUT=... -P packaging/gzip.cmake
# (a script, because a custom command cannot redirect gzip's output portably).
if(NOT INPUT OR NOT OUTPUT)
  message(FATAL_ERROR "gzip.cmake: pass -DINPUT=... -DOUTPUT=...")
endif()
find_program(GZIP_EXECUTABLE gzip REQUIRED)
execute_process(COMMAND "${GZIP_EXECUTABLE}" -9nc "${INPUT}" OUTPUT_FILE "${OUTPUT}.tmp"
                RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  file(REMOVE "${OUTPUT}.tmp")
  message(FATAL_ERROR "gzip.cmake: gzip -9nc ${INPUT} failed (${rc})")
endif()
file(RENAME "${OUTPUT}.tmp" "${OUTPUT}")
