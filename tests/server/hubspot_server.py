#!/usr/bin/env python3
"""A local stand-in for HubSpot's CRM contacts search API and its OAuth token endpoint:

  POST /crm/v3/objects/contacts/search     search contacts (filters, one sort, paging by offset)
  POST /oauth/v1/token                      trade a refresh token for an access token

What HubSpot's documentation says, and this server does:

The search (developers.hubspot.com/docs/api-reference/search/guide, and the contacts OpenAPI spec
in github.com/HubSpot/HubSpot-public-api-spec-collection). The JSON body holds `filterGroups`
(a list of {"filters": [...]}; filters in a group are ANDed, groups are ORed; at most five
groups, six filters a group, 18 in all, else VALIDATION_ERROR), `sorts` (only one sorting rule
applies to a search: [{"propertyName": p, "direction": "ASCENDING" | "DESCENDING"}]),
`properties`, `query` (free text, at most 3,000 characters), `limit` (default 10, at most 200)
and `after` (the `paging.next.after` of the previous page, an integer in a string). A filter is
{"propertyName", "operator", "value"} with the operators LT, LTE, GT, GTE, EQ, NEQ, BETWEEN
(`value` and `highValue`), IN and NOT_IN (`values`), HAS_PROPERTY, NOT_HAS_PROPERTY,
CONTAINS_TOKEN (`*` wildcards) and NOT_CONTAINS_TOKEN; string values compare case-insensitively,
enumeration values (lifecyclestage) case-sensitively; a date-time value is epoch milliseconds (a
string or a number) or an ISO 8601 date-time. Without sorts, results come in the order the
records were created, oldest first (here ids grow with createdate, so that is id order); ties of
a sort are broken by id ascending. The answer is {"total": N, "results": [{"id", "properties",
"createdAt", "updatedAt", "archived"}], "paging": {"next": {"after": "20"}}}, `paging` absent on
the last page; property values are strings or null, date-times like "2024-01-17T19:55:04.281Z";
a search returns the requested properties plus createdate, hs_object_id and lastmodifieddate
(unknown ones are left out), or without `properties` the contact defaults (firstname, lastname,
email, lastmodifieddate, hs_object_id, createdate). "The search endpoints are limited to 10,000
total results for any given query. Attempting to page beyond 10,000 will result in a 400 error":
a page stops at the 10,000th result, `paging.next.after` may then say "10000", and an `after` of
10,000 or more is refused, so a client must start a new search (a later lastmodifieddate filter).
`total` still counts every match. "The search endpoints are rate limited to five requests per
second per account" (off here unless `search_per_second` is set): the 429 body is HubSpot's
{"status": "error", "message": "You have reached your secondly limit.", "errorType":
"RATE_LIMIT", "correlationId", "policyName": "SECONDLY"}, without Retry-After (HubSpot does not
always send one) and without X-HubSpot-RateLimit-* headers (search responses carry none).

Errors (developers.hubspot.com/docs/faq/api-error-responses): {"status": "error", "message",
"correlationId": <uuid>, "category"}. A bad body, filter, sort, limit or after is 400
VALIDATION_ERROR (unparseable JSON: "Invalid input JSON on line L, column C: ..."); a missing or
unknown `Authorization: Bearer` token 401 INVALID_AUTHENTICATION ("Authentication credentials not
found. This API supports OAuth 2.0 authentication and you can find more details at
https://developers.hubspot.com/docs/methods/auth/oauth-overview"); an expired one 401
EXPIRED_AUTHENTICATION ("The OAuth token used to make this call expired 75 second(s) ago.", with
context {"expire time": [...]}); another method on the search path 405.

The token endpoint (developers.hubspot.com/docs/api-reference/legacy/authentication/oauth-tokens/
v1/refresh-oauth-token and the v1 OAuth spec): a form (application/x-www-form-urlencoded) with
grant_type=refresh_token, client_id, client_secret and refresh_token answers {"token_type":
"bearer", "refresh_token", "access_token", "expires_in": 1800, "token_use": "access_token",
"hub_id", "scopes", "user_id"}; grant_type=client_credentials (in the v1 spec's enum) answers an
access token without a refresh token. Failures are 400 {"status": "BAD_REFRESH_TOKEN", "message":
"missing or unknown refresh token", "correlationId"}, BAD_CLIENT_ID, BAD_CLIENT_SECRET,
BAD_AUTH_CODE or BAD_GRANT_TYPE; a body in another content type is not read as a form, so it
lacks a grant_type (BAD_GRANT_TYPE, as HubSpot answers a JSON body). HubSpot keeps the refresh
token; `rotate_refresh_token=True` issues a new one on each refresh and retires the old one, as
other OAuth servers do.

The data: `contacts` contacts, ids "101", "102", ... in createdate order, with email, firstname,
lastname, company, phone and lifecyclestage (some null), created and last modified between
2024-01-01 and 2024-06-30 (lastmodifieddate >= createdate), drawn from a hash; every fifth
contact shares its lastmodifieddate millisecond with another, and every fiftieth closes a group
of seven that share one, so ties straddle pages.

The control API (no token needed): GET /_control/requests (every request: method, path, the
parsed body with secrets replaced by "[redacted]", whether an Authorization header came, the
status), GET /_control/state, GET /_control/expected?since=<iso>&properties=a,b, POST
/_control/touch {"id", "lastmodifieddate", "properties"}, POST /_control/expire_tokens, POST
/_control/revoke_tokens {"refresh": false}, POST /_control/config {"search_per_second",
"max_results", "rotate_refresh_token", "token_lifetime_s", "fail_refresh", "rate_window_s"}.
"""
from __future__ import annotations

