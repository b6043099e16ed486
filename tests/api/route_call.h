// Calls a route through a Router without sockets, as the HTTP server would: the request as the
// server builds it (path, query, Bearer key, content type) and, for a deferred response, a
// bounded wait for the worker that completes it; and a key of the wanted scopes. Shared by the
// route tests of tests/api/.
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <thread>

#include <boost/json.hpp>
#include <gtest/gtest.h>

#include "yunzhi/api/http.h"
#include "yunzhi/platform/api_keys.h"

namespace yunzhi::testing {

using api::HttpRequest;
using api::HttpResponse;
using api::Router;

struct RouteReply {
  int status = 0;
  boost::json::value body;  // null when the body is not JSON
  std::string raw;
  std::string content_type;
  api::Headers headers;
};

// A new key of `tenant_id` with `scopes`; its secret (empty, and a test failure, on error).
inline std::string NewKey(platform::ApiKeys& keys, const std::string& tenant_id,
                          std::initializer_list<platform::Scope> scopes) {
  platform::KeyOptions o;
  o.scopes = platform::Scopes::Of(scopes);
  auto k = keys.Create(tenant_id, o);
  EXPECT_TRUE(k) << k.error().ToString();
  return k ? k->secret : "";
}

// `target` may carry query parameters ("/path?a=1&b=2"; test values need no percent-decoding).
inline RouteReply CallRoute(Router& router, const std::string& method, const std::string& target,
                            const std::string& key, const std::string& body = "",
                            const std::string& content_type = "application/json",
                            std::chrono::seconds wait = std::chrono::seconds(60)) {
  HttpRequest req;
  req.method = method;
  const size_t q = target.find('?');
  req.path = target.substr(0, q);
  req.target = target;
  for (size_t pos = q; pos != std::string::npos;) {
    const size_t amp = target.find('&', pos + 1);
    const std::string pair = target.substr(pos + 1, amp == std::string::npos ? std::string::npos : amp - pos - 1);
    const size_t eq = pair.find('=');
    req.query.emplace_back(pair.substr(0, eq), eq == std::string::npos ? "" : pair.substr(eq + 1));
    pos = amp;
  }
  req.body = body;
  req.headers.emplace("Authorization", "Bearer " + key);
  if (!body.empty()) req.headers.emplace("Content-Type", content_type);
  RouteReply r;
  Router::Match m = router.Find(method, req.path);
  if (m.handler == nullptr) {
    ADD_FAILURE() << "no route for " << method << " " << target;
    return r;
  }
  req.path_params = m.params;
  HttpResponse resp = (*m.handler)(req);
  if (resp.pending) {
    const auto deadline = std::chrono::steady_clock::now() + wait;
    std::unique_ptr<HttpResponse> done;
    while (!(done = resp.pending->Take()) && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    if (!done) {
      ADD_FAILURE() << "deferred response never completed: " << method << " " << target;
      return r;
    }
    resp = std::move(*done);
  }
  r.status = resp.status;
  r.raw = resp.body;
  r.content_type = resp.content_type;
  r.headers = resp.headers;
  boost::system::error_code ec;
  r.body = boost::json::parse(r.raw, ec);
  if (ec) r.body = nullptr;
  return r;
}

}  // namespace yunzhi::testing
