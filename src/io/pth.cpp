// torch.save files are a zip holding PREFIX/data.pkl (a pickle of the object) and one record
// PREFIX/data/KEY per storage; tensors inside the pickle refer to their storage through a
// persistent id. We interpret the pickle with a tiny VM of our own that knows only the opcodes
// and globals a state_dict uses. Globals are never resolved to code: each allowed one is a tag
// the VM emulates, anything else is refused, so a malicious file cannot run anything.
#include "io/pth.h"

#include <zip.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <unordered_map>
#include <vector>

#include <fmt/format.h>

#include "core/error.h"

namespace vs {
namespace {

// Strings from the file go into one-line error messages: escape control bytes, cap the length.
std::string printable(const std::string& s) {
  std::string out;
  for (size_t k = 0; k < s.size() && k < 120; ++k) {
    auto c = uint8_t(s[k]);
    out += c < 0x20 || c == 0x7f ? fmt::format("\\x{:02x}", c) : std::string(1, char(c));
  }
  return s.size() > 120 ? out + "..." : out;
}

// ---------------------------------------------------------------------------------------------
// Zip container (libzip).

class Zip {
 public:
  explicit Zip(const std::string& path) : path_(path) {
    std::ifstream f(path, std::ios::binary);
    if (!f) throw Error(path + ": cannot open file (" + std::strerror(errno) + ")");
    char magic[4] = {};
    f.read(magic, 4);
    check(f.gcount() == 4, path + ": file is empty or truncated, not a PyTorch checkpoint");
    // Checked before libzip so a legacy (bare pickle) checkpoint gets a message that says so.
    check(std::memcmp(magic, "PK\3\4", 4) == 0,
          path + ": not a zip-format PyTorch checkpoint (legacy torch.save format is not supported)");
    file_size_ = std::filesystem::file_size(path);
    int err = 0;
    // No ZIP_CHECKCONS: its local-vs-central header comparison adds nothing the CRC check on
    // every read does not catch, and strict checks risk refusing odd but valid writers.
    z_ = zip_open(path.c_str(), ZIP_RDONLY, &err);
    if (!z_) {
      zip_error_t ze;
      zip_error_init_with_code(&ze, err);
      std::string why = zip_error_strerror(&ze);
      zip_error_fini(&ze);
      throw Error(path + ": corrupt or truncated zip archive (" + why + ")");
    }
  }
  ~Zip() { zip_discard(z_); }
  Zip(const Zip&) = delete;
  Zip& operator=(const Zip&) = delete;

  std::vector<std::string> names() const {
    std::vector<std::string> out;
    zip_int64_t n = zip_get_num_entries(z_, 0);
    for (zip_int64_t i = 0; i < n; ++i)
      if (const char* s = zip_get_name(z_, zip_uint64_t(i), 0)) out.emplace_back(s);
    return out;
  }

  bool has(const std::string& name) const { return zip_name_locate(z_, name.c_str(), 0) >= 0; }

  std::vector<uint8_t> read(const std::string& name, uint64_t max_size = UINT64_MAX) const {
    zip_int64_t idx = zip_name_locate(z_, name.c_str(), 0);
    check(idx >= 0, path_ + ": zip entry " + printable(name) + " is missing");
    zip_stat_t st;
    zip_stat_init(&st);
    check(zip_stat_index(z_, zip_uint64_t(idx), 0, &st) == 0 && (st.valid & ZIP_STAT_SIZE),
          path_ + ": cannot stat zip entry " + printable(name));
    // Deflate cannot expand more than ~1032x; a bigger claimed size is a corrupt header and
    // must not turn into a huge allocation.
    check(st.size <= file_size_ * 1100 + 4096 && st.size <= max_size,
          path_ + ": zip entry " + printable(name) + " is too large (" + std::to_string(st.size) + " bytes)");
    zip_file_t* f = zip_fopen_index(z_, zip_uint64_t(idx), 0);
    check(f != nullptr, path_ + ": cannot open zip entry " + printable(name) + " (" + zip_strerror(z_) + ")");
    std::unique_ptr<zip_file_t, int (*)(zip_file_t*)> guard(f, zip_fclose);
    std::vector<uint8_t> buf(st.size);
    size_t got = 0;
    while (got < buf.size()) {
      zip_int64_t n = zip_fread(f, buf.data() + got, buf.size() - got);
      if (n <= 0) break;
      got += size_t(n);
    }
    // Read once more to hit end-of-entry: libzip verifies the CRC only there.
    uint8_t extra;
    zip_int64_t tail = got == buf.size() ? zip_fread(f, &extra, 1) : -1;
    if (got != buf.size() || tail != 0) {
      std::string why = tail > 0 ? "longer than its header says" : zip_file_strerror(f);
      throw Error(path_ + ": corrupt zip entry " + printable(name) + " (" + why + ")");
    }
    return buf;
  }

