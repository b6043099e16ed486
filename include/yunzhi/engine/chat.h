// Turning a conversation into prompt tokens for a model: its own chat template (or ChatML when it
// ships none), its BOS/EOS strings, and tokenization that honours the template's special tokens.
//
// Thread safety: a ChatFormatter is immutable after ForModel; use it from any number of threads.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "yunzhi/base/status.h"
#include "yunzhi/engine/chat_template.h"
#include "yunzhi/engine/model.h"

namespace yunzhi::engine {

class ChatFormatter {
 public:
  // Parses the model's chat template. A model without one gets the ChatML fallback.
  // Errors: kInvalidArgument when the model's template does not parse (the message says where).
  static Result<ChatFormatter> ForModel(std::shared_ptr<const Model> model);

  // Renders the conversation; bos_token/eos_token are filled from the model unless given.
  // Errors: those of ChatTemplate::Render (e.g. the template's raise_exception).
  Result<std::string> Render(ChatInput input) const;
  // Tokenizes a rendered prompt: control tokens written by the template are recognised, and BOS
  // is added when the vocabulary asks for it and the template did not write it.
  std::vector<int32_t> Tokenize(const std::string& rendered) const;
  // Render + Tokenize.
  Result<std::vector<int32_t>> Format(ChatInput input) const;

  bool uses_fallback() const { return fallback_; }

 private:
  ChatFormatter(std::shared_ptr<const Model> model, std::shared_ptr<const ChatTemplate> tmpl,
                bool fallback)
      : model_(std::move(model)), template_(std::move(tmpl)), fallback_(fallback) {}
  std::shared_ptr<const Model> model_;
  std::shared_ptr<const ChatTemplate> template_;
  bool fallback_ = false;
};

}  // namespace yunzhi::engine
