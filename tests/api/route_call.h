// Calls a route through a Router without sockets, as the HTTP server would: the request as the
// server builds it (path, query, Bearer key, content type) and, for a deferred response, a
// bounded wait for the worker that completes it. Shared by the route tests of tests/api/.
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <thread>

#include <boost/json.hpp>
#include <gtest/gtest.h>

#include "yunzhi/api/http.h"

namespace yunzhi::testing {

using api::HttpRequest;
using api::HttpResponse;
using api::Router;

struct RouteReply {
  int status = 0;
  boost::json::value body;  // null when the body is not JSON
  std::string raw;
};

// `target` may carry one query parameter ("/path?name=value").
inline RouteReply CallRoute(Router& router, const std::string& method, const std::string& target,
                            const std::string& key, const std::string& body = "",
                            const std::string& content_type = "application/json",
                            std::chrono::seconds wait = std::chrono::seconds(60)) {
  HttpRequest req;
  req.method = method;
  const size_t q = target.find('?');
  req.path = target.substr(0, q);
  req.target = target;
  if (q != std::string::npos) {
    const std::string query = target.substr(q + 1);
    const size_t eq = query.find('=');
    req.query.emplace_back(query.substr(0, eq), eq == std::string::npos ? "" : query.substr(eq + 1));
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
  boost::system::error_code ec;
  r.body = boost::json::parse(r.raw, ec);
  if (ec) r.body = nullptr;
  return r;
}

}  // namespace yunzhi::testing
