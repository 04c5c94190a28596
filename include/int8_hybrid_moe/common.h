// Common vocabulary of the public C++ API: activation dtypes, the error type and argument checks.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <stdexcept>
#include <string>
#include <type_traits>

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
// Message text without iostreams: numbers through std::to_string / snprintf ("%g", as an ostream's
// default). Integer formatting through a std::ostream crashed inside the Python process when the
// torch extension was built with the GPU machine's GCC 13 against its GCC 14 libstdc++.
inline void append_text(std::string& s, const std::string& v) {
  s += v;
}
inline void append_text(std::string& s, const char* v) {
  s += v != nullptr ? v : "(null)";
}
inline void append_text(std::string& s, const void* v) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%p", v);
  s += buf;
}
inline void append_text(std::string& s, char v) {
  s += v;
}
template <typename T, std::enable_if_t<std::is_integral_v<T>, int> = 0>
void append_text(std::string& s, T v) {
  s += std::to_string(v);
}
template <typename T, std::enable_if_t<std::is_floating_point_v<T>, int> = 0>
void append_text(std::string& s, T v) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%g", static_cast<double>(v));
  s += buf;
}
template <typename... Ts>
std::string concat(const Ts&... parts) {
  std::string s;
  (append_text(s, parts), ...);
  return s;
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