import argparse
import base64
import collections
import datetime as dt
import fnmatch
import hashlib
import json
import re
import threading
import time
import urllib.parse
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

UTC = dt.timezone.utc
FIRST_MS = int(dt.datetime(2024, 1, 1, tzinfo=UTC).timestamp() * 1000)
SPAN_MS = 181 * 86400 * 1000  # to 2024-06-30T00:00:00Z
FIRST_ID = 101
SEARCH_PATH = "/crm/v3/objects/contacts/search"
TOKEN_PATH = "/oauth/v1/token"
CLIENT_ID = "7fb0c2de-9c3a-4b1e-8f0a-2d6c1e5a9b01"
CLIENT_SECRET = "3c9e1f7a-5b2d-4e8c-9a6f-0b4d2e7c1a55"
REFRESH_TOKEN = "na1-4d7e-90b2-4c1f-8e6a-5f3b2a1c0d98"
HUB_ID = 24681357
USER_ID = 1357911
SCOPES = ["crm.objects.contacts.read", "oauth"]
AUTH_DOCS = "https://developers.hubspot.com/docs/methods/auth/oauth-overview"
JSON_TYPE = "application/json;charset=utf-8"
REDACTED = "[redacted]"

# The contact properties this account has, and how a filter compares their values.
PROPERTY_TYPES = {
    "createdate": "datetime", "lastmodifieddate": "datetime", "hs_object_id": "number",
    "email": "string", "firstname": "string", "lastname": "string", "company": "string",
    "phone": "string", "lifecyclestage": "enumeration",
}
DEFAULT_PROPERTIES = ("firstname", "lastname", "email", "lastmodifieddate", "hs_object_id", "createdate")
ALWAYS_PROPERTIES = ("createdate", "hs_object_id", "lastmodifieddate")
QUERY_PROPERTIES = ("firstname", "lastname", "email", "phone", "company")
OPERATORS = ("EQ", "NEQ", "LT", "LTE", "GT", "GTE", "BETWEEN", "IN", "NOT_IN", "HAS_PROPERTY",
             "NOT_HAS_PROPERTY", "CONTAINS_TOKEN", "NOT_CONTAINS_TOKEN")
MAX_LIMIT = 200
MAX_GROUPS, MAX_GROUP_FILTERS, MAX_FILTERS = 5, 6, 18
MAX_QUERY_CHARS = 3000

FIRST_NAMES = ("Ada", "Bruno", "Chiara", "Dmitri", "Elena", "Farid", "Greta", "Hiro", "Ines", "Jonas",
               "Kemi", "Luis", "Maren", "Nils", "Olga", "Pavel", "Quinn", "Rosa", "Sven", "Tariq")
LAST_NAMES = ("Abbott", "Berg", "Costa", "Dalton", "Eriksen", "Fischer", "Garcia", "Holm", "Ivanova",
              "Jensen", "Kowalski", "Laurent", "Moreau", "Novak", "Ortiz", "Petrov", "Quist", "Rossi")
COMPANIES = ("Acme Corp", "Globex", "Initech", "Umbrella", "Hooli", "Vandelay Industries", "Stark & Co")
STAGES = ("subscriber", "lead", "marketingqualifiedlead", "salesqualifiedlead", "opportunity",
          "customer", "evangelist", "other")


def draw(*parts) -> int:
    return int.from_bytes(hashlib.sha256("/".join(map(str, parts)).encode()).digest()[:8], "big")


