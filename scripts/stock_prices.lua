--[[
stock_prices: daily stock prices from the Polygon.io aggregates API, the connector of Airbyte's
"stock ticker" tutorial, with incremental sync done right.

This file decides what to ask Polygon for and how a bar becomes a record. The runtime (C) does
the rest for every script: HTTP with timeouts, retries and rate limits, cursors per ticker,
windows, following next_url, checkpoints and the Airbyte protocol. Edit this file and the next
run uses it; nothing needs recompiling. The Lua API is documented in docs/LUA_API.md.
]]

local NEW_YORK = "America/New_York"
local DEFAULT_BASE_URL = "https://api.polygon.io"
-- Polygon's largest page: a decade of daily bars fits in one response.
local PAGE_LIMIT = 50000

local function tickers(config)
  local list = {}
  for ticker in string.gmatch(config.stock_ticker, "[^,%s]+") do
    list[#list + 1] = string.upper(ticker)
  end
  return list
end

local function base_url(config)
  return (config.base_url or DEFAULT_BASE_URL):gsub("/+$", "")
end

-- The key travels in a header: URLs end up in logs, proxies and browser histories.
local function auth_headers(config)
  return { headers = { Authorization = "Bearer " .. config.api_key, Accept = "application/json" } }
end

local function aggregates_url(config, ticker, from, to)
  return string.format("%s/v2/aggs/ticker/%s/range/1/day/%s/%s?adjusted=true&sort=asc&limit=%d",
    base_url(config), http.escape(ticker), from, to, PAGE_LIMIT)
end

-- How a page of bars becomes records. Declared rather than written as a loop so that the runtime
-- maps each bar in C straight from the page's text, without a Lua table per bar (a decade of
-- bars for a ticker takes about a millisecond). Fields are written in this order; a bar lacking a
-- member leaves its field out. Polygon stamps a daily bar with midnight America/New_York, in
-- milliseconds; it leaves "results" out when there are none, and gives next_url (without the key)
-- when more remain, which the runtime follows with the same headers.
local BARS = records.declare {
  list = "results",
  next_url = "next_url",
  fields = {
    { "date", from = "t", as = "day_from_ms", zone = NEW_YORK },
    { "stock_ticker", context = "partition" },
    { "price", from = "c" },
    { "open", from = "o" },
    { "high", from = "h" },
    { "low", from = "l" },
    { "close", from = "c" },
    { "volume", from = "v" },
    { "vwap", from = "vw" },
    { "transactions", from = "n", as = "integer" },
  },
}

local function api_message(body)
  if type(body) == "table" then
    return body.message or body.error or body.status
  end
end

local function describe_error(status, body)
  local reason = api_message(body) or ("HTTP " .. status)
  if status == 401 then
    return "Polygon rejected the API key (HTTP 401: " .. reason .. "). Check api_key in the config.", "config_error"
  elseif status == 403 then
    return "Polygon refused access (HTTP 403): " .. reason, "config_error"
  elseif status == 400 then
    return "Polygon rejected the request (HTTP 400): " .. reason .. ". Check stock_ticker and start_date.", "config_error"
  end
  return "Polygon answered HTTP " .. status .. ": " .. reason
end