 private:
  std::string path_;
  zip_t* z_ = nullptr;
  uint64_t file_size_ = 0;
};

// ---------------------------------------------------------------------------------------------
// Pickle values. All values live in an arena owned by the VM and point at each other with raw
// pointers: cycles and deep nesting (possible in hostile input) then cost no recursion.

enum class Kind { None, Bool, Int, Float, Str, Bytes, Tuple, List, Dict, Global, Storage, Tensor, Opaque };

const char* kind_name(Kind k) {
  switch (k) {
    case Kind::None: return "None";
    case Kind::Bool: return "bool";
    case Kind::Int: return "int";
    case Kind::Float: return "float";
    case Kind::Str: return "str";
    case Kind::Bytes: return "bytes";
    case Kind::Tuple: return "tuple";
    case Kind::List: return "list";
    case Kind::Dict: return "dict";
    case Kind::Global: return "global";
    case Kind::Storage: return "storage";
    case Kind::Tensor: return "tensor";
    case Kind::Opaque: return "object";
  }
  return "?";
}

// What an allowed global stands for. Inert: plain-data classes that training checkpoints carry
// next to the weights (argparse args, numpy scalars, torch version strings); constructing one
// yields an opaque value we never look into.
enum class Fn { OrderedDict, RebuildTensor, RebuildTensorV2, RebuildParameter, StorageType, Inert };

struct Value {
  Kind kind;
  int64_t i = 0;                                   // Bool, Int; Fn for Global
  double f = 0;                                    // Float
  std::string s, s2;                               // Str/Bytes: s; Global: module, name;
                                                   // Storage: record key, type name
  std::vector<Value*> items;                       // Tuple, List
  std::vector<std::pair<Value*, Value*>> entries;  // Dict, in insertion order (later wins)
  // Tensor: a strided view into a storage, materialised only if the tensor is returned (so
  // optimizer state in a training checkpoint is never converted).
  const Value* storage = nullptr;
  int64_t offset = 0;
  Shape size, stride;
};

std::optional<Fn> classify_global(const std::string& mod, const std::string& name) {
  if (mod == "collections" && name == "OrderedDict") return Fn::OrderedDict;
  if (mod == "torch._utils") {
    if (name == "_rebuild_tensor") return Fn::RebuildTensor;
    if (name == "_rebuild_tensor_v2") return Fn::RebuildTensorV2;
    if (name == "_rebuild_parameter" || name == "_rebuild_parameter_with_state")
      return Fn::RebuildParameter;
  }
  // torch.FloatStorage etc. only tag persistent ids; unknown element types are reported when
  // a tensor using them is materialised.
  if (mod == "torch" && name.size() > 7 && name.ends_with("Storage")) return Fn::StorageType;
  static const char* const kInert[][2] = {
      {"torch", "float32"}, {"torch", "float16"}, {"torch", "bfloat16"}, {"torch", "float64"},
      {"torch", "int64"},   {"torch", "int32"},   {"torch", "int16"},    {"torch", "int8"},
      {"torch", "uint8"},   {"torch", "bool"},    {"torch.torch_version", "TorchVersion"},
      {"argparse", "Namespace"}, {"_codecs", "encode"}, {"numpy", "dtype"}, {"numpy", "ndarray"},
      {"numpy.core.multiarray", "scalar"}, {"numpy.core.multiarray", "_reconstruct"},
      {"numpy._core.multiarray", "scalar"}, {"numpy._core.multiarray", "_reconstruct"}};
  for (auto& g : kInert)
    if (mod == g[0] && name == g[1]) return Fn::Inert;
  return std::nullopt;
}

class Unpickler {
 public:
  Unpickler(const std::string& path, const std::vector<uint8_t>& data) : path_(path), d_(data) {}

