// Reads and updates one project's quota on meter's /api/v2 with Neon's
// official TypeScript client (`getProject`, `updateProject`). Prints
// {"before": ..., "after": ...}; exits non-zero with the API's answer on an
// error.
//
//   NEON_CLIENT_DIR=.stack/neon-client METER_API=http://127.0.0.1:8080 \
//     node tests/neon/client/project.cjs PROJECT_ID '{"written_data_bytes": 5000}'
const path = require("path");
const { createApiClient } = require(path.resolve(process.env.NEON_CLIENT_DIR, "node_modules/@neondatabase/api-client"));

async function main() {
  const [id, quota] = process.argv.slice(2);
  const api = createApiClient({ apiKey: process.env.NEON_API_KEY || "unused", baseURL: `${process.env.METER_API}/api/v2` });
  const before = (await api.getProject(id)).data;
  const after = (await api.updateProject(id, { project: { settings: { quota: JSON.parse(quota) } } })).data;
  console.log(JSON.stringify({ before, after }));
}

main().catch((e) => {
  console.error(e.response ? `${e.response.status} ${JSON.stringify(e.response.data)}` : e.stack);
  process.exit(1);
});
