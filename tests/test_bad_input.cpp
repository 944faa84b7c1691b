// Every kind of bad input is a one-line error that names the file, a non-zero exit, and no
// partial output - checked through the real `vitshrink` command.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>

#include "core/error.h"
#include "io/safetensors.h"
#include "test_util.h"

using namespace vs;
namespace fs = std::filesystem;

namespace {

// Runs the CLI; expects a non-zero exit and a single error line containing `needle`.
void expect_rejected(const std::string& args, const std::string& needle) {
  int st = 0;
  std::string out = test::run_output(test::cli() + " " + args, &st);
  EXPECT_NE(st, 0) << args << "\n" << out;
  EXPECT_NE(out.find(needle), std::string::npos) << "expected '" << needle << "' in: " << out;
  EXPECT_LE(std::count(out.begin(), out.end(), '\n'), 1) << "error is not one line: " << out;
}

std::vector<char> slurp(const std::string& p) {
  std::ifstream f(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(f), {}};
}
void spit(const std::string& p, const std::vector<char>& b) {
  std::ofstream(p, std::ios::binary).write(b.data(), std::streamsize(b.size()));
}

}  // namespace

TEST(BadInput, ValidTinyModelLoads) {
  test::TempDir tmp;
  std::string dir = test::write_tiny_model(tmp);
  int st = 0;
  std::string out = test::run_output(test::cli() + " info " + dir, &st);
  EXPECT_EQ(st, 0) << out;
  EXPECT_NE(out.find("vit_tiny_patch8_16"), std::string::npos);
}

TEST(BadInput, TruncatedSafetensors) {
  test::TempDir tmp;
  std::string dir = test::write_tiny_model(tmp);
  auto b = slurp(dir + "/model.safetensors");
  b.resize(b.size() - 100);
  spit(dir + "/model.safetensors", b);
  expect_rejected("info " + dir, "model.safetensors: tensor");
  expect_rejected("info " + dir, "past the end of the file");
  b.resize(5);
  spit(dir + "/model.safetensors", b);
  expect_rejected("info " + dir, "truncated safetensors file");
}

TEST(BadInput, HeaderLengthPastEnd) {
  test::TempDir tmp;
  std::string dir = test::write_tiny_model(tmp);
  auto b = slurp(dir + "/model.safetensors");
  uint64_t huge = 1ull << 40;
  std::memcpy(b.data(), &huge, 8);
  spit(dir + "/model.safetensors", b);
  expect_rejected("info " + dir, "header length");
}

TEST(BadInput, UnknownDtypeAndBadJson) {
  test::TempDir tmp;
  std::string dir = test::write_tiny_model(tmp);
  auto b = slurp(dir + "/model.safetensors");
  std::string s(b.begin(), b.end());
  auto pos = s.find("\"F32\"");
  ASSERT_NE(pos, std::string::npos);
  s.replace(pos, 5, "\"Q99\"");
  spit(dir + "/model.safetensors", {s.begin(), s.end()});
  expect_rejected("info " + dir, "unsupported dtype 'Q99'");
  s[9] = '!';  // break the JSON header
  spit(dir + "/model.safetensors", {s.begin(), s.end()});
  expect_rejected("info " + dir, "not valid JSON");
}

TEST(BadInput, MissingExtraAndMisshapenTensors) {
  test::TempDir tmp;
  std::string dir = test::write_tiny_model(tmp);
  auto sd = load_safetensors(dir + "/model.safetensors").tensors;

  auto missing = sd;
  missing.erase("blocks.1.mlp.fc2.bias");
  save_safetensors(dir + "/model.safetensors", missing);
  expect_rejected("info " + dir, "missing tensor 'blocks.1.mlp.fc2.bias'");

  auto extra = sd;
  extra["blocks.1.attn.surprise"] = Tensor({3});
  save_safetensors(dir + "/model.safetensors", extra);
  expect_rejected("info " + dir, "unexpected tensor 'blocks.1.attn.surprise'");

  auto wrong = sd;
  wrong["blocks.0.attn.proj.weight"] = Tensor({32, 31});
  save_safetensors(dir + "/model.safetensors", wrong);
  expect_rejected("info " + dir, "has shape [32, 31], expected [32, 32]");
}

TEST(BadInput, ConfigProblems) {
  test::TempDir tmp;
  std::string dir = test::write_tiny_model(tmp);
  std::ofstream(dir + "/config.json") << "{not json";
  expect_rejected("info " + dir, "config.json: not valid JSON");
  std::ofstream(dir + "/config.json") << R"({"architecture": "resnet50"})";
  expect_rejected("info " + dir, "unknown architecture 'resnet50'");
  fs::remove(dir + "/config.json");
  expect_rejected("info " + dir + "/model.safetensors", "pass --arch NAME");
  expect_rejected("info " + (tmp / "nowhere"), "nowhere: no such file or directory");
}

TEST(BadInput, ImagesAndDataFolders) {
  test::TempDir tmp;
  std::string dir = test::write_tiny_model(tmp);
  std::ofstream(tmp / "notes.txt") << "not an image";
  expect_rejected("classify " + dir + " " + (tmp / "notes.txt"), "notes.txt");
  std::string data = tmp / "data";
  fs::create_directories(data);
  std::ofstream(data + "/classes.txt") << "n0 zero\nn1 one\n";
  expect_rejected("eval " + dir + " --data " + data, "no .JPEG/.jpg/.png images in this folder");
  std::ofstream(data + "/n0_broken.JPEG") << "\xff\xd8\xff garbage";
  expect_rejected("eval " + dir + " --data " + data, "n0_broken.JPEG");
  std::ofstream(tmp / "split.txt") << "n0_missing.JPEG\n";
  expect_rejected("eval " + dir + " --data " + data + " --split " + (tmp / "split.txt"),
                  "lists 'n0_missing.JPEG', which is not in");
}

TEST(BadInput, AbsurdOptionsAndNoPartialReport) {
  test::TempDir tmp;
  std::string dir = test::write_tiny_model(tmp);
  expect_rejected("bench " + dir + " --threads 0", "--threads");
  expect_rejected("bench " + dir + " --batch -3", "--batch");
  std::string data = tmp / "data";
  fs::create_directories(data);
  std::ofstream(data + "/classes.txt") << "n0 zero\n";
  std::ofstream(data + "/n0_broken.JPEG") << "garbage";
  std::string report = tmp / "report.json";
  expect_rejected("eval " + dir + " --data " + data + " --report " + report, "n0_broken.JPEG");
  EXPECT_FALSE(fs::exists(report));
  for (auto& e : fs::directory_iterator(tmp.path))
    EXPECT_EQ(e.path().string().find(".tmp"), std::string::npos) << "left behind: " << e.path();
}
