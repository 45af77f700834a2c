// Errors of the HTTP API. Route code throws ApiError (status + OpenAI error fields); the HTTP
// layer turns it, and any other exception, into a response body of OpenAI's shape:
//   {"error": {"message": ..., "type": ..., "param": ..., "code": ...}}
// No exception crosses an HTTP handler.
#pragma once

#include <stdexcept>
#include <string>

namespace epserve {

class ApiError : public std::runtime_error {
 public:
  // `code`: OpenAI's machine-readable code (e.g. "invalid_api_key"), or "" for null.
  ApiError(int status, std::string message, std::string param = "", std::string code = "");
  int status() const { return status_; }
  const std::string& param() const { return param_; }
  const std::string& code() const { return code_; }

 private:
  int status_;
  std::string param_;
  std::string code_;
};

// 400 invalid_request_error, naming the request field `param` when there is one.
[[noreturn]] void bad_request(const std::string& message, const std::string& param = "");

// OpenAI's error type for an HTTP status: invalid_request_error (4xx), authentication_error
// (401), not_found_error (404), server_error (5xx).
std::string error_type_for_status(int status);

// The JSON body of an error response.
std::string error_body(int status, const std::string& message, const std::string& param = "",
                       const std::string& code = "");

}  // namespace epserve
