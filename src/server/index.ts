export { buildServer, ROUTE_NOT_FOUND, type EngineSlot, type ServerOptions } from "./app.js";
