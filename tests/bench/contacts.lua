--[[
The bench's nested-path page: HubSpot-like contacts, whose fields are mostly under "properties",
mapped by a declared mapper with dotted paths (make bench, "declared mapper on a nested-path
page"). bench.py writes a copy with PARSE = "loop" for the same mapping as a Lua loop.
]]

local PARSE = "declared"

local CONTACTS = records.declare {
  list = "results",
  fields = {
    { "id", from = "id" },
    { "email", from = "properties.email" },
    { "firstname", from = "properties.firstname" },
    { "lastname", from = "properties.lastname" },
    { "company", from = "properties.company" },
    { "lastmodifieddate", from = "properties.lastmodifieddate", as = "datetime" },
    { "created_at", from = "createdAt", as = "datetime" },
    { "updated_at", from = "updatedAt", as = "datetime" },
    { "archived", from = "archived", as = "boolean" },
  },
}

local function loop(ctx, response)
  local records = {}
  for i, contact in ipairs(response.body.results or {}) do
    local properties = type(contact.properties) == "table" and contact.properties or {}
    records[i] = {
      id = contact.id,
      email = properties.email,
      firstname = properties.firstname,
      lastname = properties.lastname,
      company = properties.company,
      lastmodifieddate = properties.lastmodifieddate,
      created_at = contact.createdAt,
      updated_at = contact.updatedAt,
      archived = contact.archived,
    }
  end
  return records
end

return {
  spec = { connectionSpecification = { type = "object", properties = {} } },
  check = function() return true end,
  streams = { {
    name = "contacts",
    json_schema = { type = "object", additionalProperties = true, properties = {} },
    primary_key = "id",
    cursor_field = "updated_at",
    cursor_kind = "datetime",
    request = function(ctx) return "http://127.0.0.1/crm/v3/objects/contacts" end,
    parse = function(ctx, response)
      if PARSE == "loop" then
        return loop(ctx, response)
      end
      return CONTACTS:map(ctx, response)
    end,
  } },
}
