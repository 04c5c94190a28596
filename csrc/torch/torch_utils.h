// Helpers of the PyTorch extension: argument checks that name the argument, dtype conversion,
// the current CUDA stream, output allocation and the translation of C++ API exceptions into
// Python exceptions (InvalidArgument -> ValueError, CudaError -> RuntimeError).
#pragma once

#include <ATen/ATen.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <c10/util/Exception.h>

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "int8_hybrid_moe/common.h"
#include "int8_hybrid_moe/format.h"

namespace int8_hybrid_moe::torch_ext {

// Every argument error of the extension is a c10::ValueError (Python ValueError) whose message
// reads "<op>: argument '<arg>' must be <expected>, got <given>", like the C++ API's. The text is
// built by detail::concat, never through an iostream (common.h says why): pass numbers, strings,
// dims(...), c10::toString(scalar_type) and device.str().
#define I8H_TORCH_CHECK(cond, fn, arg, ...)                                                      \
  do {                                                                                           \
    if (!(cond)) {                                                                               \
      C10_THROW_ERROR(ValueError, ::int8_hybrid_moe::detail::concat(fn, ": argument '", arg,     \
                                                                    "' must be ", __VA_ARGS__)); \
    }                                                                                            \
  } while (0)

// Shapes and strides in messages: "[2, 32, 3]".
inline std::string dims(at::IntArrayRef d) {
  std::string s = "[";
  for (size_t i = 0; i < d.size(); ++i) s += (i ? ", " : "") + std::to_string(d[i]);
  return s + "]";
}

// Runs a call into the C++ API and rethrows its exceptions as c10 errors with the message intact.
// The c10 error is thrown after the handler has finished (no throw while an exception is being
// handled), so the C++ API's exception is fully released first.
template <typename Fn>
void call_api(Fn&& fn) {
  std::string message;
  bool invalid_argument = false;
  try {
    std::forward<Fn>(fn)();
    return;
  } catch (const ::int8_hybrid_moe::InvalidArgument& e) {
    message = e.what();
    invalid_argument = true;
  } catch (const ::int8_hybrid_moe::CudaError& e) {
    message = e.what();
  }
  if (invalid_argument) C10_THROW_ERROR(ValueError, message);
  C10_THROW_ERROR(Error, message);
}

inline void check_cuda(const at::Tensor& t, const char* fn, const char* arg) {
  I8H_TORCH_CHECK(t.defined(), fn, arg, "a defined tensor, got an undefined one");
  I8H_TORCH_CHECK(t.is_cuda(), fn, arg, "a CUDA tensor, got device ", t.device().str());
}

inline void check_same_device(const at::Tensor& t, const at::Tensor& ref, const char* fn,
                              const char* arg) {
  I8H_TORCH_CHECK(t.device() == ref.device(), fn, arg, "on the same device as the first input (",
                  ref.device().str(), "), got ", t.device().str());
}

inline void check_dim(const at::Tensor& t, int64_t dim, const char* fn, const char* arg) {
  I8H_TORCH_CHECK(t.dim() == dim, fn, arg, "a ", dim, "-D tensor, got ", t.dim(), "-D with shape ",
                  dims(t.sizes()));
}

inline void check_dtype(const at::Tensor& t, at::ScalarType st, const char* fn, const char* arg) {
  I8H_TORCH_CHECK(t.scalar_type() == st, fn, arg, "of dtype ", c10::toString(st), ", got ",
                  c10::toString(t.scalar_type()));
}

inline void check_contiguous(const at::Tensor& t, const char* fn, const char* arg) {
  I8H_TORCH_CHECK(t.is_contiguous(), fn, arg, "contiguous, got strides ", dims(t.strides()),
                  " for shape ", dims(t.sizes()));
}

inline void check_shape(const at::Tensor& t, const std::vector<int64_t>& shape, const char* fn,
                        const char* arg) {
  I8H_TORCH_CHECK(t.sizes() == at::IntArrayRef(shape), fn, arg, "of shape ",
                  dims(at::IntArrayRef(shape)), ", got ", dims(t.sizes()));
}

// Full check of one input: CUDA, same device as `ref`, rank, dtype, contiguity.
inline void check_input(const at::Tensor& t, const at::Tensor& ref, int64_t dim, at::ScalarType st,
                        const char* fn, const char* arg) {
  check_cuda(t, fn, arg);
  check_same_device(t, ref, fn, arg);
  check_dim(t, dim, fn, arg);
  check_dtype(t, st, fn, arg);
  check_contiguous(t, fn, arg);
}

// bf16 / fp16 activation tensors.
inline DType to_act_dtype(at::ScalarType st, const char* fn, const char* arg) {
  I8H_TORCH_CHECK(st == at::kBFloat16 || st == at::kHalf, fn, arg,
                  "of dtype torch.bfloat16 or torch.float16, got ", c10::toString(st));
  return st == at::kBFloat16 ? DType::kBFloat16 : DType::kFloat16;
}

inline DType check_act_input(const at::Tensor& t, const at::Tensor& ref, int64_t dim,
                             const char* fn, const char* arg) {
  check_cuda(t, fn, arg);
  check_same_device(t, ref, fn, arg);
  check_dim(t, dim, fn, arg);
  const DType d = to_act_dtype(t.scalar_type(), fn, arg);
  check_contiguous(t, fn, arg);
  return d;
}

// Optional device int64 scalar (e.g. expert_offsets[E:]) bounding the rows a kernel processes.
inline const int64_t* num_valid_rows_ptr(const std::optional<at::Tensor>& t, const at::Tensor& ref,
                                         const char* fn) {
  if (!t.has_value() || !t->defined()) return nullptr;
  check_cuda(*t, fn, "num_valid_rows");
  check_same_device(*t, ref, fn, "num_valid_rows");
  check_dtype(*t, at::kLong, fn, "num_valid_rows");
  I8H_TORCH_CHECK(t->numel() >= 1, fn, "num_valid_rows", "a tensor with at least one element, got ",
                  dims(t->sizes()));
  return t->data_ptr<int64_t>();
}

inline HybridFormat make_format(int64_t block_size, int64_t super_group, int64_t q_max,
                                const char* fn) {
  const auto fits = [](int64_t v) { return v >= INT32_MIN && v <= INT32_MAX; };
  I8H_TORCH_CHECK(fits(block_size), fn, "block_size", "a 32-bit integer, got ", block_size);
  I8H_TORCH_CHECK(fits(super_group), fn, "super_group", "a 32-bit integer, got ", super_group);
  I8H_TORCH_CHECK(fits(q_max), fn, "q_max", "a 32-bit integer, got ", q_max);
  HybridFormat f;
  f.block_size = static_cast<int>(block_size);
  f.super_group = static_cast<int>(super_group);
  f.q_max = static_cast<int>(q_max);
  call_api([&] { validate_format(f, fn); });
  return f;
}

inline int to_int(int64_t v, const char* fn, const char* arg) {
  I8H_TORCH_CHECK(v >= 0 && v <= INT32_MAX, fn, arg, "a non-negative 32-bit integer, got ", v);
  return static_cast<int>(v);
}

inline cudaStream_t current_stream(const at::Tensor& t) {
  return c10::cuda::getCurrentCUDAStream(t.device().index()).stream();
}

inline at::Tensor empty_like_dev(const at::Tensor& ref, at::IntArrayRef shape, at::ScalarType st) {
  return at::empty(shape, ref.options().dtype(st));
}

// Workspace of `bytes` (never empty, so the pointer is valid; the caching allocator aligns blocks
// to at least 512 bytes, above the API's 256).
inline at::Tensor workspace(const at::Tensor& ref, size_t bytes) {
  const int64_t n = static_cast<int64_t>(bytes > 0 ? bytes : 256);
  return at::empty({n}, ref.options().dtype(at::kByte));
}

}  // namespace int8_hybrid_moe::torch_ext
