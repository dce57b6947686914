/**
 * JSON read from files, with errors that carry no file contents: V8's JSON.parse messages quote
 * the text around the fault (`Unexpected token 'r', "root:x:0:0:"... is not valid JSON`), so only
 * the position is kept.
 */

/** Where JSON.parse failed, by position only. */
export function jsonErrorWhere(e: unknown): string {
  const message = e instanceof Error ? e.message : "";
  const at = /position (\d+)/.exec(message);
  if (at) return `at position ${at[1]}`;
  if (/end of JSON input/.test(message)) return "at the end of the input";
  return "before its first complete value";
}
