// The next.config fragment every previewed site needs. A preview is opened at
// http://{projectId}.preview.localhost (traefik routing) or http://127.0.0.1:<port> (port routing),
// neither of which Next.js counts as the dev server's own origin (it listens on 0.0.0.0). For its
// dev resources (/_next/*, /__nextjs*: client bundles, hot reload) Next.js 15 checks the request's
// origin: without `allowedDevOrigins` it serves them with a warning that a future major version
// will refuse them; once `allowedDevOrigins` is set, every origin not listed (beyond localhost and
// *.localhost) gets 403, so the page renders but never hydrates. List both preview origins:
//
//   const nextConfig = { ...yourConfig, allowedDevOrigins: ["*.preview.localhost", "127.0.0.1"] };
//   export default withPayload(nextConfig);
//
// `*` matches one DNS label. With another PREVIEW_DOMAIN, list `*.<that domain>` instead.
// A site without any next.config file gets this one as next.config.mjs from the image's entrypoint.
/** @type {import('next').NextConfig} */
const nextConfig = {
  allowedDevOrigins: ["*.preview.localhost", "127.0.0.1"],
};

export default nextConfig;
