// @opensearch-project/opensearch used as a user would, against the proxy at argv[2] with no AWS
// configuration: create an index, bulk-load, search with a scroll through every page, clear the
// scroll, count, delete the index. Prints one JSON line with what it saw; exits 1 on failure.
// `--compress`: with `compression: 'gzip'` (gzip request bodies). `--restricted`: also try to
// write to `restricted-index`, and say what status came back.
'use strict';
const { Client } = require('@opensearch-project/opensearch');

async function main(url, flags) {
  const options = { node: url, requestTimeout: 30000 };
  if (flags.includes('--compress')) options.compression = 'gzip';
  const client = new Client(options);
  const seen = {};
  seen.info = (await client.info()).body.version.distribution;
  await client.indices.create({ index: 'books', body: { settings: { number_of_shards: 1 } } });
  seen.exists = (await client.indices.exists({ index: 'books' })).body;

  const body = [];
  for (let i = 0; i < 25; i++) {
    body.push({ index: { _index: 'books', _id: String(i) } });
    body.push({ title: `book ${i}`, topic: i % 2 ? 'rust' : 'go' });
  }
  const bulk = (await client.bulk({ body })).body;
  seen.bulk_items = bulk.items.length;
  seen.bulk_errors = bulk.errors;
  await client.indices.refresh({ index: 'books' });

  let page = (await client.search({
    index: 'books', scroll: '1m', size: 5, body: { query: { match: { topic: 'rust' } } },
  })).body;
  const scrollId = page._scroll_id;
  const titles = page.hits.hits.map((h) => h._source.title);
  let pages = 1;
  for (;;) {
    page = (await client.scroll({ body: { scroll_id: scrollId, scroll: '1m' } })).body;
    if (page.hits.hits.length === 0) break;
    pages += 1;
    titles.push(...page.hits.hits.map((h) => h._source.title));
  }
  await client.clearScroll({ body: { scroll_id: scrollId } });
  seen.scrolled = titles.length;
  seen.pages = pages;
  seen.count = (await client.count({ index: 'books' })).body.count;
  seen.get = (await client.get({ index: 'books', id: '7' })).body._source.title;
  if (flags.includes('--restricted')) {
    const attempts = {
      restricted_doc: () => client.index({ index: 'restricted-index', id: '1', body: { x: 1 } }),
      restricted_bulk: () => client.bulk({ body: [{ index: { _index: 'restricted-index' } }, { x: 1 }] }),
      restricted_search: () => client.search({ index: 'books,restricted-index', body: { query: { match_all: {} } } }),
    };
    for (const [name, attempt] of Object.entries(attempts)) {
      try {
        await attempt();
        seen[name] = 'allowed';
      } catch (err) {
        seen[name] = err.meta ? err.meta.statusCode : String(err);
      }
    }
  }
  await client.indices.delete({ index: 'books' });
  seen.exists_after_delete = (await client.indices.exists({ index: 'books' })).body;
  console.log(JSON.stringify(seen));
}

main(process.argv[2], process.argv.slice(3)).catch((err) => {
  console.error(err && err.meta ? JSON.stringify(err.meta.body) : err);
  console.error(err);
  process.exit(1);
});
