// Next reserves a few page paths (its own error and not-found pages): they would answer Next's 404
// HTML page and never reach the catch-all route handler. Rewrite them to the catch-all (still served
// by Next), passing the original path along. Every other path skips this proxy (see the matcher).
import { NextResponse } from 'next/server'

const RESERVED_PREFIX = '/__ops-reserved'

export function proxy(request) {
  const headers = new Headers(request.headers)
  headers.set('x-ops-original-path', request.nextUrl.pathname)
  const url = request.nextUrl.clone()
  url.pathname = RESERVED_PREFIX + request.nextUrl.pathname
  return NextResponse.rewrite(url, { request: { headers } })
}

export const config = {
  matcher: ['/404', '/500', '/_error', '/_app', '/_document', '/_not-found']
}
