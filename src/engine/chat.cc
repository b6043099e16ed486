#include "yunzhi/engine/chat.h"

namespace yunzhi::engine {

Result<ChatFormatter> ChatFormatter::ForModel(std::shared_ptr<const Model> model) {
  const std::string& source = model->chat_template();
  if (source.empty()) {
    // The fallback is a process-wide singleton; share it without taking ownership.
    std::shared_ptr<const ChatTemplate> fallback(&ChatTemplate::ChatMlFallback(),
                                                 [](const ChatTemplate*) {});
    return ChatFormatter(std::move(model), std::move(fallback), true);
  }
  auto parsed = ChatTemplate::Parse(source);
  if (!parsed) {
    return InvalidArgumentError("the chat template of " + model->path() +
                                " does not parse: " + parsed.error().message);
  }
  return ChatFormatter(std::move(model), std::make_shared<const ChatTemplate>(std::move(*parsed)),
                       false);
}

Result<std::string> ChatFormatter::Render(ChatInput input) const {
  const Tokenizer& tok = model_->tokenizer();
  const Vocab& vocab = tok.vocab();
  if (!input.bos_token && vocab.bos_id >= 0) input.bos_token = tok.TokenToPiece(vocab.bos_id);
  if (!input.eos_token && vocab.eos_id >= 0) input.eos_token = tok.TokenToPiece(vocab.eos_id);
  return template_->Render(input);
}

std::vector<int32_t> ChatFormatter::Tokenize(const std::string& rendered) const {
  const Tokenizer& tok = model_->tokenizer();
  std::vector<int32_t> tokens = tok.Encode(rendered, {.add_special = false, .parse_special = true});
  const Vocab& vocab = tok.vocab();
  if (vocab.add_bos && vocab.bos_id >= 0 && (tokens.empty() || tokens.front() != vocab.bos_id)) {
    tokens.insert(tokens.begin(), vocab.bos_id);
  }
  return tokens;
}

Result<std::vector<int32_t>> ChatFormatter::Format(ChatInput input) const {
  YZ_ASSIGN_OR_RETURN(std::string rendered, Render(std::move(input)));
  return Tokenize(rendered);
}

}  // namespace yunzhi::engine
