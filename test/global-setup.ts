/**
 * Before any test: the CLI and end-to-end tests spawn `bin/openlora.js`, which runs the compiled
 * dist/ over the built native addon. Both are brought up to date with the sources here (tsc and
 * make are incremental: a few seconds when nothing changed), so `npm test` always tests the
 * sources as they are, never a stale build.
 */
import { execFileSync } from "node:child_process";
import { existsSync } from "node:fs";
import { join } from "node:path";

const root = join(import.meta.dirname, "..");

function run(what: string, file: string, args: string[]): void {
  try {
    execFileSync(file, args, { cwd: root, stdio: ["ignore", "pipe", "pipe"] });
  } catch (e) {
    const err = e as { stdout?: Buffer; stderr?: Buffer };
    throw new Error(`${what} failed before the tests:\n${err.stdout?.toString() ?? ""}${err.stderr?.toString() ?? ""}`);
  }
}

export default function setup(): void {
  // node-gyp's make rebuilds only what changed; `configure` ran at install (npm ci / npm install).
  if (existsSync(join(root, "build", "Makefile"))) run("the native build (node-gyp build)", process.execPath, [join(root, "node_modules", "node-gyp", "bin", "node-gyp.js"), "build"]);
  run("the TypeScript build (tsc -p tsconfig.build.json)", process.execPath, [join(root, "node_modules", "typescript", "bin", "tsc"), "-p", "tsconfig.build.json"]);
}
