#include "yunzhi/base/config.h"

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "yunzhi/base/crypto.h"

namespace yunzhi {
namespace {

namespace fs = std::filesystem;
using ::testing::AllOf;
using ::testing::ContainsRegex;
using ::testing::HasSubstr;
using ::testing::Not;

class ConfigTest : public ::testing::Test {
 protected:
  ConfigTest() {
    dir_ = fs::temp_directory_path() / ("yunzhi_config_test_" + crypto::RandomAlnum(12));
    fs::create_directories(dir_);
  }
  ~ConfigTest() override {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }

  // Writes `text` to <dir>/<name> and returns the path.
  std::string WriteFile(const std::string& text, const std::string& name = "config.toml") {
    const std::string path = (dir_ / name).string();
    std::ofstream(path, std::ios::binary) << text;
    return path;
  }

  // The error message of loading `sources`; fails the test when loading succeeds.
  static std::string ErrorOf(const ConfigSources& sources) {
    const auto loaded = LoadConfig(sources);
    if (loaded.has_value()) {
      ADD_FAILURE() << "expected an error, got:\n" << RenderEffectiveConfig(*loaded);
      return "";
    }
    EXPECT_EQ(loaded.error().code, Code::kInvalidArgument) << loaded.error().ToString();
    return loaded.error().message;
  }
  std::string FileError(const std::string& toml) {
    ConfigSources sources;
    sources.file = WriteFile(toml);
    return ErrorOf(sources);
  }