  Value* run() {
    while (true) {
      op_pos_ = pos_;
      // An opcode allocates at most one Value plus a few pointers (stack, memo, container
      // slot), so counting them bounds memory: a zip-bombed data.pkl fails instead of OOMing.
      constexpr uint64_t kMaxOps = (uint64_t(1) << 30) / (sizeof(Value) + 64);
      if (++ops_ > kMaxOps) fail(fmt::format("pickle too large (over {} operations)", kMaxOps));
      uint8_t op = u8();
      switch (op) {
        case 0x80: {  // PROTO
          uint8_t v = u8();
          if (v > 5) fail(fmt::format("unsupported pickle protocol {}", v));
          break;
        }
        case 0x95: take(8); break;  // FRAME: a read-ahead hint, the data follows inline
        case '.': return pop();     // STOP
        case '(': marks_.push_back(stack_.size()); break;  // MARK
        case '0': pop(); break;                            // POP
        case '1': pop_mark(); break;                       // POP_MARK
        case '2': push(top()); break;                      // DUP
        case 'N': push(make(Kind::None)); break;
        case 0x88: push(make_int(Kind::Bool, 1)); break;  // NEWTRUE
        case 0x89: push(make_int(Kind::Bool, 0)); break;  // NEWFALSE
        case 'J': push(make_int(Kind::Int, int32_t(le(4)))); break;  // BININT
        case 'K': push(make_int(Kind::Int, int64_t(le(1)))); break;  // BININT1
        case 'M': push(make_int(Kind::Int, int64_t(le(2)))); break;  // BININT2
        case 0x8a: push(make_long(u8())); break;                     // LONG1
        case 0x8b: push(make_long(size32s())); break;                // LONG4
        case 'G': {  // BINFLOAT: big-endian IEEE double
          uint64_t bits = 0;
          for (uint8_t b : take(8)) bits = bits << 8 | b;
          Value* v = make(Kind::Float);
          v->f = std::bit_cast<double>(bits);
          push(v);
          break;
        }
        case 'X': push(make_str(Kind::Str, le(4))); break;     // BINUNICODE
        case 0x8c: push(make_str(Kind::Str, u8())); break;     // SHORT_BINUNICODE
        case 0x8d: push(make_str(Kind::Str, le(8))); break;    // BINUNICODE8
        case 'B': push(make_str(Kind::Bytes, le(4))); break;   // BINBYTES
        case 'C': push(make_str(Kind::Bytes, u8())); break;    // SHORT_BINBYTES
        case 0x8e: push(make_str(Kind::Bytes, le(8))); break;  // BINBYTES8
        case ')': push(make(Kind::Tuple)); break;              // EMPTY_TUPLE
        case ']': push(make(Kind::List)); break;               // EMPTY_LIST
        case '}': push(make(Kind::Dict)); break;               // EMPTY_DICT
        case 't': push(make_seq(Kind::Tuple, pop_mark())); break;  // TUPLE
        case 'l': push(make_seq(Kind::List, pop_mark())); break;   // LIST
        case 0x85: case 0x86: case 0x87: {                         // TUPLE1..3
          std::vector<Value*> items(op - 0x84);
          for (size_t k = items.size(); k-- > 0;) items[k] = pop();
          push(make_seq(Kind::Tuple, std::move(items)));
          break;
        }
        case 'd': {  // DICT
          Value* dict = make(Kind::Dict);
          set_items(dict, pop_mark());
          push(dict);
          break;
        }
        case 's': {  // SETITEM
          Value* v = pop();
          Value* k = pop();
          set_items(top(), {k, v});
          break;
        }
        case 'u': {  // SETITEMS
          auto items = pop_mark();
          set_items(top(), std::move(items));
          break;
        }
        case 'a': {  // APPEND
          Value* v = pop();
          append(top(), {v});
          break;
        }
        case 'e': {  // APPENDS
          auto items = pop_mark();
          append(top(), std::move(items));
          break;
        }
        case 'q': memo_[le(1)] = top(); break;  // BINPUT
        case 'r': memo_[le(4)] = top(); break;  // LONG_BINPUT
        case 0x94: {                            // MEMOIZE
          uint64_t idx = memo_.size();
          memo_[idx] = top();
          break;
        }
        case 'h': push(memo_get(le(1))); break;  // BINGET
        case 'j': push(memo_get(le(4))); break;  // LONG_BINGET
        case 'c': {                              // GLOBAL "module\nname\n"
          std::string mod = line();
          std::string name = line();
          push(make_global(mod, name));
          break;
        }
        case 0x93: {  // STACK_GLOBAL
          Value* name = pop();
          Value* mod = pop();
          if (mod->kind != Kind::Str || name->kind != Kind::Str)
            fail("STACK_GLOBAL needs two strings");
          push(make_global(mod->s, name->s));
          break;
        }
        case 'R': {  // REDUCE: callable(*args)
          Value* args = pop();
          Value* fn = pop();
          push(reduce(fn, args));
          break;
        }
        case 0x81: {  // NEWOBJ: cls.__new__(cls, *args)
          Value* args = pop();
          Value* cls = pop();
          push(newobj(cls, args));
          break;
        }
        case 'b': {  // BUILD: obj.__setstate__(state)
          pop();     // state: OrderedDict _metadata, Namespace fields, ... - nothing we need
          Kind k = top()->kind;
          if (k != Kind::Dict && k != Kind::Opaque && k != Kind::Tensor)
            fail(std::string("BUILD on a ") + kind_name(k));
          break;
        }
        case 'Q': push(persistent_load(pop())); break;  // BINPERSID
        default: {
          char c = op >= 0x20 && op < 0x7f ? char(op) : '?';
          fail(fmt::format("unsupported pickle opcode 0x{:02x} ('{}')", op, c));
        }
      }
    }
  }