local spec = {
  documentationUrl = "https://polygon.io/docs/stocks/get_v2_aggs_ticker__stocksticker__range__multiplier___timespan___from___to",
  connectionSpecification = {
    ["$schema"] = "http://json-schema.org/draft-07/schema#",
    title = "Stock Ticker Spec",
    type = "object",
    required = { "api_key", "stock_ticker" },
    additionalProperties = true,
    properties = {
      api_key = {
        title = "API Key",
        description = "Your Polygon.io API key. Sent in an Authorization header, never in a URL.",
        type = "string",
        airbyte_secret = true,
        order = 0,
      },
      stock_ticker = {
        title = "Stock Ticker",
        description = "The ticker to sync, e.g. TSLA; several separated by commas (AAPL,MSFT), each with its own cursor.",
        type = "string",
        pattern = "^ *[A-Za-z][A-Za-z0-9.]* *(, *[A-Za-z][A-Za-z0-9.]* *)*$",
        examples = { "TSLA", "AAPL,MSFT" },
        order = 1,
      },
      start_date = {
        title = "Start Date",
        description = "First trading day to sync (YYYY-MM-DD). Default: 7 days before today, as in the tutorial.",
        type = "string",
        format = "date",
        pattern = "^[0-9]{4}-[0-9]{2}-[0-9]{2}$",
        examples = { "2022-03-01" },
        order = 2,
      },
      lookback_days = {
        title = "Lookback Days",
        description = "Re-read this many days before the cursor on each incremental sync to pick up corrections. Re-read rows are sent again; destinations dedupe them on the primary key (stock_ticker, date). Default 0: every bar exactly once.",
        type = "integer",
        minimum = 0,
        maximum = 366,
        order = 3,
      },
      base_url = {
        title = "API Base URL",
        description = "Polygon API root. Change it only to use a proxy or a test server.",
        type = "string",
        pattern = "^https?://",
        examples = { DEFAULT_BASE_URL },
        order = 4,
      },
      requests_per_minute = {
        title = "Requests per Minute",
        description = "Client-side request budget. Set 5 on Polygon's free tier so that it never answers 429.",
        type = "number",
        minimum = 0,
        order = 5,
      },
      concurrency = {
        title = "Concurrent Tickers",
        description = "How many tickers are fetched at once, each on its own connection (default 4). Each ticker's records and checkpoints stay in order; the request budget holds across all of them.",
        type = "integer",
        minimum = 1,
        maximum = 64,
        order = 6,
      },
    },
  },
}

local stock_prices = {
  name = "stock_prices",
  json_schema = {
    ["$schema"] = "http://json-schema.org/draft-07/schema#",
    type = "object",
    additionalProperties = true,
    properties = {
      date = { type = "string", format = "date", description = "Trading day (America/New_York)." },
      stock_ticker = { type = "string" },
      price = { type = "number", description = "Closing price, as in the tutorial." },
      open = { type = { "number", "null" } },
      high = { type = { "number", "null" } },
      low = { type = { "number", "null" } },
      close = { type = { "number", "null" } },
      volume = { type = { "number", "null" } },
      vwap = { type = { "number", "null" } },
      transactions = { type = { "integer", "null" } },
    },
  },
  primary_key = { { "stock_ticker" }, { "date" } },
  cursor_field = "date",

  -- Each ticker is a partition with its own cursor, kept under "tickers" in the stream state.
  partitions = tickers,
  partition_state_key = "tickers",
  -- Trading days are New York days; a day's bar is final once the market has closed.
  timezone = NEW_YORK,
  day_complete_at = "16:00",
  window_days = 3650,

  start_date = function(config)
    return config.start_date or date.add_days(date.today(NEW_YORK), -7)
  end,

  lookback_days = function(config)
    return config.lookback_days or 0
  end,

  request = function(ctx)
    return aggregates_url(ctx.config, ctx.partition, ctx.from, ctx.to), auth_headers(ctx.config)
  end,

  -- A script that needs more than a declaration can say builds its records in Lua from
  -- response.body (the page decoded as JSON) and returns them with the next URL; docs/LUA_API.md.
  parse = function(ctx, response)
    return BARS:map(ctx, response)
  end,

  describe_error = describe_error,
}

-- A one-day request for the first ticker: enough to prove the key, the ticker and the network.
local function check(config)
  local ticker = tickers(config)[1]
  local today = date.today(NEW_YORK)
  local status, body = http.get(aggregates_url(config, ticker, date.add_days(today, -7), today),
    { headers = auth_headers(config).headers, retry = false })
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
  streams = { stock_prices },
  -- The tutorial's state was one blob for the whole source ({"stock_prices": {"date": ...}}), which
  -- its users may still read: every STATE carries it too, in the message's data.
  legacy_state = true,
}
