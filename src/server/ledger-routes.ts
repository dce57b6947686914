/**
 * The economics endpoints: the node's ledger (src/ledger/) over HTTP, for `openlora ledger …`
 * (src/cli/ledger.ts) and operators' scripts.
 *
 * SECURITY: these are OPERATOR endpoints with no authentication of their own. Anyone who can reach
 * them can register models, publish Datanets on an owner's behalf (`by` is taken at its word),
 * credit deposits and close epochs. They are meant for a trusted network only: the server binds
 * 127.0.0.1 by default; put an authenticating proxy in front before exposing it anywhere else.
 *
 * Conventions: JSON in and out. Money, stakes, developer shares and lineage/parent weights are
 * decimal strings in both directions ("1000"; a JSON number is refused: it loses precision above
 * 2^53); versions and basis points are JSON integers. Lists are `{"object":"list","data":[…]}`.
 * Unknown body fields are refused. Errors are OpenAI-style bodies with the registry code
 * (src/errors.ts): INVALID_ARGUMENT 400 (with `param`), LEDGER_NOT_FOUND 404, LEDGER_CONFLICT 409,
 * LEDGER_FORBIDDEN 403.
 *
 *   POST /v1/ledger/models                       register a base model or adapter (body: RegisterModelInput, amounts as strings)
 *   GET  /v1/ledger/models[/:id]                 registered models
 *   POST /v1/datanets                            {id, owner}
 *   GET  /v1/datanets/:id                        {id, owner, versions}
 *   POST /v1/datanets/:id/records                {contributor, content}: content is tokenized with the served model's tokenizer
 *   GET  /v1/datanets/:id/records[?status=…]     records (pending | approved | rejected)
 *   POST /v1/datanets/:id/records/:record/approve|reject   {by}: the Datanet's owner
 *   POST /v1/datanets/:id/publish                {by}: publishes the next version and builds its span index
 *   GET  /v1/datanets/:id/versions               published versions (root, counts)
 *   POST /v1/accounts/agents                     {id, stake?}
 *   GET  /v1/accounts/agents/:id                 {id, stake, balance, reserved, created}
 *   POST /v1/accounts/agents/:id/deposit         {amount}: credits the agent's prepaid balance
 *   POST /v1/accounts/agents/:id/stake           {amount}: sets the agent's own stake (mirrored from where it is held)
 *   POST /v1/stakes                              {staker, model, amount} → the staker's total on the model
 *   POST /v1/stakes/unstake                      {staker, model, amount} → what remains staked
 *   GET  /v1/balances[/:party]                   earned balances (the payouts)
 *   GET  /v1/receipts/:id                        the signed receipt, its EIP-712 inputs and Merkle proof (null before its epoch closes)
 *   POST /v1/epochs/close                        {epoch: the new epoch, or null when no receipt is pending}
 *   GET  /v1/epochs                              closed epochs
 *   GET  /v1/ledger/verify                       {chain: verifyChain(), balances: auditBalances()}
 */
import type { FastifyInstance } from "fastify";
import { receiptMessage } from "../attribution/receipts.js";
import type { Ledger } from "../ledger/ledger.js";
import type { RegisterModelInput } from "../ledger/models.js";
import type { RecordStatus } from "../ledger/datanets.js";
import { invalidArgument } from "./http-errors.js";
import {
  absent, amountField, arrayField, hex32Field, intField, list, nameField, objectOf, oneOf, optionalAmount, optionalName,
  pathId, pathName, textField, wire, type Obj,
} from "./ledger-routes-parse.js";

export interface AttributionContext {
  ledger: Ledger;
  /** Tokenizes Datanet content with the served model's tokenizer (for the span index). */
  tokenize(text: string): Promise<number[]>;
  /** Builds the span index of a just-published version (call after ledger.publishVersion). */
  indexVersion(datanet: string, version: number): void;
}

const MODEL_FIELDS = ["id", "kind", "owner", "baseModel", "priceIn", "priceOut", "contentHash", "developers", "lineage", "parents", "shares"] as const;
const SHARE_FIELDS = ["developerBps", "stakerBps", "dataBps"] as const;
const RECORD_STATUSES: readonly RecordStatus[] = ["pending", "approved", "rejected"];

