// Checks KQL files with Microsoft's Kusto analyzer (npm @kusto/language-service-next) against
// the Container Insights tables Poolkeeper queries; tests/unit/test_kql.py runs it.
//
//   node tests/kql/check.mjs [--json] FILE.kql...
//
// Every syntax, semantic and analyzer diagnostic (unknown table, column or function, wrong
// types, a join without a kind, ...) is reported. Exit 0: no diagnostics; 1: diagnostics;
// 2: bad usage, an unreadable file, or the analyzer package is not installed (run `npm ci`).
// With --json, stdout is one JSON object: {"files": [{"file", "diagnostics": [{"severity",
// "code", "message", "line", "column", "text"}], "columns": [{"name", "type"}]}]}, where `file`
// is the path as given and `columns` is the result schema the analyzer infers for the query.

import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..");
const PACKAGE = "@kusto/language-service-next";

// The tables' columns, from the Azure Monitor Logs table reference
// (learn.microsoft.com/azure/azure-monitor/reference/tables/perf and .../kubenodeinventory).
// TenantId is one of Log Analytics' standard columns, present in every table.
const TABLES = {
  Perf: {
    TenantId: "string",
    _BilledSize: "real",
    BucketEndTime: "datetime",
    BucketStartTime: "datetime",
    Computer: "string",
    CounterName: "string",
    CounterPath: "string",
    CounterValue: "real",
    InstanceName: "string",
    _IsBillable: "string",
    Max: "real",
    Min: "real",
    ObjectName: "string",
    _ResourceId: "string",
    SampleCount: "int",
    SourceSystem: "string",
    StandardDeviation: "real",
    _SubscriptionId: "string",
    TimeGenerated: "datetime",
    Type: "string",
  },
  KubeNodeInventory: {
    TenantId: "string",
    _BilledSize: "real",
    ClusterId: "string",
    ClusterName: "string",
    Computer: "string",
    CreationTimeStamp: "datetime",
    DockerVersion: "string",
    _IsBillable: "string",
    KubeletVersion: "string",
    KubeProxyVersion: "string",
    KubernetesProviderID: "string",
    Labels: "string",
    LastTransitionTimeReady: "datetime",
    OperatingSystem: "string",
    _ResourceId: "string",
    SourceSystem: "string",
    Status: "string",
    _SubscriptionId: "string",
    TimeGenerated: "datetime",
    Type: "string",
  },
};

function fail(message) {
  process.stderr.write(`${message}\n`);
  process.exit(2);
}

function loadKusto() {
  const require = createRequire(join(ROOT, "package.json"));
  let folder;
  try {
    folder = dirname(require.resolve(`${PACKAGE}/package.json`));
  } catch {
    fail(
      `${PACKAGE} is not installed in ${join(ROOT, "node_modules")}: run \`npm ci\` in ${ROOT}`,
    );
  }
  // Bridge.NET output: plain scripts that define the globals Bridge, System and Kusto.
  require(join(folder, "bridge.min.js"));
  require(join(folder, "Kusto.Language.Bridge.min.js"));
  return globalThis.Kusto;
}

function globalsFor(Kusto) {
  const { TableSymbol, DatabaseSymbol } = Kusto.Language.Symbols;
  const tables = Object.entries(TABLES).map(([name, columns]) => {
    const schema = Object.entries(columns)
      .map(([column, type]) => `['${column}']:${type}`)
      .join(", ");
    return new TableSymbol.$ctor7(name, `(${schema})`, null);
  });
  // A closed database: a table or function it does not define is an error.
  const workspace = new DatabaseSymbol.$ctor1("workspace", tables, false);
  return Kusto.Language.GlobalState.Default.WithDatabase(workspace);
}

function check(Kusto, globals, file) {
  let text;
  try {
    text = readFileSync(file, "utf8");
  } catch (error) {
    fail(`cannot read ${file}: ${error.message}`);
  }
  const service = new Kusto.Language.Editor.KustoCodeService.$ctor1(text, globals);
  const found = [
    ...Bridge.toArray(service.GetDiagnostics()),
    ...Bridge.toArray(service.GetAnalyzerDiagnostics()),
  ];
  const diagnostics = found.map((d) => {
    const before = text.slice(0, d.Start).split("\n");
    return {
      severity: String(d.Severity),
      code: d.Code,
      message: d.Message,
      line: before.length,
      column: before[before.length - 1].length + 1,
      text: text.slice(d.Start, d.Start + d.Length),
    };
  });
  const code = Kusto.Language.KustoCode.ParseAndAnalyze(text, globals);
  const result = code.ResultType;
  const columns =
    result && result.Columns
      ? Bridge.toArray(result.Columns).map((c) => ({ name: c.Name, type: c.Type.Name }))
      : [];
  return { file, diagnostics, columns };
}

const args = process.argv.slice(2);
const json = args.includes("--json");
const files = args.filter((a) => a !== "--json");
if (files.length === 0 || files.some((f) => f.startsWith("-"))) {
  fail("usage: node tests/kql/check.mjs [--json] FILE.kql...");
}
const Kusto = loadKusto();
const globals = globalsFor(Kusto);
const results = files.map((file) => check(Kusto, globals, file));
if (json) {
  process.stdout.write(`${JSON.stringify({ files: results }, null, 2)}\n`);
} else {
  for (const { file, diagnostics } of results) {
    for (const d of diagnostics) {
      process.stdout.write(
        `${file}:${d.line}:${d.column}: ${d.severity} ${d.code}: ${d.message} [${d.text}]\n`,
      );
    }
  }
  const count = results.reduce((n, r) => n + r.diagnostics.length, 0);
  process.stdout.write(`${results.length} file(s) checked, ${count} diagnostic(s)\n`);
}
process.exit(results.some((r) => r.diagnostics.length) ? 1 : 0);
