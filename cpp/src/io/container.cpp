// The opendl container: one binary file format for dicts and models. Layout (little-endian):
//   header, 32 bytes: magic "OPENDLC\0", u32 format version, u32 flags (0), u64 payload size,
//                     u32 CRC-32 of the payload, u32 CRC-32 of the preceding 28 header bytes
//   payload: the encoded dict, tag-length-value, every length checked against the bytes left
// Writing goes to a temporary file in the same directory that is flushed and renamed over the target, so a
// crash mid-write leaves either the old file or the new one, never a broken one.
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <random>

#include "opendl/dict.h"
#include "opendl/error.h"

namespace opendl {
namespace {

constexpr char kMagic[8] = {'O', 'P', 'E', 'N', 'D', 'L', 'C', '\0'};
constexpr uint32_t kFormatVersion = 1;
constexpr size_t kHeaderSize = 32;
constexpr int kMaxDepth = 256;

// CRC-32 (IEEE 802.3, reflected polynomial 0xEDB88320), slicing-by-8 tables.
struct CrcTables {
  std::array<std::array<uint32_t, 256>, 8> t{};
  CrcTables() {
    for (uint32_t i = 0; i < 256; ++i) {
      uint32_t c = i;
      for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
      t[0][i] = c;
    }
    for (uint32_t i = 0; i < 256; ++i)
      for (int s = 1; s < 8; ++s) t[s][i] = (t[s - 1][i] >> 8) ^ t[0][t[s - 1][i] & 0xFF];
  }
};

uint32_t crc32(const uint8_t* p, size_t n) {
  static const CrcTables tab;
  const auto& t = tab.t;
  uint32_t c = 0xFFFFFFFFu;
  while (n >= 8) {
    uint32_t lo, hi;
    std::memcpy(&lo, p, 4);
    std::memcpy(&hi, p + 4, 4);
    lo ^= c;
    c = t[7][lo & 0xFF] ^ t[6][(lo >> 8) & 0xFF] ^ t[5][(lo >> 16) & 0xFF] ^ t[4][lo >> 24] ^ t[3][hi & 0xFF] ^
        t[2][(hi >> 8) & 0xFF] ^ t[1][(hi >> 16) & 0xFF] ^ t[0][hi >> 24];
    p += 8;
    n -= 8;
  }
  while (n--) c = t[0][(c ^ *p++) & 0xFF] ^ (c >> 8);
  return c ^ 0xFFFFFFFFu;
}

class Writer {
 public:
  std::vector<uint8_t> buf;
  void u8(uint8_t v) { buf.push_back(v); }
  template <class T>
  void pod(T v) {
    const auto* p = reinterpret_cast<const uint8_t*>(&v);
    buf.insert(buf.end(), p, p + sizeof(T));
  }
  void bytes(const void* p, size_t n) {
    const auto* b = static_cast<const uint8_t*>(p);
    buf.insert(buf.end(), b, b + n);
  }
  void str(const std::string& s) {
    pod<uint64_t>(s.size());
    bytes(s.data(), s.size());
  }
  void dict(const Dict& d, int depth) {
    if (depth > kMaxDepth) fail(2899, "the dict is nested more than " + std::to_string(kMaxDepth) + " levels deep");
    u8('D');
    pod<uint64_t>(d.size());
    for (auto& [k, v] : d.items()) {
      if (auto* i = std::get_if<int64_t>(&k)) {
        u8('i');
        pod<int64_t>(*i);
      } else {
        u8('s');
        str(std::get<std::string>(k));
      }
      if (auto* t = std::get_if<DictTuple>(&v)) {
        u8('T');
        pod<uint64_t>(t->size());
        for (auto& e : *t) {
          if (auto* i = std::get_if<int64_t>(&e)) {
            u8('i');
            pod<int64_t>(*i);
          } else if (auto* r = std::get_if<double>(&e)) {
            u8('r');
            pod<double>(*r);
          } else if (auto* s = std::get_if<std::string>(&e)) {
            u8('s');
            str(*s);
          } else {
            const DictPtr& sub = std::get<DictPtr>(e);
            if (!sub) fail(err::kInvalidHandle, "key " + key_repr(k) + " holds an empty dict handle");
            dict(*sub, depth + 1);
          }
        }
      } else {
        const Tensor& o = std::get<Tensor>(v);
        u8('O');
        u8(static_cast<uint8_t>(o.dtype()));
        u8(static_cast<uint8_t>(o.ndim()));
        for (auto s : o.shape()) pod<int64_t>(s);
        if (o.numel()) bytes(o.raw(), size_t(o.numel()) * dtype_size(o.dtype()));
      }
    }
  }
};

// Well-formed UTF-8 (RFC 3629: no overlong forms, no surrogates, nothing above U+10FFFF): every string opendl
// writes is, and Python cannot hold any other as str.
bool valid_utf8(const std::string& s) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const auto* end = p + s.size();
  while (p < end) {
    const unsigned c = *p++;
    if (c < 0x80) continue;
    int more;
    unsigned min, cp;
    if ((c & 0xE0) == 0xC0) more = 1, min = 0x80, cp = c & 0x1F;
    else if ((c & 0xF0) == 0xE0) more = 2, min = 0x800, cp = c & 0x0F;
    else if ((c & 0xF8) == 0xF0) more = 3, min = 0x10000, cp = c & 0x07;
    else return false;
    if (end - p < more) return false;
    for (int k = 0; k < more; ++k, ++p) {
      if ((*p & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (*p & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
  }
  return true;
}

class Reader {
 public:
  Reader(const uint8_t* p, size_t n, int code) : p_(p), end_(p + n), code_(code) {}
  bool done() const { return p_ == end_; }
  uint8_t u8() {
    need(1);
    return *p_++;
  }
  template <class T>
  T pod() {
    need(sizeof(T));
    T v;
    std::memcpy(&v, p_, sizeof(T));
    p_ += sizeof(T);
    return v;
  }
  std::string str() {
    uint64_t n = pod<uint64_t>();
    need(n);
    std::string s(reinterpret_cast<const char*>(p_), size_t(n));
    p_ += n;
    if (!valid_utf8(s)) corrupt("a key or string is not UTF-8 text");
    return s;
  }
  DictPtr dict(int depth) {
    if (depth > kMaxDepth)
      fail(2899, "the file holds dicts nested more than " + std::to_string(kMaxDepth) + " levels deep");
    if (u8() != 'D') corrupt("expected a dict");
    uint64_t n = pod<uint64_t>();
    if (n > left()) corrupt("item count exceeds the file size");
    auto d = std::make_shared<Dict>();
    for (uint64_t i = 0; i < n; ++i) {
      DictKey key;
      uint8_t kt = u8();
      if (kt == 'i') key = pod<int64_t>();
      else if (kt == 's') key = str();
      else corrupt("unknown key tag");
      if (d->contains(key)) corrupt("duplicate key " + key_repr(key));
      uint8_t vt = u8();
      if (vt == 'T') {
        uint64_t m = pod<uint64_t>();
        if (m > left()) corrupt("tuple length exceeds the file size");
        DictTuple t;
        t.reserve(size_t(m));
        for (uint64_t j = 0; j < m; ++j) {
          uint8_t et = peek();
          if (et == 'D') {
            t.emplace_back(dict(depth + 1));
            continue;
          }
          ++p_;
          if (et == 'i') t.emplace_back(pod<int64_t>());
          else if (et == 'r') t.emplace_back(pod<double>());
          else if (et == 's') t.emplace_back(str());
          else corrupt("unknown tuple element tag");
        }
        d->set(key, std::move(t));
      } else if (vt == 'O') {
        uint8_t dt = u8(), nd = u8();
        if (dt > static_cast<uint8_t>(DType::kInt32) || nd > 8) corrupt("bad object type or rank");
        std::vector<int64_t> shape(nd);
        uint64_t numel = 1, extent = dtype_size(static_cast<DType>(dt));  // extent: bytes without the zero sizes
        for (auto& s : shape) {
          s = pod<int64_t>();
          if (s < 0 || (s && numel > left() / uint64_t(s))) corrupt("object shape exceeds the file size");
          if (s && extent > uint64_t(INT64_MAX) / uint64_t(s)) corrupt("object shape overflows 64 bits");
          numel *= uint64_t(s);
          if (s) extent *= uint64_t(s);
        }
        size_t bytes = size_t(numel) * dtype_size(static_cast<DType>(dt));
        need(bytes);
        Tensor o(shape, static_cast<DType>(dt));
        if (bytes) std::memcpy(o.raw(), p_, bytes);
        p_ += bytes;
        d->set(key, std::move(o));
      } else {
        corrupt("unknown value tag");
      }
    }
    return d;
  }

 private:
  size_t left() const { return size_t(end_ - p_); }
  uint8_t peek() {
    need(1);
    return *p_;
  }
  void need(uint64_t n) {
    if (n > left()) corrupt("unexpected end of data");
  }
  [[noreturn]] void corrupt(const std::string& what) { fail(code_, "corrupt container: " + what); }
  const uint8_t* p_;
  const uint8_t* end_;
  int code_;
};

}  // namespace

std::vector<uint8_t> serialize_dict(const Dict& d) {
  Writer w;
  w.buf.resize(kHeaderSize);
  w.dict(d, 1);
  uint8_t* h = w.buf.data();
  std::memcpy(h, kMagic, 8);
  uint32_t version = kFormatVersion, flags = 0;
  uint64_t size = w.buf.size() - kHeaderSize;
  uint32_t crc = crc32(h + kHeaderSize, size_t(size));
  std::memcpy(h + 8, &version, 4);
  std::memcpy(h + 12, &flags, 4);
  std::memcpy(h + 16, &size, 8);
  std::memcpy(h + 24, &crc, 4);
  uint32_t hcrc = crc32(h, 28);
  std::memcpy(h + 28, &hcrc, 4);
  return std::move(w.buf);
}

DictPtr deserialize_dict(const uint8_t* data, size_t n, const ContainerCodes& codes) {
  if (n < kHeaderSize || std::memcmp(data, kMagic, 8) != 0)
    fail(codes.corrupt, "not an opendl container (bad magic or shorter than its header)");
  uint32_t version, hcrc, crc;
  uint64_t size;
  std::memcpy(&version, data + 8, 4);
  std::memcpy(&size, data + 16, 8);
  std::memcpy(&crc, data + 24, 4);
  std::memcpy(&hcrc, data + 28, 4);
  if (crc32(data, 28) != hcrc) fail(codes.corrupt, "corrupt container: header checksum mismatch");
  if (version > kFormatVersion)
    fail(codes.version, "container format version " + std::to_string(version) + " is newer than this opendl (" +
                            std::to_string(kFormatVersion) + "); upgrade opendl to read it");
  if (size != n - kHeaderSize)
    fail(codes.corrupt, "corrupt container: payload holds " + std::to_string(n - kHeaderSize) + " bytes, header says " +
                            std::to_string(size) + " (truncated file?)");
  if (crc32(data + kHeaderSize, size_t(size)) != crc) fail(codes.corrupt, "corrupt container: payload checksum mismatch");
  Reader r(data + kHeaderSize, size_t(size), codes.corrupt);
  DictPtr d = r.dict(1);
  if (!r.done()) fail(codes.corrupt, "corrupt container: trailing bytes after the dict");
  return d;
}

void write_dict_file(const Dict& d, const std::string& path, const ContainerCodes& codes) {
  std::vector<uint8_t> bytes = serialize_dict(d);
  std::random_device rd;
  std::string tmp = path + ".tmp-" + std::to_string(::getpid()) + "-" + std::to_string(rd());
  FILE* f = std::fopen(tmp.c_str(), "wb");
  if (!f) fail(codes.write, "cannot open '" + path + "' for writing: " + std::strerror(errno));
  bool ok = std::fwrite(bytes.data(), 1, bytes.size(), f) == bytes.size();
  ok = std::fflush(f) == 0 && ok;
  ok = ::fsync(::fileno(f)) == 0 && ok;
  int e = errno;
  ok = std::fclose(f) == 0 && ok;
  if (!ok) {
    std::remove(tmp.c_str());
    fail(codes.write, "error while writing '" + path + "': " + std::strerror(e));
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    e = errno;
    std::remove(tmp.c_str());
    fail(codes.write, "cannot replace '" + path + "': " + std::strerror(e));
  }
}

DictPtr read_dict_file(const std::string& path, const ContainerCodes& codes) {
  struct stat st {};
  if (::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode))
    fail(codes.not_found, "'" + path + "' is a directory, not a file");
  std::ifstream in(path, std::ios::binary);
  if (!in) fail(codes.not_found, "file '" + path + "' not found or not readable");
  std::vector<uint8_t> bytes;
  try {
    bytes.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  } catch (const std::exception& e) {  // libstdc++ throws from the stream buffer on read errors
    fail(codes.not_found, "error reading '" + path + "': " + e.what());
  }
  try {
    return deserialize_dict(bytes.data(), bytes.size(), codes);
  } catch (const Error& e) {
    throw Error(e.code(), "", "'" + path + "': " + e.message());
  }
}

}  // namespace opendl