 private:
  [[noreturn]] void fail(const std::string& msg) const {
    throw Error(fmt::format("{}: {} at offset {} of data.pkl", path_, msg, op_pos_));
  }

  // --- bounds-checked reads of the pickle stream
  std::span<const uint8_t> take(uint64_t n) {
    if (n > d_.size() - pos_) fail("pickle stream is truncated");
    std::span<const uint8_t> s(d_.data() + pos_, size_t(n));
    pos_ += size_t(n);
    return s;
  }
  uint8_t u8() { return take(1)[0]; }
  uint64_t le(int n) {  // unsigned little-endian integer of n bytes
    uint64_t v = 0;
    auto b = take(n);
    for (int k = n - 1; k >= 0; --k) v = v << 8 | b[k];
    return v;
  }
  uint64_t size32s() {  // LONG4's signed 32-bit length
    int32_t n = int32_t(le(4));
    if (n < 0) fail("negative length");
    return uint64_t(n);
  }
  std::string line() {
    const uint8_t* begin = d_.data() + pos_;
    const void* nl = std::memchr(begin, '\n', d_.size() - pos_);
    if (!nl) fail("pickle stream is truncated");
    size_t n = size_t(static_cast<const uint8_t*>(nl) - begin);
    pos_ += n + 1;
    return std::string(reinterpret_cast<const char*>(begin), n);
  }

  // --- stack; a MARK is a floor that plain pops may not cross
  void push(Value* v) { stack_.push_back(v); }
  size_t floor() const { return marks_.empty() ? 0 : marks_.back(); }
  Value* top() {
    if (stack_.size() <= floor()) fail("pickle stack underflow");
    return stack_.back();
  }
  Value* pop() {
    Value* v = top();
    stack_.pop_back();
    return v;
  }
  std::vector<Value*> pop_mark() {
    if (marks_.empty()) fail("pickle MARK missing");
    size_t m = marks_.back();
    marks_.pop_back();
    std::vector<Value*> items(stack_.begin() + ptrdiff_t(m), stack_.end());
    stack_.resize(m);
    return items;
  }
  Value* memo_get(uint64_t idx) {
    auto it = memo_.find(idx);
    if (it == memo_.end()) fail(fmt::format("pickle memo entry {} is missing", idx));
    return it->second;
  }

