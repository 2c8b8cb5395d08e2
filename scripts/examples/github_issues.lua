--[[
github_issues: the issues (pull requests included, as GitHub lists them) of some repositories,
from GitHub's GET /repos/{owner}/{repo}/issues.

A stream with a datetime cursor, updated_at: each repository is a partition that asks for the
issues updated since its cursor, oldest first (sort=updated, direction=asc, state=all), 100 a
page, following the Link header's rel="next" URL (the declared paginator). Many issues can share an updated_at second and a
page may end inside such a run; the runtime's checkpoints keep the ids already sent at that second,
so a read that stopped anywhere resumes without losing or repeating an issue. An issue updated
again after it was read comes back with its new updated_at: destinations dedupe on id.
]]

local DEFAULT_BASE_URL = "https://api.github.com"
local PAGE_SIZE = 100

local function base_url(config)
  return (config.base_url or DEFAULT_BASE_URL):gsub("/+$", "")
end

local HEADERS = { Accept = "application/vnd.github+json", ["X-GitHub-Api-Version"] = "2022-11-28" }

-- The configured repositories, each once, in the config's order ("owner/repo").
local function repositories(config)
  local list, seen = {}, {}
  for _, name in ipairs(config.repositories) do
    local key = name:lower()
    if not seen[key] then
      seen[key] = true
      list[#list + 1] = name
    end
  end
  return list
end

local function issues_path(repository)
  local owner, repo = repository:match("^([^/]+)/([^/]+)$")
  return "/repos/" .. http.escape(owner) .. "/" .. http.escape(repo) .. "/issues"
end

local function describe_error(status, body, ctx)
  local reason = type(body) == "table" and body.message or ("HTTP " .. status)
  if status == 401 then
    return "GitHub rejected the token (HTTP 401: " .. reason .. "). Check token in the config.", "config_error"
  elseif status == 404 then
    return "GitHub has no repository " .. tostring(ctx and ctx.partition) .. " that this token can see (HTTP 404)",
      "config_error"
  elseif status == 403 then
    return "GitHub refused access (HTTP 403: " .. reason .. ")", "config_error"
  elseif status == 422 then
    return "GitHub rejected the request (HTTP 422: " .. reason .. "). Check start_date.", "config_error"
  end
  return "GitHub answered HTTP " .. status .. ": " .. reason
end

local string_or_null = { type = { "string", "null" } }

local issues = {
  name = "issues",
  json_schema = {
    ["$schema"] = "http://json-schema.org/draft-07/schema#",
    type = "object",
    additionalProperties = true,
    properties = {
      id = { type = "integer" },
      repository = { type = "string" },
      number = { type = "integer" },
      title = { type = "string" },
      state = { type = "string" },
      user_login = string_or_null,
      labels = { type = "array", items = { type = "string" } },
      comments = { type = "integer" },
      is_pull_request = { type = "boolean" },
      created_at = { type = "string", format = "date-time" },
      updated_at = { type = "string", format = "date-time" },
      closed_at = { type = { "string", "null" }, format = "date-time" },
      body = string_or_null,
      url = { type = "string" },
    },
  },
  primary_key = "id",
  cursor_field = "updated_at",
  cursor_kind = "datetime",
  cursor_order = "ascending",
  start = function(config)
    return config.start_date .. "T00:00:00Z"
  end,

  partitions = repositories,
  partition_state_key = "repositories",
  -- GitHub links the next page in a Link header: <...?page=2>; rel="next", <...>; rel="last"
  paginator = { type = "link" },

  request = function(ctx)
    -- A second early: whether GitHub's since is inclusive or not, no issue updated at ctx.from is
    -- missed; those sent before are skipped by the runtime.
    local since = date.format(date.parse(ctx.from) - 1, "%Y-%m-%dT%H:%M:%SZ")
    return {
      url = base_url(ctx.config) .. issues_path(ctx.partition),
      query = { state = "all", since = since, sort = "updated", direction = "asc", per_page = PAGE_SIZE },
      headers = HEADERS,
    }
  end,

  parse = function(ctx, response)
    local records = {}
    for _, issue in ipairs(response.body) do
      local labels = {}
      for _, label in ipairs(issue.labels or {}) do
        labels[#labels + 1] = type(label) == "table" and label.name or label
      end
      records[#records + 1] = {
        id = issue.id,
        repository = ctx.partition,
        number = issue.number,
        title = issue.title,
        state = issue.state,
        user_login = type(issue.user) == "table" and issue.user.login or json.null,
        labels = json.array(labels),
        comments = issue.comments,
        is_pull_request = issue.pull_request ~= nil and issue.pull_request ~= json.null,
        created_at = issue.created_at,
        updated_at = issue.updated_at,
        closed_at = issue.closed_at,
        body = issue.body,
        url = issue.url,
      }
    end
    return records
  end,

  describe_error = describe_error,
}

local spec = {
  documentationUrl = "https://docs.github.com/en/rest/issues/issues#list-repository-issues",
  connectionSpecification = {
    ["$schema"] = "http://json-schema.org/draft-07/schema#",
    title = "GitHub Issues Spec",
    type = "object",
    required = { "repositories", "start_date" },
    additionalProperties = true,
    properties = {
      token = {
        title = "Access Token",
        description = "A GitHub personal access token (fine-grained: Issues read), sent as Authorization: Bearer. Without one, public repositories only, at 60 requests an hour.",
        type = "string",
        airbyte_secret = true,
        order = 0,
      },
      repositories = {
        title = "Repositories",
        description = "The repositories whose issues to sync, as owner/repo, each with its own cursor.",
        type = "array",
        items = { type = "string", pattern = "^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$" },
        minItems = 1,
        examples = { { "airbytehq/airbyte" } },
        order = 1,
      },
      start_date = {
        title = "Start Date",
        description = "Issues updated on or after this day (YYYY-MM-DD, UTC) are synced.",
        type = "string",
        format = "date",
        pattern = "^[0-9]{4}-[0-9]{2}-[0-9]{2}$",
        examples = { "2024-01-01" },
        order = 2,
      },
      base_url = {
        title = "API Base URL",
        description = "GitHub API root; for GitHub Enterprise Server, https://HOST/api/v3.",
        type = "string",
        pattern = "^https?://",
        examples = { DEFAULT_BASE_URL },
        order = 3,
      },
    },
  },
}

-- Each repository once: the token, the names and the network.
local function check(config)
  for _, repository in ipairs(repositories(config)) do
    local status, body = http.get(base_url(config) .. issues_path(repository):gsub("/issues$", ""),
      { headers = HEADERS, retry = false })
    if not status then
      return false, "Cannot reach GitHub at " .. base_url(config) .. ": " .. body
    end
    if status ~= 200 then
      return false, (describe_error(status, json.decode(body), { partition = repository }))
    end
  end
  return true
end

return {
  spec = spec,
  check = check,
  -- Sent with every request as Authorization: Bearer; without a token, none is sent.
  auth = { type = "bearer", token = "config.token" },
  streams = { issues },
}
