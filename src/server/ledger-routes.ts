/**
 * The economics endpoints: the node's ledger (src/ledger/) over HTTP, for `openlora ledger …`
 * (src/cli/ledger.ts) and operators' scripts. Who may call each is in src/server/access.ts (one
 * table, enforced before the handler runs); the handlers here only add "the caller is the party":
 * a contributor contributes as itself, a staker stakes its own balance, a Datanet owner or approver
 * decides or votes with its own key (`contributor`, `staker` and `by` may be omitted; given, they
 * must name the caller).
 *
 * Conventions: JSON in and out. Money, stakes, developer shares and lineage/parent weights are
 * decimal strings in both directions ("1000"; a JSON number is refused: it loses precision above
 * 2^53); versions and basis points are JSON integers. Lists are `{"object":"list","data":[…]}`.
 * Unknown body fields are refused. Errors are OpenAI-style bodies with the registry code
 * (src/errors.ts): INVALID_ARGUMENT 400 (with `param`), UNAUTHENTICATED 401, PERMISSION_DENIED and
 * LEDGER_FORBIDDEN 403, LEDGER_NOT_FOUND 404, LEDGER_CONFLICT and DATANET_DUPLICATE_RECORD 409,
 * INSUFFICIENT_BALANCE 402.
 * The routes and their bodies are listed in docs/api-access.md.
 */
import type { FastifyInstance, FastifyRequest } from "fastify";
import type { Hex } from "viem";
import { receiptMessage } from "../attribution/receipts.js";
import { OpenLoraError, quoted } from "../errors.js";
import type { Ledger } from "../ledger/ledger.js";
import type { RegisterModelInput } from "../ledger/models.js";
import { MAX_APPROVERS } from "../ledger/datanet-committee.js";
import type { RecordDecision, RecordStatus } from "../ledger/datanets.js";
import type { Principal } from "./access.js";
import { invalidArgument } from "./http-errors.js";
import {
  absent, amountField, arrayField, hex32Field, intField, list, nameArrayField, nameField, objectOf, oneOf, optionalName,
  pathId, pathName, textField, wire, type Obj,
} from "./ledger-routes-parse.js";

export interface AttributionContext {
  ledger: Ledger;
  /** Tokenizes Datanet content with the served model's tokenizer (for the span index). */
  tokenize(text: string): Promise<number[]>;
  /** Builds the span index of a just-published version (call after ledger.publishVersion). */
  indexVersion(datanet: string, version: number): void;
  /** The content hash of the files this node serves under `id` (base model or adapter), or undefined. */
  servedContentHash(id: string): Promise<Hex | undefined>;
}

const MODEL_FIELDS = ["id", "kind", "owner", "baseModel", "priceIn", "priceOut", "contentHash", "developers", "lineage", "parents", "shares"] as const;
const SHARE_FIELDS = ["developerBps", "stakerBps", "dataBps"] as const;
const RECORD_STATUSES: readonly RecordStatus[] = ["pending", "approved", "rejected"];

/**
 * The POST /v1/ledger/models body as the ledger's RegisterModelInput; the ledger checks the rest
 * (sums, references). `contentHash` is the node's to compute for what it serves: `served` is that
 * hash (undefined = the node serves no such id, so the body must name the files' hash); a body
 * hash that differs from it is MODEL_CONTENT_MISMATCH.
 */