/** The POST /v1/ledger/models body as the ledger's RegisterModelInput; the ledger checks the rest (sums, references). */
export function parseRegisterModel(body: unknown): RegisterModelInput {
  const o = objectOf(body, MODEL_FIELDS);
  const input: RegisterModelInput = {
    id: nameField(o, "id"),
    kind: oneOf(o, "kind", ["base", "adapter"] as const),
    owner: nameField(o, "owner"),
    priceIn: amountField(o, "priceIn"),
    priceOut: amountField(o, "priceOut"),
    contentHash: hex32Field(o, "contentHash"),
    developers: arrayField(o, "developers", (d, p) => ({ party: nameField(d, "party", p), share: amountField(d, "share", { prefix: p }) }), {
      required: true, allowed: ["party", "share"],
    }),
  };
  const baseModel = optionalName(o, "baseModel");
  if (input.kind === "base" && baseModel !== undefined) throw invalidArgument("baseModel", "A base model has no baseModel.");
  if (input.kind === "adapter" && baseModel === undefined) throw invalidArgument("baseModel", "An adapter needs baseModel: the base model it applies to.");
  if (baseModel !== undefined) input.baseModel = baseModel;
  if (!absent(o, "lineage")) {
    input.lineage = arrayField(o, "lineage", (l, p) => ({
      datanet: datanetId(l, "datanet", p),
      version: intField(l, "version", 1, Number.MAX_SAFE_INTEGER, p),
      weight: amountField(l, "weight", { prefix: p }),
    }), { allowed: ["datanet", "version", "weight"] });
  }
  if (!absent(o, "parents")) {
    if (input.kind === "base") throw invalidArgument("parents", "A base model has no parents.");
    input.parents = arrayField(o, "parents", (x, p) => ({ model: nameField(x, "model", p), weight: amountField(x, "weight", { prefix: p }) }), {
      allowed: ["model", "weight"],
    });
  }
  if (!absent(o, "shares")) {
    const s = objectOf(o.shares, SHARE_FIELDS, "shares");
    const shares = {
      developerBps: intField(s, "developerBps", 0, 10_000, "shares"),
      stakerBps: intField(s, "stakerBps", 0, 10_000, "shares"),
      dataBps: intField(s, "dataBps", 0, 10_000, "shares"),
    };
    const sum = shares.developerBps + shares.stakerBps + shares.dataBps;
    if (sum !== 10_000) throw invalidArgument("shares", `shares must sum to 10000 basis points, got ${sum}.`);
    input.shares = shares;
  }
  return input;
}

/** A Datanet id: a name without "@" (which separates id and version in a version key). */
function datanetId(o: Obj, key: string, prefix = ""): string {
  const v = nameField(o, key, prefix);
  if (v.includes("@")) throw invalidArgument(prefix === "" ? key : `${prefix}.${key}`, `A Datanet id must not contain "@", got ${JSON.stringify(v)}.`);
  return v;
}

type P<T extends string> = { Params: Record<T, string> };

