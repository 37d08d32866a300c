"""opensearch-py used as a user would, against the proxy at argv[1] with no AWS configuration:
create an index, bulk-load, search with a scroll through every page, clear the scroll, count,
delete the index. Prints one JSON line with what it saw; exits non-zero on any failure.

`--compress`: with `http_compress=True` (gzip request bodies). `--restricted`: also try to
write to `restricted-index`, and say what status came back."""

import json
import sys

from opensearchpy import OpenSearch, helpers
from opensearchpy.exceptions import TransportError

url = sys.argv[1]
flags = set(sys.argv[2:])
client = OpenSearch(hosts=[url], use_ssl=False, timeout=30, http_compress="--compress" in flags)

seen = {"info": client.info()["version"]["distribution"]}
client.indices.create(index="books", body={"settings": {"number_of_shards": 1}})
seen["exists"] = client.indices.exists(index="books")

docs = [
    {"_index": "books", "_id": str(i), "_source": {"title": f"book {i}", "topic": "rust" if i % 2 else "go"}}
    for i in range(25)
]
ok, errors = helpers.bulk(client, docs)
seen["bulk_ok"] = ok
seen["bulk_errors"] = errors
client.indices.refresh(index="books")

page = client.search(index="books", body={"query": {"match": {"topic": "rust"}}}, scroll="1m", size=5)
scroll_id = page["_scroll_id"]
titles = [h["_source"]["title"] for h in page["hits"]["hits"]]
pages = 1
while True:
    page = client.scroll(scroll_id=scroll_id, scroll="1m")
    hits = page["hits"]["hits"]
    if not hits:
        break
    pages += 1
    titles += [h["_source"]["title"] for h in hits]
client.clear_scroll(scroll_id=scroll_id)
seen["scrolled"] = len(titles)
seen["pages"] = pages
seen["scan"] = sum(1 for _ in helpers.scan(client, index="books", query={"query": {"match_all": {}}}, size=10))
seen["count"] = client.count(index="books")["count"]
seen["get"] = client.get(index="books", id="7")["_source"]["title"]
if "--restricted" in flags:
    for name, attempt in [
        ("restricted_doc", lambda: client.index(index="restricted-index", id="1", body={"x": 1})),
        ("restricted_bulk", lambda: helpers.bulk(client, [{"_index": "restricted-index", "_source": {"x": 1}}])),
        ("restricted_search", lambda: client.search(index="books,restricted-index", body={"query": {"match_all": {}}})),
    ]:
        try:
            attempt()
            seen[name] = "allowed"
        except TransportError as e:
            seen[name] = e.status_code
client.indices.delete(index="books")
seen["exists_after_delete"] = client.indices.exists(index="books")
print(json.dumps(seen))
