// Next.js config of the ops-sandbox sample frontend: a standalone server (server.js + its traced
// node_modules) that runs with nothing but `node`.
/** @type {import('next').NextConfig} */
const nextConfig = {
  output: 'standalone',
  // Trace files from this dir only (the build runs in a temp copy; never look above it).
  outputFileTracingRoot: import.meta.dirname,
  // Serve /foo/ as it is (no 308 to /foo): every path goes to the catch-all route handler.
  skipTrailingSlashRedirect: true,
  poweredByHeader: false,
  // No image optimization, so sharp (an optional dependency of next, ~20 MB of native libvips) is
  // never loaded: keep it out of the standalone tree.
  images: { unoptimized: true },
  outputFileTracingExcludes: {
    '*': ['node_modules/sharp/**', 'node_modules/@img/**', 'node_modules/detect-libc/**', 'node_modules/semver/**']
  }
}

export default nextConfig