export function registerLedgerRoutes(app: FastifyInstance, attribution: AttributionContext): void {
  const { ledger } = attribution;

  // ---- models

  app.post("/v1/ledger/models", async (request) => wire(ledger.registerModel(parseRegisterModel(request.body))));

  app.get("/v1/ledger/models", async () => list(ledger.listModels()));

  app.get<P<"id">>("/v1/ledger/models/:id", async (request) => wire(ledger.getModel(pathName(request.params.id, "id"))));

  // ---- Datanets

  app.post("/v1/datanets", async (request) => {
    const o = objectOf(request.body, ["id", "owner"]);
    const id = datanetId(o, "id");
    const owner = nameField(o, "owner");
    ledger.createDatanet(id, owner);
    return { id, owner, versions: [] };
  });

  app.get<P<"id">>("/v1/datanets/:id", async (request) => {
    const id = pathName(request.params.id, "id");
    return { id, owner: ledger.datanets.owner(id), versions: ledger.listVersions(id).map(wire) };
  });

  app.post<P<"id">>("/v1/datanets/:id/records", async (request) => {
    const datanet = pathName(request.params.id, "id");
    const o = objectOf(request.body, ["contributor", "content"]);
    const contributor = nameField(o, "contributor");
    const content = textField(o, "content");
    ledger.datanets.owner(datanet); // LEDGER_NOT_FOUND before spending a tokenization
    const tokenIds = await attribution.tokenize(content);
    return wire(ledger.contribute(datanet, { contributor, content, tokenIds }));
  });

  app.get<P<"id"> & { Querystring: Record<string, unknown> }>("/v1/datanets/:id/records", async (request) => {
    const datanet = pathName(request.params.id, "id");
    const q = objectOf(request.query ?? {}, ["status"], "query");
    const status = absent(q, "status") ? undefined : oneOf(q, "status", RECORD_STATUSES);
    return list(ledger.datanets.records(datanet, status));
  });

  for (const action of ["approve", "reject"] as const) {
    app.post<P<"id" | "record">>(`/v1/datanets/:id/records/:record/${action}`, async (request) => {
      const datanet = pathName(request.params.id, "id");
      const record = pathId(request.params.record, "record");
      const by = nameField(objectOf(request.body, ["by"]), "by");
      if (action === "approve") ledger.approveRecord(datanet, record, by);
      else ledger.rejectRecord(datanet, record, by);
      return wire(ledger.datanets.record(datanet, record));
    });
  }

  app.post<P<"id">>("/v1/datanets/:id/publish", async (request) => {
    const datanet = pathName(request.params.id, "id");
    const by = nameField(objectOf(request.body, ["by"]), "by");
    const version = ledger.publishVersion(datanet, by);
    // The version is published (immutable) even if indexing throws; the error then reaches the client as a 500.
    attribution.indexVersion(datanet, version.version);
    return wire(version);
  });

  app.get<P<"id">>("/v1/datanets/:id/versions", async (request) => list(ledger.listVersions(pathName(request.params.id, "id"))));

  // ---- agents, stakes, balances

  app.post("/v1/accounts/agents", async (request) => {
    const o = objectOf(request.body, ["id", "stake"]);
    const id = nameField(o, "id");
    return wire(ledger.createAgent(id, optionalAmount(o, "stake") ?? 0n));
  });

  app.get<P<"id">>("/v1/accounts/agents/:id", async (request) => wire(ledger.getAgent(pathName(request.params.id, "id"))));

  app.post<P<"id">>("/v1/accounts/agents/:id/deposit", async (request) => {
    const id = pathName(request.params.id, "id");
    const amount = amountField(objectOf(request.body, ["amount"]), "amount", { positive: true });
    return wire(ledger.deposit(id, amount));
  });

  app.post<P<"id">>("/v1/accounts/agents/:id/stake", async (request) => {
    const id = pathName(request.params.id, "id");
    const amount = amountField(objectOf(request.body, ["amount"]), "amount");
    return wire(ledger.setAgentStake(id, amount));
  });

  const stakeBody = (body: unknown): { staker: string; model: string; amount: bigint } => {
    const o = objectOf(body, ["staker", "model", "amount"]);
    return { staker: nameField(o, "staker"), model: nameField(o, "model"), amount: amountField(o, "amount", { positive: true }) };
  };

  app.post("/v1/stakes", async (request) => {
    const s = stakeBody(request.body);
    return wire({ staker: s.staker, model: s.model, amount: ledger.stake(s.staker, s.model, s.amount) });
  });

  app.post("/v1/stakes/unstake", async (request) => {
    const s = stakeBody(request.body);
    return wire({ staker: s.staker, model: s.model, amount: ledger.unstake(s.staker, s.model, s.amount) });
  });

  app.get("/v1/balances", async () => list(ledger.balances()));

  app.get<P<"party">>("/v1/balances/:party", async (request) => {
    const party = pathName(request.params.party, "party");
    return { party, amount: ledger.balanceOf(party).toString(10) };
  });

  // ---- receipts, epochs, verification

  app.get<P<"id">>("/v1/receipts/:id", async (request) => {
    const r = ledger.receiptWithProof(pathId(request.params.id, "id"));
    return {
      id: r.receipt.id,
      /** The receipt's canonical JSON (receiptToJSON) parsed: amounts are decimal strings. */
      receipt: JSON.parse(r.json) as unknown,
      /** The exact canonical JSON text; receiptFromJSON(json) gives the receipt back. */
      json: r.json,
      hash: r.hash,
      signature: r.signature,
      signer: r.signer,
      epoch: r.epoch,
      typedData: { ...r.typedData, message: wire(receiptMessage(r.receipt)) },
      proof: r.proof,
    };
  });

  app.post("/v1/epochs/close", async (request) => {
    objectOf(request.body, []);
    const epoch = ledger.closeEpoch();
    return { epoch: epoch === null ? null : wire(epoch) };
  });

  app.get("/v1/epochs", async () => list(ledger.epochs()));

  app.get("/v1/ledger/verify", async () => wire({ chain: await ledger.verifyChain(), balances: ledger.auditBalances() }));
}