def iso_ms(ms: int) -> str:
    """HubSpot's date-time: UTC, always three digits of milliseconds."""
    t = dt.datetime.fromtimestamp(ms / 1000, tz=UTC)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def parse_instant(value) -> int | None:
    """Epoch milliseconds from a number, a string of digits, or an ISO 8601 date or date-time."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return int(value)
    if not isinstance(value, str):
        return None
    text = value.strip()
    if re.fullmatch(r"-?\d+", text):
        return int(text)
    try:
        t = dt.datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        return None
    if t.tzinfo is None:
        t = t.replace(tzinfo=UTC)
    return int(round(t.timestamp() * 1000))


def correlation_id(*parts) -> str:
    return str(uuid.UUID(bytes=hashlib.sha256("/".join(map(str, parts)).encode()).digest()[:16], version=4))


def make_contacts(count: int) -> dict:
    """count contacts by id, ids in createdate order; see the module docstring for the ties."""
    drawn = []
    for k in range(count):
        drawn.append((FIRST_MS + draw("contact", k, "c") % (SPAN_MS // 2), k))
    drawn.sort()
    created = [c for c, _ in drawn]
    keys = [k for _, k in drawn]
    updated = [created[r] + draw("contact", keys[r], "u") % (SPAN_MS // 2) for r in range(count)]
    for r in range(count):
        if r % 50 == 49:
            group = range(r - 6, r + 1)
        elif r % 5 == 4:
            group = range(r - 1, r + 1)
        else:
            continue
        shared = max(max(updated[i], created[i]) for i in group)
        for i in group:
            updated[i] = shared
    contacts = {}
    for r in range(count):
        k, cid = keys[r], str(FIRST_ID + r)
        first = FIRST_NAMES[draw("contact", k, "first") % len(FIRST_NAMES)]
        last = LAST_NAMES[draw("contact", k, "last") % len(LAST_NAMES)]
        props = {
            "email": None if draw("contact", k, "email") % 13 == 0 else f"{first}.{last}{cid}@example.com".lower(),
            "firstname": first,
            "lastname": None if draw("contact", k, "lastnull") % 19 == 0 else last,
            "company": None if draw("contact", k, "company") % 4 == 0
            else COMPANIES[draw("contact", k, "co") % len(COMPANIES)],
            "phone": None if draw("contact", k, "phone") % 3 == 0
            else "+1-555-%04d" % (draw("contact", k, "tel") % 10000),
            "lifecyclestage": None if draw("contact", k, "stagenull") % 17 == 0
            else STAGES[draw("contact", k, "stage") % len(STAGES)],
        }
        contacts[cid] = {"id": cid, "created": created[r], "updated": updated[r], "props": props}
    return contacts


def property_value(contact: dict, name: str):
    """A property's value as HubSpot gives it: a string or None."""
    if name == "createdate":
        return iso_ms(contact["created"])
    if name == "lastmodifieddate":
        return iso_ms(contact["updated"])
    if name == "hs_object_id":
        return contact["id"]
    return contact["props"].get(name)


def public_object(contact: dict, properties) -> dict:
    return {
        "id": contact["id"],
        "properties": {name: property_value(contact, name) for name in sorted(properties)},
        "createdAt": iso_ms(contact["created"]),
        "updatedAt": iso_ms(contact["updated"]),
        "archived": False,
    }


def chosen_properties(requested) -> set:
    """The properties a search returns for its `properties` (None or empty: the defaults)."""
    if not requested:
        return set(DEFAULT_PROPERTIES)
    return {p for p in requested if p in PROPERTY_TYPES} | set(ALWAYS_PROPERTIES)


class SearchError(Exception):
    """A VALIDATION_ERROR answer (400)."""


def comparable(kind: str, value, what: str):
    """A filter value in the form compare() uses for a property of this kind."""
    if kind == "datetime":
        ms = parse_instant(value)
        if ms is None:
            raise SearchError(f"{what} must be epoch milliseconds or an ISO 8601 date-time, not {json.dumps(value)}")
        return ms
    if kind == "number":
        if isinstance(value, bool):
            raise SearchError(f"{what} must be a number, not {json.dumps(value)}")
        try:
            return float(value)
        except (TypeError, ValueError):
            raise SearchError(f"{what} must be a number, not {json.dumps(value)}") from None
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise SearchError(f"{what} must be a string, not {json.dumps(value)}")
    text = value if isinstance(value, str) else json.dumps(value)
    return text if kind == "enumeration" else text.lower()


def record_comparable(kind: str, raw):
    if raw is None or raw == "":
        return None
    if kind == "datetime":
        return parse_instant(raw)
    if kind == "number":
        return float(raw)
    return raw if kind == "enumeration" else raw.lower()


def compile_filter(spec) -> tuple:
    if not isinstance(spec, dict):
        raise SearchError("each filter must be an object")
    name = spec.get("propertyName")
    operator = spec.get("operator")
    if not isinstance(name, str) or not name:
        raise SearchError("a filter needs a propertyName")
    if operator not in OPERATORS:
        raise SearchError(f"Invalid input JSON: Cannot deserialize value of type `FilterOperator` from String "
                          f"{json.dumps(operator)}: not one of the values accepted for Enum class: "
                          f"[{', '.join(OPERATORS)}]")
    if name not in PROPERTY_TYPES:
        raise SearchError(f"Unable to find property '{name}' for object type contacts")
    kind = PROPERTY_TYPES[name]
    if operator in ("HAS_PROPERTY", "NOT_HAS_PROPERTY"):
        return name, operator, None
    if operator in ("IN", "NOT_IN"):
        values = spec.get("values")
        if not isinstance(values, list) or not values:
            raise SearchError(f"operator {operator} on {name} needs a non-empty `values` list")
        # A string property's IN values must be lowercase already (the docs): they are not folded.
        if kind == "string":
            return name, operator, {v if isinstance(v, str) else json.dumps(v) for v in values}
        return name, operator, {comparable(kind, v, f"a value of {name}") for v in values}
    if "value" not in spec or spec["value"] is None:
        raise SearchError(f"operator {operator} on {name} needs a `value`")
    if operator in ("CONTAINS_TOKEN", "NOT_CONTAINS_TOKEN"):
        return name, operator, str(spec["value"]).lower()
    low = comparable(kind, spec["value"], f"the value of {name}")
    if operator == "BETWEEN":
        if spec.get("highValue") is None:
            raise SearchError(f"operator BETWEEN on {name} needs a `highValue`")
        return name, operator, (low, comparable(kind, spec["highValue"], f"the highValue of {name}"))
    return name, operator, low