  fs::path dir_;
};

// --- defaults and precedence ---

TEST_F(ConfigTest, DefaultsWithoutAnySource) {
  const auto loaded = LoadConfig({});
  ASSERT_TRUE(loaded.has_value()) << loaded.error().ToString();
  const Config& c = loaded->config;
  EXPECT_EQ(c, Config{});
  EXPECT_EQ(c.data_dir, "./data");
  EXPECT_EQ(c.server.host, "127.0.0.1");
  EXPECT_EQ(c.server.port, 8080);
  EXPECT_EQ(c.server.threads, 0);
  EXPECT_EQ(c.server.max_body_bytes, 33554432);
  EXPECT_EQ(c.server.header_timeout_ms, 10000);
  EXPECT_EQ(c.server.body_timeout_ms, 60000);
  EXPECT_EQ(c.server.idle_timeout_ms, 75000);
  EXPECT_EQ(c.server.write_timeout_ms, 60000);
  EXPECT_EQ(c.server.shutdown_grace_ms, 30000);
  EXPECT_EQ(c.store.url, "");
  EXPECT_EQ(c.store.busy_timeout_ms, 5000);
  EXPECT_EQ(c.log.level, log::Level::kInfo);
  EXPECT_EQ(c.log.format, LogFormat::kText);
  EXPECT_EQ(c.log.file, "");
  EXPECT_EQ(c.limits.default_requests_per_minute, 0);
  EXPECT_EQ(c.security.master_key_file, "");
  EXPECT_EQ(loaded->file, "");
  EXPECT_EQ(loaded->origin_of.size(), 31u);
  for (const auto& [key, origin] : loaded->origin_of) EXPECT_EQ(origin, "default") << key;
}

TEST_F(ConfigTest, FileSetsValues) {
  ConfigSources sources;
  sources.file = WriteFile(R"(
data_dir = "/var/lib/yunzhi"

[server]
host = "0.0.0.0"
port = 9000
max_body_bytes = 1048576

[store]
url = "postgres://yz@db/yunzhi"

[log]
level = "debug"
format = "json"
file = "/var/log/yunzhi.log"

[limits]
default_requests_per_minute = 600
)");
  const auto loaded = LoadConfig(sources);
  ASSERT_TRUE(loaded.has_value()) << loaded.error().ToString();
  const Config& c = loaded->config;
  EXPECT_EQ(c.data_dir, "/var/lib/yunzhi");
  EXPECT_EQ(c.server.host, "0.0.0.0");
  EXPECT_EQ(c.server.port, 9000);
  EXPECT_EQ(c.server.max_body_bytes, 1048576);
  EXPECT_EQ(c.server.idle_timeout_ms, 75000) << "unset keys keep their defaults";
  EXPECT_EQ(c.store.url, "postgres://yz@db/yunzhi");
  EXPECT_EQ(c.log.level, log::Level::kDebug);
  EXPECT_EQ(c.log.format, LogFormat::kJson);
  EXPECT_EQ(c.log.file, "/var/log/yunzhi.log");
  EXPECT_EQ(c.limits.default_requests_per_minute, 600);
  EXPECT_EQ(loaded->file, sources.file);
  EXPECT_EQ(loaded->origin_of.at("server.port"), "file");
  EXPECT_EQ(loaded->origin_of.at("server.idle_timeout_ms"), "default");
}

TEST_F(ConfigTest, DottedKeysAndInlineTablesWork) {
  ConfigSources sources;
  sources.file = WriteFile("server.port = 9100\nlog = { level = \"warn\" }\n");
  const auto loaded = LoadConfig(sources);
  ASSERT_TRUE(loaded.has_value()) << loaded.error().ToString();
  EXPECT_EQ(loaded->config.server.port, 9100);
  EXPECT_EQ(loaded->config.log.level, log::Level::kWarn);
}

TEST_F(ConfigTest, PrecedenceIsDefaultThenFileThenEnvThenFlag) {
  ConfigSources sources;
  sources.file = WriteFile(R"(
data_dir = "/from/file"
[server]
port = 9001
threads = 3
host = "10.0.0.1"
)");
  sources.env = {{"YUNZHI_SERVER_PORT", "9002"},
                 {"YUNZHI_SERVER_THREADS", "5"},
                 {"YUNZHI_DATA_DIR", "/from/env"}};
  sources.overrides = {{"server.port", "9003"}};

  auto loaded = LoadConfig(sources);
  ASSERT_TRUE(loaded.has_value()) << loaded.error().ToString();
  EXPECT_EQ(loaded->config.server.port, 9003);
  EXPECT_EQ(loaded->origin_of.at("server.port"), "flag");
  EXPECT_EQ(loaded->config.server.threads, 5);
  EXPECT_EQ(loaded->origin_of.at("server.threads"), "env");
  EXPECT_EQ(loaded->config.data_dir, "/from/env");
  EXPECT_EQ(loaded->origin_of.at("data_dir"), "env");
  EXPECT_EQ(loaded->config.server.host, "10.0.0.1");
  EXPECT_EQ(loaded->origin_of.at("server.host"), "file");
  EXPECT_EQ(loaded->config.server.body_timeout_ms, 60000);
  EXPECT_EQ(loaded->origin_of.at("server.body_timeout_ms"), "default");

  sources.overrides.clear();
  loaded = LoadConfig(sources);
  ASSERT_TRUE(loaded.has_value());
  EXPECT_EQ(loaded->config.server.port, 9002);

  sources.env.clear();
  loaded = LoadConfig(sources);
  ASSERT_TRUE(loaded.has_value());
  EXPECT_EQ(loaded->config.server.port, 9001);
  EXPECT_EQ(loaded->config.data_dir, "/from/file");
}

TEST_F(ConfigTest, OverridesApplyInOrderLastWins) {
  ConfigSources sources;
  sources.overrides = {{"server.port", "1"}, {"log.level", "error"}, {"server.port", "2"}};
  const auto loaded = LoadConfig(sources);
  ASSERT_TRUE(loaded.has_value()) << loaded.error().ToString();
  EXPECT_EQ(loaded->config.server.port, 2);
  EXPECT_EQ(loaded->config.log.level, log::Level::kError);
}

TEST_F(ConfigTest, EnvAndFlagTextIsParsedPerType) {
  ConfigSources sources;
  sources.env = {{"YUNZHI_SERVER_PORT", " 9000 "},  // surrounding blanks are forgiven
                 {"YUNZHI_LOG_LEVEL", "DEBUG"},     // enum names are case-insensitive
                 {"YUNZHI_LOG_FILE", ""},           // empty string is a valid value here
                 {"YUNZHI_STORE_URL", "sqlite:///tmp/x.db"}};
  sources.overrides = {{"log.format", "Json"}, {"server.host", " ::1"}};
  const auto loaded = LoadConfig(sources);
  ASSERT_TRUE(loaded.has_value()) << loaded.error().ToString();
  EXPECT_EQ(loaded->config.server.port, 9000);
  EXPECT_EQ(loaded->config.log.level, log::Level::kDebug);
  EXPECT_EQ(loaded->config.log.file, "");
  EXPECT_EQ(loaded->origin_of.at("log.file"), "env");
  EXPECT_EQ(loaded->config.store.url, "sqlite:///tmp/x.db");
  EXPECT_EQ(loaded->config.log.format, LogFormat::kJson);
  EXPECT_EQ(loaded->config.server.host, " ::1") << "strings are taken verbatim";
}

TEST_F(ConfigTest, UnknownYunzhiEnvironmentVariablesAreIgnored) {
  ConfigSources sources;
  sources.env = {{"YUNZHI_NOT_A_SETTING", "x"},
                 {"YUNZHI_SERVER", "x"},
                 {"PATH", "/bin"},
                 {"yunzhi_server_port", "1"}};
  const auto loaded = LoadConfig(sources);
  ASSERT_TRUE(loaded.has_value()) << loaded.error().ToString();
  EXPECT_EQ(loaded->config, Config{});
}

TEST_F(ConfigTest, YunzhiConfigNamesTheFileUnlessOneIsGiven) {
  const std::string from_env = WriteFile("[server]\nport = 7001\n", "env.toml");
  const std::string explicit_file = WriteFile("[server]\nport = 7002\n", "explicit.toml");
  ConfigSources sources;
  sources.env = {{"YUNZHI_CONFIG", from_env}};
  auto loaded = LoadConfig(sources);
  ASSERT_TRUE(loaded.has_value()) << loaded.error().ToString();
  EXPECT_EQ(loaded->config.server.port, 7001);
  EXPECT_EQ(loaded->file, from_env);
  EXPECT_EQ(loaded->origin_of.at("server.port"), "file");

  sources.file = explicit_file;
  loaded = LoadConfig(sources);
  ASSERT_TRUE(loaded.has_value()) << loaded.error().ToString();
  EXPECT_EQ(loaded->config.server.port, 7002);
  EXPECT_EQ(loaded->file, explicit_file);
}

// --- file errors ---

TEST_F(ConfigTest, MissingExplicitFileIsAnError) {
  ConfigSources sources;
  sources.file = (dir_ / "nope.toml").string();
  EXPECT_THAT(ErrorOf(sources), AllOf(HasSubstr(sources.file), HasSubstr("does not exist")));
}

TEST_F(ConfigTest, MissingFileNamedByYunzhiConfigIsAnError) {
  ConfigSources sources;
  sources.env = {{"YUNZHI_CONFIG", (dir_ / "gone.toml").string()}};
  EXPECT_THAT(ErrorOf(sources), AllOf(HasSubstr("gone.toml"), HasSubstr("YUNZHI_CONFIG"),
                                      HasSubstr("does not exist")));
}

TEST_F(ConfigTest, DirectoryAsFileIsAnError) {
  ConfigSources sources;
  sources.file = dir_.string();
  EXPECT_THAT(ErrorOf(sources), HasSubstr("is not a regular file"));
}

TEST_F(ConfigTest, SyntaxErrorNamesFileLineAndColumn) {
  const std::string message = FileError("[server]\nport = = 9000\n");
  EXPECT_THAT(message, ContainsRegex("config\\.toml:2:[0-9]+: ."));
  // toml++'s own description follows the position.
  EXPECT_GT(message.size(), message.find(":2:") + 6);
}

TEST_F(ConfigTest, SyntaxErrorsOfManyKindsNeverThrow) {
  for (const char* text : {"[server", "port = \"unterminated", "= 1", "a = 1\na = 2",
                           "\xff\xfe garbage", "[server]\n[server]\n", "x = [1, \"a\""}) {
    SCOPED_TRACE(text);
    EXPECT_THAT(FileError(text), ContainsRegex("config\\.toml:[0-9]+:[0-9]+: "));
  }
}

TEST_F(ConfigTest, UnknownKeySuggestsTheClosestKnownKey) {
  EXPECT_THAT(FileError("[server]\nprot = 9000\n"),
              HasSubstr("config.toml:2:1: unknown setting \"server.prot\" "
                        "(did you mean \"server.port\"?)"));
  EXPECT_THAT(FileError("[sever]\nport = 9000\n"),
              HasSubstr("unknown setting \"sever.port\" (did you mean \"server.port\"?)"));
  EXPECT_THAT(FileError("datadir = \"/x\"\n"),
              HasSubstr("unknown setting \"datadir\" (did you mean \"data_dir\"?)"));
  // The right name in the wrong place.
  EXPECT_THAT(FileError("port = 9000\n"),
              HasSubstr("unknown setting \"port\" (did you mean \"server.port\"?)"));
  EXPECT_THAT(FileError("[server]\nlevel = \"debug\"\n"),
              HasSubstr("unknown setting \"server.level\" (did you mean \"log.level\"?)"));
  // Nothing close: no suggestion.
  const std::string far = FileError("completely_unrelated = 1\n");
  EXPECT_THAT(far, HasSubstr("unknown setting \"completely_unrelated\""));
  EXPECT_THAT(far, Not(HasSubstr("did you mean")));
}

TEST_F(ConfigTest, WrongTypeInFileNamesKeyExpectedTypeAndValue) {
  EXPECT_THAT(FileError("[server]\nport = \"abc\"\n"),
              HasSubstr("config.toml:2:8: server.port must be an integer, got string \"abc\""));
  EXPECT_THAT(FileError("[server]\nport = 1.5\n"),
              HasSubstr("server.port must be an integer, got float 1.5"));
  EXPECT_THAT(FileError("[server]\nhost = 5\n"),
              HasSubstr("server.host must be a string, got integer 5"));
  EXPECT_THAT(FileError("[log]\nlevel = true\n"),
              HasSubstr("log.level must be a string, got boolean true"));
  EXPECT_THAT(FileError("data_dir = [\"a\"]\n"), HasSubstr("data_dir must be a string, got array"));
  EXPECT_THAT(FileError("server = 5\n"), HasSubstr("server must be a table, got integer 5"));
  EXPECT_THAT(FileError("[log.level]\nx = 1\n"),
              HasSubstr("log.level must be a string, got table"));
}

TEST_F(ConfigTest, OutOfRangeAndBadEnumValuesInFile) {
  EXPECT_THAT(FileError("[server]\nport = 70000\n"),
              HasSubstr("config.toml:2:8: server.port must be between 0 and 65535, got 70000"));
  EXPECT_THAT(FileError("[server]\nport = -1\n"),
              HasSubstr("server.port must be between 0 and 65535, got -1"));
  EXPECT_THAT(FileError("[server]\nheader_timeout_ms = 0\n"),
              HasSubstr("server.header_timeout_ms must be between 1 and 86400000, got 0"));
  EXPECT_THAT(FileError("[server]\nmax_body_bytes = 0\n"),
              HasSubstr("server.max_body_bytes must be at least 1, got 0"));
  EXPECT_THAT(FileError("[limits]\ndefault_requests_per_minute = -5\n"),
              HasSubstr("limits.default_requests_per_minute must be at least 0, got -5"));
  EXPECT_THAT(FileError("data_dir = \"\"\n"), HasSubstr("data_dir must not be empty"));
  EXPECT_THAT(FileError("[log]\nformat = \"yaml\"\n"),
              HasSubstr("log.format must be one of \"text\", \"json\", got \"yaml\""));
  EXPECT_THAT(FileError("[log]\nlevel = \"verbose\"\n"),
              HasSubstr("log.level must be one of \"debug\", \"info\", \"warn\", \"error\", "
                        "\"off\", got \"verbose\""));
}

TEST_F(ConfigTest, AllTimeoutsMustBePositive) {
  for (const char* key :
       {"server.header_timeout_ms", "server.body_timeout_ms", "server.idle_timeout_ms",
        "server.write_timeout_ms", "server.shutdown_grace_ms", "store.busy_timeout_ms"}) {
    ConfigSources sources;
    sources.overrides = {{key, "0"}};
    EXPECT_THAT(ErrorOf(sources), HasSubstr("must be between 1 and")) << key;
  }
}

TEST_F(ConfigTest, AllErrorsOfAFileAreReportedTogether) {
  const std::string message = FileError("[server]\nport = \"x\"\nprot = 1\nthreads = -1\n");
  EXPECT_THAT(message, HasSubstr("server.port must be an integer"));
  EXPECT_THAT(message, HasSubstr("unknown setting \"server.prot\""));
  EXPECT_THAT(message, HasSubstr("server.threads must be between 0 and 1024, got -1"));
}

// --- environment and flag errors ---

TEST_F(ConfigTest, BadEnvironmentValueNamesTheVariable) {
  ConfigSources sources;
  sources.env = {{"YUNZHI_SERVER_PORT", "abc"}};
  EXPECT_THAT(ErrorOf(sources), HasSubstr("environment variable YUNZHI_SERVER_PORT (server.port) "
                                          "must be an integer, got \"abc\""));
  sources.env = {{"YUNZHI_SERVER_PORT", "80x"}};
  EXPECT_THAT(ErrorOf(sources), HasSubstr("must be an integer, got \"80x\""));
  sources.env = {{"YUNZHI_SERVER_PORT", ""}};
  EXPECT_THAT(ErrorOf(sources), HasSubstr("must be an integer, got \"\""));
  sources.env = {{"YUNZHI_SERVER_PORT", "99999999999999999999999"}};
  EXPECT_THAT(ErrorOf(sources), HasSubstr("YUNZHI_SERVER_PORT (server.port) must be between 0 "
                                          "and 65535, got 99999999999999999999999"));
  sources.env = {{"YUNZHI_LOG_FORMAT", "xml"}};
  EXPECT_THAT(ErrorOf(sources), HasSubstr("environment variable YUNZHI_LOG_FORMAT (log.format) "
                                          "must be one of \"text\", \"json\", got \"xml\""));
  sources.env = {{"YUNZHI_DATA_DIR", ""}};
  EXPECT_THAT(ErrorOf(sources),
              HasSubstr("environment variable YUNZHI_DATA_DIR (data_dir) must not be empty"));
}

TEST_F(ConfigTest, BadOverrides) {
  ConfigSources sources;
  sources.overrides = {{"server.prot", "1"}};
  EXPECT_THAT(ErrorOf(sources), HasSubstr("command-line override: unknown setting "
                                          "\"server.prot\" (did you mean \"server.port\"?)"));
  sources.overrides = {{"server.port", "eighty"}};
  EXPECT_THAT(ErrorOf(sources), HasSubstr("command-line override server.port must be an "
                                          "integer, got \"eighty\""));
  sources.overrides = {{"server", "1"}};
  EXPECT_THAT(ErrorOf(sources), HasSubstr("unknown setting \"server\""));
}

TEST_F(ConfigTest, ErrorsFromAllSourcesAreReportedTogether) {
  ConfigSources sources;
  sources.file = WriteFile("[server]\nport = 1.0\n");
  sources.env = {{"YUNZHI_SERVER_THREADS", "many"}};
  sources.overrides = {{"nope", "1"}};
  const std::string message = ErrorOf(sources);
  EXPECT_THAT(message, HasSubstr("config.toml:2:8: server.port must be an integer, got float 1.0"));
  EXPECT_THAT(message, HasSubstr("YUNZHI_SERVER_THREADS"));
  EXPECT_THAT(message, HasSubstr("unknown setting \"nope\""));
}

// --- rendering ---

TEST_F(ConfigTest, EffectiveConfigSaysWhereEachValueCameFrom) {
  ConfigSources sources;
  sources.file = WriteFile("[server]\nhost = \"0.0.0.0\"\n");
  sources.env = {{"YUNZHI_SERVER_PORT", "9002"}};
  sources.overrides = {{"log.format", "json"}};
  const auto loaded = LoadConfig(sources);
  ASSERT_TRUE(loaded.has_value()) << loaded.error().ToString();
  const std::string text = RenderEffectiveConfig(*loaded);
  EXPECT_THAT(text, HasSubstr("# file: " + sources.file + "\n"));
  EXPECT_THAT(text, HasSubstr("\ndata_dir = \"./data\"  # default\n"));
  EXPECT_THAT(text, HasSubstr("\n[server]\nhost = \"0.0.0.0\"  # file\nport = 9002  # env "
                              "YUNZHI_SERVER_PORT\nthreads = 0  # default\n"));
  EXPECT_THAT(text, HasSubstr("\n[log]\nlevel = \"info\"  # default\nformat = \"json\"  # flag\n"));
  EXPECT_THAT(text, HasSubstr("\n[limits]\ndefault_requests_per_minute = 0  # default\n"));
}

TEST_F(ConfigTest, EffectiveConfigRoundTripsThroughLoadConfig) {
  ConfigSources sources;
  sources.env = {{"YUNZHI_DATA_DIR", "/tmp/dir with \"quotes\" and \\ backslash\tand tab"},
                 {"YUNZHI_LOG_LEVEL", "off"},
                 {"YUNZHI_STORE_URL", "postgres://u:p@h/db?sslmode=require"}};
  sources.overrides = {{"server.port", "0"},
                       {"server.max_body_bytes", "9223372036854775807"},
                       {"log.file", "日志/yunzhi.log"}};
  const auto first = LoadConfig(sources);
  ASSERT_TRUE(first.has_value()) << first.error().ToString();
  ASSERT_NE(first->config, Config{});

  ConfigSources again;
  again.file = WriteFile(RenderEffectiveConfig(*first), "effective.toml");
  const auto second = LoadConfig(again);
  ASSERT_TRUE(second.has_value()) << second.error().ToString() << "\n"
                                  << RenderEffectiveConfig(*first);
  EXPECT_EQ(second->config, first->config);
}

TEST(ConfigReference, ListsEverySettingWithDefaultAndEnvironmentVariable) {
  const std::string table = RenderConfigReference();
  EXPECT_THAT(table, HasSubstr("| Key | Type | Default |"));
  EXPECT_THAT(table, HasSubstr("| `server.port` | integer | `8080` | `YUNZHI_SERVER_PORT` | "
                               "0 – 65535 |"));
  EXPECT_THAT(table, HasSubstr("| `data_dir` | string | `\"./data\"` | `YUNZHI_DATA_DIR` |"));
  EXPECT_THAT(table, HasSubstr("| `log.format` | string | `\"text\"` | `YUNZHI_LOG_FORMAT` | "
                               "`text`, `json` |"));
  const auto loaded = LoadConfig({});
  ASSERT_TRUE(loaded.has_value());
  for (const auto& [key, origin] : loaded->origin_of) {
    EXPECT_THAT(table, HasSubstr("| `" + key + "` |"));
  }
}

TEST(ConfigReference, DocumentationContainsTheCurrentTable) {
  const std::string path = std::string(YUNZHI_SOURCE_DIR) + "/docs/configuration.md";
  std::ifstream in(path);
  ASSERT_TRUE(in.good()) << "missing " << path;
  std::stringstream doc;
  doc << in.rdbuf();
  const std::string table = RenderConfigReference();
  EXPECT_THAT(doc.str(), HasSubstr(table))
      << path << " is stale; replace its reference table with:\n\n"
      << table;
}

// --- helpers ---

TEST(ConfigHelpers, LogOptionsMirrorTheLogSettings) {
  Config c;
  c.log.level = log::Level::kWarn;
  c.log.format = LogFormat::kJson;
  c.log.file = "/tmp/x.log";
  const log::Options o = c.LogOptions();
  EXPECT_EQ(o.level, log::Level::kWarn);
  EXPECT_TRUE(o.json);
  EXPECT_EQ(o.file, "/tmp/x.log");
  EXPECT_FALSE(Config{}.LogOptions().json);
}

TEST(ConfigHelpers, FromProcessEnvironmentKeepsOnlyYunzhiVariables) {
  ASSERT_EQ(setenv("YUNZHI_CONFIG_TEST_VALUE", "a=b", 1), 0);
  ASSERT_EQ(setenv("NOT_YUNZHI_CONFIG_TEST", "x", 1), 0);
  const auto env = ConfigSources::FromProcessEnvironment();
  unsetenv("YUNZHI_CONFIG_TEST_VALUE");
  unsetenv("NOT_YUNZHI_CONFIG_TEST");
  ASSERT_TRUE(env.contains("YUNZHI_CONFIG_TEST_VALUE"));
  EXPECT_EQ(env.at("YUNZHI_CONFIG_TEST_VALUE"), "a=b");
  for (const auto& [name, value] : env) EXPECT_TRUE(name.starts_with("YUNZHI_")) << name;
}

}  // namespace
}  // namespace yunzhi
