// load_pth against real torch.save output: tests/ref/make_pth_fixtures.py writes the files and
// the values torch reports for them.
#include "io/pth.h"

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zip.h>

#include <bit>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <nlohmann/json.hpp>
#include <random>

#include "core/error.h"

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

class PthTest : public ::testing::Test {
 protected:
  // ctest runs every test in its own process, so the fixtures (a few seconds of torch) are made
  // once per version of the script into the build tree and reused; a fresh set is built in a
  // private folder and renamed into place, so parallel processes never see half of one.
  static void SetUpTestSuite() {
    try {
      make_fixtures();
    } catch (const std::exception& e) {
      error_ = std::string("cannot prepare fixtures: ") + e.what();
    }
  }
  static void make_fixtures() {
    fs::path script = VS_SOURCE_DIR "/tests/ref/make_pth_fixtures.py";
    std::ifstream in(script);
    std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    fs::path root = fs::path(VS_CLI_PATH).parent_path() / "tests" / "pth_fixtures";
    dir_ = root / std::to_string(std::hash<std::string>{}(text));
    if (!fs::exists(dir_ / "expected.json")) {
      if (!fs::exists("/usr/bin/python3")) {
        skip_ = "/usr/bin/python3 not found";
        return;
      }
      fs::path tmp = root / ("tmp." + std::to_string(getpid()));
      fs::remove_all(tmp);
      fs::create_directories(tmp);
      // The malicious fixtures would touch dir_/PWNED, where the tests look for it.
      std::string cmd = "/usr/bin/python3 '" + script.string() + "' '" + tmp.string() + "' '" +
                        (dir_ / "PWNED").string() + "'";
      int rc = std::system(cmd.c_str());
      if (WIFEXITED(rc) && WEXITSTATUS(rc) == 77) {
        skip_ = "python3-torch not installed (/usr/bin/python3 cannot import torch)";
      } else if (rc != 0) {
        error_ = "fixture script failed: " + cmd;
      } else {
        std::error_code ec;
        fs::rename(tmp, dir_, ec);  // fails harmlessly when another process got there first
      }
      fs::remove_all(tmp);
      if (!skip_.empty() || !error_.empty()) return;
    }
    expected_ = json::parse(std::ifstream(dir_ / "expected.json"));
  }

  void SetUp() override {
    if (!skip_.empty()) GTEST_SKIP() << skip_;
    ASSERT_TRUE(error_.empty()) << error_;
  }

  static std::string path(const std::string& file) { return (dir_ / file).string(); }

  // Names, shapes, dtypes and every value must equal what torch reported (floats bit-exact).
  static void expect_matches(const std::string& file) {
    SCOPED_TRACE(file);
    vs::StateDict sd = vs::load_pth(path(file));
    const json& want = expected_.at(file);
    ASSERT_EQ(sd.size(), want.size());
    for (auto& [name, w] : want.items()) {
      SCOPED_TRACE(name);
      ASSERT_TRUE(sd.count(name));
      const vs::Tensor& t = sd.at(name);
      EXPECT_EQ(t.shape(), w["shape"].get<vs::Shape>());
      EXPECT_EQ(vs::dtype_name(t.dtype()), w["dtype"].get<std::string>());
      const json& vals = w["values"];
      ASSERT_EQ(t.numel(), int64_t(vals.size()));
      for (int64_t i = 0; i < t.numel(); ++i) {
        const json& v = vals[size_t(i)];
        switch (t.dtype()) {
          case vs::DType::f32:
            EXPECT_EQ(std::bit_cast<uint32_t>(t.f32()[i]), std::bit_cast<uint32_t>(v.get<float>()))
                << "element " << i << ": " << t.f32()[i] << " vs " << v;
            break;
          case vs::DType::i64: EXPECT_EQ(t.data<int64_t>()[i], v.get<int64_t>()); break;
          case vs::DType::i32: EXPECT_EQ(t.data<int32_t>()[i], v.get<int64_t>()); break;
          case vs::DType::i8: EXPECT_EQ(t.data<int8_t>()[i], v.get<int64_t>()); break;
          case vs::DType::u8: EXPECT_EQ(t.data<uint8_t>()[i], v.get<int64_t>()); break;
          default: FAIL() << "unexpected dtype " << vs::dtype_name(t.dtype());
        }
      }
    }
  }

