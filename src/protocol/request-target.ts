// A request's target (RFC 9112 §3.2) → the origin-form path the backend sees, and the authority that names the host.

export interface RequestTarget {
  /** Origin-form: `/path?query`, or `*` for a server-wide OPTIONS. */
  path: string;
  /** The authority of an absolute-form target (`host[:port]`), which wins over the Host header; null otherwise. */
  authority: string | null;
}

/** RFC 3986 host (reg-name or IP literal) and optional port. */
export const AUTHORITY = /^(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._~!$&'()*+,;=%-]+)(?::\d{0,5})?$/;
/** `http://` or `https://` (case-insensitive), the authority, then an optional path and query. */
const ABSOLUTE_FORM = /^https?:\/\/([^/?#]*)([^#]*)$/i;

/**
 * The target as muxgate passes it on, or null when it is none of the forms a server accepts: origin-form, absolute-form
 * with an http(s) scheme and a valid authority (the form proxies send; RFC 9112 §3.2.2 says servers must accept it), or
 * `*` for OPTIONS. (CONNECT's authority-form never gets here: node:http hands CONNECT to another event.)
 */
export function parseRequestTarget(target: string, method: string): RequestTarget | null {
  if (target.startsWith('/')) return { path: target, authority: null };
  if (target === '*') return method === 'OPTIONS' ? { path: target, authority: null } : null;
  const match = ABSOLUTE_FORM.exec(target);
  if (match === null || match[1] === '' || match[1].includes('@') || !AUTHORITY.test(match[1])) return null;
  const rest = match[2];
  return { path: rest === '' ? '/' : rest.startsWith('?') ? `/${rest}` : rest, authority: match[1] };
}
