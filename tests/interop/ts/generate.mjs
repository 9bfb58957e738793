// Generates TypeScript types from every schema in ../../../schemas/services with
// json-schema-to-typescript, one module per operation and side, plus samples.ts, which
// assigns every real payload the Rust side produced (alknet's interop_samples example) to
// its generated type — so `tsc --strict` checks both the types and the payloads. Every
// document's schema resource is first registered with ajv (JSON Schema 2020-12) in its
// default, strict mode — the recipe of docs/schemas.md, `ajv.addSchema(doc.schema)` then
// `ajv.compile(op.input)` — and every real payload validated through it (valid ones pass,
// inputs the Rust side refused fail): ajv refuses unknown keywords and formats.
import { execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import Ajv2020 from "ajv/dist/2020.js";
import { compile } from "json-schema-to-typescript";

const root = resolve(import.meta.dirname, "../../..");
const servicesDir = join(root, "schemas/services");
const out = join(import.meta.dirname, "generated");
rmSync(out, { recursive: true, force: true });
mkdirSync(out);

const pascal = (...parts) =>
  parts.map((p) => p.split(/[^A-Za-z0-9]+/).map((w) => w.charAt(0).toUpperCase() + w.slice(1)).join("")).join("");

const files = readdirSync(servicesDir).filter((f) => f.endsWith(".json"));
if (files.length === 0) throw new Error(`no service documents in ${servicesDir}`);

const types = new Map(); // "service/operation/side[/code]" -> { module, name }
const validators = new Map(); // the same keys -> ajv's validate function
const ajv = new Ajv2020();
for (const file of files) {
  const doc = JSON.parse(readFileSync(join(servicesDir, file), "utf8"));
  try {
    ajv.addSchema(doc.schema);
  } catch (e) {
    throw new Error(`ajv (strict) refuses the schema resource of ${file}: ${e.message}`);
  }
  for (const [opName, op] of Object.entries(doc.operations)) {
    // [side, the operation's reference to the part, the part's $defs name]
    const sides = ["input", "output", "item"].filter((s) => s in op).map((s) => [s, op[s], `${opName}.${s}`]);
    for (const [code, error] of Object.entries(op.errors)) {
      if (error.details) sides.push([`error_details/${code}`, error.details, `${opName}.error.${code}`]);
    }
    for (const [side, reference, part] of sides) {
      const expected = `${doc.schema.$id}#/$defs/${part}`;
      if (reference.$ref !== expected) throw new Error(`${file}: ${opName} ${side} is ${JSON.stringify(reference)}, not {"$ref": "${expected}"}`);
      try {
        validators.set(`${doc.namespace}/${opName}/${side}`, ajv.compile(reference));
      } catch (e) {
        throw new Error(`ajv (strict) refuses ${doc.namespace}/${opName}/${side}: ${e.message}`);
      }
      const name = pascal(doc.namespace, opName, side);
      // json-schema-to-typescript resolves references itself (and would fetch the `$id`):
      // give it the part standalone, with the resource's $defs.
      const standalone = { ...doc.schema.$defs[part], title: name, $defs: doc.schema.$defs };
      const ts = await compile(standalone, name, { bannerComment: "", additionalProperties: false, strictIndexSignatures: true });
      const module = `${doc.namespace}.${opName}.${side.replace("/", ".")}`;
      writeFileSync(join(out, `${module}.ts`), ts);
      types.set(`${doc.namespace}/${opName}/${side}`, { module, name });
    }
  }
}

// Real payloads from the Rust side.
const samplesDir = mkdtempSync(join(tmpdir(), "alknet-samples-"));
execFileSync("cargo", ["run", "--quiet", "--locked", "-p", "alknet", "--example", "interop_samples", "--", samplesDir], {
  cwd: root,
  stdio: "inherit",
});
const samples = JSON.parse(readFileSync(join(samplesDir, "samples.json"), "utf8"));
rmSync(samplesDir, { recursive: true, force: true });

const imports = new Set();
const lines = [];
let n = 0;
let refused = 0;
for (const s of samples) {
  if (s.side === "error_body") continue;
  const side = s.side === "error_details" ? `error_details/${s.code}` : s.side;
  if (!s.valid) {
    const validate = validators.get(`${s.service}/${s.operation}/${side}`);
    if (validate(s.value)) throw new Error(`ajv accepts ${JSON.stringify(s.value)} as ${s.service}/${s.operation}/${side}, which the Rust side refused`);
    refused++;
    continue;
  }
  const type = types.get(`${s.service}/${s.operation}/${side}`);
  if (!type) throw new Error(`no generated type for ${s.service}/${s.operation}/${side}`);
  const validate = validators.get(`${s.service}/${s.operation}/${side}`);
  if (!validate(s.value)) {
    throw new Error(`ajv rejects a real ${s.service}/${s.operation}/${side}: ${ajv.errorsText(validate.errors)}`);
  }
  imports.add(`import type { ${type.name} } from "./${type.module}";`);
  lines.push(`export const sample${n++}: ${type.name} = ${JSON.stringify(s.value)};`);
}
if (n === 0) throw new Error("the Rust side produced no samples");
if (refused === 0) throw new Error("the Rust side refused no input");
writeFileSync(join(out, "samples.ts"), [...imports, "", ...lines, ""].join("\n"));
console.log(`generated ${types.size} types and ${n} typed samples in ${out}; ajv refused the ${refused} inputs the Rust side refused`);