def matches(contact: dict, compiled: tuple) -> bool:
    name, operator, operand = compiled
    kind = PROPERTY_TYPES[name]
    raw = property_value(contact, name)
    value = record_comparable(kind, raw)
    if operator == "HAS_PROPERTY":
        return value is not None
    if operator == "NOT_HAS_PROPERTY":
        return value is None
    if operator in ("CONTAINS_TOKEN", "NOT_CONTAINS_TOKEN"):
        found = value is not None and any(
            fnmatch.fnmatchcase(token, operand) for token in [str(raw).lower(), *str(raw).lower().split()])
        return found if operator == "CONTAINS_TOKEN" else not found
    if operator == "IN":
        return value is not None and value in operand
    if operator == "NOT_IN":
        return value is None or value not in operand
    if operator == "NEQ":
        return value is None or value != operand
    if value is None:
        return False
    if operator == "EQ":
        return value == operand
    if operator == "LT":
        return value < operand
    if operator == "LTE":
        return value <= operand
    if operator == "GT":
        return value > operand
    if operator == "GTE":
        return value >= operand
    return operand[0] <= value <= operand[1]  # BETWEEN


def parse_search(body) -> dict:
    """The search request, checked; raises SearchError with the VALIDATION_ERROR message."""
    if not isinstance(body, dict):
        raise SearchError("Invalid input JSON: the search request must be a JSON object")
    groups = body.get("filterGroups")
    if groups is None:
        groups = []
    if not isinstance(groups, list):
        raise SearchError("filterGroups must be a list")
    if body.get("filters") is not None:
        # The docs' association example puts `filters` at the top: one more group.
        if groups:
            raise SearchError("give filters inside filterGroups, not both")
        groups = [{"filters": body["filters"]}]
    if len(groups) > MAX_GROUPS:
        raise SearchError(f"Too many filter groups: {len(groups)}. A search can have at most {MAX_GROUPS} "
                          f"filterGroups, with at most {MAX_GROUP_FILTERS} filters in a group and "
                          f"{MAX_FILTERS} in all")
    compiled, total = [], 0
    for group in groups:
        if not isinstance(group, dict) or not isinstance(group.get("filters"), list):
            raise SearchError("each filter group must be an object with a `filters` list")
        filters = group["filters"]
        if not filters:
            raise SearchError("a filter group needs at least one filter")
        if len(filters) > MAX_GROUP_FILTERS:
            raise SearchError(f"Too many filters in a group: {len(filters)}. A filter group can have at most "
                              f"{MAX_GROUP_FILTERS} filters")
        total += len(filters)
        compiled.append([compile_filter(f) for f in filters])
    if total > MAX_FILTERS:
        raise SearchError(f"Too many filters: {total}. A search can have at most {MAX_FILTERS} filters")
    sorts = body.get("sorts")
    sort = None
    if sorts:
        if not isinstance(sorts, list):
            raise SearchError("sorts must be a list")
        if len(sorts) > 1:
            raise SearchError("Only one sorting rule can be applied to a search")
        rule = sorts[0]
        if isinstance(rule, str):  # the OpenAPI spec types sorts as strings: read as that property, ascending
            rule = {"propertyName": rule}
        if not isinstance(rule, dict):
            raise SearchError("a sort must be an object with propertyName and direction")
        name = rule.get("propertyName")
        direction = rule.get("direction", "ASCENDING")
        if name not in PROPERTY_TYPES:
            raise SearchError(f"Unable to find property '{name}' for object type contacts")
        if direction not in ("ASCENDING", "DESCENDING"):
            raise SearchError(f"Invalid input JSON: Cannot deserialize value of type `Direction` from String "
                              f"{json.dumps(direction)}: not one of the values accepted for Enum class: "
                              f"[ASCENDING, DESCENDING]")
        sort = (name, direction == "DESCENDING")
    properties = body.get("properties")
    if properties is not None and (not isinstance(properties, list)
                                   or not all(isinstance(p, str) for p in properties)):
        raise SearchError("properties must be a list of property names")
    query = body.get("query")
    if query is not None and not isinstance(query, str):
        raise SearchError("query must be a string")
    if query is not None and len(query) > MAX_QUERY_CHARS:
        raise SearchError(f"The query can contain at most {MAX_QUERY_CHARS} characters")
    limit = body.get("limit", 10)
    if limit is None:
        limit = 10
    if isinstance(limit, bool) or not isinstance(limit, int):
        raise SearchError(f"limit must be an integer, not {json.dumps(limit)}")
    if limit < 1 or limit > MAX_LIMIT:
        raise SearchError(f"Page limit must be between 1 and {MAX_LIMIT}, not {limit}")
    after = body.get("after")
    offset = 0
    if after is not None and after != "":
        if isinstance(after, bool) or not (isinstance(after, int) or (isinstance(after, str)
                                                                      and re.fullmatch(r"\d+", after))):
            raise SearchError(f"after must be an integer, as given in paging.next.after, not {json.dumps(after)}")
        offset = int(after)
    return {"groups": compiled, "sort": sort, "properties": chosen_properties(properties),
            "query": query, "limit": limit, "offset": offset}


class HubSpotServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, port: int = 0, client_id: str = CLIENT_ID, client_secret: str = CLIENT_SECRET,
                 refresh_token: str = REFRESH_TOKEN, token_lifetime_s: float = 1800,
                 rotate_refresh_token: bool = False, contacts: int = 250, fail_refresh=False,
                 search_per_second: int | None = None, max_results: int = 10000,
                 access_token: str | None = None):
        """fail_refresh: False; True (every refresh is 400 BAD_REFRESH_TOKEN, as after an uninstall);
        or an HTTP status (500, 503, ...) to answer refreshes with. access_token: a token valid from
        the start (for tests and by hand), as if issued by a refresh."""
        super().__init__(("127.0.0.1", port), Handler)
        self.lock = threading.Lock()
        self.client_id = client_id
        self.client_secret = client_secret
        self.token_lifetime_s = token_lifetime_s
        self.rotate_refresh_token = rotate_refresh_token
        self.fail_refresh = fail_refresh
        self.search_per_second = search_per_second
        self.rate_window_s = 1.0
        self.max_results = max_results
        self.contacts = make_contacts(contacts)
        self.refresh_tokens = [refresh_token]  # valid ones, the newest last
        self.access_tokens = {}  # token -> expiry (epoch seconds)
        self.issued = 0
        self.token_requests = 0
        self.search_requests = 0
        self.requests = []
        self.served = 0
        self.recent_searches = collections.deque()
        if access_token:
            self.access_tokens[access_token] = time.time() + token_lifetime_s

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def start(self) -> "HubSpotServer":
        # A short poll: stop() waits for it, once a test or golden case.
        threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()

    # -- control ------------------------------------------------------------------------------------

    @property
    def current_refresh_token(self) -> str | None:
        with self.lock:
            return self.refresh_tokens[-1] if self.refresh_tokens else None

    def expire_tokens(self) -> None:
        """Every access token issued so far expires now."""
        now = time.time()
        with self.lock:
            for token in self.access_tokens:
                self.access_tokens[token] = min(self.access_tokens[token], now)

    def revoke_tokens(self, refresh: bool = False) -> None:
        """Every access token issued so far stops working (401 INVALID_AUTHENTICATION); with
        refresh, the refresh tokens too (400 BAD_REFRESH_TOKEN), as when the app is uninstalled."""
        with self.lock:
            self.access_tokens.clear()
            if refresh:
                self.refresh_tokens.clear()

    def issue_access_token(self) -> str:
        """A new valid access token, as a refresh would give (for tests)."""
        with self.lock:
            return self._issue_access_token()

    def _issue_access_token(self) -> str:
        self.issued += 1
        digest = hashlib.sha256(f"access/{self.server_address[1]}/{self.issued}/{time.time()}".encode()).digest()
        token = "CK" + base64.urlsafe_b64encode(digest + hashlib.sha256(digest).digest()).decode().rstrip("=")
        self.access_tokens[token] = time.time() + self.token_lifetime_s
        return token

    def touch(self, contact_id, lastmodifieddate, **properties) -> None:
        """Modify a contact: its lastmodifieddate (ISO 8601 or epoch ms) and any properties."""
        ms = parse_instant(lastmodifieddate)
        if ms is None:
            raise ValueError(f"not a date-time: {lastmodifieddate!r}")
        with self.lock:
            contact = self.contacts[str(contact_id)]
            contact["updated"] = ms
            for name, value in properties.items():
                if name not in contact["props"]:
                    raise KeyError(name)
                contact["props"][name] = value

    def expected(self, since_iso: str | None = None, properties=None) -> list:
        """The records the example connector should produce: each contact with lastmodifieddate >=
        since, flattened to {"id", "createdAt", "updatedAt", "archived", <each property>: value}
        (the properties a search with this `properties` returns), by (lastmodifieddate, id)."""
        since = parse_instant(since_iso) if since_iso else None
        if since_iso and since is None:
            raise ValueError(f"not a date-time: {since_iso!r}")
        names = chosen_properties(properties)
        with self.lock:
            chosen = [c for c in self.contacts.values() if since is None or c["updated"] >= since]
            chosen.sort(key=lambda c: (c["updated"], int(c["id"])))
            out = []
            for contact in chosen:
                obj = public_object(contact, names)
                out.append({"id": obj["id"], "createdAt": obj["createdAt"], "updatedAt": obj["updatedAt"],
                            "archived": obj["archived"], **obj["properties"]})
        return out

    def configure(self, **settings) -> None:
        allowed = {"search_per_second", "max_results", "rotate_refresh_token", "token_lifetime_s",
                   "fail_refresh", "rate_window_s"}
        unknown = set(settings) - allowed
        if unknown:
            raise KeyError(", ".join(sorted(unknown)))
        with self.lock:
            for name, value in settings.items():
                setattr(self, name, value)

    def state(self) -> dict:
        with self.lock:
            return {"token_requests": self.token_requests, "tokens_issued": self.issued,
                    "search_requests": self.search_requests,
                    "current_refresh_token": self.refresh_tokens[-1] if self.refresh_tokens else None,
                    "contacts": len(self.contacts), "search_per_second": self.search_per_second,
                    "max_results": self.max_results, "rotate_refresh_token": self.rotate_refresh_token,
                    "token_lifetime_s": self.token_lifetime_s, "fail_refresh": self.fail_refresh}

    # -- the API ------------------------------------------------------------------------------------

    def next_correlation_id(self) -> str:
        with self.lock:
            self.served += 1
            return correlation_id("hubspot", self.served)

    def authenticate(self, header: str | None):
        """None when the token is good, else (status, body) of HubSpot's answer."""
        scheme, _, token = (header or "").partition(" ")
        token = token.strip()
        with self.lock:
            expiry = self.access_tokens.get(token) if scheme.lower() == "bearer" and token else None
        if expiry is None:
            return 401, {"status": "error",
                         "message": "Authentication credentials not found. This API supports OAuth 2.0 "
                                    f"authentication and you can find more details at {AUTH_DOCS}",
                         "correlationId": self.next_correlation_id(), "category": "INVALID_AUTHENTICATION"}
        now = time.time()
        if now < expiry:
            return None
        ago = int(now - expiry)
        for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
            if ago >= size:
                amount = f"{ago // size} {unit}(s)"
                break
        else:
            amount = f"{ago} second(s)"
        return 401, {"status": "error", "message": f"The OAuth token used to make this call expired {amount} ago.",
                     "correlationId": self.next_correlation_id(), "category": "EXPIRED_AUTHENTICATION",
                     "context": {"expire time": [iso_ms(int(expiry * 1000))]}}

    def rate_limited(self) -> bool:
        with self.lock:
            if not self.search_per_second:
                return False
            now = time.monotonic()
            while self.recent_searches and self.recent_searches[0] <= now - self.rate_window_s:
                self.recent_searches.popleft()
            if len(self.recent_searches) >= self.search_per_second:
                return True
            self.recent_searches.append(now)
            return False

    def search(self, request: dict) -> tuple:
        """(status, body) for a checked search request."""
        if request["offset"] >= self.max_results:
            return 400, {"status": "error",
                         "message": f"The search endpoints are limited to {self.max_results} total results "
                                    f"for any given query: after={request['offset']} pages beyond them. "
                                    f"Narrow the query (a later lastmodifieddate) and search again.",
                         "correlationId": self.next_correlation_id(), "category": "VALIDATION_ERROR"}
        query = request["query"].lower() if request["query"] else None
        with self.lock:
            found = []
            for contact in self.contacts.values():
                if request["groups"] and not any(all(matches(contact, f) for f in group)
                                                 for group in request["groups"]):
                    continue
                if query and not any(query in (contact["props"].get(p) or "").lower() for p in QUERY_PROPERTIES):
                    continue
                found.append(contact)
            found.sort(key=lambda c: int(c["id"]))  # creation order; and the tie-break of any sort
            if request["sort"]:
                name, descending = request["sort"]
                kind = PROPERTY_TYPES[name]
                present = [c for c in found if record_comparable(kind, property_value(c, name)) is not None]
                absent = [c for c in found if record_comparable(kind, property_value(c, name)) is None]
                # Python's sort is stable with reverse=True too: equal values keep id order either way.
                present.sort(key=lambda c: record_comparable(kind, property_value(c, name)), reverse=descending)
                found = present + absent  # no value: last, either way
            offset, limit = request["offset"], request["limit"]
            end = min(offset + limit, self.max_results, len(found))
            page = found[offset:end] if offset < end else []
            body = {"total": len(found), "results": [public_object(c, request["properties"]) for c in page]}
        if offset + len(page) < len(found) and page:
            body["paging"] = {"next": {"after": str(offset + len(page))}}
        return 200, body

    def token(self, form: dict) -> tuple:
        """(status, body) of the token endpoint for these form fields."""
        grant = form.get("grant_type")
        if grant not in ("refresh_token", "client_credentials", "authorization_code"):
            return 400, self.oauth_error("BAD_GRANT_TYPE", "missing or unknown grant type")
        if form.get("client_id") != self.client_id:
            return 400, self.oauth_error("BAD_CLIENT_ID", "missing or unknown client id")
        if form.get("client_secret") != self.client_secret:
            return 400, self.oauth_error("BAD_CLIENT_SECRET", "missing or invalid client secret")
        if grant == "authorization_code":
            return 400, self.oauth_error("BAD_AUTH_CODE", "missing or unknown auth code")
        with self.lock:
            if grant == "client_credentials":
                access = self._issue_access_token()
                return 200, {"token_type": "bearer", "access_token": access, "expires_in": self.expires_in(),
                             "token_use": "client_credentials", "hub_id": HUB_ID, "scopes": SCOPES}
            refresh = form.get("refresh_token")
            if not refresh or refresh not in self.refresh_tokens:
                return 400, self.oauth_error("BAD_REFRESH_TOKEN", "missing or unknown refresh token", locked=True)
            if self.fail_refresh is True:
                return 400, self.oauth_error("BAD_REFRESH_TOKEN", "missing or unknown refresh token", locked=True)
            if self.fail_refresh:
                return int(self.fail_refresh), {"status": "error", "message": "Internal error",
                                                "correlationId": self._correlation_locked()}
            if self.rotate_refresh_token:
                self.refresh_tokens.remove(refresh)
                refresh = correlation_id("refresh", self.server_address[1], self.issued, time.time())
                self.refresh_tokens.append(refresh)
            access = self._issue_access_token()
            return 200, {"token_type": "bearer", "refresh_token": refresh, "access_token": access,
                         "expires_in": self.expires_in(), "token_use": "access_token", "hub_id": HUB_ID,
                         "scopes": SCOPES, "user_id": USER_ID}

    def expires_in(self) -> int:
        return int(self.token_lifetime_s)

    def _correlation_locked(self) -> str:
        self.served += 1
        return correlation_id("hubspot", self.served)

    def oauth_error(self, status: str, message: str, locked: bool = False) -> dict:
        cid = self._correlation_locked() if locked else self.next_correlation_id()
        return {"status": status, "message": message, "correlationId": cid}