export async function parseRegisterModel(body: unknown, served: (id: string) => Promise<Hex | undefined>): Promise<RegisterModelInput> {
  const o = objectOf(body, MODEL_FIELDS);
  const id = nameField(o, "id");
  const given = absent(o, "contentHash") ? undefined : hex32Field(o, "contentHash").toLowerCase() as Hex;
  const computed = await served(id);
  if (computed === undefined && given === undefined) throw invalidArgument("contentHash", "contentHash is required for a model this node does not serve (it cannot hash files it does not have).");
  if (computed !== undefined && given !== undefined && given !== computed) {
    throw new OpenLoraError("MODEL_CONTENT_MISMATCH", `contentHash ${given} is not the hash of the files this node serves as ${quoted(id)} (${computed}); omit it to have the node compute it.`, { param: "contentHash" });
  }
  const input: RegisterModelInput = {
    id,
    kind: oneOf(o, "kind", ["base", "adapter"] as const),
    owner: nameField(o, "owner"),
    priceIn: amountField(o, "priceIn"),
    priceOut: amountField(o, "priceOut"),
    contentHash: (computed ?? given)!,
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
  if (v.includes("@")) throw invalidArgument(prefix === "" ? key : `${prefix}.${key}`, `A Datanet id must not contain "@", got ${quoted(v)}.`);
  return v;
}

type P<T extends string> = { Params: Record<T, string> };

/** The calling account's id; a party field of the body, if given, must name it. */
function caller(request: FastifyRequest, o: Obj, field: string): string {
  const p: Principal = request.principal;
  if (p.kind !== "account") throw new OpenLoraError("UNAUTHENTICATED", "This endpoint needs an account's API key.");
  const named = optionalName(o, field);
  if (named !== undefined && named !== p.id) {
    throw new OpenLoraError("PERMISSION_DENIED", `${field} must be the calling account (${quoted(p.id)}), got ${quoted(named)}.`, { param: field });
  }
  return p.id;
}

export function registerLedgerRoutes(app: FastifyInstance, attribution: AttributionContext): void {
  const { ledger } = attribution;

  // ---- models

  app.post("/v1/ledger/models", async (request) => {
    ledger.offChainOnly("model listings");
    return wire(ledger.registerModel(await parseRegisterModel(request.body, (id) => attribution.servedContentHash(id))));
  });

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
    const contributor = caller(request, o, "contributor");
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

  const decisionWire = (d: RecordDecision): unknown => wire({ ...d.record, votes: d.votes });

  for (const action of ["approve", "reject"] as const) {
    app.post<P<"id" | "record">>(`/v1/datanets/:id/records/:record/${action}`, async (request) => {
      const datanet = pathName(request.params.id, "id");
      const record = pathId(request.params.record, "record");
      const by = caller(request, objectOf(request.body, ["by"]), "by");
      return decisionWire(action === "approve" ? ledger.approveRecord(datanet, record, by) : ledger.rejectRecord(datanet, record, by));
    });
  }

  app.get<P<"id" | "record">>("/v1/datanets/:id/records/:record/votes", async (request) => {
    const datanet = pathName(request.params.id, "id");
    return decisionWire(ledger.datanets.decision(datanet, pathId(request.params.record, "record")));
  });

  app.get<P<"id">>("/v1/datanets/:id/approvers", async (request) => wire(ledger.getApprovers(pathName(request.params.id, "id"))));

  app.put<P<"id">>("/v1/datanets/:id/approvers", async (request) => {
    const datanet = pathName(request.params.id, "id");
    const o = objectOf(request.body, ["approvers", "threshold", "by"]);
    const by = caller(request, o, "by");
    const approvers = nameArrayField(o, "approvers", MAX_APPROVERS);
    const threshold = intField(o, "threshold", 0, MAX_APPROVERS);
    const change = ledger.setApprovers(datanet, by, approvers, threshold);
    return wire({ ...change.committee, approved: change.approved, rejected: change.rejected, held: change.held });
  });

  app.post<P<"id">>("/v1/datanets/:id/publish", async (request) => {
    const datanet = pathName(request.params.id, "id");
    const by = caller(request, objectOf(request.body, ["by"]), "by");
    const version = ledger.publishVersion(datanet, by);
    // The version is published (immutable) even if indexing throws; the error then reaches the client as a 500.
    attribution.indexVersion(datanet, version.version);
    return wire(version);
  });

  app.get<P<"id">>("/v1/datanets/:id/versions", async (request) => list(ledger.listVersions(pathName(request.params.id, "id"))));

  // ---- accounts, stakes, balances

  app.post("/v1/accounts/agents", async (request) => {
    const id = nameField(objectOf(request.body, ["id"]), "id");
    const { account, apiKey } = ledger.createAccount(id);
    return { ...(wire(account) as Obj), apiKey };
  });

  app.get<P<"id">>("/v1/accounts/agents/:id", async (request) => wire(ledger.getAgent(pathName(request.params.id, "id"))));

  app.post<P<"id">>("/v1/accounts/agents/:id/keys", async (request) => {
    const id = pathName(request.params.id, "id");
    objectOf(request.body, []);
    return { id, apiKey: ledger.rotateApiKey(id) };
  });

  const amountOf = (body: unknown): bigint => amountField(objectOf(body, ["amount"]), "amount", { positive: true });
  const agentMoves = {
    deposit: (id: string, a: bigint) => ledger.deposit(id, a),
    withdraw: (id: string, a: bigint) => ledger.withdraw(id, a),
    stake: (id: string, a: bigint) => ledger.agentStake(id, a),
    unstake: (id: string, a: bigint) => ledger.agentUnstake(id, a),
  };
  for (const [action, move] of Object.entries(agentMoves)) {
    app.post<P<"id">>(`/v1/accounts/agents/:id/${action}`, async (request) => wire(move(pathName(request.params.id, "id"), amountOf(request.body))));
  }

  const stakeBody = (request: FastifyRequest): { staker: string; model: string; amount: bigint } => {
    const o = objectOf(request.body, ["staker", "model", "amount"]);
    return { staker: caller(request, o, "staker"), model: nameField(o, "model"), amount: amountField(o, "amount", { positive: true }) };
  };

  app.post("/v1/stakes", async (request) => {
    const s = stakeBody(request);
    return wire({ staker: s.staker, model: s.model, amount: ledger.stake(s.staker, s.model, s.amount) });
  });

  app.post("/v1/stakes/unstake", async (request) => {
    const s = stakeBody(request);
    return wire({ staker: s.staker, model: s.model, amount: ledger.unstake(s.staker, s.model, s.amount) });
  });

  app.get("/v1/balances", async () => list(ledger.balances()));

  app.get<P<"party">>("/v1/balances/:party", async (request) => {
    const party = pathName(request.params.party, "party");
    return { party, amount: ledger.balanceOf(party).toString(10) };
  });

  app.post<P<"party">>("/v1/balances/:party/payout", async (request) => {
    const party = pathName(request.params.party, "party");
    return { party, amount: ledger.payout(party, amountOf(request.body)).toString(10) };
  });

  // ---- receipts, events, checkpoints, epochs, verification

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

  app.get<{ Querystring: Record<string, unknown> }>("/v1/ledger/events", async (request) => {
    const q = objectOf(request.query ?? {}, ["account", "after", "limit"], "query");
    const num = (k: string, min: number, max: number, dflt: number): number => (absent(q, k) ? dflt : pathIdOrZero(String(q[k]), k, min, max));
    const events = ledger.events.list({ ...(absent(q, "account") ? {} : { account: nameField(q, "account") }), after: num("after", 0, Number.MAX_SAFE_INTEGER, 0), limit: num("limit", 1, 1000, 100) });
    return list(events.map((e) => ({ ...e.event, hash: e.hash, signature: e.signature })));
  });

  app.get("/v1/ledger/checkpoint", async () => wire(ledger.checkpoint()));

  app.post("/v1/epochs/close", async (request) => {
    objectOf(request.body, []);
    const epoch = ledger.closeEpoch();
    return { epoch: epoch === null ? null : wire(epoch) };
  });

  app.get("/v1/epochs", async () => list(ledger.epochs()));

  app.get("/v1/ledger/verify", async () => wire({ chain: await ledger.verifyChain(), balances: ledger.auditBalances() }));
}

/** A non-negative integer query value in [min, max]. */
function pathIdOrZero(v: string, param: string, min: number, max: number): number {
  const n = /^(0|[1-9][0-9]{0,15})$/.test(v) ? Number(v) : NaN;
  if (!Number.isSafeInteger(n) || n < min || n > max) throw invalidArgument(param, `${param} must be an integer in [${min}, ${max}], got ${quoted(v)}.`);
  return n;
}
