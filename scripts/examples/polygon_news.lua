--[[
polygon_news: news articles about some tickers, from Polygon.io's GET /v2/reference/news.

A stream with a datetime cursor: each ticker is a partition that reads its articles in ascending
order of published_utc, from where its state left off up to the read's start, page by page
through next_url. Articles often share a published_utc second, and a page may end in the middle
of such a run; the runtime's checkpoints keep the ids of the articles already sent at that
second, so a read that stopped anywhere resumes without losing or repeating one.

An article about several of the configured tickers is listed under each of them; it is sent once,
by the partition of the first of those tickers in the config, and the others count it as skipped.
]]

local DEFAULT_BASE_URL = "https://api.polygon.io"
-- Polygon's largest page for news.
local PAGE_LIMIT = 1000

local function base_url(config)
  return (config.base_url or DEFAULT_BASE_URL):gsub("/+$", "")
end

-- The key travels in a header: URLs end up in logs and proxies.
local function auth(config)
  return { headers = { Authorization = "Bearer " .. config.api_key, Accept = "application/json" } }
end

-- The configured tickers, upper case, each once, in the config's order.
local function tickers(config)
  local list, seen = {}, {}
  for _, ticker in ipairs(config.tickers) do
    ticker = string.upper(ticker)
    if not seen[ticker] then
      seen[ticker] = #list + 1
      list[#list + 1] = ticker
    end
  end
  return list, seen
end

-- The partition that sends an article: the first configured ticker it is about.
local function owner(article, rank)
  local best
  for _, ticker in ipairs(article.tickers or {}) do
    local position = rank[ticker]
    if position and (not best or position < best) then
      best = position
    end
  end
  return best
end

local function news_url(config, ticker, from, to)
  return string.format("%s/v2/reference/news?ticker=%s&published_utc.gte=%s&published_utc.lt=%s"
    .. "&order=asc&sort=published_utc&limit=%d",
    base_url(config), http.escape(ticker), http.escape(from), http.escape(to), PAGE_LIMIT)
end

local function describe_error(status, body)
  local reason = type(body) == "table" and (body.message or body.error or body.status) or ("HTTP " .. status)
  if status == 401 then
    return "Polygon rejected the API key (HTTP 401: " .. reason .. "). Check api_key in the config.", "config_error"
  elseif status == 403 then
    return "Polygon refused access to news (HTTP 403): " .. reason, "config_error"
  elseif status == 400 then
    return "Polygon rejected the request (HTTP 400): " .. reason .. ". Check tickers and start_date.", "config_error"
  end
  return "Polygon answered HTTP " .. status .. ": " .. reason
end

local string_or_null = { type = { "string", "null" } }

local news = {
  name = "news",
  json_schema = {
    ["$schema"] = "http://json-schema.org/draft-07/schema#",
    type = "object",
    additionalProperties = true,
    properties = {
      id = { type = "string" },
      publisher = {
        type = "object",
        properties = {
          name = { type = "string" },
          homepage_url = string_or_null,
          logo_url = string_or_null,
          favicon_url = string_or_null,
        },
      },
      title = { type = "string" },
      author = string_or_null,
      published_utc = { type = "string", format = "date-time" },
      article_url = { type = "string" },
      tickers = { type = "array", items = { type = "string" } },
      amp_url = string_or_null,
      image_url = string_or_null,
      description = string_or_null,
      keywords = { type = { "array", "null" }, items = { type = "string" } },
      insights = {
        type = { "array", "null" },
        items = {
          type = "object",
          properties = {
            ticker = { type = "string" },
            sentiment = { type = "string" },
            sentiment_reasoning = { type = "string" },
          },
        },
      },
    },
  },
  primary_key = "id",
  cursor_field = "published_utc",
  cursor_kind = "datetime",
  cursor_order = "ascending",
  start = function(config)
    return config.start_date or date.format(date.now() - 30 * 86400, "%Y-%m-%dT%H:%M:%SZ")
  end,

  partitions = function(config)
    return (tickers(config))
  end,
  partition_state_key = "tickers",

  request = function(ctx)
    return news_url(ctx.config, ctx.partition, ctx.from, ctx.to), auth(ctx.config)
  end,

  parse = function(ctx, response)
    local _, rank = tickers(ctx.config)
    local mine = rank[ctx.partition]
    local records = {}
    for _, article in ipairs(response.body.results or {}) do
      local first = owner(article, rank)
      if first == nil or first == mine then
        records[#records + 1] = article
      else
        ctx:skip(1)
      end
    end
    return records, response.body.next_url
  end,

  describe_error = describe_error,
}

local spec = {
  documentationUrl = "https://polygon.io/docs/rest/stocks/news",
  connectionSpecification = {
    ["$schema"] = "http://json-schema.org/draft-07/schema#",
    title = "Polygon News Spec",
    type = "object",
    required = { "api_key", "tickers" },
    additionalProperties = true,
    properties = {
      api_key = {
        title = "API Key",
        description = "Your Polygon.io API key, sent in an Authorization header.",
        type = "string",
        airbyte_secret = true,
        order = 0,
      },
      tickers = {
        title = "Tickers",
        description = "The tickers whose news to sync, each with its own cursor.",
        type = "array",
        items = { type = "string", pattern = "^[A-Za-z][A-Za-z0-9.:]*$" },
        minItems = 1,
        examples = { { "AAPL", "MSFT" } },
        order = 1,
      },
      start_date = {
        title = "Start Date",
        description = "First day (YYYY-MM-DD, midnight UTC) or instant (RFC 3339) to sync. Default: 30 days ago.",
        type = "string",
        pattern = "^[0-9]{4}-[0-9]{2}-[0-9]{2}([Tt ][0-9]{2}:[0-9]{2}(:[0-9]{2}(\\.[0-9]+)?)?([Zz]|[+-][0-9]{2}:[0-9]{2}))?$",
        examples = { "2024-01-01", "2024-01-01T00:00:00Z" },
        order = 2,
      },
      base_url = {
        title = "API Base URL",
        description = "Polygon API root. Change it only to use a proxy or a test server.",
        type = "string",
        pattern = "^https?://",
        examples = { DEFAULT_BASE_URL },
        order = 3,
      },
    },
  },
}

-- One article of the first ticker: enough to prove the key, the tickers and the network.
local function check(config)
  local list = tickers(config)
  if #list == 0 then
    return false, "The config lists no tickers: give at least one in tickers."
  end
  local url = string.format("%s/v2/reference/news?ticker=%s&limit=1", base_url(config), http.escape(list[1]))
  local status, body = http.get(url, { headers = auth(config).headers, retry = false })
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
  streams = { news },
}