  // --- value construction
  Value* make(Kind k) {
    arena_.push_back(std::make_unique<Value>());
    arena_.back()->kind = k;
    return arena_.back().get();
  }
  Value* make_int(Kind k, int64_t i) {
    Value* v = make(k);
    v->i = i;
    return v;
  }
  Value* make_str(Kind k, uint64_t n) {
    auto b = take(n);
    Value* v = make(k);
    v->s.assign(b.begin(), b.end());
    return v;
  }
  Value* make_seq(Kind k, std::vector<Value*> items) {
    Value* v = make(k);
    v->items = std::move(items);
    return v;
  }
  Value* make_long(uint64_t n) {  // little-endian two's complement of n bytes
    auto b = take(n);
    if (n > 8) return make(Kind::Opaque);  // a Python big int; never part of a tensor
    uint64_t v = 0;
    for (size_t k = n; k-- > 0;) v = v << 8 | b[k];
    if (n > 0 && n < 8 && (b[n - 1] & 0x80)) v |= ~uint64_t(0) << (8 * n);  // sign-extend
    return make_int(Kind::Int, int64_t(v));
  }
  Value* make_global(const std::string& mod, const std::string& name) {
    auto fn = classify_global(mod, name);
    if (!fn)
      throw Error(path_ + ": refusing pickle global " + printable(mod + "." + name) +
                  " (not a tensor state_dict)");
    Value* v = make(Kind::Global);
    v->i = int64_t(*fn);
    v->s = mod;
    v->s2 = name;
    return v;
  }

  void set_items(Value* dict, std::vector<Value*> kv) {
    if (dict->kind != Kind::Dict) fail(std::string("SETITEM on a ") + kind_name(dict->kind));
    if (kv.size() % 2) fail("odd number of items for a dict");
    for (size_t k = 0; k < kv.size(); k += 2) dict->entries.emplace_back(kv[k], kv[k + 1]);
  }
  void append(Value* list, std::vector<Value*> items) {
    if (list->kind != Kind::List) fail(std::string("APPEND on a ") + kind_name(list->kind));
    list->items.insert(list->items.end(), items.begin(), items.end());
  }

  std::string global_name(const Value* g) const { return printable(g->s + "." + g->s2); }

  Value* reduce(Value* fn, Value* args) {
    if (fn->kind != Kind::Global) fail(std::string("REDUCE on a ") + kind_name(fn->kind));
    if (args->kind != Kind::Tuple) fail("REDUCE arguments are not a tuple");
    const auto& a = args->items;
    switch (Fn(fn->i)) {
      case Fn::OrderedDict:
        if (!a.empty()) fail("OrderedDict with constructor arguments");
        return make(Kind::Dict);
      case Fn::RebuildTensor:
      case Fn::RebuildTensorV2:
        return rebuild_tensor(fn, a);
      case Fn::RebuildParameter:  // (data, requires_grad, backward_hooks[, state])
        if (a.empty() || a[0]->kind != Kind::Tensor) fail(global_name(fn) + " without a tensor");
        return a[0];
      case Fn::Inert:
        return make(Kind::Opaque);
      case Fn::StorageType:
        break;
    }
    fail("refusing to call " + global_name(fn));
  }

  Value* newobj(Value* cls, Value* args) {
    if (cls->kind != Kind::Global || args->kind != Kind::Tuple) fail("malformed NEWOBJ");
    if (Fn(cls->i) == Fn::OrderedDict) return make(Kind::Dict);
    if (Fn(cls->i) == Fn::Inert) return make(Kind::Opaque);
    fail("refusing to construct " + global_name(cls));
  }

