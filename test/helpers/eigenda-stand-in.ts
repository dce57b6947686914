/**
 * A stand-in for an EigenDA proxy's REST API in standard commitment mode (what src/da/eigenda.ts speaks):
 * POST /put?commitment_mode=standard stores the body and answers a certificate's bytes; GET /get/0x<hex>
 * answers the body stored under that certificate. The certificate here is a version byte, the payload's
 * keccak256 and a counter — not EigenDA's (an RLP-encoded blob certificate with KZG commitments); the
 * client treats it as opaque bytes either way. Switches make it misbehave as a hostile or failing proxy.
 */
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { keccak256, toHex } from "viem";

export interface EigenDaStandIn {
  url: string;
  blobs: Map<string, Buffer>;
  /** "ok"; "withhold": GET answers 404; "corrupt": GET flips a byte; "down": every call answers 503; "flood": GET streams without end. */
  mode: "ok" | "withhold" | "corrupt" | "down" | "flood";
  puts: number;
  stop(): Promise<void>;
}

export async function startEigenDaStandIn(): Promise<EigenDaStandIn> {
  let n = 0;
  const s: EigenDaStandIn = { url: "", blobs: new Map(), mode: "ok", puts: 0, stop: async () => {} };
  const server: Server = createServer((req, res) => {
    const url = new URL(req.url ?? "/", "http://x");
    if (s.mode === "down") { res.statusCode = 503; res.end(); req.resume(); return; }
    if (req.method === "POST" && url.pathname === "/put" && url.searchParams.get("commitment_mode") === "standard") {
      const parts: Buffer[] = [];
      req.on("data", (d: Buffer) => parts.push(d));
      req.on("end", () => {
        const body = Buffer.concat(parts);
        const cert = `0x00${keccak256(toHex(body)).slice(2)}${(n++).toString(16).padStart(8, "0")}`;
        s.blobs.set(cert, body);
        s.puts++;
        res.setHeader("content-type", "application/octet-stream");
        res.end(Buffer.from(cert.slice(2), "hex"));
      });
      return;
    }
    const m = /^\/get\/(0x[0-9a-f]+)$/.exec(url.pathname);
    if (req.method === "GET" && m) {
      const blob = s.blobs.get(m[1]!);
      if (!blob || s.mode === "withhold") { res.statusCode = 404; res.end(); return; }
      if (s.mode === "flood") {
        const chunk = Buffer.alloc(1 << 20, 7);
        const pump = () => { while (res.write(chunk)) { /* until the socket pushes back */ } };
        res.on("drain", pump);
        res.on("close", () => res.off("drain", pump));
        pump();
        return;
      }
      const out = Buffer.from(blob);
      if (s.mode === "corrupt") out[0]! ^= 1;
      res.setHeader("content-type", "application/octet-stream");
      res.end(out);
      return;
    }
    res.statusCode = 404;
    res.end();
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
  s.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  s.stop = () => new Promise<void>((r) => { server.closeAllConnections(); server.close(() => r()); });
  return s;
}
