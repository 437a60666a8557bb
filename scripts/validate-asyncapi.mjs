// Validate AsyncAPI documents with the AsyncAPI parser (the one the AsyncAPI tools use):
// `node scripts/validate-asyncapi.mjs docs/asyncapi.json`. Prints each diagnostic; exits 1 on
// any error (severity 0) or when a document does not parse. Reads local files only.
import { readFile } from "node:fs/promises";
import { Parser } from "@asyncapi/parser";

const SEVERITY = ["error", "warning", "info", "hint"];
const parser = new Parser();
let failed = false;
for (const path of process.argv.slice(2)) {
  const { document, diagnostics } = await parser.parse(await readFile(path, "utf8"));
  const errors = diagnostics.filter((d) => d.severity === 0);
  for (const d of diagnostics) {
    console.log(`${path}: ${SEVERITY[d.severity]} ${d.code} at ${d.path.join(".")}: ${d.message}`);
  }
  if (!document || errors.length) failed = true;
  console.log(`${path}: ${document ? "parsed" : "not parsed"}, ${errors.length} errors, ${diagnostics.length - errors.length} other diagnostics`);
}
process.exit(failed ? 1 : 0);