  // ('storage', torch.XStorage, key, location, numel)
  Value* persistent_load(Value* pid) {
    const auto& p = pid->items;
    if (pid->kind != Kind::Tuple || p.size() != 5 || p[0]->kind != Kind::Str ||
        p[0]->s != "storage" || p[1]->kind != Kind::Global || Fn(p[1]->i) != Fn::StorageType ||
        p[2]->kind != Kind::Str)
      fail("unsupported persistent id (expected ('storage', torch.XStorage, key, ...))");
    Value* v = make(Kind::Storage);
    v->s = p[2]->s;
    v->s2 = p[1]->s2;
    return v;
  }

  // _rebuild_tensor(storage, offset, size, stride) and _rebuild_tensor_v2(storage, offset,
  // size, stride, requires_grad, backward_hooks[, metadata]).
  Value* rebuild_tensor(Value* fn, const std::vector<Value*>& a) {
    bool v2 = Fn(fn->i) == Fn::RebuildTensorV2;
    if (v2 ? (a.size() != 6 && a.size() != 7) : a.size() != 4)
      fail(fmt::format("{} with {} arguments", global_name(fn), a.size()));
    if (a[0]->kind != Kind::Storage) fail("tensor without a storage");
    if (a[1]->kind != Kind::Int || a[1]->i < 0) fail("bad tensor storage offset");
    Value* t = make(Kind::Tensor);
    t->storage = a[0];
    t->offset = a[1]->i;
    t->size = int_list(a[2], "size");
    t->stride = int_list(a[3], "stride");
    if (t->size.size() != t->stride.size()) fail("tensor size and stride differ in length");
    return t;
  }
  Shape int_list(const Value* v, const char* what) {
    if (v->kind != Kind::Tuple && v->kind != Kind::List) fail(std::string("tensor ") + what + " is not a tuple");
    Shape out;
    for (const Value* x : v->items) {
      if (x->kind != Kind::Int || x->i < 0) fail(std::string("bad tensor ") + what);
      out.push_back(x->i);
    }
    return out;
  }

  std::string path_;
  const std::vector<uint8_t>& d_;
  size_t pos_ = 0, op_pos_ = 0;
  uint64_t ops_ = 0;
  std::vector<Value*> stack_;
  std::vector<size_t> marks_;
  std::unordered_map<uint64_t, Value*> memo_;
  std::vector<std::unique_ptr<Value>> arena_;
};

// ---------------------------------------------------------------------------------------------
// Materialising tensors.

enum class Src { F32, F16, BF16, F64, I64, I32, I16, I8, U8, Bool };

struct StorageType {
  const char* name;
  int elsize;
  Src src;
  DType out;  // floats become f32; ints keep their type (i16 widens to i32, bool to u8)
};

constexpr StorageType kStorageTypes[] = {
    {"FloatStorage", 4, Src::F32, DType::f32},  {"HalfStorage", 2, Src::F16, DType::f32},
    {"BFloat16Storage", 2, Src::BF16, DType::f32}, {"DoubleStorage", 8, Src::F64, DType::f32},
    {"LongStorage", 8, Src::I64, DType::i64},   {"IntStorage", 4, Src::I32, DType::i32},
    {"ShortStorage", 2, Src::I16, DType::i32},  {"CharStorage", 1, Src::I8, DType::i8},
    {"ByteStorage", 1, Src::U8, DType::u8},     {"BoolStorage", 1, Src::Bool, DType::u8}};

// Copies the strided view into dst (row-major), converting each element with conv.
template <class S, class D, class Conv>
void gather(const uint8_t* base, const Value& t, D* dst, Conv conv) {
  int nd = int(t.size.size());
  int64_t n = numel(t.size);
  std::vector<int64_t> idx(nd, 0);
  int64_t src = t.offset;
  for (int64_t o = 0; o < n; ++o) {
    S x;
    std::memcpy(&x, base + src * int64_t(sizeof(S)), sizeof(S));
    dst[o] = conv(x);
    for (int d = nd - 1; d >= 0; --d) {  // odometer over the output index
      src += t.stride[d];
      if (++idx[d] < t.size[d]) break;
      src -= t.stride[d] * t.size[d];
      idx[d] = 0;
    }
  }
}

bool is_contiguous(const Value& t) {
  int64_t expect = 1;
  for (size_t d = t.size.size(); d-- > 0;) {
    if (t.size[d] != 1 && t.stride[d] != expect) return false;
    expect *= t.size[d];
  }
  return true;
}

class Materialiser {
 public:
  Materialiser(const std::string& path, const Zip& zip, std::string prefix, bool swap)
      : path_(path), zip_(zip), prefix_(std::move(prefix)), swap_(swap) {}

