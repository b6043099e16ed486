// Helpers shared by the vocab loaders (tokenizer_loaders.cc, tokenizer_hf.cc). Private.
#pragma once

#include <string>

#include "yunzhi/base/status.h"
#include "yunzhi/engine/tokenizer.h"

namespace yunzhi::engine::internal {

// The whole file. Errors: kNotFound (no such file), kUnavailable (cannot be read).
Result<std::string> ReadWholeFile(const std::string& path);

// Sets vocab->eot_id, if unset, to the control token with a well-known end-of-turn text
// (<|eot_id|>, <|im_end|>, <|end|>, <end_of_turn>, ...), as llama.cpp does.
void SetEndOfTurnByName(Vocab* vocab);

}  // namespace yunzhi::engine::internal
