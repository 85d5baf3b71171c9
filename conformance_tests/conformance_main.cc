// The entry point of a conformance suite executable: GoogleTest's main, with
// a first line that names the interface version the suite checks.
#include <gtest/gtest.h>

#include <cstdio>

#include "storage/store.h"

int main(int argc, char** argv) {
  std::printf("Quire storage conformance suite, Store interface version %d\n",
              quire::storage::kStoreInterfaceVersion);
  ::testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
