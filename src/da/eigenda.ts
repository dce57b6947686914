/**
 * Data availability through an EigenDA proxy (github.com/Layr-Labs/eigenda, proxy/), its REST API in
 * standard commitment mode: `POST /put?commitment_mode=standard` with the payload as the body
 * (application/octet-stream) answers the DA certificate's bytes; `GET /get/0x<certificate hex>` answers
 * the payload. The node announces the certificate on chain (BatchInbox.announce, event BatchStored) so a
 * validator finds it without the node; what comes back is checked against the epoch's commitment, since
 * the proxy is not trusted for it. Tested against tests' stand-in server (test/helpers/eigenda-stand-in.ts),
 * not against a real proxy: none can run offline here.
 */
import { toHex, type Address, type Hex, type PublicClient } from "viem";
import { oerr } from "../errors.js";
import { BatchInboxAbi } from "../chain/abi.js";
import type { ChainClients } from "../chain/client.js";
import { MAX_RANGE } from "../chain/follower.js";
import { batchCommitment } from "./commitment.js";

/** The largest blob EigenDA proxy v1.4.1+ accepts on mainnet. */
export const EIGENDA_MAX_BLOB = 16 * 1024 * 1024;

export class EigenDaProxy {
  constructor(readonly url: string, private readonly timeoutMs = 120_000) {
    const u = new URL(url);
    if (u.protocol !== "http:" && u.protocol !== "https:") throw oerr("INVALID_ARGUMENT", `EigenDA proxy URL must be http(s): ${url}`);
  }

  async put(payload: Uint8Array): Promise<Hex> {
    if (payload.length > EIGENDA_MAX_BLOB) throw oerr("DA_BATCH_INVALID", `a batch of ${payload.length} bytes is over EigenDA's ${EIGENDA_MAX_BLOB}-byte blob`);
    const res = await this.request(new URL("put?commitment_mode=standard", this.base()), { method: "POST", headers: { "content-type": "application/octet-stream" }, body: new Blob([new Uint8Array(payload)]) });
    const cert = new Uint8Array(await res.arrayBuffer());
    if (cert.length === 0) throw oerr("DA_UNAVAILABLE", "the EigenDA proxy answered /put with an empty certificate");
    return toHex(cert);
  }

  async get(certificate: Hex): Promise<Uint8Array> {
    const res = await this.request(new URL(`get/${certificate}?commitment_mode=standard`, this.base()), { method: "GET" });
    // Read with a bound: a hostile proxy could answer without end.
    const parts: Uint8Array[] = [];
    let total = 0;
    const reader = res.body!.getReader();
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      total += value.length;
      if (total > EIGENDA_MAX_BLOB) {
        await reader.cancel();
        throw oerr("DA_BATCH_INVALID", `the EigenDA proxy answered more than ${EIGENDA_MAX_BLOB} bytes`);
      }
      parts.push(value);
    }
    return new Uint8Array(Buffer.concat(parts));
  }

  private base(): URL {
    return new URL(this.url.endsWith("/") ? this.url : `${this.url}/`);
  }

  private async request(url: URL, init: RequestInit): Promise<Response> {
    let res: Response;
    try {
      res = await fetch(url, { ...init, signal: AbortSignal.timeout(this.timeoutMs) });
    } catch (e) {
      throw oerr("DA_UNAVAILABLE", `the EigenDA proxy at ${this.url} does not answer: ${(e as Error).message}`);
    }
    if (!res.ok) throw oerr("DA_UNAVAILABLE", `the EigenDA proxy answered ${url.pathname.split("/")[1]} with HTTP ${res.status}`, { status: res.status });
    return res;
  }
}

/** Stores `payload` through the proxy and announces its certificate; skipped when already announced. */
export async function publishEigenDa(clients: ChainClients, inbox: Address, proxy: EigenDaProxy, payload: Uint8Array, fromBlock: bigint): Promise<{ commitment: Hex; certificate: Hex }> {
  const commitment = batchCommitment(payload);
  const known = await announced(clients.public, inbox, clients.account.address, commitment, fromBlock);
  if (known.length > 0) return { commitment, certificate: known[known.length - 1]! };
  const certificate = await proxy.put(payload);
  const hash = await clients.wallet.writeContract({ address: inbox, abi: BatchInboxAbi, functionName: "announce", args: [commitment, certificate] });
  const r = await clients.public.waitForTransactionReceipt({ hash, timeout: 60_000 });
  if (r.status !== "success") throw oerr("CHAIN_TX_FAILED", `BatchInbox.announce was reverted (tx ${hash})`, { tx: hash });
  return { commitment, certificate };
}

/** The batch `publisher` announced under `commitment`, fetched through the proxy and checked against it. */
export async function fetchEigenDa(client: PublicClient, inbox: Address, proxy: EigenDaProxy, publisher: Address, commitment: Hex, fromBlock: bigint): Promise<Uint8Array> {
  const certs = await announced(client, inbox, publisher, commitment, fromBlock);
  if (certs.length === 0) throw oerr("DA_UNAVAILABLE", `batch ${commitment} by ${publisher} was never announced`, { commitment });
  let last: unknown;
  for (const cert of certs.reverse()) {
    try {
      const payload = await proxy.get(cert);
      if (batchCommitment(payload) === commitment) return payload;
      last = oerr("DA_COMMITMENT_MISMATCH", `the EigenDA blob of certificate ${cert.slice(0, 18)}… does not hash to ${commitment}`, { commitment });
    } catch (e) {
      last = e;
    }
  }
  throw last;
}

async function announced(client: PublicClient, inbox: Address, publisher: Address, commitment: Hex, fromBlock: bigint): Promise<Hex[]> {
  const head = await client.getBlockNumber();
  const out: Hex[] = [];
  for (let a = fromBlock; a <= head; a += MAX_RANGE) {
    const logs = await client.getContractEvents({ address: inbox, abi: BatchInboxAbi, eventName: "BatchStored", args: { publisher, commitment }, fromBlock: a, toBlock: a + MAX_RANGE - 1n < head ? a + MAX_RANGE - 1n : head });
    for (const l of logs) out.push(l.args.certificate!);
  }
  return out;
}