def redact_form(form: dict) -> dict:
    """Form or query fields, the values of secrets (tokens, secrets, codes, keys) replaced."""
    return {k: (REDACTED if re.search(r"secret|token|code|key|password", k, re.I) else v) for k, v in form.items()}


class Handler(BaseHTTPRequestHandler):
    server: HubSpotServer

    def log_message(self, *args):
        pass

    def read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            data = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return data
                data += self.rfile.read(size)
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def send_json(self, status, value, headers=()):
        data = json.dumps(value).encode()
        self.send_response(status)
        self.send_header("Content-Type", JSON_TYPE)
        self.send_header("Content-Length", str(len(data)))
        for name, value_ in headers:
            self.send_header(name, value_)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)
        if getattr(self, "record", None) is not None:
            with self.server.lock:
                self.record["status"] = status

    def hs_error(self, status, message, category, headers=()):
        self.send_json(status, {"status": "error", "message": message,
                                "correlationId": self.server.next_correlation_id(), "category": category},
                       headers)

    def do_GET(self):
        self.route("GET")

    def do_POST(self):
        self.route("POST")

    def do_PUT(self):
        self.route("PUT")

    def do_PATCH(self):
        self.route("PATCH")

    def do_DELETE(self):
        self.route("DELETE")

    def do_HEAD(self):
        self.route("HEAD")

    def route(self, method):
        self.record = None
        raw = self.read_body()
        url = urllib.parse.urlsplit(self.path)
        if url.path.startswith("/_control/"):
            return self.control(method, url, raw)
        self.record = {"method": method, "path": url.path,
                       "query": redact_form(dict(urllib.parse.parse_qsl(url.query))),
                       "body": None, "authorized": "Authorization" in self.headers, "status": None}
        with self.server.lock:
            self.server.requests.append(self.record)
        if url.path == SEARCH_PATH:
            if method != "POST":
                return self.send_json(405, {"status": "error", "message": f"HTTP {method} is not supported by "
                                                                          f"this endpoint; use POST",
                                            "correlationId": self.server.next_correlation_id()},
                                      headers=[("Allow", "POST")])
            return self.search(raw)
        if url.path == TOKEN_PATH:
            if method != "POST":
                return self.send_json(405, {"status": "error", "message": f"HTTP {method} is not supported by "
                                                                          f"this endpoint; use POST",
                                            "correlationId": self.server.next_correlation_id()},
                                      headers=[("Allow", "POST")])
            return self.token(url, raw)
        return self.hs_error(404, f"No endpoint at {url.path}", "OBJECT_NOT_FOUND")

    def search(self, raw: bytes):
        try:
            body, parse_failure = json.loads(raw.decode("utf-8")), None
        except UnicodeDecodeError as exc:
            body, parse_failure = None, f"Invalid input JSON on line 1, column {exc.start + 1}: invalid UTF-8"
        except json.JSONDecodeError as exc:
            body, parse_failure = None, f"Invalid input JSON on line {exc.lineno}, column {exc.colno}: {exc.msg}"
            if not raw.strip():  # Jackson's words for an empty body
                parse_failure = "Invalid input JSON on line 1, column 1: No content to map due to end-of-input"
        with self.server.lock:
            self.server.search_requests += 1
            self.record["body"] = body
            if parse_failure:
                self.record["body_invalid"] = True
        refusal = self.server.authenticate(self.headers.get("Authorization"))
        if refusal:
            return self.send_json(*refusal)
        if self.server.rate_limited():
            return self.send_json(429, {"status": "error", "message": "You have reached your secondly limit.",
                                        "errorType": "RATE_LIMIT",
                                        "correlationId": self.server.next_correlation_id(),
                                        "policyName": "SECONDLY"})
        if parse_failure:
            return self.hs_error(400, parse_failure, "VALIDATION_ERROR")
        try:
            request = parse_search(body)
        except SearchError as exc:
            return self.hs_error(400, str(exc), "VALIDATION_ERROR")
        return self.send_json(*self.server.search(request))

    def token(self, url, raw: bytes):
        content_type = self.headers.get("Content-Type", "").split(";")[0].strip().lower()
        form = dict(urllib.parse.parse_qsl(url.query))  # v1 also takes client_secret, refresh_token here
        if content_type == "application/x-www-form-urlencoded":
            form.update(urllib.parse.parse_qsl(raw.decode("utf-8", "replace"), keep_blank_values=True))
        with self.server.lock:
            self.server.token_requests += 1
            self.record["body"] = redact_form(form)
            self.record["content_type"] = content_type
        return self.send_json(*self.server.token(form))

    def control(self, method, url, raw: bytes):
        server = self.server
        try:
            body = json.loads(raw) if raw.strip() else {}
        except json.JSONDecodeError:
            return self.send_json(400, {"error": "the control API takes a JSON body"})
        params = dict(urllib.parse.parse_qsl(url.query))
        name = url.path[len("/_control/"):]
        try:
            if method == "GET" and name == "requests":
                with server.lock:
                    return self.send_json(200, [dict(r) for r in server.requests])
            if method == "GET" and name == "state":
                return self.send_json(200, server.state())
            if method == "GET" and name == "expected":
                props = params.get("properties")
                return self.send_json(200, server.expected(params.get("since"),
                                                           props.split(",") if props else None))
            if method == "POST" and name == "touch":
                server.touch(body["id"], body["lastmodifieddate"], **(body.get("properties") or {}))
                return self.send_json(200, {"ok": True})
            if method == "POST" and name == "expire_tokens":
                server.expire_tokens()
                return self.send_json(200, {"ok": True})
            if method == "POST" and name == "revoke_tokens":
                server.revoke_tokens(refresh=bool(body.get("refresh")))
                return self.send_json(200, {"ok": True})
            if method == "POST" and name == "config":
                server.configure(**body)
                return self.send_json(200, server.state())
        except (KeyError, ValueError, TypeError) as exc:
            return self.send_json(400, {"error": f"bad control request: {exc}"})
        return self.send_json(404, {"error": f"no control {method} {url.path}"})


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--port-file")
    parser.add_argument("--client-id", default=CLIENT_ID)
    parser.add_argument("--client-secret", default=CLIENT_SECRET)
    parser.add_argument("--refresh-token", default=REFRESH_TOKEN)
    parser.add_argument("--access-token", help="an access token valid from the start")
    parser.add_argument("--token-lifetime", type=float, default=1800, help="seconds (expires_in)")
    parser.add_argument("--rotate-refresh-token", action="store_true")
    parser.add_argument("--contacts", type=int, default=250)
    parser.add_argument("--search-per-second", type=int, help="answer 429 past this many searches a second")
    parser.add_argument("--max-results", type=int, default=10000)
    args = parser.parse_args()
    server = HubSpotServer(args.port, args.client_id, args.client_secret, args.refresh_token,
                           token_lifetime_s=args.token_lifetime, rotate_refresh_token=args.rotate_refresh_token,
                           contacts=args.contacts, search_per_second=args.search_per_second,
                           max_results=args.max_results, access_token=args.access_token)
    if args.port_file:
        with open(args.port_file, "w") as f:
            f.write(str(server.server_address[1]))
    print(f"hubspot_server: {server.base_url}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