  void will_use(const Value& t) { ++uses_[t.storage->s]; }

  Tensor operator()(const std::string& name, const Value& t) {
    std::string where = path_ + ": tensor '" + printable(name) + "'";
    const StorageType* type = nullptr;
    for (auto& st : kStorageTypes)
      if (t.storage->s2 == st.name) type = &st;
    check(type != nullptr, where + " has unsupported dtype torch." + printable(t.storage->s2));

    const std::string& key = t.storage->s;
    const std::vector<uint8_t>& bytes = load(key, *type, where);
    int64_t avail = int64_t(bytes.size()) / type->elsize;

    // Every index the view can touch must lie inside the record.
    int64_t n = 1, last = t.offset;
    bool overflow = false;
    for (size_t d = 0; d < t.size.size(); ++d) {
      int64_t reach;
      overflow |= __builtin_mul_overflow(n, t.size[d], &n);
      if (t.size[d] > 0) {
        overflow |= __builtin_mul_overflow(t.size[d] - 1, t.stride[d], &reach);
        overflow |= __builtin_add_overflow(last, reach, &last);
      }
    }
    check(!overflow, where + ": size/stride overflow");
    if (n > 0)
      check(last < avail, fmt::format("{}: storage too small for size {} stride {} offset {} "
                                      "(needs {} elements, record {}data/{} has {})",
                                      where, shape_str(t.size), shape_str(t.stride), t.offset,
                                      last + 1, printable(prefix_), printable(key), avail));
    // Stride-0 (expanded) views could otherwise ask for far more memory than the file holds.
    check(n <= avail || n <= (int64_t(1) << 28),
          where + ": broadcast view of " + shape_str(t.size) + " is too large to materialise");

    Tensor out(t.size, type->out);
    const uint8_t* base = bytes.data();
    if (n > 0) {
      if (is_contiguous(t) && dtype_size(type->out) == size_t(type->elsize) &&
          type->src != Src::Bool)
        std::memcpy(out.raw(), base + t.offset * type->elsize, size_t(n) * type->elsize);
      else
        convert(base, t, *type, out);
    }
    if (--uses_[key] == 0) cache_.erase(key);  // keep peak memory near one copy
    return out;
  }

 private:
  const std::vector<uint8_t>& load(const std::string& key, const StorageType& type,
                                   const std::string& where) {
    auto it = cache_.find(key);
    if (it != cache_.end()) return it->second;
    std::string rec = prefix_ + "data/" + key;
    check(zip_.has(rec), where + ": storage record " + printable(rec) + " is missing from the archive");
    std::vector<uint8_t> bytes = zip_.read(rec);
    check(bytes.size() % size_t(type.elsize) == 0,
          fmt::format("{}: storage record {} has {} bytes, not a multiple of the {}-byte {}",
                      where, printable(rec), bytes.size(), type.elsize, type.name));
    if (swap_ && type.elsize > 1)
      for (size_t k = 0; k < bytes.size(); k += size_t(type.elsize))
        std::reverse(bytes.begin() + ptrdiff_t(k), bytes.begin() + ptrdiff_t(k) + type.elsize);
    return cache_.emplace(key, std::move(bytes)).first->second;
  }

