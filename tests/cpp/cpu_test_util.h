// Shared helpers of the CPU tests: replayable seeds, fake device pointers for validation tests
// (never dereferenced: every check runs before any CUDA call), and the bad-argument expectation.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <cstdlib>
#include <random>
#include <string>

#include "int8_hybrid_moe/common.h"

namespace i8h_cpu_test {

// Fresh per process unless I8H_TEST_SEED replays a failure.
inline uint64_t base_seed() {
  static const uint64_t seed = [] {
    if (const char* s = std::getenv("I8H_TEST_SEED")) return uint64_t(std::strtoull(s, nullptr, 0));
    return (uint64_t(std::random_device{}()) << 32) ^ std::random_device{}();
  }();
  return seed;
}

// Fake, 256-byte aligned "device" pointers, and ones `bytes` past such a pointer.
template <typename T = void>
T* fake(uintptr_t slot) {
  return reinterpret_cast<T*>(uintptr_t(0x10000) + slot * 0x1000);
}
template <typename T = void>
T* off_by(uintptr_t slot, uintptr_t bytes) {
  return reinterpret_cast<T*>(reinterpret_cast<uintptr_t>(fake<char>(slot)) + bytes);
}
template <typename T = void>
T* misaligned(uintptr_t slot) {
  return off_by<T>(slot, 2);
}

// Checks that `call` throws InvalidArgument whose message contains `fn`, 'arg' and `text`.
template <typename Call>
void expect_bad_arg(Call&& call, const char* what, const std::string& fn, const std::string& arg,
                    const std::string& text = "") {
  try {
    call();
    ADD_FAILURE() << what << ": no exception, expected one naming '" << arg << "'";
  } catch (const int8_hybrid_moe::InvalidArgument& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find(fn), std::string::npos) << msg;
    EXPECT_NE(msg.find("'" + arg + "'"), std::string::npos) << msg;
    EXPECT_NE(msg.find(text), std::string::npos) << msg;
  } catch (const std::exception& e) {
    ADD_FAILURE() << what << ": wrong exception type: " << e.what();
  }
}

}  // namespace i8h_cpu_test

#define I8H_SEED_TRACE()            \
  SCOPED_TRACE(::testing::Message() \
               << "I8H_TEST_SEED=" << ::i8h_cpu_test::base_seed() << " reproduces this")

// EXPECT_BAD_ARG(call, fn, arg[, text]): the call must be rejected naming the argument.
#define EXPECT_BAD_ARG(call, ...) ::i8h_cpu_test::expect_bad_arg([&] { call; }, #call, __VA_ARGS__)
