/** The drift test: committed artifacts and src/chain/abi.ts are what the sources compile to now. */
import { readFileSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { compileContracts, deployable, renderAbiModule, renderArtifact } from "../../src/chain/solc.js";

const root = join(import.meta.dirname, "..", "..");

describe("contract artifacts", () => {
  const fresh = compileContracts(root);

  it("contracts/artifacts holds exactly a fresh compile", () => {
    const dir = join(root, "contracts", "artifacts");
    const committed = readdirSync(dir).filter((f) => f.endsWith(".json")).sort();
    expect(committed).toEqual(deployable(fresh).map((a) => `${a.contractName}.json`).sort());
    for (const a of deployable(fresh)) expect(readFileSync(join(dir, `${a.contractName}.json`), "utf8"), a.contractName).toBe(renderArtifact(a));
  });

  it("src/chain/abi.ts is the fresh compile's ABIs", () => {
    expect(readFileSync(join(root, "src", "chain", "abi.ts"), "utf8")).toBe(renderAbiModule(fresh));
  });

  it("the core contracts are all there", () => {
    expect(fresh.map((a) => a.contractName)).toEqual(expect.arrayContaining(["Licence", "Registry", "Settlement", "TestToken"]));
  });
});
