// Reader and writer of the safetensors format (DESIGN.md section 9), written by hand (Debian ships no library).
//
// Layout: 8-byte little-endian u64 header length N, N bytes of JSON, then the raw little-endian byte buffer.
// The JSON is an object: tensor name -> {"dtype", "shape", "data_offsets": [begin, end]} (offsets relative to
// the start of the byte buffer), plus an optional "__metadata__" object of string -> string.
// Supported dtypes: F64, F32, BF16, I64, I32.
//
// Reading is strict: every malformed input (truncation, bad JSON, wrong field types, unknown dtype, bad shape,
// offsets that overlap, leave gaps or trailing bytes, duplicate names, ...) throws SafetensorsError whose
// message starts with the source name and names the tensor or field, e.g.
//   "fixtures/a.safetensors: tensor 'x': data_offsets [0, 12] hold 12 bytes but shape [2, 2] of F64 needs 32"
// Writing lays out the tensors sorted by name, pads the header with spaces to a multiple of 8 bytes (as
// Python's safetensors does) and is readable by Python's safetensors and NumPy.
#pragma once

#include <Eigen/Core>

#include <cstddef>
#include <cstdint>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

namespace transmamba {

class SafetensorsError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

using SafetensorsMatrix = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

// A shape (or an index) as text: "[2, 3, 4]", "[]".
std::string shape_str(const std::vector<int64_t>& shape);

// Bytes per element of "F64", "F32", "BF16", "I64" or "I32"; 0 for any other string.
std::size_t safetensors_dtype_size(const std::string& dtype);

struct SafetensorsTensor {
  std::string dtype;            // "F64", "F32", "BF16", "I64" or "I32"
  std::vector<int64_t> shape;   // [] is a 0-d scalar (1 element); a 0 dim gives 0 elements
  std::vector<uint8_t> bytes;   // raw little-endian row-major data: numel() * dtype size bytes

  int64_t numel() const;  // product of shape (1 for []); assumes a valid shape
};
bool operator==(const SafetensorsTensor& a, const SafetensorsTensor& b);
bool operator!=(const SafetensorsTensor& a, const SafetensorsTensor& b);

struct SafetensorsFile {
  std::string source;                              // where it was read from, for messages; never written
  std::map<std::string, std::string> metadata;     // "__metadata__"; omitted from the file when empty
  std::map<std::string, SafetensorsTensor> tensors;  // by name; the file order of the writer

  bool has(const std::string& name) const;
  // The tensor or metadata entry; throws SafetensorsError "<source>: no tensor 'name'" when absent.
  const SafetensorsTensor& at(const std::string& name) const;
  const std::string& meta(const std::string& key) const;

  // Values in row-major order. doubles() converts F64/F32/BF16 (and I64/I32 only when allow_int);
  // ints() takes I64/I32 only. Errors name the source and the tensor.
  std::vector<double> doubles(const std::string& name, bool allow_int = false) const;
  std::vector<int64_t> ints(const std::string& name) const;
  // A float tensor as a row-major matrix: rows = shape[0] (1 for a scalar), cols = product of the other dims
  // (so [T, H, p] gives [T, H*p], [n] gives [n, 1]); or with explicit rows x cols = numel.
  SafetensorsMatrix matrix(const std::string& name) const;
  SafetensorsMatrix matrix(const std::string& name, int64_t rows, int64_t cols) const;

  // Insert or replace. put_matrix stores F64 with shape [rows, cols] or the given shape (numel must match);
  // put_doubles stores F64, F32 or BF16 (rounded to nearest even); put_ints stores I64 or I32 (range-checked).
  void put(const std::string& name, SafetensorsTensor tensor);
  void put_matrix(const std::string& name, const Eigen::Ref<const SafetensorsMatrix>& m);
  void put_matrix(const std::string& name, const Eigen::Ref<const SafetensorsMatrix>& m,
                  const std::vector<int64_t>& shape);
  void put_doubles(const std::string& name, const std::vector<double>& values, const std::vector<int64_t>& shape,
                   const std::string& dtype = "F64");
  void put_ints(const std::string& name, const std::vector<int64_t>& values, const std::vector<int64_t>& shape,
                const std::string& dtype = "I64");
};
// Equal metadata and tensors (source is ignored).
bool operator==(const SafetensorsFile& a, const SafetensorsFile& b);
bool operator!=(const SafetensorsFile& a, const SafetensorsFile& b);

// Parses a whole file held in memory; source_name prefixes every error message. Never reads outside
// [data, data + size).
SafetensorsFile parse_safetensors(const uint8_t* data, std::size_t size, const std::string& source_name);
// Reads and parses the file at path (errors name path).
SafetensorsFile read_safetensors(const std::string& path);

// The file's bytes; throws SafetensorsError (naming file.source or "<memory>") for an invalid tensor.
std::vector<uint8_t> serialize_safetensors(const SafetensorsFile& file);
// Writes path + ".tmp-<pid>" in the same directory, fsyncs and closes it, then renames it onto path.
// On any failure the temp file is removed, path is left untouched and SafetensorsError is thrown.
void write_safetensors_atomic(const std::string& path, const SafetensorsFile& file);

}  // namespace transmamba