  // load_pth must throw vs::Error whose message starts with the path and names the problem.
  static std::string expect_error(const std::string& file, const std::string& needle) {
    std::string p = path(file);
    try {
      vs::load_pth(p);
    } catch (const vs::Error& e) {
      std::string msg = e.what();
      EXPECT_EQ(msg.rfind(p + ": ", 0), 0u) << msg;
      EXPECT_NE(msg.find(needle), std::string::npos) << "'" << needle << "' not in: " << msg;
      return msg;
    }
    ADD_FAILURE() << file << ": no vs::Error thrown";
    return "";
  }

  static inline fs::path dir_;
  static inline std::string skip_, error_;
  static inline json expected_;
};

TEST_F(PthTest, PlainStateDictF32F16BF16) { expect_matches("plain.pth"); }

TEST_F(PthTest, NonContiguousViewsAreMaterialised) {
  expect_matches("views.pth");
  vs::StateDict sd = vs::load_pth(path("views.pth"));
  // base = arange(24).reshape(4, 6): spot-check by hand too.
  EXPECT_EQ(sd.at("t").shape(), (vs::Shape{6, 4}));
  EXPECT_EQ(sd.at("t").f32()[1], 6.0f);
  EXPECT_EQ(sd.at("s").f32()[0], 6.0f);
  EXPECT_EQ(sd.at("s").f32()[4], 14.0f);
  EXPECT_EQ(sd.at("col").f32()[3], 23.0f);
}

TEST_F(PthTest, SharedStorage) { expect_matches("shared.pth"); }

TEST_F(PthTest, NestedModelCheckpoint) { expect_matches("nested_model.pth"); }

// {"state_dict": ..., "optimizer": ..., "args": Namespace, "version": TorchVersion, ...}: only
// the state_dict comes back, including the int64 num_batches_tracked.
TEST_F(PthTest, NestedStateDictCheckpoint) {
  expect_matches("nested_state_dict.pth");
  vs::StateDict sd = vs::load_pth(path("nested_state_dict.pth"));
  EXPECT_EQ(sd.at("1.num_batches_tracked").dtype(), vs::DType::i64);
  EXPECT_EQ(sd.at("1.num_batches_tracked").data<int64_t>()[0], 2);
}

TEST_F(PthTest, IntegerDoubleAndParameterTensors) { expect_matches("ints.pth"); }

TEST_F(PthTest, PickleProtocol4) { expect_matches("proto4.pth"); }

TEST_F(PthTest, DeflatedArchiveWithOtherPrefix) { expect_matches("deflated.pth"); }

TEST_F(PthTest, BigEndianByteorder) { expect_matches("bigendian.pth"); }

TEST_F(PthTest, RefusesOsSystem) {
  expect_error("evil_system.pth", "refusing pickle global");
  std::string msg = expect_error("evil_system.pth", "system (not a tensor state_dict)");
  EXPECT_FALSE(fs::exists(dir_ / "PWNED"));
}

TEST_F(PthTest, RefusesEval) {
  expect_error("evil_eval.pth", "refusing pickle global __builtin__.eval (not a tensor");
  EXPECT_FALSE(fs::exists(dir_ / "PWNED"));
}

TEST_F(PthTest, RefusesStackGlobal) {
  expect_error("evil_proto4.pth", "refusing pickle global");
  EXPECT_FALSE(fs::exists(dir_ / "PWNED"));
}