  static void convert(const uint8_t* base, const Value& t, const StorageType& type, Tensor& out) {
    auto same = [](auto x) { return x; };
    switch (type.src) {
      case Src::F32: return gather<float>(base, t, out.f32(), same);
      case Src::F16: return gather<uint16_t>(base, t, out.f32(), f16_to_f32);
      case Src::BF16: return gather<uint16_t>(base, t, out.f32(), bf16_to_f32);
      case Src::F64: return gather<double>(base, t, out.f32(), [](double x) { return float(x); });
      case Src::I64: return gather<int64_t>(base, t, out.data<int64_t>(), same);
      case Src::I32: return gather<int32_t>(base, t, out.data<int32_t>(), same);
      case Src::I16: return gather<int16_t>(base, t, out.data<int32_t>(), [](int16_t x) { return int32_t(x); });
      case Src::I8: return gather<int8_t>(base, t, out.data<int8_t>(), same);
      case Src::U8: return gather<uint8_t>(base, t, out.data<uint8_t>(), same);
      case Src::Bool: return gather<uint8_t>(base, t, out.data<uint8_t>(), [](uint8_t x) { return uint8_t(x != 0); });
    }
  }

  std::string path_;
  const Zip& zip_;
  std::string prefix_;
  bool swap_;
  std::unordered_map<std::string, std::vector<uint8_t>> cache_;
  std::unordered_map<std::string, int> uses_;
};

const Value* dict_get(const Value* dict, const std::string& key) {
  for (size_t k = dict->entries.size(); k-- > 0;)  // later assignments win, as in Python
    if (dict->entries[k].first->kind == Kind::Str && dict->entries[k].first->s == key)
      return dict->entries[k].second;
  return nullptr;
}

bool holds_tensor(const Value* dict) {
  for (auto& [k, v] : dict->entries)
    if (v->kind == Kind::Tensor) return true;
  return false;
}

}  // namespace

StateDict load_pth(const std::string& path) {
  Zip zip(path);

  // The folder name inside the archive is the file stem at save time, or "archive".
  std::string pkl;
  for (const std::string& n : zip.names())
    if (n == "data.pkl" || (n.ends_with("/data.pkl") && n.find('/') == n.size() - 9)) {
      pkl = n;
      break;
    }
  check(!pkl.empty(), path + ": no data.pkl in the zip (not a torch.save checkpoint)");
  std::string prefix = pkl.substr(0, pkl.size() - 8);

  // Written by newer torch; absent means little-endian.
  bool swap = false;
  if (zip.has(prefix + "byteorder")) {
    auto b = zip.read(prefix + "byteorder", 16);
    std::string order(b.begin(), b.end());
    check(order == "little" || order == "big", path + ": unknown byteorder '" + printable(order) + "'");
    swap = (order == "big") != (std::endian::native == std::endian::big);
  }

  std::vector<uint8_t> data = zip.read(pkl, uint64_t(1) << 30);  // real ones are kilobytes
  Unpickler vm(path, data);
  const Value* top = vm.run();
  check(top->kind == Kind::Dict,
        path + ": top-level object is a " + kind_name(top->kind) + ", not a dict of tensors");

  // A training checkpoint wraps the weights: {"model": sd, "epoch": ...} (DeiT) or
  // {"state_dict": sd, "optimizer": ...} (timm).
  const Value* sd = top;
  for (const char* key : {"model", "state_dict"}) {
    const Value* v = dict_get(top, key);
    if (v && v->kind == Kind::Dict && holds_tensor(v)) {
      sd = v;
      break;
    }
  }

  std::map<std::string, const Value*> tensors;  // non-tensor entries are metadata: ignored
  for (auto& [k, v] : sd->entries)
    if (k->kind == Kind::Str && v->kind == Kind::Tensor) tensors[k->s] = v;
  if (tensors.empty()) {
    std::string keys;
    for (size_t k = 0; k < top->entries.size() && k < 10; ++k)
      if (top->entries[k].first->kind == Kind::Str)
        keys += (keys.empty() ? "" : ", ") + printable(top->entries[k].first->s);
    throw Error(path + ": no tensors found (top-level keys: " + (keys.empty() ? "none" : keys) + ")");
  }

  Materialiser materialise(path, zip, prefix, swap);
  for (auto& [name, v] : tensors) materialise.will_use(*v);
  StateDict out;
  for (auto& [name, v] : tensors) out.emplace(name, materialise(name, *v));
  return out;
}

}  // namespace vs
