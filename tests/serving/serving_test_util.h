// Helpers shared by the tests of tests/serving/.
#pragma once

#include <chrono>
#include <string>
#include <thread>

#include "yunzhi/serving/model_manager.h"

namespace yunzhi::serving::testing {

// Polls (up to 5 s) until `name` is, or is no longer, among `m`'s loaded models.
inline bool WaitLoaded(const ModelManager& m, const std::string& name, bool loaded) {
  using namespace std::chrono_literals;
  const auto deadline = std::chrono::steady_clock::now() + 5s;
  while (std::chrono::steady_clock::now() < deadline) {
    bool found = false;
    for (const auto& info : m.List()) found = found || info.name == name;
    if (found == loaded) return true;
    std::this_thread::sleep_for(5ms);
  }
  return false;
}

}  // namespace yunzhi::serving::testing
