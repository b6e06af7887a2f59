// Device tensors as the kernels' host API sees them: a pointer, how many values the buffer holds from it, and
// strides; and the one check that a view fits the shape a kernel will read or write. Plain C++.
//
// A View<T> is a [batch, rows, cols] tensor: value (b, r, c) is data[b·batch_stride + r·row_stride + c]
// (columns are always contiguous). A column block of a wider row-major matrix is a view with a row stride
// larger than its cols: e.g. xBC_in inside zxbcdt [T, 2E+2GN+H] starts at column E with row stride
// 2E+2GN+H. A stride of 0 means "contiguous": row_stride = cols, batch_stride = rows·row_stride.
#pragma once

#include <cstddef>
#include <cstdint>
#include <sstream>
#include <stdexcept>
#include <string>
#include <type_traits>

namespace transmamba::gpu {

template <class T>
struct View {
  T* data = nullptr;
  std::size_t size = 0;  // values the buffer holds from data on
  std::int64_t batch_stride = 0, row_stride = 0;

  // A view of T converts to a view of const T (outputs may be passed where inputs are expected), and to nothing
  // else: U = T only (a conversion template deduces U from the target, e.g. View<const Bf16> from View<float>,
  // which made a braced argument ambiguous between the fp32 and bf16 overloads of a function).
  template <class U = T, class = std::enable_if_t<std::is_same_v<U, T> && !std::is_const_v<U>>>
  operator View<const U>() const {
    return {data, size, batch_stride, row_stride};
  }
};

// The strides of a view of shape [batch, rows, cols], with 0 resolved to contiguous.
struct Strides {
  std::int64_t batch, row;
};
template <class T>
Strides resolved_strides(const View<T>& v, std::int64_t rows, std::int64_t cols) {
  const std::int64_t row = v.row_stride ? v.row_stride : cols;
  return {v.batch_stride ? v.batch_stride : rows * row, row};
}

// Throws std::invalid_argument, naming the function and the argument, when v cannot be read or written as
// [batch, rows, cols]: a null pointer, a pointer not aligned for T, strides that make rows or sequences
// overlap, or a buffer too small for the last value.
template <class T>
Strides check_view(const char* fn, const char* arg, const View<T>& v, std::int64_t batch, std::int64_t rows,
                   std::int64_t cols) {
  auto fail = [&](const std::string& what) {
    std::ostringstream os;
    os << fn << ": " << arg << " [" << batch << ", " << rows << ", " << cols << "]: " << what;
    throw std::invalid_argument(os.str());
  };
  if (batch < 0 || rows < 0 || cols < 0) fail("negative dimension");
  const Strides s = resolved_strides(v, rows, cols);
  if (batch == 0 || rows == 0 || cols == 0) return s;
  if (!v.data) fail("null pointer");
  if (reinterpret_cast<std::uintptr_t>(v.data) % alignof(T) != 0)
    fail("pointer not aligned to " + std::to_string(alignof(T)) + " bytes");
  if (rows > 1 && s.row < cols) fail("row stride " + std::to_string(s.row) + " < cols: rows overlap");
  const std::int64_t sequence = (rows - 1) * s.row + cols;  // values one sequence spans
  if (batch > 1 && s.batch < sequence)
    fail("batch stride " + std::to_string(s.batch) + " < " + std::to_string(sequence) + ": sequences overlap");
  const std::int64_t needed = (batch - 1) * s.batch + sequence;
  if (std::uint64_t(needed) > v.size)
    fail("the buffer holds " + std::to_string(v.size) + " values from this pointer, the shape needs " +
         std::to_string(needed));
  return s;
}

}  // namespace transmamba::gpu
