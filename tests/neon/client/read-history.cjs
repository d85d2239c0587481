// Reads meter's /api/v2 with Neon's official TypeScript client
// (@neondatabase/api-client, as Neon publishes it on npm): every page of
// consumption_history/projects (`getConsumptionHistoryPerProject`), a
// project_ids array, and the account.
// Prints one JSON object; exits non-zero with the API's answer on an error.
//
//   NEON_CLIENT_DIR=.stack/neon-client METER_API=http://127.0.0.1:8080 \
//     node tests/neon/client/read-history.cjs FROM TO GRANULARITY LIMIT [ID,ID...]
const path = require("path");
const { createApiClient } = require(path.resolve(process.env.NEON_CLIENT_DIR, "node_modules/@neondatabase/api-client"));

async function main() {
  const [from, to, granularity, limit, ids] = process.argv.slice(2);
  const api = createApiClient({ apiKey: process.env.NEON_API_KEY || "unused", baseURL: `${process.env.METER_API}/api/v2` });
  const query = { from, to, granularity, limit: Number(limit) };
  const projects = {};
  let pages = 0;
  let cursor;
  for (;;) {
    const { data } = await api.getConsumptionHistoryPerProject({ ...query, cursor });
    pages += 1;
    for (const p of data.projects) {
      if (projects[p.project_id]) throw new Error(`${p.project_id} on two pages`);
      projects[p.project_id] = p.periods;
    }
    cursor = data.pagination && data.pagination.cursor;
    if (!cursor || data.projects.length === 0) break;
    if (pages > 10000) throw new Error("paging did not end");
  }
  const named = ids ? (await api.getConsumptionHistoryPerProject({ ...query, project_ids: ids.split(",") })).data : null;
  // The client (2.7.x) no longer has a method for the account's history
  // (Neon's document of 2025-10 still lists it): its generic request, the
  // transport every method uses.
  const account = (
    await api.request({ path: "/consumption_history/account", method: "GET", query: { from, to, granularity }, secure: true, format: "json" })
  ).data;
  console.log(JSON.stringify({ pages, projects, named, account }));
}

main().catch((e) => {
  console.error(e.response ? `${e.response.status} ${JSON.stringify(e.response.data)}` : e.stack);
  process.exit(1);
});