TEST_F(PthTest, BadInputErrors) {
  expect_error("does_not_exist.pth", "cannot open");
  expect_error("legacy.pth", "legacy torch.save format is not supported");
  expect_error("garbage.pth", "not a zip-format PyTorch checkpoint");
  expect_error("truncated.pth", "corrupt or truncated zip");
  expect_error("crc.pth", "corrupt zip entry");
  expect_error("no_pkl.pth", "no data.pkl");
  expect_error("missing_storage.pth", "data/0 is missing");
  expect_error("small_storage.pth", "storage too small");
  expect_error("complex.pth", "unsupported dtype torch.ComplexFloatStorage");
  expect_error("list_top.pth", "top-level object is a list");
  expect_error("no_tensors.pth", "no tensors found (top-level keys: epoch, arch)");
  expect_error("bad_opcode.pth", "unsupported pickle opcode 0x49 ('I')");
  expect_error("bad_memo.pth", "memo entry 7 is missing");
  expect_error("no_stop.pth", "pickle stream is truncated");
}

// Every truncation and thousands of random corruptions of a real data.pkl: load_pth may
// succeed or throw vs::Error, nothing else (run under ASan/UBSan to catch silent UB).
TEST_F(PthTest, CorruptedPickleOnlyThrowsVsError) {
  // Thousands of small rewrites: use tmpfs where there is one, the disk can be slow at this.
  std::string src = path("plain.pth"),
              dst = fs::is_directory("/dev/shm")
                        ? "/dev/shm/vs_pth_fuzz_" + std::to_string(getpid()) + ".pth"
                        : path("fuzz." + std::to_string(getpid()) + ".pth");
  int err = 0;
  zip_t* z = zip_open(src.c_str(), ZIP_RDONLY, &err);
  ASSERT_NE(z, nullptr);
  zip_stat_t st;
  ASSERT_EQ(zip_stat(z, "plain/data.pkl", 0, &st), 0);
  std::vector<uint8_t> pkl(st.size);
  zip_file_t* f = zip_fopen(z, "plain/data.pkl", 0);
  ASSERT_EQ(zip_fread(f, pkl.data(), pkl.size()), zip_int64_t(pkl.size()));
  zip_fclose(f);
  zip_discard(z);

  int loaded = 0, rejected = 0;
  auto attempt = [&](const std::vector<uint8_t>& bytes) {
    fs::copy_file(src, dst, fs::copy_options::overwrite_existing);
    zip_t* w = zip_open(dst.c_str(), 0, &err);
    ASSERT_NE(w, nullptr);
    zip_source_t* s = zip_source_buffer(w, bytes.data(), bytes.size(), 0);
    ASSERT_GE(zip_file_add(w, "plain/data.pkl", s, ZIP_FL_OVERWRITE), 0);
    ASSERT_EQ(zip_close(w), 0);
    try {
      vs::load_pth(dst);
      ++loaded;
    } catch (const vs::Error& e) {
      // Every rejection must still come from the pickle/tensor checks, not the zip layer.
      std::string msg = e.what();
      EXPECT_EQ(msg.find("zip"), std::string::npos) << msg;
      EXPECT_EQ(msg.find('\n'), std::string::npos) << "messages are one line: " << msg;
      ++rejected;
    } catch (const std::exception& e) {
      FAIL() << "non-vs::Error exception: " << e.what();
    }
  };
  for (size_t n = 0; n < pkl.size(); ++n) attempt({pkl.begin(), pkl.begin() + ptrdiff_t(n)});
  std::mt19937 rng(1234);
  for (int iter = 0; iter < 2000; ++iter) {
    std::vector<uint8_t> bytes = pkl;
    int edits = 1 + int(rng() % 4);
    for (int e = 0; e < edits; ++e) {
      size_t at = rng() % bytes.size();
      // Mostly small integers (lengths, memo ids, sizes) and opcode bytes.
      bytes[at] = rng() % 2 ? uint8_t(rng()) : uint8_t(pkl[rng() % pkl.size()]);
    }
    attempt(bytes);
  }
  fs::remove(dst);
  EXPECT_GT(loaded, 0);  // some corruptions are harmless (e.g. in a float value)
  EXPECT_GT(rejected, int(pkl.size()));
}

}  // namespace
