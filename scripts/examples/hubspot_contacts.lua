--[[
hubspot_contacts: HubSpot CRM contacts, from the CRM search API
(POST /crm/v3/objects/contacts/search), with OAuth2 (refresh-token grant at POST /oauth/v1/token).

A stream with a datetime cursor, updatedAt (the contact's lastmodifieddate): each search asks for
the contacts modified at or after the cursor (filterGroups: lastmodifieddate GTE, in epoch
milliseconds), oldest first (sorts: lastmodifieddate ASCENDING), with the chosen properties, 100 a
page, and pages by the body's paging.next.after. Each record is the contact's id, createdAt,
updatedAt and archived with its properties flattened beside them.

A search pages through at most 10,000 results (HubSpot answers 400 past them): before that, the
search starts again from the last contact's lastmodifieddate. The contacts of that millisecond
the last page ended with come again: they are skipped (ctx:skip, counted in the read's summary).

The access token is fetched with the refresh token, cached, renewed before it expires (HubSpot's
last 30 minutes) and once when HubSpot answers 401; none of it is ever printed.
]]

local DEFAULT_BASE_URL = "https://api.hubapi.com"
local PAGE_SIZE = 100
-- HubSpot refuses an `after` of 10,000 or more: restart the search before it.
local MAX_RESULTS = 10000
local DEFAULT_PROPERTIES = { "email", "firstname", "lastname", "company", "phone", "lifecyclestage",
  "createdate", "lastmodifieddate", "hs_object_id" }

local function base_url(config)
  return (config.base_url or DEFAULT_BASE_URL):gsub("/+$", "")
end

local function search_url(config)
  return base_url(config) .. "/crm/v3/objects/contacts/search"
end

local function properties(config)
  local chosen, seen = {}, {}
  for _, name in ipairs(config.properties or DEFAULT_PROPERTIES) do
    if not seen[name] then
      seen[name] = true
      chosen[#chosen + 1] = name
    end
  end
  -- The cursor's own property, whatever the config chose.
  if not seen.lastmodifieddate then
    chosen[#chosen + 1] = "lastmodifieddate"
  end
  return chosen
end

-- Epoch milliseconds of an RFC 3339 text ("2024-03-05T10:11:12.345Z").
local function epoch_ms(text)
  local seconds = assert(date.parse(text), "not a date-time: " .. tostring(text))
  local fraction = text:match("^[^.]+T%d%d:%d%d:%d%d%.(%d+)") or ""
  return seconds * 1000 + tonumber((fraction .. "000"):sub(1, 3))
end

local function search(config, since_ms, after)
  return {
    url = search_url(config),
    method = "POST",
    headers = { Accept = "application/json" },
    json = {
      filterGroups = { { filters = { { propertyName = "lastmodifieddate", operator = "GTE", value = tostring(since_ms) } } } },
      sorts = { { propertyName = "lastmodifieddate", direction = "ASCENDING" } },
      properties = properties(config),
      limit = PAGE_SIZE,
      after = after,
    },
    -- A search reads; sending it twice changes nothing.
    idempotent = true,
  }
end

local function describe_error(status, body)
  local reason = type(body) == "table" and (body.message or body.category or body.status) or ("HTTP " .. status)
  if status == 401 then
    return "HubSpot rejected the access token (HTTP 401: " .. reason .. "). Check client_id, client_secret and refresh_token.", "config_error"
  elseif status == 403 then
    return "HubSpot refused access to contacts (HTTP 403: " .. reason .. "). The app needs the crm.objects.contacts.read scope.", "config_error"
  elseif status == 400 then
    return "HubSpot rejected the search (HTTP 400: " .. reason .. ")", "system_error"
  end
  return "HubSpot answered HTTP " .. status .. ": " .. reason
end

local string_or_null = { type = { "string", "null" } }

local contacts = {
  name = "contacts",
  json_schema = {
    ["$schema"] = "http://json-schema.org/draft-07/schema#",
    type = "object",
    additionalProperties = true,
    required = { "id", "updatedAt" },
    properties = {
      id = { type = "string" },
      createdAt = { type = "string", format = "date-time" },
      updatedAt = { type = "string", format = "date-time" },
      archived = { type = "boolean" },
      email = string_or_null,
      firstname = string_or_null,
      lastname = string_or_null,
      company = string_or_null,
      phone = string_or_null,
      lifecyclestage = string_or_null,
      createdate = string_or_null,
      lastmodifieddate = string_or_null,
      hs_object_id = string_or_null,
    },
  },
  primary_key = "id",
  cursor_field = "updatedAt",
  cursor_kind = "datetime",
  cursor_order = "ascending",
  start = function(config)
    return config.start_date .. "T00:00:00Z"
  end,

  request = function(ctx)
    -- ctx lasts the window: the search's starting time is kept there for the next pages.
    ctx.since_ms = epoch_ms(ctx.from)
    return search(ctx.config, ctx.since_ms)
  end,

  -- {"total": N, "results": [{"id", "properties": {...}, "createdAt", "updatedAt", "archived"}],
  --  "paging": {"next": {"after": "100"}}}
  parse = function(ctx, response)
    local body = response.body
    local records = {}
    local resent = ctx.restarted_at
    for _, contact in ipairs(body.results or {}) do
      if resent and contact.updatedAt == resent.updated_at and resent.ids[contact.id] then
        ctx:skip()
        goto next_contact
      end
      local record = {}
      for name, value in pairs(contact.properties or {}) do
        record[name] = value
      end
      record.id = contact.id
      record.createdAt = contact.createdAt
      record.updatedAt = contact.updatedAt
      record.archived = contact.archived
      records[#records + 1] = record
      ::next_contact::
    end
    local next = type(body.paging) == "table" and type(body.paging.next) == "table" and body.paging.next.after
    if not next then
      return records
    end
    if tonumber(next) + PAGE_SIZE <= MAX_RESULTS then
      return records, search(ctx.config, ctx.since_ms, next)
    end
    -- The search's 10,000 results end here: a new search from the last contact's time, which
    -- sends again the contacts of that millisecond this page ended with.
    local last = records[#records].updatedAt
    local ids = {}
    for i = #records, 1, -1 do
      if records[i].updatedAt ~= last then
        break
      end
      ids[records[i].id] = true
    end
    ctx.restarted_at = { updated_at = last, ids = ids }
    ctx.since_ms = epoch_ms(last)
    return records, search(ctx.config, ctx.since_ms)
  end,

  describe_error = describe_error,
}

local secret = function(title, description, order)
  return { title = title, description = description, type = "string", airbyte_secret = true, order = order }
end

local spec = {
  documentationUrl = "https://developers.hubspot.com/docs/api-reference/search/guide",
  connectionSpecification = {
    ["$schema"] = "http://json-schema.org/draft-07/schema#",
    title = "HubSpot Contacts Spec",
    type = "object",
    required = { "client_id", "client_secret", "refresh_token", "start_date" },
    additionalProperties = true,
    properties = {
      client_id = secret("Client ID", "The client ID of your HubSpot app.", 0),
      client_secret = secret("Client Secret", "The client secret of your HubSpot app.", 1),
      refresh_token = secret("Refresh Token",
        "A refresh token of the app's install (scope crm.objects.contacts.read); traded for access tokens.", 2),
      start_date = {
        title = "Start Date",
        description = "Contacts modified on or after this day (YYYY-MM-DD, UTC) are synced.",
        type = "string",
        format = "date",
        pattern = "^[0-9]{4}-[0-9]{2}-[0-9]{2}$",
        examples = { "2024-01-01" },
        order = 3,
      },
      properties = {
        title = "Properties",
        description = "The contact properties to sync (default: email, firstname, lastname, company, phone, lifecyclestage, createdate, lastmodifieddate, hs_object_id).",
        type = "array",
        items = { type = "string", pattern = "^[a-z0-9_]+$" },
        minItems = 1,
        order = 4,
      },
      base_url = {
        title = "API Base URL",
        description = "HubSpot API root. Change it only to use a proxy or a test server.",
        type = "string",
        pattern = "^https?://",
        examples = { DEFAULT_BASE_URL },
        order = 5,
      },
    },
  },
}

-- One search of one contact: the credentials, the scope and the network.
local function check(config)
  local request = search(config, 0)
  request.json.limit = 1
  request.retry = false
  local status, body = http.request(request)
  if not status then
    return false, "Cannot reach HubSpot at " .. base_url(config) .. ": " .. body
  end
  if status ~= 200 then
    local ok, decoded = pcall(json.decode, body)
    return false, (describe_error(status, ok and decoded or nil))
  end
  return true
end

return {
  spec = spec,
  check = check,
  auth = {
    type = "oauth2",
    token_url = function(config)
      return base_url(config) .. "/oauth/v1/token"
    end,
    client_id = "config.client_id",
    client_secret = "config.client_secret",
    refresh_token = "config.refresh_token",
  },
  streams = { contacts },
}
