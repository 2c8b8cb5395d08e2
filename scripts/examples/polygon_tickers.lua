--[[
polygon_tickers: the stocks Polygon.io lists as active, from GET /v3/reference/tickers, and each
one's details, from GET /v3/reference/tickers/{ticker}.

tickers: a stream without a cursor, a reference list read in full at every sync (full_refresh
only), page by page through next_url. Its records are declared, so the runtime maps each page in C.

ticker_details: a child of tickers. Its partitions are the tickers the list gives (parent), read
through the same engine, then one request per ticker, several at once. A ticker delisted between
the list and its details answers 404: that ticker is skipped with a WARN and counted, the read
goes on.
]]

local DEFAULT_BASE_URL = "https://api.polygon.io"
-- Polygon's largest page for tickers.
local PAGE_LIMIT = 1000

local function base_url(config)
  return (config.base_url or DEFAULT_BASE_URL):gsub("/+$", "")
end

local HEADERS = { Accept = "application/json" }

local function tickers_url(config, limit)
  return string.format("%s/v3/reference/tickers?market=stocks&active=true&order=asc&sort=ticker&limit=%d",
    base_url(config), limit)
end

-- A ticker's members as Polygon spells them; one absent from an item is left out of its record.
local TICKERS = records.declare {
  list = "results",
  next_url = "next_url",
  fields = {
    { "ticker", from = "ticker" },
    { "name", from = "name" },
    { "market", from = "market" },
    { "locale", from = "locale" },
    { "primary_exchange", from = "primary_exchange" },
    { "type", from = "type" },
    { "active", from = "active" },
    { "currency_name", from = "currency_name" },
    { "cik", from = "cik" },
    { "composite_figi", from = "composite_figi" },
    { "share_class_figi", from = "share_class_figi" },
    { "last_updated_utc", from = "last_updated_utc" },
    { "delisted_utc", from = "delisted_utc" },
  },
}

local function describe_error(status, body)
  local reason = type(body) == "table" and (body.message or body.error or body.status) or ("HTTP " .. status)
  if status == 401 then
    return "Polygon rejected the API key (HTTP 401: " .. reason .. "). Check api_key in the config.", "config_error"
  elseif status == 403 then
    return "Polygon refused access to tickers (HTTP 403): " .. reason, "config_error"
  end
  return "Polygon answered HTTP " .. status .. ": " .. reason
end

local string_or_null = { type = { "string", "null" } }

local tickers = {
  name = "tickers",
  json_schema = {
    ["$schema"] = "http://json-schema.org/draft-07/schema#",
    type = "object",
    additionalProperties = true,
    properties = {
      ticker = { type = "string" },
      name = { type = "string" },
      market = { type = "string" },
      locale = { type = "string" },
      primary_exchange = string_or_null,
      type = string_or_null,
      active = { type = "boolean" },
      currency_name = string_or_null,
      cik = string_or_null,
      composite_figi = string_or_null,
      share_class_figi = string_or_null,
      last_updated_utc = { type = { "string", "null" }, format = "date-time" },
      delisted_utc = { type = { "string", "null" }, format = "date-time" },
    },
  },
  primary_key = "ticker",

  request = function(ctx)
    return tickers_url(ctx.config, PAGE_LIMIT), { headers = HEADERS }
  end,

  parse = function(ctx, response)
    return TICKERS:map(ctx, response)
  end,

  describe_error = describe_error,
}

local address = {
  type = { "object", "null" },
  properties = {
    address1 = { type = "string" },
    address2 = { type = "string" },
    city = { type = "string" },
    state = { type = "string" },
    postal_code = { type = "string" },
  },
}

local ticker_details = {
  name = "ticker_details",
  json_schema = {
    ["$schema"] = "http://json-schema.org/draft-07/schema#",
    type = "object",
    additionalProperties = true,
    required = { "ticker" },
    properties = {
      ticker = { type = "string" },
      name = { type = "string" },
      market = { type = "string" },
      locale = { type = "string" },
      primary_exchange = string_or_null,
      type = string_or_null,
      active = { type = "boolean" },
      currency_name = string_or_null,
      cik = string_or_null,
      composite_figi = string_or_null,
      share_class_figi = string_or_null,
      market_cap = { type = { "number", "null" } },
      phone_number = string_or_null,
      address = address,
      description = string_or_null,
      sic_code = string_or_null,
      sic_description = string_or_null,
      ticker_root = string_or_null,
      ticker_suffix = string_or_null,
      homepage_url = string_or_null,
      total_employees = { type = { "integer", "null" } },
      list_date = { type = { "string", "null" }, format = "date" },
      branding = { type = { "object", "null" }, properties = { logo_url = { type = "string" }, icon_url = { type = "string" } } },
      share_class_shares_outstanding = { type = { "number", "null" } },
      weighted_shares_outstanding = { type = { "number", "null" } },
      round_lot = { type = { "integer", "null" } },
      delisted_utc = { type = { "string", "null" }, format = "date-time" },
    },
  },
  primary_key = "ticker",
  -- Reference data whose optional members vary by ticker: a surprise is a WARN, not a failed sync.
  schema_check = "warn",
  -- One partition per ticker of the tickers stream (its records' "ticker").
  parent = { stream = "tickers", field = "ticker" },

  request = function(ctx)
    return { url = base_url(ctx.config) .. "/v3/reference/tickers/" .. http.escape(ctx.partition), headers = HEADERS }
  end,

  -- {"results": {...the ticker...}, "status": "OK", "request_id": "..."}
  parse = function(ctx, response)
    local details = response.body.results
    if type(details) ~= "table" then
      error("Polygon answered ticker " .. ctx.partition .. " without results")
    end
    return { details }
  end,

  -- Delisted since the list was read: Polygon answers 404 {"status": "NOT_FOUND", ...}.
  errors = { { status = 404, action = "ignore" } },
  describe_error = describe_error,
}

local spec = {
  documentationUrl = "https://polygon.io/docs/rest/stocks/tickers/all-tickers",
  connectionSpecification = {
    ["$schema"] = "http://json-schema.org/draft-07/schema#",
    title = "Polygon Tickers Spec",
    type = "object",
    required = { "api_key" },
    additionalProperties = true,
    properties = {
      api_key = {
        title = "API Key",
        description = "Your Polygon.io API key, sent in an Authorization header.",
        type = "string",
        airbyte_secret = true,
        order = 0,
      },
      base_url = {
        title = "API Base URL",
        description = "Polygon API root. Change it only to use a proxy or a test server.",
        type = "string",
        pattern = "^https?://",
        examples = { DEFAULT_BASE_URL },
        order = 1,
      },
    },
  },
}

local function check(config)
  local status, body = http.get(tickers_url(config, 1), { headers = HEADERS, retry = false })
  if not status then
    return false, "Cannot reach Polygon at " .. base_url(config) .. ": " .. body
  end
  if status == 200 then
    return true
  end
  return false, (describe_error(status, json.decode(body)))
end

return {
  spec = spec,
  check = check,
  auth = { type = "bearer", token = "config.api_key" },
  streams = { tickers, ticker_details },
}
