// Common vocabulary of the public C++ API: activation dtypes, the error type and argument checks.
#pragma once

#include <cstddef>
#include <cstdint>
#include <sstream>
#include <stdexcept>
#include <string>

namespace int8_hybrid_moe {

// Activation / output element type. Values are stored as raw 16-bit words.
enum class DType : int { kBFloat16 = 0, kFloat16 = 1 };

inline const char* dtype_name(DType t) {
  return t == DType::kBFloat16 ? "bfloat16" : "float16";
}
inline constexpr size_t dtype_bytes(DType) {
  return 2;
}

// Thrown for every invalid argument of a public entry point. The message names the argument,
// what was expected and what was given.
class InvalidArgument : public std::invalid_argument {
 public:
  using std::invalid_argument::invalid_argument;
};

// Thrown when a CUDA runtime / library call fails.
class CudaError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

namespace detail {
template <typename... Ts>
std::string concat(const Ts&... parts) {
  std::ostringstream os;
  (os << ... << parts);
  return os.str();
}
}  // namespace detail

// I8H_CHECK_ARG(cond, "function", "arg", "expected ...", given): throws InvalidArgument
//   "function: argument 'arg' must be <expected>, got <given>".
#define I8H_CHECK_ARG(cond, fn, arg, expected, given)                             \
  do {                                                                            \
    if (!(cond))                                                                  \
      throw ::int8_hybrid_moe::InvalidArgument(::int8_hybrid_moe::detail::concat( \
          fn, ": argument '", arg, "' must be ", expected, ", got ", given));     \
  } while (0)

#define I8H_CHECK_NOT_NULL(ptr, fn, arg) \
  I8H_CHECK_ARG((ptr) != nullptr, fn, arg, "a non-null device pointer", "nullptr")

inline void validate_dtype(DType t, const char* fn, const char* arg = "dtype") {
  I8H_CHECK_ARG(t == DType::kBFloat16 || t == DType::kFloat16, fn, arg,
                "bfloat16 (0) or float16 (1)", static_cast<int>(t));
}

}  // namespace int8_hybrid_moe
