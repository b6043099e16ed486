// JSON shapes of knowledge spaces, documents, jobs, search hits and derived models, the audit
// hook the knowledge and studio routes share, and the derived-model half of a chat request
// (retrieval, prompt layers, citations). Private to src/api/.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <boost/json.hpp>

#include "yunzhi/api/app.h"
#include "yunzhi/knowledge/knowledge_base.h"
#include "yunzhi/platform/api_keys.h"
#include "yunzhi/studio/derived_models.h"
#include "api/openai_types.h"

namespace yunzhi::api {

boost::json::object SpaceJson(const knowledge::Space& s);
boost::json::object DocumentJson(const knowledge::Document& d);
boost::json::object JobJson(const knowledge::Job& j);
boost::json::object HitJson(const knowledge::SearchHit& h);
boost::json::object DerivedModelJson(const studio::DerivedModel& m);
// The OpenAI /v1/models entry of a derived model.
boost::json::object DerivedModelOpenAiJson(const studio::DerivedModel& m);

// Appends an audit entry when the server keeps an audit log (never fails the request).
void Audit(const AppContext& ctx, const platform::Principal& p, std::string_view action,
           std::string_view target, boost::json::object details);

// Which generation parameters the client set itself (so a derived model's defaults fill only
// the others).
struct ClientSet {
  bool temperature = false;
  bool top_p = false;
  bool max_tokens = false;
};
ClientSet ClientSetOf(const boost::json::object& body);

// A chat request to a derived model, made ready for its base model.
struct DerivedChat {
  std::string called_model;  // what the client named (answers carry this name)
  std::vector<knowledge::SearchHit> sources;  // numbered 1.. in the prompt
  std::vector<std::string> chain;
};

// When `req.model` names a derived model the tenant may call: retrieves from its spaces (with
// the last user message as the query), puts the layers' instructions and the numbered sources
// in front of the conversation as a system message, fills unset generation parameters from the
// defaults, and points `req.model` at the base model. nullopt when it is not a derived model.
Result<std::optional<DerivedChat>> PrepareDerivedChat(const AppContext& ctx,
                                                      const platform::Principal& p,
                                                      const ClientSet& set,
                                                      ChatCompletionRequest& req);

// The `citations` array of an answer: one entry per source, with whether the answer cites it.
boost::json::array CitationsJson(const DerivedChat& chat, std::string_view answer);

}  // namespace yunzhi::api
