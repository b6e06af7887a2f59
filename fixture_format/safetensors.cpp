#include "fixture_format/safetensors.hpp"

#include <nlohmann/json.hpp>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cfloat>
#include <cmath>
#include <cstring>
#include <limits>
#include <set>
#include <sstream>
#include <utility>

namespace transmamba {

std::string shape_str(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (std::size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

namespace {

using nlohmann::json;

constexpr uint64_t kMaxHeaderBytes = 100'000'000;  // as the Rust safetensors crate (MAX_HEADER_SIZE)
constexpr int kMaxJsonDepth = 16;                  // a valid header nests 3 deep

[[noreturn]] void fail(const std::string& source, const std::string& what) {
  throw SafetensorsError(source + ": " + what);
}
[[noreturn]] void fail_tensor(const std::string& source, const std::string& name, const std::string& what) {
  throw SafetensorsError(source + ": tensor '" + name + "': " + what);
}

// Number of elements of shape, or false when a dim is negative or the element count times elem_size
// overflows a u64 (the product of the non-zero dims is checked even when a dim is 0).
bool checked_numel(const std::vector<int64_t>& shape, uint64_t elem_size, uint64_t& numel, uint64_t& nbytes) {
  uint64_t nonzero = 1;
  bool any_zero = false;
  for (int64_t d : shape) {
    if (d < 0) return false;
    if (d == 0) {
      any_zero = true;
      continue;
    }
    if (__builtin_mul_overflow(nonzero, static_cast<uint64_t>(d), &nonzero)) return false;
  }
  if (nonzero > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) return false;
  uint64_t bytes = 0;
  if (__builtin_mul_overflow(nonzero, elem_size, &bytes)) return false;
  numel = any_zero ? 0 : nonzero;
  nbytes = any_zero ? 0 : bytes;
  return true;
}

uint64_t load_le(const uint8_t* p, int n) {
  uint64_t v = 0;
  for (int i = 0; i < n; ++i) v |= static_cast<uint64_t>(p[i]) << (8 * i);
  return v;
}
void store_le(uint8_t* p, uint64_t v, int n) {
  for (int i = 0; i < n; ++i) p[i] = static_cast<uint8_t>(v >> (8 * i));
}

template <class To, class From>
To bit_cast_(From f) {
  static_assert(sizeof(To) == sizeof(From), "size");
  To t;
  std::memcpy(&t, &f, sizeof t);
  return t;
}

// double -> float, round to nearest even, without the undefined behaviour of an out-of-range cast.
float double_to_float(double d) {
  if (std::isfinite(d) && std::fabs(d) > static_cast<double>(FLT_MAX)) {
    // Half an ulp above FLT_MAX (ulp 2^104) is the tie, which goes to the even neighbour: infinity.
    const double tie = static_cast<double>(FLT_MAX) + std::ldexp(1.0, 103);
    const float mag = std::fabs(d) >= tie ? INFINITY : FLT_MAX;
    return d < 0 ? -mag : mag;
  }
  return static_cast<float>(d);
}

// double -> bf16, correctly rounded to nearest even (via float with round-to-odd, which avoids double rounding).
uint16_t double_to_bf16(double d) {
  if (std::isnan(d)) return std::signbit(d) ? 0xFFC0 : 0x7FC0;
  if (std::fabs(d) > static_cast<double>(FLT_MAX)) return std::signbit(d) ? 0xFF80 : 0x7F80;  // above bf16 max too
  float f = static_cast<float>(d);
  if (static_cast<double>(f) != d) {
    if (std::fabs(static_cast<double>(f)) > std::fabs(d)) f = std::nextafter(f, 0.0f);  // truncate toward zero
    f = bit_cast_<float>(bit_cast_<uint32_t>(f) | 1u);                                  // sticky bit: round to odd
  }
  uint32_t b = bit_cast_<uint32_t>(f);
  b += 0x7FFFu + ((b >> 16) & 1u);
  return static_cast<uint16_t>(b >> 16);
}

bool is_float_dtype(const std::string& dt) { return dt == "F64" || dt == "F32" || dt == "BF16"; }
bool is_int_dtype(const std::string& dt) { return dt == "I64" || dt == "I32"; }

std::vector<double> decode_doubles(const SafetensorsTensor& t) {
  const std::size_t es = safetensors_dtype_size(t.dtype);
  const std::size_t n = es ? t.bytes.size() / es : 0;
  std::vector<double> out(n);
  const uint8_t* p = t.bytes.data();
  for (std::size_t i = 0; i < n; ++i, p += es) {
    if (t.dtype == "F64") out[i] = bit_cast_<double>(load_le(p, 8));
    else if (t.dtype == "F32") out[i] = bit_cast_<float>(static_cast<uint32_t>(load_le(p, 4)));
    else if (t.dtype == "BF16") out[i] = bit_cast_<float>(static_cast<uint32_t>(load_le(p, 2) << 16));
    else if (t.dtype == "I64") out[i] = static_cast<double>(bit_cast_<int64_t>(load_le(p, 8)));
    else out[i] = bit_cast_<int32_t>(static_cast<uint32_t>(load_le(p, 4)));
  }
  return out;
}

std::vector<int64_t> decode_ints(const SafetensorsTensor& t) {
  const std::size_t es = safetensors_dtype_size(t.dtype);
  const std::size_t n = es ? t.bytes.size() / es : 0;
  std::vector<int64_t> out(n);
  const uint8_t* p = t.bytes.data();
  for (std::size_t i = 0; i < n; ++i, p += es)
    out[i] = t.dtype == "I64" ? bit_cast_<int64_t>(load_le(p, 8))
                              : bit_cast_<int32_t>(static_cast<uint32_t>(load_le(p, 4)));
  return out;
}

// Checks what the writer needs of a tensor held in memory: known dtype, valid shape, bytes of the right size.
void validate_tensor(const std::string& source, const std::string& name, const SafetensorsTensor& t) {
  if (name == "__metadata__") fail(source, "'__metadata__' cannot be a tensor name");
  const std::size_t es = safetensors_dtype_size(t.dtype);
  if (!es) fail_tensor(source, name, "unsupported dtype '" + t.dtype + "' (F64, F32, BF16, I64, I32)");
  uint64_t numel = 0, nbytes = 0;
  if (!checked_numel(t.shape, es, numel, nbytes))
    fail_tensor(source, name, "shape " + shape_str(t.shape) + " has a negative dim or overflows");
  if (nbytes != t.bytes.size())
    fail_tensor(source, name, "holds " + std::to_string(t.bytes.size()) + " bytes but shape " + shape_str(t.shape) +
                                  " of " + t.dtype + " needs " + std::to_string(nbytes));
}

// Largest nesting depth of [ and { outside strings (a cheap guard before the JSON parser).
int json_depth(const uint8_t* p, std::size_t n) {
  int depth = 0, max_depth = 0;
  bool in_string = false, escaped = false;
  for (std::size_t i = 0; i < n; ++i) {
    const char c = static_cast<char>(p[i]);
    if (in_string) {
      if (escaped) escaped = false;
      else if (c == '\\') escaped = true;
      else if (c == '"') in_string = false;
    } else if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      max_depth = std::max(max_depth, ++depth);
    } else if (c == ']' || c == '}') {
      --depth;
    }
  }
  return max_depth;
}

// A JSON number that must be a non-negative integer; false otherwise.
bool get_u64(const json& j, uint64_t& out) {
  if (!j.is_number_unsigned()) return false;  // nlohmann stores every non-negative integer literal as unsigned
  out = j.get<uint64_t>();
  return true;
}

std::string json_brief(const json& j) {
  std::string s = j.dump(-1, ' ', false, json::error_handler_t::replace);
  if (s.size() > 60) s = s.substr(0, 57) + "...";
  return s;
}

struct Entry {
  std::string name;
  uint64_t begin, end;
};

std::vector<uint8_t> serialize_impl(const SafetensorsFile& file, const std::string& source) {
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!file.metadata.empty()) {
    nlohmann::ordered_json meta = nlohmann::ordered_json::object();
    for (const auto& [k, v] : file.metadata) meta[k] = v;
    header["__metadata__"] = std::move(meta);
  }
  uint64_t offset = 0;
  for (const auto& [name, t] : file.tensors) {
    validate_tensor(source, name, t);
    nlohmann::ordered_json e = nlohmann::ordered_json::object();
    e["dtype"] = t.dtype;
    e["shape"] = t.shape;
    e["data_offsets"] = {offset, offset + t.bytes.size()};
    offset += t.bytes.size();
    header[name] = std::move(e);
  }
  std::string text;
  try {
    text = header.dump();
  } catch (const nlohmann::json::exception& e) {
    fail(source, std::string("a tensor name or metadata string is not valid UTF-8 (") + e.what() + ")");
  }
  text.append((8 - text.size() % 8) % 8, ' ');
  std::vector<uint8_t> out(8 + text.size() + offset);
  store_le(out.data(), text.size(), 8);
  std::memcpy(out.data() + 8, text.data(), text.size());
  uint8_t* p = out.data() + 8 + text.size();
  for (const auto& kv : file.tensors) {
    if (!kv.second.bytes.empty()) std::memcpy(p, kv.second.bytes.data(), kv.second.bytes.size());
    p += kv.second.bytes.size();
  }
  return out;
}

std::string errno_str(int e) { return std::strerror(e); }

}  // namespace

std::size_t safetensors_dtype_size(const std::string& dtype) {
  if (dtype == "F64" || dtype == "I64") return 8;
  if (dtype == "F32" || dtype == "I32") return 4;
  if (dtype == "BF16") return 2;
  return 0;
}

int64_t SafetensorsTensor::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

bool operator==(const SafetensorsTensor& a, const SafetensorsTensor& b) {
  return a.dtype == b.dtype && a.shape == b.shape && a.bytes == b.bytes;
}
bool operator!=(const SafetensorsTensor& a, const SafetensorsTensor& b) { return !(a == b); }
bool operator==(const SafetensorsFile& a, const SafetensorsFile& b) {
  return a.metadata == b.metadata && a.tensors == b.tensors;
}
bool operator!=(const SafetensorsFile& a, const SafetensorsFile& b) { return !(a == b); }

// ---- SafetensorsFile accessors ---------------------------------------------------------------------------

namespace {
std::string source_of(const SafetensorsFile& f) { return f.source.empty() ? "<memory>" : f.source; }
}  // namespace

bool SafetensorsFile::has(const std::string& name) const { return tensors.count(name) != 0; }

const SafetensorsTensor& SafetensorsFile::at(const std::string& name) const {
  const auto it = tensors.find(name);
  if (it == tensors.end()) fail(source_of(*this), "no tensor '" + name + "'");
  return it->second;
}

const std::string& SafetensorsFile::meta(const std::string& key) const {
  const auto it = metadata.find(key);
  if (it == metadata.end()) fail(source_of(*this), "__metadata__: no key '" + key + "'");
  return it->second;
}

std::vector<double> SafetensorsFile::doubles(const std::string& name, bool allow_int) const {
  const SafetensorsTensor& t = at(name);
  validate_tensor(source_of(*this), name, t);
  if (!is_float_dtype(t.dtype) && !(allow_int && is_int_dtype(t.dtype)))
    fail_tensor(source_of(*this), name, "dtype " + t.dtype + " is not a float dtype (F64, F32, BF16)");
  return decode_doubles(t);
}

std::vector<int64_t> SafetensorsFile::ints(const std::string& name) const {
  const SafetensorsTensor& t = at(name);
  validate_tensor(source_of(*this), name, t);
  if (!is_int_dtype(t.dtype))
    fail_tensor(source_of(*this), name, "dtype " + t.dtype + " is not an integer dtype (I64, I32)");
  return decode_ints(t);
}

SafetensorsMatrix SafetensorsFile::matrix(const std::string& name) const {
  const SafetensorsTensor& t = at(name);
  validate_tensor(source_of(*this), name, t);
  const int64_t rows = t.shape.empty() ? 1 : t.shape[0];
  int64_t cols = 1;
  for (std::size_t i = 1; i < t.shape.size(); ++i) cols *= t.shape[i];
  return matrix(name, rows, cols);
}

SafetensorsMatrix SafetensorsFile::matrix(const std::string& name, int64_t rows, int64_t cols) const {
  const SafetensorsTensor& t = at(name);
  std::vector<double> v = doubles(name);
  if (rows < 0 || cols < 0 || (rows != 0 && cols > static_cast<int64_t>(v.size()) / rows) ||
      static_cast<std::size_t>(rows * cols) != v.size())
    fail_tensor(source_of(*this), name,
                "shape " + shape_str(t.shape) + " cannot be read as a [" + std::to_string(rows) + ", " +
                    std::to_string(cols) + "] matrix");
  SafetensorsMatrix m(rows, cols);
  if (!v.empty()) std::memcpy(m.data(), v.data(), v.size() * sizeof(double));
  return m;
}

void SafetensorsFile::put(const std::string& name, SafetensorsTensor tensor) {
  validate_tensor(source_of(*this), name, tensor);
  tensors[name] = std::move(tensor);
}

void SafetensorsFile::put_matrix(const std::string& name, const Eigen::Ref<const SafetensorsMatrix>& m) {
  put_matrix(name, m, {static_cast<int64_t>(m.rows()), static_cast<int64_t>(m.cols())});
}

void SafetensorsFile::put_matrix(const std::string& name, const Eigen::Ref<const SafetensorsMatrix>& m,
                                 const std::vector<int64_t>& shape) {
  std::vector<double> v(static_cast<std::size_t>(m.size()));
  for (Eigen::Index i = 0; i < m.rows(); ++i)
    for (Eigen::Index j = 0; j < m.cols(); ++j) v[static_cast<std::size_t>(i * m.cols() + j)] = m(i, j);
  put_doubles(name, v, shape, "F64");
}

namespace {
// A tensor of dtype and shape with room for `count` values (bytes zero); throws naming the tensor when the
// shape does not hold exactly that many.
SafetensorsTensor zero_tensor(const std::string& src, const std::string& name, const std::vector<int64_t>& shape,
                              const std::string& dtype, std::size_t count) {
  uint64_t numel = 0, nbytes = 0;
  if (!checked_numel(shape, safetensors_dtype_size(dtype), numel, nbytes) || numel != count)
    fail_tensor(src, name, "shape " + shape_str(shape) + " does not hold " + std::to_string(count) + " values");
  return SafetensorsTensor{dtype, shape, std::vector<uint8_t>(nbytes)};
}
}  // namespace

void SafetensorsFile::put_doubles(const std::string& name, const std::vector<double>& values,
                                  const std::vector<int64_t>& shape, const std::string& dtype) {
  const std::string src = source_of(*this);
  if (!is_float_dtype(dtype)) fail_tensor(src, name, "put_doubles: dtype '" + dtype + "' is not F64, F32 or BF16");
  const std::size_t es = safetensors_dtype_size(dtype);
  SafetensorsTensor t = zero_tensor(src, name, shape, dtype, values.size());
  uint8_t* p = t.bytes.data();
  for (double d : values) {
    if (dtype == "F64") store_le(p, bit_cast_<uint64_t>(d), 8);
    else if (dtype == "F32") store_le(p, bit_cast_<uint32_t>(double_to_float(d)), 4);
    else store_le(p, double_to_bf16(d), 2);
    p += es;
  }
  put(name, std::move(t));
}

void SafetensorsFile::put_ints(const std::string& name, const std::vector<int64_t>& values,
                               const std::vector<int64_t>& shape, const std::string& dtype) {
  const std::string src = source_of(*this);
  if (!is_int_dtype(dtype)) fail_tensor(src, name, "put_ints: dtype '" + dtype + "' is not I64 or I32");
  const std::size_t es = safetensors_dtype_size(dtype);
  SafetensorsTensor t = zero_tensor(src, name, shape, dtype, values.size());
  uint8_t* p = t.bytes.data();
  for (std::size_t i = 0; i < values.size(); ++i, p += es) {
    const int64_t v = values[i];
    if (dtype == "I32" && (v < std::numeric_limits<int32_t>::min() || v > std::numeric_limits<int32_t>::max()))
      fail_tensor(src, name, "value " + std::to_string(v) + " at index " + std::to_string(i) + " does not fit I32");
    store_le(p, static_cast<uint64_t>(v), static_cast<int>(es));
  }
  put(name, std::move(t));
}

// ---- reading -------------------------------------------------------------------------------------------

SafetensorsFile parse_safetensors(const uint8_t* data, std::size_t size, const std::string& source) {
  if (size < 8)
    fail(source, "file is " + std::to_string(size) + " bytes, shorter than the 8-byte header length");
  const uint64_t n = load_le(data, 8);
  if (n > kMaxHeaderBytes)
    fail(source, "header length " + std::to_string(n) + " is absurd (more than " + std::to_string(kMaxHeaderBytes) +
                     " bytes)");
  if (n > size - 8)
    fail(source, "header length " + std::to_string(n) + " is larger than the " + std::to_string(size - 8) +
                     " bytes after it (truncated file?)");
  const uint8_t* hdr = data + 8;
  const uint8_t* buf = hdr + n;
  const uint64_t buf_size = size - 8 - n;

  // nlohmann's lexer takes a NUL byte for the end of input, which would accept "{}\0<anything>".
  if (const void* nul = std::memchr(hdr, 0, n))
    fail(source, "header: NUL byte at offset " +
                     std::to_string(static_cast<const uint8_t*>(nul) - hdr) + " of the JSON");
  if (n >= 3 && hdr[0] == 0xEF && hdr[1] == 0xBB && hdr[2] == 0xBF)  // nlohmann would skip it silently
    fail(source, "header: JSON starts with a UTF-8 byte order mark");
  if (json_depth(hdr, n) > kMaxJsonDepth)
    fail(source, "header: JSON nests deeper than " + std::to_string(kMaxJsonDepth) + " levels");

  // The callback sees every key; nlohmann keeps only the last of duplicate keys, so find them here.
  std::vector<std::set<std::string>> keys;
  std::string top_key, duplicate;
  int duplicate_depth = 0;
  json::parser_callback_t cb = [&](int depth, json::parse_event_t event, json& parsed) {
    if (event == json::parse_event_t::object_start) {
      keys.emplace_back();
    } else if (event == json::parse_event_t::object_end) {
      if (!keys.empty()) keys.pop_back();
    } else if (event == json::parse_event_t::key && !keys.empty()) {
      const std::string& k = parsed.get_ref<const std::string&>();
      if (depth == 1) top_key = k;
      if (!keys.back().insert(k).second && duplicate_depth == 0) {
        duplicate = k;
        duplicate_depth = depth;
        if (depth > 1) duplicate = top_key + "\n" + k;
      }
    }
    return true;
  };
  json header;
  try {
    header = json::parse(hdr, hdr + n, cb, /*allow_exceptions=*/true, /*ignore_comments=*/false);
  } catch (const json::exception& e) {
    fail(source, std::string("header is not valid JSON: ") + e.what());
  }
  if (!header.is_object()) fail(source, "header: JSON is " + std::string(header.type_name()) + ", not an object");
  if (duplicate_depth == 1) {
    if (duplicate == "__metadata__") fail(source, "header: duplicate '__metadata__'");
    fail(source, "header: duplicate tensor name '" + duplicate + "'");
  }
  if (duplicate_depth > 1) {
    const std::size_t cut = duplicate.find('\n');
    const std::string parent = duplicate.substr(0, cut), key = duplicate.substr(cut + 1);
    if (parent == "__metadata__") fail(source, "__metadata__: duplicate key '" + key + "'");
    fail_tensor(source, parent, "duplicate field '" + key + "'");
  }

  SafetensorsFile file;
  file.source = source;
  std::vector<Entry> entries;
  for (auto it = header.begin(); it != header.end(); ++it) {
    const std::string& name = it.key();
    const json& v = it.value();
    if (name == "__metadata__") {
      if (!v.is_object()) fail(source, "__metadata__ is " + std::string(v.type_name()) + ", not an object");
      for (auto m = v.begin(); m != v.end(); ++m) {
        if (!m.value().is_string())
          fail(source, "__metadata__: value of '" + m.key() + "' is " + m.value().type_name() + ", not a string");
        file.metadata[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    if (!v.is_object()) fail_tensor(source, name, "entry is " + std::string(v.type_name()) + ", not an object");
    for (auto f = v.begin(); f != v.end(); ++f)
      if (f.key() != "dtype" && f.key() != "shape" && f.key() != "data_offsets")
        fail_tensor(source, name, "unexpected field '" + f.key() + "'");
    for (const char* field : {"dtype", "shape", "data_offsets"})
      if (!v.contains(field)) fail_tensor(source, name, std::string("field '") + field + "' is missing");

    SafetensorsTensor t;
    const json& dt = v.at("dtype");
    if (!dt.is_string()) fail_tensor(source, name, "field 'dtype' is " + std::string(dt.type_name()) + ", not a string");
    t.dtype = dt.get<std::string>();
    const std::size_t es = safetensors_dtype_size(t.dtype);
    if (!es) fail_tensor(source, name, "field 'dtype': unsupported dtype '" + t.dtype + "' (F64, F32, BF16, I64, I32)");

    const json& sh = v.at("shape");
    if (!sh.is_array()) fail_tensor(source, name, "field 'shape' is " + std::string(sh.type_name()) + ", not an array");
    for (std::size_t i = 0; i < sh.size(); ++i) {
      uint64_t d = 0;
      if (!get_u64(sh[i], d))
        fail_tensor(source, name, "field 'shape': dim " + std::to_string(i) + " is " + json_brief(sh[i]) +
                                      ", not a non-negative integer");
      if (d > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
        fail_tensor(source, name, "field 'shape': dim " + std::to_string(i) + " = " + std::to_string(d) +
                                      " is too large");
      t.shape.push_back(static_cast<int64_t>(d));
    }
    uint64_t numel = 0, need = 0;
    if (!checked_numel(t.shape, es, numel, need))
      fail_tensor(source, name, "field 'shape': " + shape_str(t.shape) + " of " + t.dtype + " overflows");

    const json& off = v.at("data_offsets");
    uint64_t begin = 0, end = 0;
    if (!off.is_array() || off.size() != 2 || !get_u64(off[0], begin) || !get_u64(off[1], end))
      fail_tensor(source, name, "field 'data_offsets' is " + json_brief(off) +
                                    ", not an array of two non-negative integers");
    const std::string off_str = "data_offsets [" + std::to_string(begin) + ", " + std::to_string(end) + "]";
    if (begin > end) fail_tensor(source, name, off_str + " has begin > end");
    if (end > buf_size)
      fail_tensor(source, name, off_str + " lie outside the " + std::to_string(buf_size) + "-byte data buffer");
    if (end - begin != need)
      fail_tensor(source, name, off_str + " hold " + std::to_string(end - begin) + " bytes but shape " +
                                    shape_str(t.shape) + " of " + t.dtype + " needs " + std::to_string(need));
    entries.push_back({name, begin, end});
    file.tensors.emplace(name, std::move(t));
  }

  // The buffer must be covered exactly: no overlap, no gap, no trailing bytes.
  std::sort(entries.begin(), entries.end(), [](const Entry& a, const Entry& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  uint64_t covered = 0;
  const Entry* prev = nullptr;
  for (const Entry& e : entries) {
    if (e.begin < covered)
      fail_tensor(source, e.name, "data_offsets [" + std::to_string(e.begin) + ", " + std::to_string(e.end) +
                                      "] overlap tensor '" + prev->name + "' [" + std::to_string(prev->begin) + ", " +
                                      std::to_string(prev->end) + "]");
    if (e.begin > covered)
      fail_tensor(source, e.name, "data_offsets [" + std::to_string(e.begin) + ", " + std::to_string(e.end) +
                                      "] leave bytes [" + std::to_string(covered) + ", " + std::to_string(e.begin) +
                                      ") of the data buffer uncovered (gap)");
    covered = e.end;
    prev = &e;
  }
  if (covered != buf_size)
    fail(source, "data buffer: bytes [" + std::to_string(covered) + ", " + std::to_string(buf_size) +
                     ") are not covered by any tensor (trailing bytes)");

  for (const Entry& e : entries) {
    SafetensorsTensor& t = file.tensors.at(e.name);
    t.bytes.assign(buf + e.begin, buf + e.end);
  }
  return file;
}

SafetensorsFile read_safetensors(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) fail(path, "cannot open: " + errno_str(errno));
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{fd};
  struct stat st {};
  if (::fstat(fd, &st) != 0) fail(path, "cannot stat: " + errno_str(errno));
  if (!S_ISREG(st.st_mode)) fail(path, "not a regular file");
  std::vector<uint8_t> data(static_cast<std::size_t>(st.st_size));
  std::size_t got = 0;
  while (got < data.size()) {
    const ssize_t r = ::read(fd, data.data() + got, data.size() - got);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) fail(path, "read failed: " + errno_str(errno));
    if (r == 0) break;
    got += static_cast<std::size_t>(r);
  }
  data.resize(got);
  return parse_safetensors(data.data(), data.size(), path);
}

// ---- writing -------------------------------------------------------------------------------------------

std::vector<uint8_t> serialize_safetensors(const SafetensorsFile& file) {
  return serialize_impl(file, source_of(file));
}

void write_safetensors_atomic(const std::string& path, const SafetensorsFile& file) {
  const std::vector<uint8_t> bytes = serialize_impl(file, path);  // before touching the disk
  const std::string tmp = path + ".tmp-" + std::to_string(::getpid());
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644);
  if (fd < 0) fail(path, "cannot create temp file '" + tmp + "': " + errno_str(errno));
  auto abandon = [&](const std::string& what, int err, bool close_fd) {
    if (close_fd) ::close(fd);
    ::unlink(tmp.c_str());
    fail(path, what + ": " + errno_str(err));
  };
  std::size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t w = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (w < 0 && errno == EINTR) continue;
    if (w < 0) abandon("write to '" + tmp + "' failed", errno, true);
    if (w == 0) abandon("write to '" + tmp + "' made no progress", EIO, true);
    done += static_cast<std::size_t>(w);
  }
  if (::fsync(fd) != 0) abandon("fsync of '" + tmp + "' failed", errno, true);
  if (::close(fd) != 0) abandon("close of '" + tmp + "' failed", errno, false);
  if (std::rename(tmp.c_str(), path.c_str()) != 0) abandon("rename of '" + tmp + "' failed", errno, false);
  // Best effort: make the rename durable.
  const std::size_t slash = path.find_last_of('/');
  const std::string dir = slash == std::string::npos ? "." : (slash == 0 ? "/" : path.substr(0, slash));
  const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    (void)::fsync(dfd);
    ::close(dfd);
  }
}

}  // namespace transmamba
