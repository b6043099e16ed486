#include "yunzhi/platform/tenants.h"

#include <fmt/format.h>

#include "yunzhi/base/ids.h"

namespace yunzhi::platform {
namespace {

constexpr std::string_view kColumns = "id, name, system, created_at_ms";

Tenant FromRow(const store::Row& row) {
  return Tenant{row.Text(0), row.Text(1), row.Int(2) != 0, row.Int(3)};
}

bool IsNameChar(char c, bool first) {
  if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')) return true;
  return !first && (c == '-' || c == '_');
}

}  // namespace

Status Tenants::ValidateName(std::string_view name) {
  if (name.empty() || name.size() > 63) {
    return InvalidArgumentError("tenant name must be 1 to 63 characters long", "name");
  }
  for (size_t i = 0; i < name.size(); ++i) {
    if (!IsNameChar(name[i], i == 0)) {
      return InvalidArgumentError(
          fmt::format("tenant name '{}' is invalid: use lowercase letters, digits, '-' and '_', "
                      "starting with a letter or digit",
                      name),
          "name");
    }
  }
  return OkStatus();
}

Result<Tenant> Tenants::Create(std::string_view name) {
  YZ_RETURN_IF_ERROR(ValidateName(name));
  Tenant t{NewId("ten", clock_), std::string(name), false, clock_.NowUnixMs()};
  auto inserted =
      db_.Execute("INSERT INTO tenants (id, name, system, created_at_ms) VALUES (?, ?, 0, ?)",
                  {t.id, t.name, t.created_at_ms});
  if (!inserted) {
    if (inserted.error().code == Code::kAlreadyExists) {
      return AlreadyExistsError(fmt::format("a tenant named '{}' already exists", name));
    }
    return inserted.error();
  }
  return t;
}

Result<Tenant> Tenants::EnsureSystem() {
  // INSERT OR IGNORE keeps this safe when a server and a CLI command start at the same moment.
  YZ_RETURN_IF_ERROR(
      db_.Execute("INSERT INTO tenants (id, name, system, created_at_ms) VALUES (?, ?, 1, ?) "
                  "ON CONFLICT (name) DO NOTHING",
                  {NewId("ten", clock_), std::string(kSystemTenantName), clock_.NowUnixMs()}));
  return Find(kSystemTenantName);
}

Result<Tenant> Tenants::Find(std::string_view id_or_name) {
  YZ_ASSIGN_OR_RETURN(
      auto row,
      db_.QueryOne(fmt::format("SELECT {} FROM tenants WHERE id = ? OR name = ?", kColumns),
                   {std::string(id_or_name), std::string(id_or_name)}));
  if (!row) return NotFoundError(fmt::format("tenant '{}' does not exist", id_or_name));
  return FromRow(*row);
}

Result<std::vector<Tenant>> Tenants::List() {
  YZ_ASSIGN_OR_RETURN(
      auto rows,
      db_.Query(fmt::format("SELECT {} FROM tenants ORDER BY created_at_ms, id", kColumns)));
  std::vector<Tenant> out;
  out.reserve(rows.size());
  for (const auto& r : rows) out.push_back(FromRow(r));
  return out;
}

Status Tenants::Delete(std::string_view id_or_name) {
  YZ_ASSIGN_OR_RETURN(Tenant t, Find(id_or_name));
  if (t.system) {
    return FailedPreconditionError("the system tenant cannot be deleted");
  }
  YZ_RETURN_IF_ERROR(db_.Execute("DELETE FROM tenants WHERE id = ?", {t.id}));
  return OkStatus();
}

}  // namespace yunzhi::platform
