#include "server/errors.h"

#include <nlohmann/json.hpp>

namespace epserve {

ApiError::ApiError(int status, std::string message, std::string param, std::string code)
    : std::runtime_error(std::move(message)),
      status_(status),
      param_(std::move(param)),
      code_(std::move(code)) {}

void bad_request(const std::string& message, const std::string& param) {
  throw ApiError(400, message, param);
}

std::string error_type_for_status(int status) {
  switch (status) {
    case 401:
      return "authentication_error";
    case 403:
      return "permission_error";
    case 404:
      return "not_found_error";
    case 413:
      return "request_too_large";
    case 429:
      return "rate_limit_error";
    default:
      return status >= 500 ? "server_error" : "invalid_request_error";
  }
}

std::string error_body(int status, const std::string& message, const std::string& param,
                       const std::string& code) {
  nlohmann::json error = {
      {"message", message},
      {"type", error_type_for_status(status)},
      {"param", param.empty() ? nlohmann::json() : nlohmann::json(param)},
      {"code", code.empty() ? nlohmann::json() : nlohmann::json(code)},
  };
  return nlohmann::json{{"error", std::move(error)}}.dump(-1, ' ', false,
                                                          nlohmann::json::error_handler_t::replace);
}

}  // namespace epserve
